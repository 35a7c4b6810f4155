"""A small, exact training loop: AdamW, linear warm-up + cosine decay, label smoothing, optional
augmentation (random crop + horizontal flip), tqdm progress bars, a metrics history, evaluation.

Repeatable: one seed fixes the initial weights, the batch order and every random draw (each epoch
re-seeds from (seed, epoch)), so a run resumed from its epoch checkpoint ends with the same weights
as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import (atomic_write_json, folder_lock, load_optimizer_state, load_weights,
                         read_checkpoint_info, save_checkpoint)
from .config import check_fields, check_positive_ints
from .data import ImageDataset, preprocess
from .errors import CheckpointError, ConfigError, DeviceUnavailableError, TrainingDivergedError

CHECKPOINT_NAME = "checkpoint.safetensors"  # weights + optimizer, rewritten every epoch (resume)
MODEL_NAME = "model.safetensors"  # weights only, for use and for shipping
HISTORY_NAME = "history.json"
BEST_NAME = "best.safetensors"  # weights of the best epoch so far, with early stopping


@dataclass(frozen=True)
class TrainConfig:
    """How to train (the model's shape lives in its own config)."""

    epochs: int = 10  # passes over the training set
    batch_size: int = 128  # images per optimisation step
    lr: float = 1e-3  # peak learning rate (AdamW), reached after warm-up
    min_lr: float = 1e-5  # learning rate at the end of the cosine decay
    warmup_epochs: float = 1.0  # linear warm-up length, in epochs (may be fractional)
    weight_decay: float = 0.05  # AdamW decoupled weight decay (not applied to biases, norms, embeddings)
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    augment: bool = True  # random crop (pad 2) + horizontal flip on the uint8 images
    grad_clip: float = 1.0  # clip the gradient norm to this (0 = off)
    seed: int = 0  # the one seed: weights (if the model is built here), batch order, augmentation, dropout

    def __post_init__(self) -> None:
        check_recipe(self)


def check_recipe(cfg: "TrainConfig | PretrainConfig") -> None:
    """The checks every training recipe gets, before anything trains: positive epochs and batch size,
    and every number finite and in its range (:data:`vitlab.config.FIELD_RULES`, one rule a field), with
    the floor of the schedule no higher than its peak."""
    check_positive_ints(cfg, ("epochs", "batch_size"))
    check_fields(cfg)
    if cfg.min_lr > cfg.lr:
        raise ConfigError(f"{type(cfg).__name__}.min_lr={cfg.min_lr!r} is above lr={cfg.lr!r}: the cosine "
                          "schedule decays from lr down to min_lr, so choose min_lr <= lr.")


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when a held-out metric has not improved for ``patience`` epochs; end with its best epoch's weights.

    The epoch cap is the recipe's ``epochs`` (the learning-rate schedule spans it); no stop happens during
    the warm-up. Ties keep the earlier epoch.
    """

    patience: int = 10  # epochs without a new best (after the warm-up) before training stops
    metric: str = "val_accuracy"  # the history key to maximise, from a held-out split of the training data

    def __post_init__(self) -> None:
        check_positive_ints(self, ("patience",))
        if not isinstance(self.metric, str) or not self.metric:
            raise ConfigError(f"EarlyStopping.metric must be a history key such as 'val_accuracy', got {self.metric!r}.")
        if self.metric.startswith("test"):
            raise ConfigError(f"EarlyStopping.metric={self.metric!r} would choose the epoch on the test set, which "
                              "then no longer measures generalisation. Hold out a validation split of the "
                              "training data (vitlab.data.hold_out) and stop on 'val_accuracy'.")


def best_epoch(history: list, metric: str) -> "int | None":
    """The epoch (counted from 1) with the highest ``metric`` in a history, the earliest on ties; None if none has it."""
    best, at = None, None
    for record in history:
        value = record.get(metric)
        if value is not None and (best is None or value > best):
            best, at = value, record["epoch"]
    return at


def lr_at(step: int, total_steps: int, warmup_steps: int, cfg: TrainConfig) -> float:
    """Learning rate at an optimisation step: linear warm-up, then cosine decay to min_lr."""
    if step < warmup_steps:
        return cfg.lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def augment_batch(images: torch.Tensor, generator: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random crop after zero padding, and random horizontal flip, per image. uint8 (B, C, H, W) in/out."""
    B, C, H, W = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * pad + 1, (B,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (B,), generator=generator)
    rows = (dy[:, None] + torch.arange(H))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(W))  # (B, W)
    flip = torch.rand(B, generator=generator) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(B)[:, None, None, None]
    chans = torch.arange(C)[None, :, None, None]
    return padded[batch, chans, rows, cols]  # (B, C, H, W)


