"""Data scale (the paper's Section 4.3, Figures 3 and 4): how much does each architecture need data?

The paper pre-trains ViTs and ResNets on ImageNet (1.3M images), ImageNet-21k (14M) and JFT-300M, and on
random JFT subsets of 9M to 300M images: with little data the ResNets win, with a lot of data the
ViTs do; the convolution's built-in assumptions (locality, translation equivariance) help when data
is scarce and become a limit when it is plentiful.

Here, at laptop scale: models of matched training compute per image (about 45 MFLOPs forward +
backward) -- a ViT, a ResNet and (optionally) a hybrid (ResNet stages feeding a ViT) -- each trained
from scratch on nested, class-balanced subsets of Fashion-MNIST train, from a few hundred images to
all 60,000, with several seeds, and evaluated on the 10,000 test images.

**Budget rule (the headline, ``data-scale.json``): every run trained to convergence.** Of each subset of
``size`` labelled images, a tenth (class-balanced) is held out for validation and the rest is trained
on; training stops when the validation accuracy has not improved for ``patience`` epochs (after the
warm-up), or at the epoch cap, and the model is the one of the best validation epoch. Its test accuracy
is reported (the paper reports the best validation accuracy of each run, Appendix B). Patience and cap
follow from the size (:func:`patience_for`, :func:`cap_for`): a cap of ``max_images`` images seen (at
most ``max_epochs`` epochs), and a patience of ``patience_epochs`` epochs or ``patience_images``
images, whichever is more, so that a few hundred noisy validation images do not stop a small run in
its first steps. The learning-rate schedule spans the cap. Every run's best weights are saved under
``data/results/data-scale-runs/<arm>/n=<size>/seed=<seed>/model.safetensors`` for the analyses of
lessons 04 and 06.

**The third view (``data-scale-finer-grid.json``): a finer token grid.** The ViT of the headline has a
7x7 grid, on which a local head and a global one are a few pixels apart. The patch-2 ViT (14x14 = 196
tokens, otherwise the same; :data:`PROBE_ARMS`) is trained on all 60,000 images under the same
converged rule, to ask whether local heads appear at our scale when the grid leaves room for them.
It costs several times the compute per image of the other arms, so it is not a data-scale arm.

**The second view (``data-scale-equal-compute.json``): the same epochs for every size**, with a floor on
the images seen (:class:`EqualEpochsBudget`, ``rule='equal-epochs'``): what the earlier version of this
lesson measured. Those are compute curves: the bigger sets get more compute, but none is trained to
the end (60,000 images for 3 epochs: 81.7% for the ViT that reaches 91.5% when trained to the end).

Each seed fixes the weights, batch order and augmentation, and also which images form the subsets
(``vitlab.data.balanced_order(labels, seed)``; subsets of one seed are nested) and the validation
split, so the spread across seeds includes the luck of the draw, which dominates at a few hundred images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import get_preset
from ..data import fashion_mnist, hold_out, take_subset
from ..errors import ConfigError, TrainSizeError
from ..models import build_model
from ..models.hybrid import HybridConfig
from ..training import EarlyStopping
from .common import (ResultsFile, check_budget, check_train_sizes, default_results_path, log_run, recipe,
                     run_classifier)

EXPERIMENT = "data-scale"

_F28 = dict(img_size=28, in_chans=1, num_classes=10)
# The three arms: matched training compute per image (ViT 48.5, hybrid 44.9, ResNet 42.9 MFLOPs).
ARMS: dict = {
    "vit": get_preset("fmnist-vit-tiny"),  # patch 4, 4 blocks, D 64: 139k parameters
    "hybrid": HybridConfig(**_F28, cnn_width=8, stage=3, dim=32, depth=4, heads=2, mlp_ratio=2.0),  # 81k
    "cnn": get_preset("fmnist-resnet-tiny"),  # 176k, ResNet-18 layout at 1/8 width
}
# Not a data-scale arm (its compute per image is several times the others'): the finer-grid view asks
# whether a 14x14 token grid lets local heads appear at our scale (lessons 04 and 06).
PROBE_ARMS: dict = {"vit-p2": get_preset("fmnist-vit-p2")}  # patch 2, 196 tokens, 4 blocks, D 64
ALL_ARMS: dict = {**ARMS, **PROBE_ARMS}
ARM_LABELS = {"vit": "ViT (patch 4, 4 blocks, D 64)", "hybrid": "hybrid (ResNet stages 1-3 + ViT, 4 blocks, D 32)",
              "cnn": "ResNet (ResNet-18 layout, width 8)", "vit-p2": "ViT (patch 2, 4 blocks, D 64)"}


@dataclass(frozen=True)
class ConvergedBudget:
    """What one budget runs under the headline rule: every run trained to convergence (early stopping)."""

    sizes: tuple  # labelled images per run (nested, class-balanced subsets of Fashion-MNIST train)
    seeds: tuple  # seeds per size and arm
    max_images: int  # epoch cap: at most this many images seen ...
    max_epochs: int  # ... and at most this many epochs
    patience_epochs: int  # stop after this many epochs without a better validation accuracy ...
    patience_images: int  # ... or this many images seen, whichever is more
    val_fraction: float  # the share of each subset held out for validation (at least 10 images)
    test_size: "int | None"  # test images (class-balanced subset); None = all 10,000
    arms: tuple = ("vit", "cnn")  # which models (add 'hybrid' for the third arm)
    batch_size: int = 128  # images per optimisation step
    augment: bool = True  # random crop + flip
    rule: str = "converged"

    def __post_init__(self) -> None:
        from ..config import check_positive_ints

        check_positive_ints(self, ("max_images", "max_epochs", "patience_epochs", "patience_images", "batch_size"))
        if not (isinstance(self.val_fraction, float) and 0 < self.val_fraction < 1):
            raise ConfigError(f"ConvergedBudget.val_fraction must be a float in (0, 1), got {self.val_fraction!r}.")


@dataclass(frozen=True)
class EqualEpochsBudget:
    """What one budget runs under the second rule: the same epochs for every size, with a floor."""

    sizes: tuple  # training-set sizes (nested, class-balanced subsets of Fashion-MNIST train)
    seeds: tuple  # seeds per size and arm
    epochs: int  # passes over each subset: the budget rule ...
    min_images: int  # ... but at least this many images seen (tiny subsets get more epochs)
    test_size: "int | None"  # test images (class-balanced subset); None = all 10,000
    arms: tuple = tuple(ARMS)  # which models
    batch_size: int = 128  # images per optimisation step
    augment: bool = True  # random crop + flip (off in the quick budget: it slows the first few hundred steps)
    rule: str = "equal-epochs"


DataScaleBudget = EqualEpochsBudget  # the name of the earlier version

BUDGET_SETTINGS = {
    # About a minute and a half on a free 2-core machine: ViT and ResNet, one seed, three sizes, caps of
    # a few epochs, no augmentation, a 2,000-image test subset. A live demonstration of the pipeline.
    "quick": ConvergedBudget(sizes=(300, 1200, 4800), seeds=(0,), max_images=9600, max_epochs=30,
                             patience_epochs=2, patience_images=2400, val_fraction=0.1, test_size=2000,
                             batch_size=64, augment=False),
    # The committed result: 6 sizes x 3 seeds x 2 arms = 36 runs, each to convergence or its cap (3M
    # images, 200 epochs): hours on 2 CPU cores, one process per seed (`--seeds N`), resumable per epoch.
    "full": ConvergedBudget(sizes=(250, 750, 2500, 7500, 20000, 60000), seeds=(0, 1, 2), max_images=3_000_000,
                            max_epochs=200, patience_epochs=10, patience_images=20_000, val_fraction=0.1,
                            test_size=None, batch_size=128),
}

# The second view, committed in data/results/data-scale-equal-compute.json (54 runs, finished).
EQUAL_EPOCHS_SETTINGS = {
    "quick": EqualEpochsBudget(sizes=(200, 800, 3200), seeds=(0,), epochs=2, min_images=2400, test_size=2000,
                               arms=("vit", "cnn"), batch_size=32, augment=False),
    "full": EqualEpochsBudget(sizes=(250, 750, 2500, 7500, 20000, 60000), seeds=(0, 1, 2), epochs=3,
                              min_images=25600, test_size=None, batch_size=64),
}
# The third view, ``data-scale-finer-grid.json``: the converged rule, on the patch-2 ViT at all 60,000 images
# (one seed; about 4 hours on one core, resumable per epoch). Quick: the same pipeline on 1,200 images.
FINER_GRID_SETTINGS = {
    "quick": ConvergedBudget(sizes=(1200,), seeds=(0,), max_images=4800, max_epochs=30, patience_epochs=2,
                             patience_images=2400, val_fraction=0.1, test_size=1000, arms=("vit-p2",),
                             batch_size=64, augment=False, rule="finer-grid"),
    "full": ConvergedBudget(sizes=(60000,), seeds=(0,), max_images=3_000_000, max_epochs=200, patience_epochs=10,
                            patience_images=20_000, val_fraction=0.1, test_size=None, arms=("vit-p2",),
                            batch_size=128, rule="finer-grid"),
}
RULES = ("converged", "equal-epochs", "finer-grid")
RESULTS_NAMES = {"converged": EXPERIMENT, "equal-epochs": f"{EXPERIMENT}-equal-compute",
                 "finer-grid": f"{EXPERIMENT}-finer-grid"}

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


def epochs_for(size: int, settings: EqualEpochsBudget) -> int:
    """Epochs for a subset of ``size`` images under the equal-epochs rule: ``settings.epochs``, or more
    to see ``min_images``."""
    return max(settings.epochs, math.ceil(settings.min_images / size))


def val_size_for(size: int, settings: ConvergedBudget) -> int:
    """Images held out for validation from a subset of ``size``: ``val_fraction`` of it, at least 10.

    Raises:
        TrainSizeError: the split would leave fewer than 10 images to train on.
    """
    val = max(10, round(settings.val_fraction * size))
    if size - val < 10:
        raise TrainSizeError(f"A subset of {size} images is too small for a validation split of {val} and at "
                             "least 10 images to train on: choose sizes of at least 20.")
    return val


def cap_for(train_size: int, settings: ConvergedBudget) -> int:
    """The epoch cap for ``train_size`` training images: ``max_images`` images seen, at most ``max_epochs``."""
    return max(1, min(settings.max_epochs, math.ceil(settings.max_images / train_size)))


def patience_for(train_size: int, settings: ConvergedBudget) -> int:
    """Epochs without a better validation accuracy before a run stops: ``patience_epochs``, or more to
    see ``patience_images`` images."""
    return max(settings.patience_epochs, math.ceil(settings.patience_images / train_size))


def run_id_for(arm: str, size: int, seed: int) -> str:
    return f"{arm}/n={size}/seed={seed}"


def runs_folder(results_path: "str | Path") -> Path:
    """Where the converged runs' weights go: ``<results file's folder>/data-scale-runs/`` (beside the file)."""
    path = Path(results_path)
    return path.parent / f"{path.stem}-runs"


def _check_arms(arms, default: tuple) -> list[str]:
    arms = list(default) if arms is None else list(arms)
    unknown = [a for a in arms if a not in ALL_ARMS]
    if unknown or not arms:
        raise ConfigError(f"Unknown data-scale arm(s) {unknown or arms}; choose from {list(ALL_ARMS)}.")
    return arms


def _check_rule(rule: str) -> str:
    if rule not in RULES:
        raise ConfigError(f"Unknown data-scale rule {rule!r}; use 'converged' (the headline: every run trained "
                          "to convergence) or 'equal-epochs' (the second view: the same epochs for every size).")
    return rule


def run(budget: str = "quick", results_path: "str | Path | None" = None, progress: bool = True,
        seeds: "list[int] | None" = None, device: str = "cpu", sizes: "list[int] | None" = None,
        arms: "list[str] | None" = None, rule: str = "converged") -> ResultsFile:
    """Train every arm on every subset size with every seed (resuming: finished runs are skipped).

    Args:
        budget: 'quick' or 'full' (see :data:`BUDGET_SETTINGS`, :data:`EQUAL_EPOCHS_SETTINGS` or
            :data:`FINER_GRID_SETTINGS`).
        results_path: the JSON results file; default ``data/results/data-scale.json`` (full, converged),
            ``data/results/data-scale-equal-compute.json`` (full, equal epochs),
            ``data/results/data-scale-finer-grid.json`` (full, finer grid), or the same names under
            ``data/results/quick/`` (quick).
        progress: progress bars and one line per finished run.
        seeds: seeds to run instead of the budget's.
        device: where to train ('cpu', 'cuda').
        sizes: subset sizes instead of the budget's (each at most 60,000).
        arms: some of ``['vit', 'hybrid', 'cnn', 'vit-p2']`` instead of the budget's.
        rule: 'converged' (early stopping on a held-out split; the best epoch's weights saved in
            :func:`runs_folder`, resumable within a run), 'equal-epochs' (the earlier rule) or
            'finer-grid' (the converged rule on the patch-2 ViT, :data:`FINER_GRID_SETTINGS`).
    Returns:
        The :class:`~vitlab.experiments.common.ResultsFile`; each record also has ``arm``, ``size``
        and ``data_seed``; converged records also ``val_size``, ``val_accuracy``, ``best_epoch``,
        ``epochs_run``, ``epoch_cap``, ``patience`` and ``weights``; equal-epochs records ``epochs``.
    Raises:
        UnknownBudgetError, TrainSizeError (a size larger than the data, or too small to split),
        ConfigError (unknown arm or rule), ResultsError (an unreadable or foreign results file),
        CheckpointError (a run folder that holds another recipe's run).
    """
    settings = {"converged": BUDGET_SETTINGS, "equal-epochs": EQUAL_EPOCHS_SETTINGS,
                "finer-grid": FINER_GRID_SETTINGS}[_check_rule(rule)][check_budget(budget)]
    arms = _check_arms(arms, settings.arms)
    seeds = list(dict.fromkeys(settings.seeds if seeds is None else seeds))
    train_full = fashion_mnist("train")
    sizes = check_train_sizes(list(settings.sizes if sizes is None else sizes), len(train_full),
                              "Fashion-MNIST training set")
    if rule != "equal-epochs":  # converged and finer-grid: early stopping on a held-out split
        for size in sizes:
            val_size_for(size, settings)  # refuse a size too small to split before anything trains
    if results_path is None:
        results_path = default_results_path(RESULTS_NAMES[rule], budget)
    results = ResultsFile(results_path, EXPERIMENT)
    test_set = fashion_mnist("test", subset=settings.test_size, seed=0)
    total, done = len(seeds) * len(sizes) * len(arms), 0
    for seed in seeds:  # seed by seed, so an interrupted run leaves whole curves behind
        for size in sizes:
            subset = take_subset(train_full, size, seed=seed)  # nested within a seed
            for arm in arms:
                run_id = run_id_for(arm, size, seed)
                model_fn = lambda arm=arm: build_model(ALL_ARMS[arm])  # noqa: E731
                if rule != "equal-epochs":
                    train_set, val_set = hold_out(subset, val_size_for(size, settings), seed=seed)
                    cap, patience = cap_for(len(train_set), settings), patience_for(len(train_set), settings)
                    train_cfg = recipe(cap, seed, batch_size=settings.batch_size, augment=settings.augment)
                    record = run_classifier(
                        results, run_id, model_fn=model_fn, train_set=train_set, test_set=test_set,
                        train_cfg=train_cfg, budget=budget, progress=progress, device=device,
                        val_set=val_set, early_stopping=EarlyStopping(patience=patience),
                        run_dir=runs_folder(results.path) / run_id, arm=arm, size=size, data_seed=seed,
                        epoch_cap=cap, patience=patience)
                else:
                    epochs = epochs_for(size, settings)
                    train_cfg = recipe(epochs, seed, batch_size=settings.batch_size, augment=settings.augment)
                    record = run_classifier(
                        results, run_id, model_fn=model_fn, train_set=subset, test_set=test_set,
                        train_cfg=train_cfg, budget=budget, progress=progress, device=device, arm=arm,
                        size=size, epochs=epochs, data_seed=seed)
                done += 1
                if progress:
                    log_run(done, total, record, f"{arm} n={size} seed={seed}")
    return results


def equal_compute_results() -> ResultsFile:
    """The committed second view: ``data/results/data-scale-equal-compute.json`` (equal epochs, 54 runs)."""
    from . import common  # looked up at call time: the one place results paths are decided

    return ResultsFile(common.default_results_path(RESULTS_NAMES["equal-epochs"], "full"), EXPERIMENT)


# ---- what the data did to the inside of the ViT (the saved per-size weights) ---------------------------

def inside_by_size(results: "ResultsFile | None" = None, test_size: int = 1000, seeds: "list[int] | None" = None,
                   batch_size: int = 250, progress: bool = True, arm: str = "vit") -> list[dict]:
    """The ViT paper's Fig. 7 analyses on every saved converged ViT, and on its starting point.

    For each ViT record with weights, and for each seed's untrained ViT (built as the run built it:
    ``seed_everything(seed)`` then the arm's config; marked ``size=0``), on a class-balanced subset of
    the test set: the mean attention distance per layer and head, the share of the CLS rollout on the
    garment's patches (:func:`vitlab.patches.foreground_patches`), the position-embedding
    similarity's correlation with grid distance, and the patch filters' PCA spectrum.

    Args:
        results: the converged results file (default: the committed ``data-scale.json``).
        test_size: test images the attention statistics average over.
        seeds: only these seeds (default: every seed with saved weights).
        batch_size, progress: as :func:`vitlab.analysis.summarize`.
        arm: 'vit', or 'vit-p2' with the finer-grid results (``data-scale-finer-grid.json``).
    Returns:
        one dict per model, seeds ascending, within a seed the untrained model first and then sizes
        ascending: ``size``, ``seed``, ``test_accuracy`` (None untrained), ``distance`` (L, H) pixels,
        ``rollout_share`` and ``mask_share`` (means over the images), ``pos_r``, ``spectrum`` (the
        filters' explained-variance ratios, descending).
    Raises:
        ConfigError: an arm that is not a ViT, or no saved weights of it (for these seeds).
    """
    from ..analysis import patch_embedding_components, pos_embed_distance_correlation, summarize
    from ..checkpoint import load_checkpoint
    from ..data import preprocess
    from ..patches import foreground_patches
    from ..seed import seed_everything

    if arm not in ("vit", "vit-p2"):
        raise ConfigError(f"inside_by_size analyses the ViT arms ('vit', 'vit-p2'), not {arm!r}.")
    if results is None:
        results = ResultsFile(default_results_path(RESULTS_NAMES["converged"], "full"), EXPERIMENT)
    found = sorted((r for r in results.records if r["arm"] == arm and r.get("weights")
                    and (seeds is None or r["seed"] in seeds)), key=lambda r: (r["seed"], r["size"]))
    if not found:
        raise ConfigError(f"{results.path} holds no saved {arm!r} weights"
                          + (f" for seeds {seeds}" if seeds is not None else "") + ".")
    test_set = fashion_mnist("test", subset=test_size, seed=0)
    images = preprocess(test_set.images)  # (B, 1, 28, 28) in [-1, 1]
    masks = foreground_patches(test_set.images, ALL_ARMS[arm].patch_size)  # (B, rows, cols): the garment's patches
    rows = []
    for seed in sorted({r["seed"] for r in found}):
        seed_everything(seed)
        models = [(None, build_model(ALL_ARMS[arm]))]
        models += [(r, load_checkpoint(results.path.parent / r["weights"])) for r in found if r["seed"] == seed]
        for record, model in models:
            summary = summarize(model.eval(), images, analyses=("distance", "rollout"), masks=masks,
                                batch_size=batch_size, progress=progress)
            filters = model.patch_embed.proj.weight  # (D, C, P, P)
            rows.append({
                "size": 0 if record is None else record["size"], "seed": seed,
                "test_accuracy": None if record is None else record["test_accuracy"],
                "distance": summary["distance"], "rollout_share": summary["rollout_share"].mean().item(),
                "mask_share": summary["mask_share"].mean().item(),
                "pos_r": pos_embed_distance_correlation(model.pos_embed, num_prefix_tokens=model.num_prefix_tokens),
                "spectrum": patch_embedding_components(filters, k=min(filters.shape[0], filters[0].numel()))[1],
            })
    return rows


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


__all__ = ["EXPERIMENT", "ARMS", "ARM_LABELS", "ConvergedBudget", "EqualEpochsBudget", "DataScaleBudget",
           "BUDGET_SETTINGS", "EQUAL_EPOCHS_SETTINGS", "FINER_GRID_SETTINGS", "PROBE_ARMS", "ALL_ARMS", "RULES",
           "PAPER_TABLE5", "epochs_for", "val_size_for",
           "cap_for", "patience_for", "run_id_for", "runs_folder", "run", "equal_compute_results", "inside_by_size", "summarize",
           "gap_landmarks"]
