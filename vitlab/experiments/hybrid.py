"""Hybrids (the paper's Section 4.4, Figure 5 and Table 6): accuracy against training compute for
ViTs, ResNets and hybrids (ResNet stages whose feature map becomes the ViT's tokens).

In the paper, at a given pre-training compute the hybrids beat the pure ViTs for small models and the
gap vanishes for the larger ones, and both beat the ResNets for the same compute (Table 6: R50+B/32
84.90% at 106 exaFLOPs against ViT-B/32 80.73% at 55 and R50x1 77.54% at 50).

Here: three sizes of each family (S, M, L), trained from scratch with one recipe on the same 15,000
class-balanced Fashion-MNIST training images for the same number of epochs, so compute changes only
with the model; the S models are also trained for one epoch, which adds a cheaper point per family
(the paper also mixes 7- and 14-epoch schedules). The training images are the same for every run
(the seed-0 class-balanced subset); a run's seed fixes its weights, batch order and augmentation.
Training FLOPs are counted per image with ``torch.utils.flop_counter`` (forward + backward) and
multiplied by the images seen. Two more models vary which ResNet stage feeds the ViT in the S hybrid:
stage 2 (14x14 map, 196 tokens), stage 3 (7x7, 49, the default) and stage 4 (4x4, 16).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import ResNetConfig, ViTConfig
from ..data import fashion_mnist
from ..errors import ConfigError
from ..models import build_model
from ..models.hybrid import HybridConfig
from .common import (ResultsFile, check_budget, check_train_sizes, default_results_path, log_run, recipe,
                     run_classifier)

EXPERIMENT = "hybrid"

_F28 = dict(img_size=28, in_chans=1, num_classes=10)
_vit = dict(**_F28, patch_size=4, mlp_ratio=2.0)
_hybrid = dict(**_F28, mlp_ratio=2.0)
# Training MFLOPs per image (forward + backward) in the comments.
MODELS: dict = {
    "vit-s": ViTConfig(**_vit, dim=32, depth=4, heads=2),  # 37k params, 14 MFLOPs
    "vit-m": ViTConfig(**_vit, dim=64, depth=4, heads=4),  # 139k, 49 (= fmnist-vit-tiny)
    "vit-l": ViTConfig(**_vit, dim=96, depth=6, heads=4),  # 456k, 153
    "hybrid-s": HybridConfig(**_hybrid, cnn_width=8, stage=3, dim=32, depth=4, heads=2),  # 81k, 45
    "hybrid-m": HybridConfig(**_hybrid, cnn_width=8, stage=3, dim=64, depth=4, heads=4),  # 184k, 79
    "hybrid-l": HybridConfig(**_hybrid, cnn_width=12, stage=3, dim=64, depth=6, heads=4),  # 306k, 141
    "cnn-s": ResNetConfig(**_F28, width=8, blocks=(1, 1, 1, 1)),  # 78k, 20
    "cnn-m": ResNetConfig(**_F28, width=8, blocks=(2, 2, 2, 2)),  # 176k, 43
    "cnn-l": ResNetConfig(**_F28, width=16, blocks=(2, 2, 2, 2)),  # 701k, 171 (= fmnist-resnet)
    # Which stage feeds the ViT (hybrid-s is stage 3):
    "hybrid-s-stage2": HybridConfig(**_hybrid, cnn_width=8, stage=2, dim=32, depth=4, heads=2),  # 52k, 130
    "hybrid-s-stage4": HybridConfig(**_hybrid, cnn_width=8, stage=4, dim=32, depth=4, heads=2),  # 213k, 47
}
FAMILIES = ("vit", "hybrid", "cnn")
STAGE_MODELS = ("hybrid-s-stage2", "hybrid-s", "hybrid-s-stage4")


def family_of(model: str) -> str:
    """'vit', 'hybrid' or 'cnn' from a model name such as 'hybrid-m'."""
    return model.split("-")[0]


@dataclass(frozen=True)
class HybridBudget:
    """What one budget runs."""

    train_size: int  # class-balanced Fashion-MNIST training images (the same for every run)
    epochs: int  # the main schedule, for every model
    short_models: tuple  # models also trained for one epoch (an extra, cheaper compute point)
    models: tuple  # models on the main schedule
    seeds: tuple  # seeds per model and schedule
    batch_size: int  # images per step
    test_size: "int | None"  # test images (class-balanced subset); None = all 10,000
    augment: bool = True  # random crop + flip (off in the quick budget: it slows the first few hundred steps)


BUDGET_SETTINGS = {
    # About a minute of training on a free 2-core machine: 1,500 images, 2 epochs, small batches, no
    # stage-2 hybrid (its 196 tokens make it the slowest model), a 1,000-image test subset.
    "quick": HybridBudget(train_size=1500, epochs=2, short_models=(), seeds=(0,), batch_size=32, test_size=1000, augment=False,
                          models=("vit-s", "vit-m", "hybrid-s", "hybrid-m", "cnn-s", "cnn-m", "hybrid-s-stage4")),
    # The committed result: 11 models x 3 epochs + 3 one-epoch runs, x 3 seeds = 42 runs
    # (about 1.5 h on one free CPU core; minutes on a GPU).
    "full": HybridBudget(train_size=15000, epochs=3, short_models=("vit-s", "hybrid-s", "cnn-s"), seeds=(0, 1, 2),
                         batch_size=128, test_size=None, models=tuple(MODELS)),
}

# The paper's Table 6 (Dosovitskiy et al., 2021): ImageNet top-1 (%) after JFT-300M pre-training,
# against pre-training compute (exaFLOPs). (name, exaFLOPs, top-1).
PAPER_TABLE6 = {
    "vit": (("B/32", 55, 80.73), ("B/16", 224, 84.15), ("L/16", 1567, 87.12)),
    "hybrid": (("R50+B/32", 106, 84.90), ("R50+B/16", 274, 85.58), ("R50+L/16", 1668, 87.12)),
    "cnn": (("R50x1", 50, 77.54), ("R152x2", 563, 84.97)),
}


def run_id_for(model: str, epochs: int, seed: int) -> str:
    return f"{model}/epochs={epochs}/seed={seed}"


def planned_runs(settings: HybridBudget, seeds: list[int]) -> list[tuple[str, int, int]]:
    """(model, epochs, seed) for every run of a budget, seed by seed, cheap schedules first."""
    runs = []
    for seed in seeds:
        runs += [(m, 1, seed) for m in settings.short_models]
        runs += [(m, settings.epochs, seed) for m in settings.models]
    return list(dict.fromkeys(runs))  # a 1-epoch main schedule would repeat the short runs


def run(budget: str = "quick", results_path: "str | Path | None" = None, progress: bool = True,
        seeds: "list[int] | None" = None, device: str = "cpu", models: "list[str] | None" = None,
        schedules: "list[int] | None" = None) -> ResultsFile:
    """Train every model of the budget (resuming: finished runs are skipped).

    Args:
        budget: 'quick' or 'full' (see :data:`BUDGET_SETTINGS`).
        results_path: the JSON results file; default ``data/results/hybrid.json`` (full) or
            ``data/results/quick/hybrid.json`` (quick).
        progress: progress bars and one line per finished run.
        seeds: seeds to run instead of the budget's.
        device: where to train ('cpu', 'cuda').
        models: only these of the budget's models (names in :data:`MODELS`).
        schedules: only runs of these epoch counts (1 = the short schedule).
    Returns:
        The :class:`~vitlab.experiments.common.ResultsFile`; each record also has ``model_name``,
        ``family``, ``epochs``, ``stage`` and ``tokens`` (hybrids; None otherwise).
    Raises:
        UnknownBudgetError, ConfigError (unknown model), ResultsError (unreadable or foreign file).
    """
    settings = BUDGET_SETTINGS[check_budget(budget)]
    if models is not None:
        unknown = [m for m in models if m not in MODELS]
        if unknown or not models:
            raise ConfigError(f"Unknown hybrid-experiment model(s) {unknown or models}; choose from {list(MODELS)}.")
        settings = dataclasses.replace(settings, models=tuple(m for m in settings.models if m in models),
                                       short_models=tuple(m for m in settings.short_models if m in models))
    seeds = list(dict.fromkeys(settings.seeds if seeds is None else seeds))
    train_full = fashion_mnist("train")
    check_train_sizes([settings.train_size], len(train_full), "Fashion-MNIST training set")
    train_set = fashion_mnist("train", subset=settings.train_size, seed=0)
    test_set = fashion_mnist("test", subset=settings.test_size, seed=0)
    results = ResultsFile(results_path if results_path is not None else default_results_path(EXPERIMENT, budget),
                          EXPERIMENT)
    runs = [r for r in planned_runs(settings, seeds) if schedules is None or r[1] in schedules]
    for done, (name, epochs, seed) in enumerate(runs, start=1):
        cfg = MODELS[name]
        is_hybrid = isinstance(cfg, HybridConfig)
        train_cfg = recipe(epochs, seed, batch_size=settings.batch_size, augment=settings.augment)
        record = run_classifier(
            results, run_id_for(name, epochs, seed), model_fn=lambda cfg=cfg: build_model(cfg), train_set=train_set,
            test_set=test_set, train_cfg=train_cfg, budget=budget, progress=progress, device=device, model_name=name,
            family=family_of(name), epochs=epochs, stage=cfg.stage if is_hybrid else None,
            tokens=cfg.num_patches if is_hybrid else None)
        if progress:
            log_run(done, len(runs), record, f"{name} {epochs} ep seed={seed}")
    return results


# ---- from records to arrays (for the notebook and its plots) ------------------------------------------

def summarize(records: list[dict]) -> list[dict]:
    """One point per (model, schedule), over seeds, ordered by family then training compute.

    Args:
        records: ``ResultsFile.records`` of this experiment.
    Returns:
        A list of ``{'model', 'family', 'epochs', 'stage', 'tokens', 'params', 'train_flops' (mean over
        seeds), 'mean', 'std' (0 with one seed), 'accuracies' (array, one per seed), 'seeds'}``.
    """
    groups: dict = {}
    for r in records:
        groups.setdefault((r["model_name"], r["epochs"]), []).append(r)
    points = []
    for (name, epochs), rs in groups.items():
        accs = np.array([r["test_accuracy"] for r in rs])
        points.append({"model": name, "family": rs[0]["family"], "epochs": epochs, "stage": rs[0].get("stage"),
                       "tokens": rs[0].get("tokens"), "params": rs[0]["params"],
                       "train_flops": float(np.mean([r["train_flops"] for r in rs])), "mean": float(accs.mean()),
                       "std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0, "accuracies": accs,
                       "seeds": [r["seed"] for r in rs]})
    order = {f: i for i, f in enumerate(FAMILIES)}
    return sorted(points, key=lambda p: (order.get(p["family"], len(order)), p["train_flops"]))


def compute_frontier(points: list[dict], family: str, stage: int = 3) -> list[dict]:
    """A family's points for the accuracy-vs-compute plot (hybrids: only those fed by ``stage``)."""
    return [p for p in points if p["family"] == family and (family != "hybrid" or p["stage"] == stage)]


def stage_points(points: list[dict], epochs: "int | None" = None) -> list[dict]:
    """The stage-choice runs (S hybrid fed by stage 2, 3, 4), by stage, on the main schedule.

    Args:
        points: :func:`summarize`'s output.
        epochs: the schedule to use; default the longest one present.
    """
    chosen = [p for p in points if p["model"] in STAGE_MODELS]
    if not chosen:
        return []
    epochs = max(p["epochs"] for p in chosen) if epochs is None else epochs
    return sorted([p for p in chosen if p["epochs"] == epochs], key=lambda p: p["stage"])


__all__ = ["EXPERIMENT", "MODELS", "FAMILIES", "STAGE_MODELS", "HybridBudget", "BUDGET_SETTINGS", "PAPER_TABLE6",
           "family_of", "run_id_for", "planned_runs", "run", "summarize", "compute_frontier", "stage_points"]
