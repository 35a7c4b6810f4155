"""T2T-ViT against ViT when data is scarce (Yuan et al., ICCV 2021).

T2T-ViT's claim: a ViT trained from scratch on mid-size data does poorly partly because hard patches
throw away local structure; the Tokens-to-Token module (overlapping soft splits with small token
transformers) models it, and needs less data. Here both models have ~206k parameters and the same
backbone width and recipe (``fmnist-vit`` against ``fmnist-t2t``: 49 tokens of width 64 into the
blocks), trained from scratch on class-balanced Fashion-MNIST subsets of 1,000, 3,000 and 10,000
images, three seeds each, tested on all 10,000 test images.

Scales: ``'check'`` (1,000 images, 3 epochs, 1,000 test images: the quick budget, and what the tests
re-run) and ``'main'`` (the committed result). The full budget runs both with seeds 0, 1, 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import fashion_mnist, take_subset
from ..errors import ConfigError
from ..models import build_model
from ..models import t2t as _t2t  # noqa: F401  (registers the fmnist-t2t preset)
from ..training import TrainConfig
from .common import ResultsFile, check_budget, check_seeds, default_results_path, epochs_for_images, run_classifier

EXPERIMENT = "t2t"

ARMS = {"ViT": "fmnist-vit", "T2T-ViT": "fmnist-t2t"}  # label -> preset (~206k parameters each)


@dataclass(frozen=True)
class Scale:
    """One size of the experiment: training subsets, schedule and test set."""

    name: str  # 'check' or 'main'; the first part of every run_id
    train_sizes: tuple  # class-balanced nested Fashion-MNIST subsets
    images_per_run: tuple  # images shown in training for each size (epochs = this / size, rounded up)
    test_size: "int | None"  # class-balanced test subset; None = all 10,000
    batch_size: int = 64  # images per step
    lr: float = 1e-3  # peak AdamW learning rate, the same for both arms
    warmup_fraction: float = 0.1  # warm-up length as a fraction of the epochs


SCALES = {
    "check": Scale("check", train_sizes=(1000,), images_per_run=(4000,), test_size=1000, lr=2e-3),
    "main": Scale("main", train_sizes=(1000, 3000, 10_000), images_per_run=(30_000, 45_000, 60_000),
                  test_size=None),
}
BUDGET_SCALES = {"quick": ("check",), "full": ("check", "main")}
BUDGET_SEEDS = {"quick": (0,), "full": (0, 1, 2)}


def run_id_for(scale: str, arm: str, size: int, seed: int) -> str:
    """The name of one training run, e.g. ``'main/T2T-ViT/n=3000/seed=1'``."""
    return f"{scale}/{arm}/n={size}/seed={seed}"


def train_config(scale: Scale, size: int, seed: int) -> TrainConfig:
    """The recipe of a run: vitlab's defaults (AdamW, warm-up + cosine, label smoothing 0.1, crop + flip)
    with the scale's batch size and learning rate, and as many epochs as show ``images_per_run`` images."""
    images = scale.images_per_run[scale.train_sizes.index(size)]
    epochs = epochs_for_images(images, size)
    return TrainConfig(epochs=epochs, batch_size=scale.batch_size, lr=scale.lr,
                       warmup_epochs=max(1.0, scale.warmup_fraction * epochs), seed=seed)


def run_scale(results: ResultsFile, scale: Scale, *, seeds: list[int], budget: str,
              arms: "Mapping[str, str]" = ARMS, progress: bool = True, device: str = "cpu") -> list[dict]:
    """Train every (arm, size, seed) of a scale that is not in ``results`` yet; return the records.

    Args:
        results: where the records go (one is appended after each finished run).
        scale: sizes, schedule and test set.
        seeds: the seeds; each seeds the weights, batch order and augmentation of a run.
        budget: 'quick' or 'full' (stored in the records).
        arms: ``{label: preset}``, the models compared (Swin's experiment passes its own).
        progress: show progress bars.
        device: where to train.
    """
    planned = [(size, seed, arm) for size in scale.train_sizes for seed in seeds for arm in arms]
    done = [results.get(run_id_for(scale.name, arm, size, seed)) for size, seed, arm in planned]
    if all(record is not None for record in done):
        return done  # all finished: do not even load the data
    test_set = fashion_mnist("test", subset=scale.test_size)
    train_full = fashion_mnist("train")
    records = []
    for size in scale.train_sizes:
        train_set = take_subset(train_full, size)  # class-balanced and nested, as fashion_mnist(subset=size)
        for seed in seeds:
            for arm, preset in arms.items():
                records.append(run_classifier(
                    results, run_id_for(scale.name, arm, size, seed),
                    model_fn=lambda preset=preset: build_model(preset),
                    train_set=train_set, test_set=test_set, train_cfg=train_config(scale, size, seed), budget=budget,
                    progress=progress, device=device, arm=arm, preset=preset, scale=scale.name, size=size))
    return records


