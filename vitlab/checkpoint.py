"""Checkpoints: safetensors files that carry their model's config, written atomically.

Loading never unpickles anything: safetensors holds only tensors and a JSON string table.

A model checkpoint holds the model's ``state_dict`` plus metadata
``{'format': 'vitlab', 'version': '1', 'model': <config JSON>, 'extra': <JSON>}``.
A training checkpoint also holds the optimizer's tensors under ``optim.*`` keys.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file
from torch import nn

from .config import config_from_dict, config_to_dict
from .errors import CheckpointError, CheckpointNotFoundError, ConfigError, FolderBusyError

FORMAT = "vitlab"
VERSION = "1"
OPTIM_PREFIX = "optim."




def atomic_write(path: "str | Path", write) -> None:
    """Call ``write(tmp_path)`` then move the file into place, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a checkpoint is an ordinary file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_writable_folder(folder: "str | Path", what: str = "output folder") -> Path:
    """Make sure ``folder`` is (or can be made) a folder this process can write files into, before any work.

    Raises:
        ConfigError: it is a file, lies under a file, or cannot be created or written (read-only
            filesystem, no permission); the message names the path and the reason.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"The {what} {folder} is an existing file, not a folder; choose another path.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".vitlab-write-check.", suffix=".tmp")
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise ConfigError(f"Cannot write into the {what} {folder}: {err.strerror or err}. Choose a folder you "
                          "can write to.") from None
    return folder


@contextlib.contextmanager
def folder_lock(folder: "str | Path", *, wait: bool = True):
    """Hold an exclusive lock on a folder (the folder itself, so no lock file is left behind and the
    atomic writes inside it, which replace files, do not lose the lock).

    Args:
        folder: created if missing.
        wait: block until the lock is free; otherwise raise :class:`FolderBusyError` at once.
    Where the platform has no ``fcntl`` (Windows) nothing is locked; the writes stay atomic.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise FolderBusyError(f"{folder} is being written by another vitlab process (a training run into the "
                                  "same folder). Wait for it to finish, or choose another output folder.") from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def atomic_write_json(path: "str | Path", data: Any) -> None:
    """Write JSON atomically (indent 2, keys in insertion order)."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
    atomic_write(path, write)


def save_checkpoint(model: nn.Module, path: "str | Path", *, extra: "dict | None" = None,
                    optimizer: "torch.optim.Optimizer | None" = None) -> Path:
    """Save a vitlab model (weights + config) as safetensors, atomically.

    Args:
        model: a vitlab model (it must have a ``cfg`` attribute holding its config).
        path: file to write (``.safetensors``).
        extra: JSON-serialisable information to keep beside the weights (history, epoch, ...).
        optimizer: also save its state (for resuming training).
    """
    cfg = getattr(model, "cfg", None)
    try:
        model_json = json.dumps(config_to_dict(cfg))
    except ConfigError as err:
        raise CheckpointError(f"save_checkpoint needs a vitlab model with a .cfg config: {err}") from err
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "version": VERSION, "model": model_json, "extra": json.dumps(extra or {})}
    if optimizer is not None:
        state = optimizer.state_dict()
        for pid, entries in state["state"].items():
            for name, value in entries.items():
                t = value if torch.is_tensor(value) else torch.tensor(value)
                tensors[f"{OPTIM_PREFIX}{pid}.{name}"] = t.detach().cpu().contiguous()
        meta["optim_param_groups"] = json.dumps(state["param_groups"])
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return Path(path)


def _open(path: "str | Path", read_tensors: bool) -> tuple[dict, dict]:
    """({name: tensor} or, without ``read_tensors``, {name: shape} from the header alone, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(
            f"No checkpoint at {path}. Check the path; vitlab checkpoints are .safetensors files "
            "written by `vitlab train` or vitlab.save_checkpoint.")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:  # one handle: metadata and tensors agree
            meta = f.metadata() or {}
            if read_tensors:
                tensors = {key: f.get_tensor(key) for key in f.keys()}
            else:
                tensors = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({err}). It may be truncated or corrupt: "
            "re-create it (e.g. re-run `vitlab train`, which resumes from its last good epoch).") from err
    if meta.get("format") != FORMAT or "model" not in meta:
        raise CheckpointError(
            f"{path} is a safetensors file but not a vitlab checkpoint (no vitlab metadata). For timm "
            "weights use vitlab.from_timm(timm_model); for a bare state_dict build the model and call "
            "model.load_state_dict(...).")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} has vitlab checkpoint version {meta.get('version')!r}; this "
                              f"vitlab reads version {VERSION}.")
    return tensors, meta


def _read(path: "str | Path") -> tuple[dict, dict]:
    return _open(path, read_tensors=True)


def _config_of(path: "str | Path", meta: dict):
    try:
        return config_from_dict(json.loads(meta["model"]))
    except (ConfigError, json.JSONDecodeError, TypeError) as err:
        raise CheckpointError(f"{path} holds a model config this vitlab cannot read: {err}") from err


