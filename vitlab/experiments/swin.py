"""A small Swin Transformer against the ViT on Fashion-MNIST (Liu et al., ICCV 2021).

Swin's claim is efficiency and a pyramid of features: attention inside 7x7 windows that shift every
second block, and patch merging between stages, give a CNN-like hierarchy at linear cost in the
number of tokens. Here both models have ~206k parameters and the same recipe: ``fmnist-vit`` (49
tokens of width 64, global attention, 6 blocks) against ``fmnist-swin`` (196 tokens of width 48 in
four windows, then 49 tokens of width 96 in one window; 2 + 2 blocks), trained from scratch on
10,000 class-balanced Fashion-MNIST images for 10 epochs, three seeds, tested on all 10,000 test
images. Records carry FLOPs and wall time too: on a CPU the Swin's 196-token first stage costs more
than its parameter count suggests.

Scales: ``'check'`` (1,000 images, 4 epochs, 1,000 test images: the quick budget, and what the tests
re-run) and ``'main'`` (the committed result). The full budget runs both with seeds 0, 1, 2.
"""

from __future__ import annotations

from pathlib import Path

from ..models import swin as _swin  # noqa: F401  (registers the fmnist-swin preset)
from . import t2t as _family
from .common import ResultsFile
from .t2t import Scale

EXPERIMENT = "swin"

ARMS = {"ViT": "fmnist-vit", "Swin": "fmnist-swin"}  # label -> preset (~206k parameters each)

SCALES = {
    "check": Scale("check", train_sizes=(1000,), images_per_run=(4000,), test_size=1000, lr=2e-3),
    "main": Scale("main", train_sizes=(10_000,), images_per_run=(100_000,), test_size=None),
}
BUDGET_SCALES = _family.BUDGET_SCALES  # the same budgets as the T2T experiment
BUDGET_SEEDS = _family.BUDGET_SEEDS


def run(budget: str = "quick", results_path: "str | Path | None" = None, progress: bool = True,
        seeds: "list[int] | None" = None, device: str = "cpu") -> ResultsFile:
    """Run (or resume) the Swin vs ViT experiment.

    Args:
        budget: 'quick' (scale 'check', seed 0: under a minute on a free CPU core) or 'full' ('check'
            and 'main', seeds 0, 1, 2: about 40 minutes on one free core).
        results_path: the JSON results file; default :func:`~vitlab.experiments.common.default_results_path`.
        progress: show progress bars.
        seeds: default the budget's.
        device: where to train.
    Returns:
        The :class:`~vitlab.experiments.common.ResultsFile`.
    """
    return _family.run_scales(EXPERIMENT, SCALES, ARMS, budget=budget, results_path=results_path,
                              progress=progress, seeds=seeds, device=device)


# ---- records -> numbers for plotting -----------------------------------------------------------------

def accuracy_table(results: ResultsFile, scale: str = "main") -> dict:
    """``{arm: {size: [test accuracy of each seed, ordered by seed]}}`` for this experiment's arms."""
    return _family.accuracy_table(results, scale, ARMS)


def summary(results: ResultsFile, scale: str = "main") -> list[dict]:
    """One row per (arm, size): mean and std of the test accuracy, seeds, parameters, MFLOPs, minutes."""
    return _family.summary(results, scale, ARMS)


def arm_accuracies(results: ResultsFile, scale: str = "main") -> dict:
    """``{arm: [test accuracy of each seed, ordered by seed]}`` at the scale's (single) training size.

    Raises:
        ConfigError: the file has no run of this scale.
    """
    return {arm: accs for arm, by_size in accuracy_table(results, scale).items() for accs in by_size.values()}


def arm_details(results: ResultsFile, scale: str = "main") -> dict:
    """``{arm: 'N k params, M MFLOPs, T min'}``: the text under each arm in the results plot."""
    return {row["arm"]: f"{row['params'] / 1e3:.0f}k params\n{row['mflops']:.0f} MFLOPs/image\n"
                        f"{row['minutes']:.1f} min/run"
            for row in summary(results, scale)}


__all__ = ["EXPERIMENT", "ARMS", "SCALES", "BUDGET_SCALES", "BUDGET_SEEDS", "run", "accuracy_table", "summary",
           "arm_accuracies", "arm_details"]
