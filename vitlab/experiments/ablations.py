"""The ViT paper's ablations at laptop scale: position embeddings (Table 8) and the classifier head.

Dosovitskiy et al. (ICLR 2021), Appendix D.4 / Table 8, compare no position embedding, a learned 1-D
table, a learned 2-D (row + column) embedding and relative embeddings on ViT-B/16 (ImageNet 5-shot
linear accuracy); Appendix D.3 / Fig. 9 compare classifying from a CLS token with global average
pooling (GAP) and warn that the two need different learning rates.

Here, on Fashion-MNIST with the 206k-parameter ``fmnist-vit``:

1. learning-rate sweep: for each head (CLS, GAP, both with the learned 1-D table), train at every
   learning rate of the scale's grid with the first seed and keep the best on a held-out *validation*
   split of the training images (never the test set); the choice is stored as a record
   ``'<scale>/best-lr'``;
2. arms, every seed: CLS + {learned, none, learned2d, sincos2d} at the CLS learning rate, and GAP +
   learned at the GAP learning rate; each record has the validation and the test accuracy.

Scales: ``'small'`` (500 training images, cheap: the quick budget, and the configuration the tests
re-run) and ``'main'`` (10,000 images, the committed result). The quick budget runs 'small' with
seed 0; the full budget runs 'small' and 'main' with seeds 0, 1, 2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..data import ImageDataset, balanced_order, fashion_mnist, take_subset
from ..errors import ConfigError
from ..models import build_model
from ..training import TrainConfig, evaluate
from .common import ResultsFile, check_budget, check_seeds, default_results_path, git_commit, recipe, run_classifier

EXPERIMENT = "ablations"

# (pool, pos_embed) of every arm; the first is the reference (the paper's default ViT).
ARMS = (("cls", "learned"), ("cls", "none"), ("cls", "learned2d"), ("cls", "sincos2d"), ("gap", "learned"))
ARM_LABELS = {("cls", "learned"): "CLS, learned 1-D", ("cls", "none"): "CLS, none",
              ("cls", "learned2d"): "CLS, learned 2-D", ("cls", "sincos2d"): "CLS, sin-cos 2-D",
              ("gap", "learned"): "GAP, learned 1-D"}

# Dosovitskiy et al. 2021, Table 8 ("Default/Stem" column): ViT-B/16, ImageNet 5-shot linear accuracy.
PAPER_TABLE_8 = {"none": 0.61382, "learned 1-D": 0.64206, "learned 2-D": 0.64001, "relative": 0.64032}


@dataclass(frozen=True)
class Scale:
    """One size of the ablation: data, schedule and the learning rates swept."""

    name: str  # 'small' or 'main'; the first part of every run_id
    train_size: int  # class-balanced training images (the first of the nested subsets)
    val_size: int  # held-out training images for choosing the learning rate (the last of the balanced order)
    test_size: "int | None"  # test images (class-balanced subset); None = all 10,000
    epochs: int  # passes over the training images
    batch_size: int  # images per step
    lrs: tuple  # peak learning rates swept per head (ascending; ties go to the lower one)
    augment: bool = True  # random crop + flip (off for 'small': too few steps for it to pay off)
    preset: str = "fmnist-vit"  # the model; pool and pos_embed are set per arm


SCALES = {
    "small": Scale("small", train_size=500, val_size=500, test_size=1000, epochs=10, batch_size=32,
                   lrs=(1e-3, 3e-3), augment=False),
    "main": Scale("main", train_size=10_000, val_size=5_000, test_size=None, epochs=10, batch_size=128,
                  lrs=(5e-4, 1e-3, 2e-3, 4e-3)),
}
BUDGET_SCALES = {"quick": ("small",), "full": ("small", "main")}
BUDGET_SEEDS = {"quick": (0,), "full": (0, 1, 2)}


@dataclass
class Splits:
    """The three image sets of one scale."""

    train: ImageDataset
    val: ImageDataset
    test: ImageDataset


def load_splits(scale: Scale) -> Splits:
    """Training subset, validation split (held out from the training images) and test subset.

    The training images are the first ``train_size`` of Fashion-MNIST's class-balanced order
    (:func:`vitlab.data.balanced_order`, seed 0) and the validation images its last ``val_size``, so
    the two never overlap.
    """
    full = fashion_mnist("train")
    if scale.train_size + scale.val_size > len(full):
        raise ConfigError(f"Scale {scale.name!r}: {scale.train_size} training + {scale.val_size} validation "
                          f"images do not fit in the {len(full)} training images.")
    held_out = balanced_order(full.labels, seed=0)[-scale.val_size:]
    val = ImageDataset(full.images[held_out], full.labels[held_out], full.classes,
                       name=f"{full.name}-holdout[{scale.val_size}]")
    return Splits(train=take_subset(full, scale.train_size), val=val,
                  test=fashion_mnist("test", subset=scale.test_size))


def run_id_for(scale: Scale, pool: str, pos_embed: str, lr: float, seed: int) -> str:
    """The name of one training run, e.g. ``'main/cls/learned2d/lr=0.002/seed=1'``."""
    return f"{scale.name}/{pool}/{pos_embed}/lr={lr:g}/seed={seed}"


def train_config(scale: Scale, lr: float, seed: int) -> TrainConfig:
    """The recipe of every run of a scale: the reproductions' shared :func:`~vitlab.experiments.common.recipe`
    (AdamW, 10% warm-up then cosine, label smoothing 0.1) at the scale's batch size, augmentation and ``lr``."""
    return recipe(scale.epochs, seed, batch_size=scale.batch_size, lr=lr, augment=scale.augment)


