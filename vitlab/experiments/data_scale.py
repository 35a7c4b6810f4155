"""Data scale (the paper's Section 4.3, Figures 3 and 4): how much does each architecture need data?

The paper pre-trains ViTs and ResNets on ImageNet (1.3M images), ImageNet-21k (14M) and JFT-300M, and on
random JFT subsets of 9M to 300M images: with little data the ResNets win, with a lot of data the
ViTs do; the convolution's built-in assumptions (locality, translation equivariance) help when data
is scarce and become a limit when it is plentiful.

Here, at laptop scale: three models of matched training compute per image (about 45 MFLOPs forward +
backward) -- a ViT, a hybrid (ResNet stages feeding a ViT) and a ResNet -- each trained from scratch
on nested, class-balanced subsets of Fashion-MNIST train, from a few hundred images to all 60,000,
with several seeds, and evaluated on the 10,000 test images.

**Budget rule: the same number of epochs for every size, with a floor on the number of steps.**
Every training image is seen the same number of times (``epochs``), so what changes from one size
to the next is only how much data there is, not how often each image is revisited. A tiny subset
would then get only a handful of optimisation steps and its result would measure under-training
rather than lack of data, so every run sees at least ``min_images`` images (400 steps of 64; tiny
subsets get more epochs: 103 at 250 images). The other common rule -- the same number of steps for
every size -- would repeat the 60,000-image run's 2,800 steps at each of the six sizes: about 3x the
compute of this rule for the same largest run, beyond the budget of about two hours on two CPU
cores. As in the paper (300 epochs on ImageNet, 7 on JFT-300M), the bigger training sets get more
compute in total; the lesson says so.

Each seed fixes the weights, batch order and augmentation, and also which images form the subsets
(``vitlab.data.balanced_order(labels, seed)``; subsets of one seed are nested), so the spread across
seeds includes the luck of the draw, which dominates at a few hundred images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import ResNetConfig, ViTConfig
from ..data import fashion_mnist, take_subset
from ..errors import ConfigError
from ..models import build_model
from ..models.hybrid import HybridConfig
from .common import (ResultsFile, check_budget, check_train_sizes, default_results_path, log_run, recipe,
                     run_classifier)

EXPERIMENT = "data-scale"

_F28 = dict(img_size=28, in_chans=1, num_classes=10)
# The three arms: matched training compute per image (ViT 48.5, hybrid 44.9, ResNet 42.9 MFLOPs).
ARMS: dict = {
    "vit": ViTConfig(**_F28, patch_size=4, dim=64, depth=4, heads=4, mlp_ratio=2.0),  # 139k params (= fmnist-vit-tiny)
    "hybrid": HybridConfig(**_F28, cnn_width=8, stage=3, dim=32, depth=4, heads=2, mlp_ratio=2.0),  # 81k
    "cnn": ResNetConfig(**_F28, width=8, blocks=(2, 2, 2, 2)),  # 176k, ResNet-18 layout at 1/8 width
}
ARM_LABELS = {"vit": "ViT (patch 4, 4 blocks, D 64)", "hybrid": "hybrid (ResNet stages 1-3 + ViT, 4 blocks, D 32)",
              "cnn": "ResNet (ResNet-18 layout, width 8)"}


@dataclass(frozen=True)
class DataScaleBudget:
    """What one budget runs."""

    sizes: tuple  # training-set sizes (nested, class-balanced subsets of Fashion-MNIST train)
    seeds: tuple  # seeds per size and arm
    epochs: int  # passes over each subset: the budget rule ...
    min_images: int  # ... but at least this many images seen (tiny subsets get more epochs)
    test_size: "int | None"  # test images (class-balanced subset); None = all 10,000
    arms: tuple = tuple(ARMS)  # which models
    batch_size: int = 128  # images per optimisation step
    augment: bool = True  # random crop + flip (off in the quick budget: it slows the first few hundred steps)


BUDGET_SETTINGS = {
    # About a minute on a free 2-core machine: ViT and ResNet only, one seed, three sizes, small batches,
    # no augmentation, a 2,000-image test subset. A live demonstration of the pipeline, not the result.
    "quick": DataScaleBudget(sizes=(200, 800, 3200), seeds=(0,), epochs=2, min_images=2400, test_size=2000,
                             arms=("vit", "cnn"), batch_size=32, augment=False),
    # The committed result: 6 sizes x 3 seeds x 3 arms = 54 runs, 3.1M training images (see the module
    # docstring for the rule); about 2 h on one free CPU core, minutes on a GPU.
    "full": DataScaleBudget(sizes=(250, 750, 2500, 7500, 20000, 60000), seeds=(0, 1, 2), epochs=3,
                            min_images=25600, test_size=None, batch_size=64),
}

# The paper's Table 5: ImageNet top-1 (%) after pre-training on data sets of growing size, fine-tuned
# at 384 px (Dosovitskiy et al., 2021). Keys: pre-training images; values: model -> accuracy.
PAPER_TABLE5 = {
    "sizes": {"ImageNet": 1.3e6, "ImageNet-21k": 14e6, "JFT-300M": 300e6},
    "top1": {
        "ViT-B/32": (73.38, 81.28, 80.73),
        "ViT-B/16": (77.91, 83.97, 84.15),
        "ViT-L/32": (71.16, 80.99, 84.37),
        "ViT-L/16": (76.53, 85.15, 87.12),
    },
}


def epochs_for(size: int, settings: DataScaleBudget) -> int:
    """Epochs for a subset of ``size`` images: ``settings.epochs``, or more to see ``min_images``."""
    return max(settings.epochs, math.ceil(settings.min_images / size))


def run_id_for(arm: str, size: int, seed: int) -> str:
    return f"{arm}/n={size}/seed={seed}"


def _check_arms(arms, default: tuple) -> list[str]:
    arms = list(default) if arms is None else list(arms)
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        raise ConfigError(f"Unknown data-scale arm(s) {unknown or arms}; choose from {list(ARMS)}.")
    return arms


def run(budget: str = "quick", results_path: "str | Path | None" = None, progress: bool = True,
        seeds: "list[int] | None" = None, device: str = "cpu", sizes: "list[int] | None" = None,
        arms: "list[str] | None" = None) -> ResultsFile:
    """Train every arm on every subset size with every seed (resuming: finished runs are skipped).

    Args:
        budget: 'quick' or 'full' (see :data:`BUDGET_SETTINGS`).
        results_path: the JSON results file; default ``data/results/data-scale.json`` (full) or
            ``data/results/quick/data-scale.json`` (quick).
        progress: progress bars and one line per finished run.
        seeds: seeds to run instead of the budget's.
        device: where to train ('cpu', 'cuda').
        sizes: training-set sizes instead of the budget's (each at most 60,000).
        arms: some of ``['vit', 'hybrid', 'cnn']`` instead of the budget's.
    Returns:
        The :class:`~vitlab.experiments.common.ResultsFile`; each record also has ``arm``, ``size``,
        ``epochs`` and ``data_seed``.
    Raises:
        UnknownBudgetError, TrainSizeError (a size larger than the data), ConfigError (unknown arm),
        ResultsError (an unreadable or foreign results file).
    """
    settings = BUDGET_SETTINGS[check_budget(budget)]
    arms = _check_arms(arms, settings.arms)
    seeds = list(dict.fromkeys(settings.seeds if seeds is None else seeds))
    train_full = fashion_mnist("train")
    sizes = check_train_sizes(list(settings.sizes if sizes is None else sizes), len(train_full),
                              "Fashion-MNIST training set")
    results = ResultsFile(results_path if results_path is not None else default_results_path(EXPERIMENT, budget),
                          EXPERIMENT)
    test_set = fashion_mnist("test", subset=settings.test_size, seed=0)
    total, done = len(seeds) * len(sizes) * len(arms), 0
    for seed in seeds:  # seed by seed, so an interrupted run leaves whole curves behind
        for size in sizes:
            train_set = take_subset(train_full, size, seed=seed)  # nested within a seed
            epochs = epochs_for(size, settings)
            for arm in arms:
                train_cfg = recipe(epochs, seed, batch_size=settings.batch_size, augment=settings.augment)
                record = run_classifier(
                    results, run_id_for(arm, size, seed), model_fn=lambda arm=arm: build_model(ARMS[arm]),
                    train_set=train_set, test_set=test_set, train_cfg=train_cfg, budget=budget, progress=progress,
                    device=device, arm=arm, size=size, epochs=epochs, data_seed=seed)
                done += 1
                if progress:
                    log_run(done, total, record, f"{arm} n={size} seed={seed}")
    return results


# ---- from records to arrays (for the notebook and its plots) ------------------------------------------

def summarize(records: list[dict]) -> dict:
    """Test accuracy per arm and size, over seeds.

    Args:
        records: ``ResultsFile.records`` of this experiment.
    Returns:
        ``{arm: {'sizes': (S,) int array, 'mean': (S,), 'std': (S,) (0 with one seed), 'n_seeds': (S,),
        'per_seed': list of S arrays of accuracies, 'train_flops': (S,) mean training FLOPs}}``,
        sizes ascending, accuracies as fractions.
    """
    table: dict = {}
    for r in records:
        table.setdefault(r["arm"], {}).setdefault(r["size"], []).append(r)
    out = {}
    for arm in [a for a in ARMS if a in table] + [a for a in table if a not in ARMS]:
        sizes = sorted(table[arm])
        accs = [np.array([r["test_accuracy"] for r in table[arm][s]]) for s in sizes]
        out[arm] = {
            "sizes": np.array(sizes),
            "mean": np.array([a.mean() for a in accs]),
            "std": np.array([a.std(ddof=1) if len(a) > 1 else 0.0 for a in accs]),
            "n_seeds": np.array([len(a) for a in accs]),
            "per_seed": accs,
            "train_flops": np.array([np.mean([r["train_flops"] for r in table[arm][s]]) for s in sizes]),
        }
    return out


def gap_landmarks(summary: dict, ahead: str = "cnn", behind: str = "vit") -> dict:
    """Where the accuracy gap ``ahead - behind`` is largest, where smallest, and where it changes sign.

    Args:
        summary: :func:`summarize`'s output.
        ahead, behind: the two arms (default: ResNet minus ViT, positive while the CNN leads).
    Returns:
        ``{'sizes': (S,) sizes both arms have, 'gap': (S,) mean accuracy differences, 'largest_at',
        'largest_gap', 'smallest_at', 'smallest_gap', 'crossings': [(size_before, size_after), ...]}``.
    Raises:
        ConfigError: an arm is missing or the two arms share no size.
    """
    for arm in (ahead, behind):
        if arm not in summary:
            raise ConfigError(f"No results for arm {arm!r}; the summary has {list(summary)}.")
    a, b = summary[ahead], summary[behind]
    sizes = np.intersect1d(a["sizes"], b["sizes"])
    if sizes.size == 0:
        raise ConfigError(f"Arms {ahead!r} and {behind!r} have no training size in common.")
    gap = np.array([a["mean"][a["sizes"] == s][0] - b["mean"][b["sizes"] == s][0] for s in sizes])
    crossings = [(int(sizes[i]), int(sizes[i + 1])) for i in range(len(sizes) - 1)
                 if np.sign(gap[i]) != np.sign(gap[i + 1]) and gap[i] != 0]
    i_max, i_min = int(np.argmax(gap)), int(np.argmin(np.abs(gap)))
    return {"sizes": sizes, "gap": gap, "largest_at": int(sizes[i_max]), "largest_gap": float(gap[i_max]),
            "smallest_at": int(sizes[i_min]), "smallest_gap": float(gap[i_min]), "crossings": crossings}


__all__ = ["EXPERIMENT", "ARMS", "ARM_LABELS", "DataScaleBudget", "BUDGET_SETTINGS", "PAPER_TABLE5", "epochs_for",
           "run_id_for", "run", "summarize", "gap_landmarks"]
