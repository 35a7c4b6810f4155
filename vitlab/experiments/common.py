"""The shared experiment framework: budgets, one results file per experiment, FLOP counts, and one
resumable "train a classifier and record it" step.

Every reproduction (data scale, hybrids, ablations, resolution, T2T, Swin, MAE, CLIP) writes the
same kind of file, ``data/results/<experiment>.json``::

    {"experiment": "data-scale", "format": 1, "runs": [record, record, ...]}

A record is one finished training run (config, seed, train size, parameters, FLOPs, test accuracy,
wall time, commit ...). The file is rewritten atomically after every run, and a run whose
``run_id`` is already in the file is skipped, so an interrupted experiment loses at most the run in
progress and picks up where it stopped when started again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..checkpoint import atomic_write_json, folder_lock
from ..config import config_to_dict
from ..errors import (ConfigError, ResultsError, TrainSizeError, UnknownBudgetError,  # noqa: F401 (re-exported)
                      UnknownExperimentError, VitlabError)
from ..flops import count_forward_flops, count_train_flops
from .schema import BUDGETS, check_finished, check_record  # BUDGETS: quick (<= 3 min, notebooks, CI); full
from ..seed import seed_everything

FORMAT = 1  # version of the results-file layout










def repo_root() -> Path:
    """The repository (or installed source tree) that holds ``vitlab/`` and ``data/``."""
    return Path(__file__).resolve().parents[2]


def check_seeds(seeds) -> list[int]:
    """Return ``seeds`` as a list if it is a non-empty list of whole numbers >= 0, else raise ConfigError."""
    seeds = list(seeds)
    if not seeds or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds):
        raise ConfigError(f"seeds must be a non-empty list of whole numbers >= 0, got {seeds!r}.")
    return seeds


def check_budget(budget: str) -> str:
    """Return ``budget`` if it is one of :data:`BUDGETS`, else raise :class:`UnknownBudgetError`."""
    if budget not in BUDGETS:
        raise UnknownBudgetError(
            f"Unknown budget {budget!r}; use 'quick' (a few minutes on a laptop CPU: notebooks and CI) "
            "or 'full' (the committed result; about 2 hours on 2 CPU cores).")
    return budget


def default_results_path(experiment: str, budget: str) -> Path:
    """Where an experiment's results go by default.

    Args:
        experiment: the experiment's name, e.g. ``'data-scale'``.
        budget: ``'full'`` -> ``<repo>/data/results/<experiment>.json`` (committed);
            ``'quick'`` -> ``<repo>/data/results/quick/<experiment>.json`` (git-ignored).
    """
    check_budget(budget)
    folder = repo_root() / "data" / "results"
    return folder / f"{experiment}.json" if budget == "full" else folder / "quick" / f"{experiment}.json"


def check_train_sizes(sizes: "list[int] | tuple[int, ...]", available: int, what: str = "training set") -> list[int]:
    """Validate requested training-set sizes against the number of images there are.

    Args:
        sizes: requested numbers of training images.
        available: how many images the data has (60,000 for Fashion-MNIST train).
        what: the data's name, for the message.
    Returns:
        The sizes as a list of ints.
    Raises:
        TrainSizeError: a size that is not a positive int, or is larger than ``available``.
    """
    out = []
    for size in sizes:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise TrainSizeError(f"Train sizes must be positive whole numbers of images, got {size!r}.")
        if size > available:
            raise TrainSizeError(
                f"Train size {size:,} is larger than the {what} ({available:,} images); "
                f"choose sizes of at most {available:,}.")
        out.append(size)
    return out


class ResultsFile:
    """One experiment's results: a JSON file of run records, appended one finished run at a time.

    Args:
        path: the JSON file (created, with its folder, on the first :meth:`add`).
        experiment: the experiment's name; a file written by another experiment is refused.
    Raises:
        ResultsError: the file exists but is not valid JSON, not a vitlab results file, of a newer
            format, or of another experiment.
    """

    def __init__(self, path: "str | Path", experiment: str) -> None:
        self.path = Path(path)
        self.experiment = experiment
        self.records: list[dict] = []
        self.finished: "dict | None" = None  # set when a whole budget ran to its end (mark_finished)
        if self.path.exists():
            self.records = self._load()

    def _load(self) -> list[dict]:
        fix = ("Delete or move it to start this experiment afresh, or pass another path "
               "(--results PATH).")
        try:
            data = json.loads(self.path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ResultsError(f"{self.path} is not a readable JSON results file ({err}). {fix}") from err
        if not isinstance(data, dict) or "runs" not in data or "experiment" not in data:
            raise ResultsError(f"{self.path} is JSON but not a vitlab results file (no 'experiment' and "
                               f"'runs' keys). {fix}")
        if data["experiment"] != self.experiment:
            raise ResultsError(f"{self.path} holds results of experiment {data['experiment']!r}, not "
                               f"{self.experiment!r}. {fix}")
        if data.get("format") != FORMAT:
            raise ResultsError(f"{self.path} has results format {data.get('format')!r}; this vitlab reads "
                               f"format {FORMAT}. {fix}")
        runs = data["runs"]
        if not isinstance(runs, list):
            raise ResultsError(f"{self.path}: 'runs' must be a list of records, each with a 'run_id'. {fix}")
        try:
            for index, record in enumerate(runs):
                check_record(record, index, self.experiment, self.path)
            if data.get("finished") is not None:
                check_finished(data["finished"], runs, self.experiment, self.path)
        except ResultsError as err:
            raise ResultsError(f"{err} {fix}") from None
        self.finished = data.get("finished")
        return runs

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"ResultsFile({str(self.path)!r}, experiment={self.experiment!r}, runs={len(self)})"

    def get(self, run_id: str) -> "dict | None":
        """The record of a finished run, or None if it has not run yet."""
        return next((r for r in self.records if r["run_id"] == run_id), None)

    def add(self, record: dict) -> None:
        """Append (or replace, by ``run_id``) one record and rewrite the whole file atomically.

        The write merges: under a lock, records another process added to the file since this object read
        it are kept (and picked up here), so several processes may fill one file at once, e.g. one per
        seed (``vitlab reproduce NAME --seeds N``). A file marked finished loses the mark: what it holds is
        no longer what the finished budget made.
        """
        if not isinstance(record, dict) or "run_id" not in record:
            raise ResultsError("A results record needs a 'run_id'.")
        check_record(record, len(self.records), self.experiment, self.path)  # write nothing a reader would refuse
        with self._rewrite():
            self.records = [r for r in self.records if r["run_id"] != record["run_id"]] + [record]
            self.finished = None

    def remove(self, run_ids) -> None:
        """Drop the records of ``run_ids`` (from this object and the file), e.g. to train those runs again.
        The finished mark goes too."""
        drop = set(run_ids)
        with self._rewrite():
            self.records = [r for r in self.records if r["run_id"] not in drop]
            self.finished = None

    def mark_finished(self, budget: str) -> None:
        """Record that every run of ``budget`` is in the file (:func:`run_experiment` calls this at the
        end of a whole budget). A partial file, from an interrupted or still running budget, has no mark;
        :attr:`finished` tells them apart."""
        with self._rewrite():
            finished = {"budget": budget, "runs": len(self.records), "commit": git_commit(),
                        "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
            check_finished(finished, self.records, self.experiment, self.path)  # nothing a reader would refuse
            self.finished = finished

    @contextlib.contextmanager
    def _rewrite(self):
        """The one way this object changes its file: under the lock, take in what other processes wrote
        (:meth:`_merge_from_disk`), let the caller change :attr:`records` / :attr:`finished`, then write
        the whole file atomically. Nothing is written if the caller raises."""
        with self._locked():
            self._merge_from_disk()
            yield
            self._write()

    def _merge_from_disk(self) -> None:
        """Take in the records another process wrote to the file since this object last read or wrote it
        (the file's version of a run wins: this object only ever changes the record it is adding)."""
        if not self.path.exists():
            return
        on_disk = self._load()
        ids = {r["run_id"] for r in on_disk}
        self.records = on_disk + [r for r in self.records if r["run_id"] not in ids]

    def _locked(self):
        """An exclusive lock on the results file's folder while reading and rewriting the file, so two
        processes adding runs at once do not drop each other's records (:func:`vitlab.checkpoint.folder_lock`)."""
        return folder_lock(self.path.parent, wait=True)

    def _write(self) -> None:
        data = {"experiment": self.experiment, "format": FORMAT, "runs": self.records}
        if self.finished is not None:
            data["finished"] = self.finished
        atomic_write_json(self.path, data)

    def select(self, **fields: Any) -> list[dict]:
        """The records whose fields equal the given values, e.g. ``select(arm='vit', budget='full')``."""
        return [r for r in self.records if all(r.get(k) == v for k, v in fields.items())]


def committed_results(experiment: str) -> "tuple[ResultsFile | None, str]":
    """The committed full-budget result of ``experiment``, if it is there and finished, and a line saying so.

    Lessons, the gallery and the committed-result tests show a full result only when a whole full budget
    ran to its end (:attr:`ResultsFile.finished`); a partial file, left by an interrupted or still running
    ``vitlab reproduce NAME --budget full``, is not the result.

    Returns:
        ``(results, status)``: ``results`` is the :class:`ResultsFile`, or None when the file is missing or
        partial; ``status`` is one line for the reader: what was found and, if it is not usable, the command
        that makes or finishes it.
    Raises:
        UnknownExperimentError: ``experiment`` is not a registered experiment.
        ResultsError: the file exists but cannot be read as this experiment's results.
    """
    from . import check_experiment  # the registry imports this module; import it only when called

    check_experiment(experiment)
    path = default_results_path(experiment, "full")
    shown = f"data/results/{path.name}"
    if not path.is_file():
        return None, (f"{shown} is not committed yet (make it with `vitlab reproduce {experiment} "
                      "--budget full`)")
    results = ResultsFile(path, experiment)
    if results.finished is None:
        return None, (f"{shown} is partial ({len(results)} records so far; finish it with `vitlab reproduce "
                      f"{experiment} --budget full`)")
    return results, (f"committed full result: {shown} ({len(results)} records, finished "
                     f"{results.finished.get('at', '?')[:10]})")


def git_commit() -> "str | None":
    """The repository's current commit hash (with ``+dirty`` if tracked files changed), or None."""
    try:
        root = repo_root()
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return sha + ("+dirty" if dirty else "") if sha else None
    except (OSError, subprocess.SubprocessError):
        return None


def epochs_for_images(images: int, train_size: int) -> int:
    """Whole epochs that show at least ``images`` images from a set of ``train_size`` (>= 1)."""
    return max(1, math.ceil(images / train_size))


def recipe(epochs: int, seed: int, **changes: Any):
    """The training recipe the data-scale and hybrid reproductions share, for every model alike.

    AdamW at peak lr 2e-3 (batch 128, weight decay 0.05), a linear warm-up over the first 10% of the
    steps then cosine decay, label smoothing 0.1, random crop + flip: the recipe of the shipped
    checkpoints. The paper too trains every model of a comparison with the same hyper-parameters.

    Args:
        epochs: passes over the training set.
        seed: the run's seed.
        **changes: fields to change.
    Returns:
        A :class:`vitlab.training.TrainConfig`.
    """
    from ..training import TrainConfig

    base = dict(epochs=epochs, batch_size=128, lr=2e-3, min_lr=1e-5, warmup_epochs=0.1 * epochs,
                weight_decay=0.05, label_smoothing=0.1, augment=True, grad_clip=1.0, seed=seed)
    return TrainConfig(**{**base, **changes})


def log_run(index: int, total: int, record: dict, label: str) -> None:
    """One line per run: ``[3/54] vit n=250 seed=0: test 61.23%  (18 s)``."""
    print(f"[{index}/{total}] {label}: test {100 * record['test_accuracy']:.2f}%  "
          f"({record['wall_seconds']:.0f} s)", flush=True)


def _check_same_run(results: ResultsFile, done: dict, **wanted: Any) -> None:
    """Refuse to reuse a stored record whose run differs from the one asked for under the same run_id."""
    differ = {k: (done.get(k), v) for k, v in wanted.items() if done.get(k) != v}
    if differ:
        raise ResultsError(
            f"{results.path} already holds run {done['run_id']!r}, but made differently (stored vs now: "
            f"{differ}). It is probably another budget's or an older version's file: pass another path "
            "(--results PATH), or delete the file to start this experiment afresh.")


def run_classifier(results: ResultsFile, run_id: str, *, model_fn: Callable[[], nn.Module], train_set,
                   test_set, train_cfg, budget: str, progress: bool = True,
                   device: "str | torch.device" = "cpu", val_set=None, early_stopping=None,
                   run_dir: "str | Path | None" = None, **extra: Any) -> dict:
    """Train one classifier and record it, unless ``run_id`` is already in ``results``.

    Args:
        results: where the record goes (the file is rewritten atomically once the run is done).
        run_id: a name unique within the experiment, e.g. ``'vit/n=1000/seed=0'``.
        model_fn: builds a fresh model; called after ``seed_everything(train_cfg.seed)``, so the
            seed fixes the initial weights.
        train_set: training images (``vitlab.data.ImageDataset``).
        test_set: evaluated once, after training.
        train_cfg: a :class:`vitlab.training.TrainConfig` (its seed is the run's seed).
        budget: 'quick' or 'full' (stored in the record).
        progress: show tqdm progress bars.
        device: where to train ('cpu', 'cuda').
        val_set: a held-out split of the training data, evaluated every epoch (for ``early_stopping``).
        early_stopping: a :class:`vitlab.training.EarlyStopping`: train until it stops (``train_cfg.epochs``
            is then the cap) and keep the best validation epoch's weights.
        run_dir: if given, the run trains in ``run_dir/train/`` (resumable epoch by epoch: an interrupted
            run continues there), and its final (with early stopping: best) weights are written to
            ``run_dir/model.safetensors`` before the record is added; ``train/`` is removed afterwards.
        **extra: JSON-ready fields stored in the record, e.g. ``arm='vit', size=1000``.
    Raises:
        ResultsError: ``results`` already holds ``run_id`` but trained differently (other model, recipe,
            train size, validation split, patience or budget).
        CheckpointError: ``run_dir/train/`` holds a checkpoint of another recipe's run.
    Returns:
        The record: run_id, experiment, budget, model ({'kind', 'config'}), params, train_size,
        test_size, seed, train (TrainConfig fields), images_seen, forward_flops (per image),
        train_flops, test_accuracy, test_loss, train_loss, wall_seconds, commit, finished_at,
        torch, device, threads, plus ``extra``; with ``val_set``: val_size and val_accuracy (of the
        kept weights); with early stopping also best_epoch and epochs_run (images_seen and train_flops
        count the epochs run); with ``run_dir``: weights (the path of model.safetensors, relative to the
        results file's folder).
    """
    import shutil

    from ..checkpoint import save_checkpoint
    from ..models import count_parameters
    from ..training import evaluate, train

    check_budget(budget)
    seed_everything(train_cfg.seed)
    model = model_fn()
    done = results.get(run_id)
    if done is not None:
        wanted = dict(model=config_to_dict(model.cfg), train=dataclasses.asdict(train_cfg),
                      train_size=len(train_set), budget=budget)
        if val_set is not None:
            wanted["val_size"] = len(val_set)
        _check_same_run(results, done, **wanted, **extra)
        return done
    image_shape = tuple(train_set.images.shape[1:])
    forward_flops = count_forward_flops(model, image_shape)
    train_dir = None if run_dir is None else Path(run_dir) / "train"
    t0 = time.perf_counter()
    result = train(model, train_set, train_cfg, test_set=None, out_dir=train_dir, progress=progress, device=device,
                   val_set=val_set, early_stopping=early_stopping)
    epochs_run = len(result.history)
    images_seen = epochs_run * len(train_set)
    train_flops = count_train_flops(model, image_shape, images_seen)
    metrics = evaluate(result.model, test_set)
    wall = max(time.perf_counter() - t0, sum(h["seconds"] for h in result.history))  # a resumed run: all epochs
    record = {
        "run_id": run_id,
        "experiment": results.experiment,
        "budget": budget,
        "model": config_to_dict(model.cfg),
        "params": count_parameters(model),
        "train_size": len(train_set),
        "test_size": len(test_set),
        "seed": train_cfg.seed,
        "train": dataclasses.asdict(train_cfg),
        "images_seen": images_seen,
        "forward_flops": forward_flops,
        "train_flops": train_flops,
        "test_accuracy": metrics["accuracy"],
        "test_loss": metrics["loss"],
        "train_loss": result.final.get("train_loss"),
        "wall_seconds": round(wall, 2),
        "commit": git_commit(),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        **extra,
    }
    if val_set is not None:
        record["val_size"] = len(val_set)
        record["val_accuracy"] = evaluate(result.model, val_set)["accuracy"]
    if early_stopping is not None:
        record.update(best_epoch=result.best_epoch, epochs_run=epochs_run, stop_metric=early_stopping.metric)
    if run_dir is not None:
        weights = Path(run_dir) / "model.safetensors"
        record["weights"] = weights.relative_to(results.path.parent).as_posix() \
            if weights.is_relative_to(results.path.parent) else str(weights)
        save_checkpoint(result.model, weights, extra={"record": {k: v for k, v in record.items()
                                                               if k not in ("commit", "finished_at")}})
    results.add(record)
    if train_dir is not None:
        shutil.rmtree(train_dir, ignore_errors=True)  # the record and the weights hold what it was for
    return record


__all__ = ["BUDGETS", "ResultsError", "UnknownExperimentError", "UnknownBudgetError", "TrainSizeError",
           "check_budget", "check_train_sizes", "default_results_path", "committed_results", "ResultsFile", "count_forward_flops",
           "count_train_flops", "git_commit", "epochs_for_images", "recipe", "log_run", "run_classifier", "repo_root"]