def run_arm(results: ResultsFile, scale: Scale, splits: Splits, *, pool: str, pos_embed: str, lr: float,
            seed: int, budget: str, progress: bool = True, device: str = "cpu") -> dict:
    """Train one arm with one learning rate and seed, or return its record if it is already done.

    The record is :func:`vitlab.experiments.common.run_classifier`'s (test accuracy on ``splits.test``)
    plus ``val_accuracy`` / ``val_size`` on the validation split, and ``scale``, ``pool``, ``pos_embed``,
    ``lr``, ``kind='run'``.
    """
    run_id = run_id_for(scale, pool, pos_embed, lr, seed)
    done = results.get(run_id)
    if done is not None and "val_accuracy" in done:
        return done
    if done is not None:  # stopped between the two writes: train again (same seed, same result)
        results.remove([run_id])
    trained = {}

    def model_fn():
        trained["model"] = build_model(scale.preset, pool=pool, pos_embed=pos_embed)
        return trained["model"]

    record = run_classifier(results, run_id, model_fn=model_fn, train_set=splits.train, test_set=splits.test,
                            train_cfg=train_config(scale, lr, seed), budget=budget, progress=progress,
                            device=device, kind="run", scale=scale.name, pool=pool, pos_embed=pos_embed, lr=lr)
    validation = evaluate(trained["model"], splits.val)
    record = {**record, "val_accuracy": validation["accuracy"], "val_loss": validation["loss"],
              "val_size": len(splits.val)}
    results.add(record)
    return record


def select_learning_rates(results: ResultsFile, scale: Scale, splits: Splits, *, seed: int, budget: str,
                          progress: bool = True, device: str = "cpu") -> dict:
    """Sweep ``scale.lrs`` for each head (learned 1-D table) with one seed; keep the best on validation.

    Returns (and stores, as the record ``'<scale>/best-lr'``) ``{'best_lr': {'cls': lr, 'gap': lr},
    'val_accuracy': {'cls': {'0.001': acc, ...}, 'gap': {...}}, 'sweep_seed': seed, 'lrs': [...]}``.
    """
    run_id = f"{scale.name}/best-lr"
    done = results.get(run_id)
    if done is not None and done.get("lrs") == list(scale.lrs) and done.get("sweep_seed") == seed:
        return done
    val_accuracy, best = {}, {}
    for pool in ("cls", "gap"):
        accs = {}
        for lr in scale.lrs:
            rec = run_arm(results, scale, splits, pool=pool, pos_embed="learned", lr=lr, seed=seed,
                          budget=budget, progress=progress, device=device)
            accs[f"{lr:g}"] = rec["val_accuracy"]
        val_accuracy[pool] = accs
        best[pool] = max(scale.lrs, key=lambda lr: (accs[f"{lr:g}"], -lr))  # ties: the lower rate
    record = {"run_id": run_id, "experiment": EXPERIMENT, "kind": "lr-selection", "budget": budget,
              "scale": scale.name, "scale_config": asdict(scale), "sweep_seed": seed, "lrs": list(scale.lrs),
              "selected_on": "validation", "val_accuracy": val_accuracy, "best_lr": best, "commit": git_commit()}
    results.add(record)
    return record


def _finished(results: ResultsFile, scale: Scale, seeds: list[int], sweep_seed: int) -> bool:
    selection = results.get(f"{scale.name}/best-lr")
    if selection is None or selection.get("lrs") != list(scale.lrs) or selection.get("sweep_seed") != sweep_seed:
        return False
    best = selection["best_lr"]
    return all("val_accuracy" in (results.get(run_id_for(scale, pool, pos, best[pool], seed)) or {})
               for seed in seeds for pool, pos in ARMS)