def run(budget: str = "quick", results_path: "str | Path | None" = None, progress: bool = True,
        seeds: "list[int] | None" = None, device: str = "cpu") -> ResultsFile:
    """Run (or resume) the T2T-ViT vs ViT experiment.

    Args:
        budget: 'quick' (scale 'check', seed 0: about 30 s on a free CPU core) or 'full' ('check' and
            'main', seeds 0, 1, 2: about 45 minutes on one free core; see the module docstring).
        results_path: the JSON results file; default :func:`~vitlab.experiments.common.default_results_path`.
        progress: show progress bars.
        seeds: default the budget's.
        device: where to train.
    Returns:
        The :class:`~vitlab.experiments.common.ResultsFile`.
    """
    return run_scales(EXPERIMENT, SCALES, ARMS, budget=budget, results_path=results_path, progress=progress,
                      seeds=seeds, device=device)


def run_scales(experiment: str, scales: "Mapping[str, Scale]", arms: "Mapping[str, str]", *, budget: str,
               results_path: "str | Path | None", progress: bool, seeds: "list[int] | None",
               device: str) -> ResultsFile:
    """Run (or resume) the budget's scales of an arms-against-each-other experiment (T2T-ViT, Swin).

    Args:
        experiment: the experiment's name (its results file says so).
        scales: scale name -> :class:`Scale`; ``BUDGET_SCALES[budget]`` names the ones run.
        arms: label -> preset.
        budget, results_path, progress, seeds, device: as in :func:`run`.
    Returns:
        The :class:`~vitlab.experiments.common.ResultsFile`.
    """
    check_budget(budget)
    seeds = check_seeds(seeds if seeds is not None else BUDGET_SEEDS[budget])
    results = ResultsFile(results_path if results_path is not None else default_results_path(experiment, budget),
                          experiment)
    for name in BUDGET_SCALES[budget]:
        run_scale(results, scales[name], seeds=seeds, budget=budget, arms=arms, progress=progress, device=device)
    return results


# ---- records -> numbers for plotting -----------------------------------------------------------------

def accuracy_table(results: ResultsFile, scale: str = "main", arms: "Mapping[str, str]" = ARMS) -> dict:
    """Test accuracies by arm and training-set size.

    Returns:
        ``{arm: {size: [accuracy of each seed, ordered by seed]}}``, arms in ``arms`` order.
    Raises:
        ConfigError: the file has no run of this scale.
    """
    table: dict = {}
    for arm in arms:
        for record in sorted(results.select(scale=scale, arm=arm), key=lambda r: (r["size"], r["seed"])):
            table.setdefault(arm, {}).setdefault(record["size"], []).append(record["test_accuracy"])
    if not table:
        have = sorted({r.get("scale") for r in results.records})
        raise ConfigError(f"{results.path} has no runs of scale {scale!r}; it has {have}.")
    return table


def summary(results: ResultsFile, scale: str = "main", arms: "Mapping[str, str]" = ARMS) -> list[dict]:
    """One row per (arm, size): mean and standard deviation of the test accuracy over seeds, seeds,
    parameters, forward MFLOPs per image and mean minutes per run (training and testing)."""
    rows = []
    for arm, by_size in accuracy_table(results, scale, arms).items():
        for size, accs in by_size.items():
            runs = results.select(scale=scale, arm=arm, size=size)
            rows.append({"arm": arm, "size": size, "seeds": len(accs), "mean": float(np.mean(accs)),
                         "std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
                         "params": runs[0]["params"], "mflops": runs[0]["forward_flops"] / 1e6,
                         "minutes": float(np.mean([r["wall_seconds"] for r in runs])) / 60})
    return rows


__all__ = ["EXPERIMENT", "ARMS", "Scale", "SCALES", "BUDGET_SCALES", "BUDGET_SEEDS", "run_id_for", "train_config",
           "run_scale", "run_scales", "run", "accuracy_table", "summary"]