# Parameters that are tables of embeddings or biases, not weights: no weight decay (as in timm).
_NO_DECAY_NAMES = ("cls_token", "mask_token", "relative_position_bias_table")


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        last = name.rsplit(".", 1)[-1]
        skip = p.ndim <= 1 or "pos_embed" in last or last in _NO_DECAY_NAMES
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def predict(model: nn.Module, dataset: ImageDataset, batch_size: int = 500,
            progress: bool = False) -> torch.Tensor:
    """Logits (N, num_classes) for every image of a dataset, in order (model in eval mode)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in tqdm(range(0, len(dataset), batch_size), desc="predict", disable=not progress, leave=False):
        x = preprocess(dataset.images[start:start + batch_size]).to(device)
        out.append(model(x).float().cpu())
    model.train(was_training)
    return torch.cat(out)


def evaluate(model: nn.Module, dataset: ImageDataset, batch_size: int = 500, progress: bool = False) -> dict:
    """Top-1 accuracy and mean cross-entropy of a model on a dataset (``progress``: a tqdm bar)."""
    logits = predict(model, dataset, batch_size, progress=progress)
    labels = dataset.labels
    return {"accuracy": (logits.argmax(1) == labels).float().mean().item(),
            "loss": F.cross_entropy(logits, labels).item()}


@dataclass
class TrainResult:
    model: nn.Module
    # one dict per epoch: epoch, lr, train_loss, train_accuracy, val_* / test_*, train_seconds (the
    # optimisation steps alone) and seconds (with the evaluations)
    history: list
    out_dir: "Path | None"
    best_epoch: "int | None" = None  # with early stopping: the epoch whose weights the model holds

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float,
                   *, epoch: int, step: int, lr: float, advice: str) -> None:
    """One optimisation step on ``loss``: zero the gradients, backpropagate, clip, step.

    Args:
        grad_clip: maximum global gradient norm; 0 (or None) switches clipping off.
        epoch, step, lr: where training is (epoch and step counted from 1), for the error only.
        advice: what the user can do about a divergence, for the error.
    Raises:
        TrainingDivergedError: ``loss`` is NaN or infinite; nothing is updated.
    """
    if not torch.isfinite(loss):
        raise TrainingDivergedError(f"The loss became {loss.item()} at epoch {epoch}, step {step} (lr {lr:.3g}). {advice}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


def check_device(device: "str | torch.device") -> torch.device:
    """Return ``device`` as a ``torch.device`` if this machine can train on it, else raise a typed error.

    Args:
        device: ``'cpu'``, ``'cuda'``, ``'cuda:N'``, ``'mps'`` or a ``torch.device``.
    Raises:
        ConfigError: not a device name torch knows.
        DeviceUnavailableError: a GPU this machine or this torch build does not have (a CPU-only torch,
            no NVIDIA driver, a GPU index beyond the GPUs there are, no Apple-silicon GPU).
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"Unknown device {device!r} ({err}); use 'cpu', 'cuda', 'cuda:N' or 'mps'.") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"Device {device!r} asked for, but torch.cuda.is_available() is False here (torch "
                f"{torch.__version__}: a CPU-only build, or no NVIDIA GPU or driver). Train on the CPU "
                "(device 'cpu', the default), or install a CUDA build of torch on a machine with a GPU.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(f"Device {device!r} asked for, but this machine has "
                                         f"{torch.cuda.device_count()} CUDA GPU(s): use cuda:0 .. "
                                         f"cuda:{torch.cuda.device_count() - 1}.")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceUnavailableError(f"Device {device!r} asked for, but no Apple-silicon GPU (MPS) is "
                                         "available here; use 'cpu'.")
    return dev


BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Generator], "torch.Tensor | tuple[torch.Tensor, dict]"]


def fit(model: nn.Module, num_examples: int, batch_loss: BatchLoss, cfg: "TrainConfig | PretrainConfig", *,
        run_info: dict, out_dir: "str | Path | None" = None, resume: bool = True, progress: bool = True,
        loss_name: str = "loss", after_epoch: "Callable[[nn.Module], dict] | None" = None,
        advice: str = "Lower the learning rate.", desc: str = "epochs",
        early_stopping: "EarlyStopping | None" = None) -> list[dict]:
    """The one training loop: minimise ``batch_loss`` over shuffled mini-batches of example indices.

    AdamW (no weight decay on biases, norms and embeddings), linear warm-up then cosine decay per step,
    gradient clipping. Every epoch re-seeds its generator and torch's global RNG from (seed, epoch), so
    a run resumed from its epoch checkpoint ends with the same weights as an uninterrupted one.
    :func:`train` (classifiers), MAE and CLIP pre-training (:func:`pretrain`) all run through here.

    Args:
        model: the model to train, in place, already on its device.
        num_examples: size of the training set; indices 0 .. num_examples - 1 are batched.
        batch_loss: ``batch_loss(model, indices (b,), generator)`` -> the batch's mean loss (a 0-d
            tensor), or ``(loss, sums)`` where ``sums`` maps names to per-batch totals (e.g. correct
            predictions) that the history reports averaged over the epoch's examples. The generator is
            for the batch's random draws (augmentation, masks, captions), in a fixed order.
        cfg: the recipe (epochs, batch_size, lr, min_lr, warmup_epochs, weight_decay, grad_clip, seed).
        run_info: JSON-ready description of the run, kept in the checkpoint; a checkpoint of another
            run is not resumed from (CheckpointError).
        out_dir: if given, ``checkpoint.safetensors`` (weights + optimizer), ``model.safetensors`` and
            ``history.json`` are written there atomically after every epoch.
        resume: continue from ``out_dir``'s checkpoint if there is one.
        progress: tqdm bars.
        loss_name: the history's key for the epoch's mean loss.
        after_epoch: ``after_epoch(model) -> dict`` of more metrics for the epoch's record (evaluation);
            it runs after the epoch's last step and may switch the model to eval mode.
        advice: what the user can do if the loss diverges (for the error).
        desc: the epochs bar's label.
        early_stopping: stop once ``early_stopping.metric`` (a key that ``after_epoch`` reports) has not
            improved for ``patience`` epochs after the warm-up, and end with the best epoch's weights (also
            in ``best.safetensors`` when ``out_dir`` is given, so a resumed run keeps them).
    Returns:
        the history: one dict per epoch (epoch, lr, ``loss_name``, the averaged sums, after_epoch's
        metrics, train_seconds for the steps alone, seconds with the evaluations), the resumed epochs
        included.
    Raises:
        TrainingDivergedError: the loss became NaN or infinite (the last epoch checkpoint is kept).
        CheckpointError: ``out_dir`` holds a checkpoint of a different run.
        FolderBusyError: another process is training into ``out_dir`` right now.
    """
    if num_examples < 1:
        raise ConfigError("The training set is empty.")
    out = None if out_dir is None else Path(out_dir)
    # one writer per run folder: a second run into it is refused at once
    with contextlib.nullcontext() if out is None else folder_lock(out, wait=False):
        return _fit(model, num_examples, batch_loss, cfg, run_info, out, resume, progress, loss_name,
                    after_epoch, advice, desc, early_stopping)