def checkpoint_skeleton(path: "str | Path") -> nn.Module:
    """The model a checkpoint describes, built on the meta device (shapes only: no memory, no time), after
    checking that the file's tensors have exactly the shapes that model needs; the weights are not read.

    So a tampered config (say ``img_size`` 100000 in a 500 KB file) is refused from the header alone,
    before anything is allocated. ``vitlab info`` reports a checkpoint from this.

    Raises:
        CheckpointError: the config cannot be read, or the tensors do not fit it (the names and shapes
            that differ are listed).
    """
    from .models import build_model

    shapes, meta = _open(path, read_tensors=False)
    cfg = _config_of(path, meta)
    with torch.device("meta"):
        skeleton = build_model(cfg)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    mismatch = _tensor_mismatches(expected, {k: v for k, v in shapes.items() if not k.startswith(OPTIM_PREFIX)})
    if mismatch:
        raise CheckpointError(f"{path}: its tensors do not fit the model its config describes ({mismatch}). "
                              "The file is damaged or was edited; re-create it.")
    skeleton.checkpoint_extra = _extra_of(path, meta)
    return skeleton


def _tensor_mismatches(expected: dict, saved: dict, shown: int = 5) -> str:
    """The first few tensors missing, extra or of another shape, in one line ('' when they all fit)."""
    problems = [f"{k}: missing" for k in expected if k not in saved]
    problems += [f"{k}: not in this model" for k in saved if k not in expected]
    problems += [f"{k}: saved {saved[k]}, the model needs {expected[k]}" for k in expected
                 if k in saved and saved[k] != expected[k]]
    more = f"; and {len(problems) - shown} more" if len(problems) > shown else ""
    return "; ".join(problems[:shown]) + more


def _extra_of(path: "str | Path", meta: dict) -> dict:
    try:
        extra = json.loads(meta.get("extra", "{}"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: its 'extra' metadata is not JSON ({err}).") from None
    if not isinstance(extra, dict):
        raise CheckpointError(f"{path}: its 'extra' metadata must be a JSON object, got {type(extra).__name__}.")
    return extra


def read_checkpoint_info(path: "str | Path") -> dict:
    """The metadata of a checkpoint: ``{'model': config dict, 'extra': dict}`` (weights not built)."""
    _, meta = _open(path, read_tensors=False)
    try:
        model = json.loads(meta["model"])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: its model config is not JSON ({err}).") from None
    return {"model": model, "extra": _extra_of(path, meta)}


def load_weights(model: nn.Module, path: "str | Path") -> dict:
    """Load a checkpoint's weights into an existing model; return the checkpoint's ``extra`` dict.

    Raises CheckpointError if the checkpoint was made for a different model configuration.
    """
    tensors, meta = _read(path)
    saved = json.loads(meta["model"])
    cfg = getattr(model, "cfg", None)
    if cfg is not None:
        try:
            mine = config_to_dict(cfg)
        except ConfigError:
            mine = None
        if mine is not None and mine != saved:
            diff = {k: (saved["config"].get(k), v) for k, v in mine["config"].items()
                    if saved["config"].get(k) != v}
            raise CheckpointError(
                f"{path} was saved from a different model (fields that differ, saved vs this model: "
                f"{diff}). Use vitlab.load_checkpoint(path) to rebuild the saved model instead.")
    weights = {k: v for k, v in tensors.items() if not k.startswith(OPTIM_PREFIX)}
    mismatch = _tensor_mismatches({k: tuple(v.shape) for k, v in model.state_dict().items()},
                                  {k: tuple(v.shape) for k, v in weights.items()})
    if mismatch:
        raise CheckpointError(f"{path} does not fit this model ({mismatch}). Use vitlab.load_checkpoint(path) "
                              "to rebuild the saved model instead.")
    model.load_state_dict(weights, strict=True)
    return _extra_of(path, meta)


def load_checkpoint(path: "str | Path", map_location: "str | torch.device" = "cpu") -> nn.Module:
    """Rebuild the model saved in a checkpoint, with its weights, in eval mode.

    The checkpoint's ``extra`` dict (e.g. training history) is attached as ``model.checkpoint_extra``.
    A ``map_location`` this machine does not have raises ``DeviceUnavailableError``
    (:func:`vitlab.training.check_device`) before the file is read.
    """
    from .models import build_model
    from .training import check_device  # training imports this module: import it only when called

    map_location = check_device(map_location)
    cfg = checkpoint_skeleton(path).cfg  # the header first: a config that does not fit its tensors is refused
    model = build_model(cfg)
    model.checkpoint_extra = load_weights(model, path)
    return model.to(map_location).eval()


def load_optimizer_state(optimizer: torch.optim.Optimizer, path: "str | Path") -> None:
    """Restore an optimizer's state saved by ``save_checkpoint(..., optimizer=...)``."""
    tensors, meta = _read(path)
    if "optim_param_groups" not in meta:
        raise CheckpointError(f"{path} holds no optimizer state; it cannot resume training.")
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith(OPTIM_PREFIX):
            pid, name = key[len(OPTIM_PREFIX):].split(".", 1)
            state.setdefault(int(pid), {})[name] = value
    groups = json.loads(meta["optim_param_groups"])
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as err:
        raise CheckpointError(f"{path}: optimizer state does not fit this optimizer: {err}") from err