def run(budget: str = "quick", results_path: "str | Path | None" = None, progress: bool = True,
        seeds: "list[int] | None" = None, device: str = "cpu") -> ResultsFile:
    """Run (or resume) the ablations.

    Args:
        budget: 'quick' (scale 'small', seed 0: about a minute on 2 CPU cores) or 'full' (scales
            'small' and 'main', seeds 0, 1, 2: about 1.5 hours on one free CPU core).
        results_path: the JSON results file; default :func:`~vitlab.experiments.common.default_results_path`.
        progress: show progress bars.
        seeds: seeds for the arms; default the budget's. The learning-rate sweep always uses the budget's
            first seed (0), so processes run with other seeds (``--seeds 1``) share one sweep and one
            chosen rate; a process whose sweep is not in the file yet runs it.
        device: where to train.
    Returns:
        The :class:`~vitlab.experiments.common.ResultsFile`, with every run's record and one
        ``'<scale>/best-lr'`` record per scale.
    """
    check_budget(budget)
    seeds = check_seeds(seeds if seeds is not None else BUDGET_SEEDS[budget])
    results = ResultsFile(results_path if results_path is not None else default_results_path(EXPERIMENT, budget),
                          EXPERIMENT)
    sweep_seed = BUDGET_SEEDS[budget][0]
    for name in BUDGET_SCALES[budget]:
        scale = SCALES[name]
        if _finished(results, scale, seeds, sweep_seed):
            continue  # nothing to do: do not even load the data
        splits = load_splits(scale)
        best = select_learning_rates(results, scale, splits, seed=sweep_seed, budget=budget, progress=progress,
                                     device=device)["best_lr"]
        for seed in seeds:
            for pool, pos_embed in ARMS:
                run_arm(results, scale, splits, pool=pool, pos_embed=pos_embed, lr=best[pool], seed=seed,
                        budget=budget, progress=progress, device=device)
    return results


# ---- records -> arrays for plotting -------------------------------------------------------------------

def scales_in(results: ResultsFile) -> list[str]:
    """The scales that have a learning-rate selection in the file, in :data:`SCALES` order."""
    have = {r.get("scale") for r in results.records if r.get("kind") == "lr-selection"}
    return [name for name in SCALES if name in have]


def learning_rate_sweep(results: ResultsFile, scale: str) -> dict:
    """The sweep of one scale for plotting.

    Returns:
        ``{'lrs': (L,) array, 'val_accuracy': {'cls': (L,) array, 'gap': (L,) array},
        'best_lr': {'cls': lr, 'gap': lr}, 'sweep_seed': int}``.
    Raises:
        ConfigError: the file has no sweep for this scale.
    """
    record = results.get(f"{scale}/best-lr")
    if record is None:
        raise ConfigError(f"{results.path} has no learning-rate sweep for scale {scale!r}; "
                          f"it has {scales_in(results)}.")
    lrs = np.array(record["lrs"], dtype=float)
    accs = {pool: np.array([record["val_accuracy"][pool][f"{lr:g}"] for lr in record["lrs"]])
            for pool in ("cls", "gap")}
    return {"lrs": lrs, "val_accuracy": accs, "best_lr": record["best_lr"], "sweep_seed": record["sweep_seed"]}


def arm_accuracies(results: ResultsFile, scale: str) -> dict:
    """Test accuracy of every seed of every arm, at the arm's selected learning rate.

    Returns:
        ``{label: (S,) array of test accuracies, ordered by seed}`` in :data:`ARMS` order, labels from
        :data:`ARM_LABELS`; arms with no finished run are left out.
    """
    best = learning_rate_sweep(results, scale)["best_lr"]
    out = {}
    for pool, pos_embed in ARMS:
        runs = sorted(results.select(kind="run", scale=scale, pool=pool, pos_embed=pos_embed, lr=best[pool]),
                      key=lambda r: r["seed"])
        if runs:
            out[ARM_LABELS[(pool, pos_embed)]] = np.array([r["test_accuracy"] for r in runs])
    return out


def difference_to_reference(accuracies: dict, reference: str) -> dict:
    """How far each condition is from a reference one, in points, with a yardstick for seed noise.

    Args:
        accuracies: ``{label: per-seed accuracies in [0, 1]}`` (e.g. :func:`arm_accuracies`).
        reference: the label to compare with.
    Returns:
        ``{label: {'difference': mean - reference mean, 'noise': sqrt(s_a^2 / n_a + s_r^2 / n_r) or None,
        'distinguishable': |difference| > 2 * noise, or None}}`` in percentage points, for every label but
        the reference. ``noise`` (the standard error of the difference of the two means) is None when
        either side has a single seed.
    Raises:
        ConfigError: ``reference`` is not among the labels.
    """
    if reference not in accuracies:
        raise ConfigError(f"reference {reference!r} is not among the conditions {list(accuracies)}.")
    base = 100 * np.asarray(accuracies[reference], dtype=float)
    out = {}
    for label, values in accuracies.items():
        if label == reference:
            continue
        values = 100 * np.asarray(values, dtype=float)
        difference = float(values.mean() - base.mean())
        noise = None
        if values.size > 1 and base.size > 1:
            noise = float(np.sqrt(values.var(ddof=1) / values.size + base.var(ddof=1) / base.size))
        out[label] = {"difference": difference, "noise": noise,
                      "distinguishable": None if noise is None else abs(difference) > 2 * noise}
    return out


__all__ = ["EXPERIMENT", "ARMS", "ARM_LABELS", "PAPER_TABLE_8", "Scale", "SCALES", "BUDGET_SCALES",
           "BUDGET_SEEDS", "Splits", "load_splits", "run_id_for", "train_config", "run_arm",
           "select_learning_rates", "run", "scales_in", "learning_rate_sweep", "arm_accuracies",
           "difference_to_reference"]