def _stopped(history: list, cfg, early_stopping: "EarlyStopping | None") -> bool:
    """Whether early stopping ends training after the epochs of ``history``."""
    if early_stopping is None or not history or len(history) < cfg.warmup_epochs:
        return False
    at = best_epoch(history, early_stopping.metric)
    return at is not None and len(history) - at >= early_stopping.patience


def _fit(model, num_examples, batch_loss, cfg, run_info, out, resume, progress, loss_name, after_epoch, advice,
         desc, early_stopping) -> list[dict]:
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))
    steps_per_epoch = math.ceil(num_examples / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = min(total_steps, round(cfg.warmup_epochs * steps_per_epoch))
    history: list[dict] = []
    start_epoch = 0
    if out is not None and resume and (out / CHECKPOINT_NAME).is_file():
        saved = read_checkpoint_info(out / CHECKPOINT_NAME)["extra"]
        if saved.get("run") != run_info:
            differ = "; ".join(_differences(saved.get("run"), run_info)) or "the run description"
            raise CheckpointError(
                f"{out} holds a checkpoint of a different run ({differ}). Choose another output folder, or "
                "pass resume=False (--no-resume) to start over.")
        load_weights(model, out / CHECKPOINT_NAME)
        load_optimizer_state(optimizer, out / CHECKPOINT_NAME)
        history = saved["history"]
        start_epoch = saved["epoch"]
        _write_derived_files(out, model, saved)  # a crash may have left them an epoch behind
        if early_stopping is not None and best_epoch(history, early_stopping.metric) is not None \
                and not (out / BEST_NAME).is_file():
            raise CheckpointError(f"{out} holds an early-stopped run's checkpoint but not its best weights "
                                  f"({BEST_NAME}). Pass resume=False (--no-resume) to train it again.")
    best_state = None  # the best epoch's weights, in memory when there is no out_dir
    if out is not None:
        _remove_leftover_temporary_files(out)
    epochs_bar = tqdm(range(start_epoch, cfg.epochs), desc=desc, disable=not progress,
                      initial=start_epoch, total=cfg.epochs)
    for epoch in epochs_bar:
        if _stopped(history, cfg, early_stopping):
            break
        t0 = time.perf_counter()
        model.train()
        gen = torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch))
        torch.manual_seed(_epoch_seed(cfg.seed, epoch))  # dropout / stochastic depth
        order = torch.randperm(num_examples, generator=gen)
        loss_sum, sums, seen = 0.0, {}, 0
        batches = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}", disable=not progress, leave=False)
        for i in batches:
            step = epoch * steps_per_epoch + i
            lr = lr_at(step, total_steps, warmup_steps, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            loss = batch_loss(model, idx, gen)
            loss, batch_sums = loss if isinstance(loss, tuple) else (loss, {})
            optimizer_step(model, optimizer, loss, cfg.grad_clip, epoch=epoch + 1, step=i + 1, lr=lr, advice=advice)
            loss_sum += loss.item() * len(idx)
            for name, value in batch_sums.items():
                sums[name] = sums.get(name, 0) + value
            seen += len(idx)
            if i % 20 == 0:
                batches.set_postfix(loss=f"{loss_sum / seen:.4f}", lr=f"{lr:.2e}")
        record = {"epoch": epoch + 1, "lr": lr, loss_name: loss_sum / seen,
                  **{name: total / seen for name, total in sums.items()}}
        record["train_seconds"] = time.perf_counter() - t0  # the optimisation steps alone
        if after_epoch is not None:
            record.update(after_epoch(model))
        record["seconds"] = time.perf_counter() - t0  # with the evaluations
        history.append(record)
        epochs_bar.set_postfix({k: f"{v:.4f}" for k, v in record.items()
                                if k == loss_name or k.startswith("test_a") or k.startswith("val_a")})
        if early_stopping is not None:
            if early_stopping.metric not in record:
                raise ConfigError(f"Early stopping watches {early_stopping.metric!r}, but the epoch's record has only "
                                  f"{sorted(record)}; give a validation set (train(..., val_set=...)).")
            if best_epoch(history, early_stopping.metric) == epoch + 1:  # a new best: keep these weights
                if out is not None:  # written before the commit point: a resumed epoch rewrites it identically
                    save_checkpoint(model, out / BEST_NAME, extra={"run": run_info, "epoch": epoch + 1,
                                                                   early_stopping.metric: record[early_stopping.metric]})
                else:
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if out is not None:
            extra = {"run": run_info, "epoch": epoch + 1, "history": history}
            save_checkpoint(model, out / CHECKPOINT_NAME, extra=extra, optimizer=optimizer)  # the commit point
            _write_derived_files(out, model, extra)
    if early_stopping is not None and best_epoch(history, early_stopping.metric) is not None:
        if best_state is not None:
            model.load_state_dict(best_state)
        elif out is not None:
            load_weights(model, out / BEST_NAME)
    model.eval()
    return history


def _differences(saved: object, now: object, prefix: str = "") -> list[str]:
    """'field: saved X, now Y' for every (nested) field in which two run descriptions differ."""
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for key in list(saved) + [k for k in now if k not in saved]:
            out += _differences(saved.get(key, "(absent)"), now.get(key, "(absent)"), f"{prefix}{key}.")
        return out
    return [] if saved == now else [f"{prefix[:-1] or 'run'}: saved {saved!r}, now {now!r}"]


def _write_derived_files(out: Path, model: nn.Module, extra: dict) -> None:
    """``model.safetensors`` and ``history.json`` from what ``checkpoint.safetensors`` holds.

    The checkpoint is the run folder's one commit point: it is written first, each epoch, and these two
    files are derived from it. A run killed between the writes leaves them an epoch behind; resuming
    rewrites them from the checkpoint, so the folder never stays inconsistent.
    """
    save_checkpoint(model, out / MODEL_NAME, extra=extra)
    atomic_write_json(out / HISTORY_NAME, extra)


def _remove_leftover_temporary_files(out: Path) -> None:
    """Delete the ``<name>.*.tmp`` files a killed atomic write of this folder's files left behind."""
    for name in (CHECKPOINT_NAME, MODEL_NAME, HISTORY_NAME, BEST_NAME):
        for leftover in out.glob(f"{name}.*.tmp"):
            leftover.unlink(missing_ok=True)


def train(model: nn.Module, train_set: ImageDataset, cfg: TrainConfig = TrainConfig(), *,
          test_set: "ImageDataset | None" = None, out_dir: "str | Path | None" = None,
          resume: bool = True, progress: bool = True, device: "str | torch.device" = "cpu",
          val_set: "ImageDataset | None" = None, early_stopping: "EarlyStopping | None" = None) -> TrainResult:
    """Train a classifier on an in-memory dataset, evaluating after every epoch (through :func:`fit`).

    Args:
        model: the model, e.g. ``vitlab.build_model('fmnist-vit')`` (built after ``seed_everything``).
        train_set: training images (uint8, preprocessed here batch by batch).
        cfg: the training recipe.
        test_set: evaluated after every epoch (accuracy and loss go in the history).
        out_dir: if given, ``checkpoint.safetensors`` (weights + optimizer), ``model.safetensors``
            and ``history.json`` are written there atomically after every epoch.
        resume: continue from ``out_dir``'s checkpoint if there is one (it must be the same run).
        progress: show tqdm progress bars.
        device: where to train.
        val_set: a held-out split of the training data (:func:`vitlab.data.hold_out`), evaluated after every
            epoch (``val_accuracy``, ``val_loss`` in the history).
        early_stopping: stop when the validation accuracy has not improved for ``patience`` epochs and end
            with the best epoch's weights (needs ``val_set``; :class:`EarlyStopping`).
    Returns:
        TrainResult with the trained model (in eval mode), its per-epoch history and, with early
        stopping, the best epoch.
    Raises:
        TrainingDivergedError: the loss became NaN or infinite.
        CheckpointError: ``out_dir`` holds a checkpoint of a different run.
        DeviceUnavailableError: ``device`` is a GPU this machine does not have (:func:`check_device`).
    """
    if len(train_set) == 0:
        raise ConfigError("train_set is empty.")
    device = check_device(device)
    model.to(device)
    images, labels = train_set.images, train_set.labels

    def batch_loss(model: nn.Module, idx: torch.Tensor, gen: torch.Generator):
        batch = augment_batch(images[idx], gen) if cfg.augment else images[idx]
        x, y = preprocess(batch).to(device), labels[idx].to(device)
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        return loss, {"train_accuracy": (logits.argmax(1) == y).sum().item()}

    if early_stopping is not None and val_set is None:
        raise ConfigError("Early stopping needs a validation set: hold out part of the training data "
                          "(train_set, val_set = vitlab.data.hold_out(train_set, n)) and pass val_set=val_set.")
    evaluated = {name: data for name, data in (("val", val_set), ("test", test_set)) if data is not None}

    def epoch_metrics(model: nn.Module) -> dict:
        out = {}
        for name, data in evaluated.items():
            metrics = evaluate(model, data)
            out.update({f"{name}_accuracy": metrics["accuracy"], f"{name}_loss": metrics["loss"]})
        return out

    run_info = {"train": dataclasses.asdict(cfg), "train_set": train_set.name, "train_size": len(train_set)}
    if val_set is not None:  # only then, so that runs without one resume from their older checkpoints
        run_info.update(val_set=val_set.name, val_size=len(val_set),
                        early_stopping=None if early_stopping is None else dataclasses.asdict(early_stopping))
    history = fit(model, len(train_set), batch_loss, cfg, run_info=run_info, out_dir=out_dir, resume=resume,
                  progress=progress, loss_name="train_loss", after_epoch=epoch_metrics if evaluated else None,
                  advice="Lower the learning rate (--lr), keep gradient clipping on (--grad-clip), or "
                         "check the inputs for NaNs. The last good checkpoint is kept.",
                  early_stopping=early_stopping)
    best = None if early_stopping is None else best_epoch(history, early_stopping.metric)
    return TrainResult(model=model, history=history, out_dir=Path(out_dir) if out_dir is not None else None,
                       best_epoch=best)


@dataclass(frozen=True)
class PretrainConfig:
    """How to pre-train without labels (MAE, CLIP): the recipe of :func:`fit` without label smoothing."""

    epochs: int = 10  # passes over the training images
    batch_size: int = 256  # images per optimisation step
    lr: float = 1.5e-3  # peak learning rate, reached after warm-up
    min_lr: float = 1e-5  # learning rate at the end of the cosine decay
    warmup_epochs: float = 1.0  # linear warm-up length, in epochs
    weight_decay: float = 0.05  # AdamW decoupled weight decay (not on biases, norms, embeddings)
    grad_clip: float = 1.0  # clip the gradient norm to this (0 = off)
    augment: bool = True  # random crop (pad 2) + horizontal flip of the uint8 images
    seed: int = 0  # weights (if built after seed_everything), batch order, masks, augmentation

    def __post_init__(self) -> None:
        check_recipe(self)


def pretrain(model: nn.Module, num_examples: int, batch_loss: BatchLoss, cfg: PretrainConfig, *,
             out_dir: "str | Path | None" = None, resume: bool = True, progress: bool = True,
             run_info: "dict | None" = None, desc: str = "pretrain") -> list[dict]:
    """Self-supervised training (MAE, CLIP) through :func:`fit`: the history's key is ``loss``.

    Args:
        model: the model to train (in place).
        num_examples: size of the training set.
        batch_loss: ``batch_loss(model, indices (b,), generator) -> ()`` loss of one mini-batch.
        cfg: the recipe.
        out_dir, resume, progress, desc: as for :func:`fit`.
        run_info: more JSON-ready description of the run (the model, the data) for the checkpoint.
    Returns:
        the history: one dict per epoch (epoch, lr, loss, seconds).
    """
    info = {"pretrain": dataclasses.asdict(cfg), "num_examples": num_examples, **(run_info or {})}
    return fit(model, num_examples, batch_loss, cfg, run_info=info, out_dir=out_dir, resume=resume,
               progress=progress, desc=desc)
