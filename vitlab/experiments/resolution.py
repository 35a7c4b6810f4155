"""Fine-tuning at a higher resolution (ViT paper, Section 3.2) at laptop scale.

The paper pre-trains at one resolution and fine-tunes at a higher one with the same patch size, so
the sequence gets longer; the learned position embeddings exist only for the old grid and are
interpolated in 2-D to the new one. Here:

1. ``base``: train ``fmnist-vit`` on 28x28 Fashion-MNIST (7x7 patches of 4x4 pixels), test at 28x28;
2. ``zero-shot``: move it to 56x56 images (bilinearly upsampled, 14x14 patches) with the position
   embeddings interpolated or re-initialised, and test without any training;
3. ``fine-tune``: fine-tune each of those at 56x56, and -- the control -- fine-tune the 28x28 model at
   28x28 for as many steps, so "more training" is not mistaken for "higher resolution".

Upsampled images carry no new information, so this isolates what the paper's recipe is about: can
the trained model use a longer sequence, and do its position embeddings survive the move?

Scales: ``'small'`` (500 training images; the quick budget and what the tests re-run) and ``'main'``
(10,000 images; the committed result). The base weights are not saved: a resumed run trains a seed's
base model again (same seed, same weights) when some of its later runs are missing.
"""

from __future__ import annotations

import copy
import datetime
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import config_to_dict
from ..data import ImageDataset, fashion_mnist, take_subset
from ..errors import ConfigError, InputShapeError
from ..models import build_model, count_parameters
from ..models.resize import resize_vit
from ..seed import seed_everything
from ..training import TrainConfig, evaluate, train
from .ablations import difference_to_reference  # noqa: F401  (re-exported for the notebook)
from .common import (ResultsFile, check_budget, check_seeds, count_forward_flops, default_results_path, git_commit,
                     recipe, run_classifier)

EXPERIMENT = "resolution"

# (stage, pos_embed_mode) of every condition, in plotting order, with its label.
CONDITIONS = (("base", "trained"), ("zero-shot", "interpolate"), ("zero-shot", "reinit"),
              ("fine-tune", "interpolate"), ("fine-tune", "reinit"), ("fine-tune", "control"))
CONDITION_LABELS = {
    ("base", "trained"): "28x28, as trained",
    ("zero-shot", "interpolate"): "56x56, interpolated, no fine-tuning",
    ("zero-shot", "reinit"): "56x56, re-initialised, no fine-tuning",
    ("fine-tune", "interpolate"): "56x56, interpolated + fine-tuned",
    ("fine-tune", "reinit"): "56x56, re-initialised + fine-tuned",
    ("fine-tune", "control"): "28x28, fine-tuned as long (control)",
}

# The ViT paper (Sec. 3.2) describes the recipe but prints no with/without comparison; DeiT
# (Touvron et al., ICML 2021) gives a clean pair for one model: DeiT-B trained at 224x224, and the
# same model fine-tuned at 384x384 with interpolated position embeddings (ImageNet top-1).
PUBLISHED_DEIT_B = {"224x224, as trained": 0.818, "384x384, interpolated + fine-tuned": 0.831}


@dataclass(frozen=True)
class Scale:
    """One size of the experiment: data, the two schedules, and the sizes."""

    name: str  # 'small' or 'main'; the first part of every run_id
    train_size: int  # class-balanced training images (used for the base and for fine-tuning)
    test_size: "int | None"  # test images (class-balanced subset); None = all 10,000
    base_epochs: int  # training at the low resolution
    finetune_epochs: int  # fine-tuning (every fine-tune arm, the control included)
    batch_size: int  # images per step, everywhere
    lr: float  # peak learning rate of the base training
    finetune_lr: float  # peak learning rate of fine-tuning (lower, no weight decay, as in the paper)
    augment: bool = True  # random crop + flip (off for 'small': too few steps for it to pay off)
    low_res: int = 28  # image side the base is trained at
    high_res: int = 56  # image side fine-tuned and tested at (a multiple of the patch size)
    preset: str = "fmnist-vit"  # the model (CLS token, learned 1-D position table)


SCALES = {
    "small": Scale("small", train_size=500, test_size=500, base_epochs=10, finetune_epochs=2, batch_size=32,
                   lr=3e-3, finetune_lr=5e-4, augment=False),
    "main": Scale("main", train_size=10_000, test_size=None, base_epochs=10, finetune_epochs=3, batch_size=128,
                  lr=2e-3, finetune_lr=5e-4),
}
BUDGET_SCALES = {"quick": ("small",), "full": ("small", "main")}
BUDGET_SEEDS = {"quick": (0,), "full": (0, 1, 2)}


def upsample_images(images: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """Bilinearly resize uint8 images to ``size`` x ``size`` (rounded back to uint8).

    Args:
        images: uint8 (N, C, H, W).
        size: the new side in pixels.
        chunk: images converted to float at a time (bounds the memory used).
    Returns:
        uint8 (N, C, size, size).
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise InputShapeError(f"upsample_images expects uint8 (N, C, H, W), got {images.dtype} "
                              f"{tuple(images.shape)}; images from vitlab.data are already uint8.")
    if not isinstance(size, int) or size < 1:
        raise ConfigError(f"size must be a positive int, got {size!r}.")
    out = [F.interpolate(part.float(), size=(size, size), mode="bilinear", align_corners=False)
           .round().clamp(0, 255).to(torch.uint8) for part in images.split(chunk)]  # each (n, C, size, size)
    return torch.cat(out) if out else images.new_zeros(0, images.shape[1], size, size)


def _resized(dataset: ImageDataset, size: int) -> ImageDataset:
    return ImageDataset(upsample_images(dataset.images, size), dataset.labels, dataset.classes,
                        name=f"{dataset.name}@{size}")


@dataclass
class Data:
    """The training and test images of one scale at both resolutions."""

    train: ImageDataset
    test: ImageDataset
    train_high: ImageDataset
    test_high: ImageDataset


def load_data(scale: Scale) -> Data:
    """Fashion-MNIST subsets (class-balanced, seed 0) at 28x28 and upsampled to ``scale.high_res``."""
    train_set = take_subset(fashion_mnist("train"), scale.train_size)
    test_set = fashion_mnist("test", subset=scale.test_size)
    return Data(train=train_set, test=test_set, train_high=_resized(train_set, scale.high_res),
                test_high=_resized(test_set, scale.high_res))


def base_config(scale: Scale, seed: int) -> TrainConfig:
    """The low-resolution training: the reproductions' shared :func:`~vitlab.experiments.common.recipe`
    (AdamW, 10% warm-up then cosine, label smoothing) at the scale's batch size, augmentation and rate."""
    return recipe(scale.base_epochs, seed, batch_size=scale.batch_size, lr=scale.lr, augment=scale.augment)


def finetune_config(scale: Scale, seed: int) -> TrainConfig:
    """The fine-tuning recipe: the same, at a lower learning rate and without weight decay (as the paper)."""
    return recipe(scale.finetune_epochs, seed, batch_size=scale.batch_size, lr=scale.finetune_lr,
                  weight_decay=0.0, augment=scale.augment)


def run_id_for(scale: Scale, stage: str, mode: str, seed: int) -> str:
    """The name of one run, e.g. ``'main/fine-tune/interpolate/seed=2'``."""
    return f"{scale.name}/{stage}/{mode}/seed={seed}"


def base_run(results: ResultsFile, scale: Scale, data: Data, *, seed: int, budget: str, progress: bool = True,
             device: str = "cpu") -> "tuple[dict, torch.nn.Module]":
    """Train the low-resolution model of one seed (or train it again if only its record is left).

    Returns:
        (record, trained model). Training again after a resume must give the recorded test accuracy;
        a warning says so if it does not (e.g. another torch version or device).
    """
    run_id = run_id_for(scale, "base", "trained", seed)
    trained = {}

    def model_fn():
        trained["model"] = build_model(scale.preset, img_size=scale.low_res)
        return trained["model"]

    cfg = base_config(scale, seed)
    was_done = results.get(run_id) is not None
    record = run_classifier(results, run_id, model_fn=model_fn, train_set=data.train, test_set=data.test,
                            train_cfg=cfg, budget=budget, progress=progress, device=device, kind="run",
                            scale=scale.name, stage="base", pos_embed_mode="trained", img_size=scale.low_res)
    if not was_done:
        return record, trained["model"]  # the model run_classifier just trained
    seed_everything(seed)  # what run_classifier did: the seed, then the model, then training
    model = train(model_fn(), data.train, cfg, progress=progress, device=device).model
    again = evaluate(model, data.test)["accuracy"]
    if abs(again - record["test_accuracy"]) > 1e-6:
        warnings.warn(f"{run_id}: training the base model again gave test accuracy {again:.4f}, not the recorded "
                      f"{record['test_accuracy']:.4f} (another torch version, device or thread count?); the "
                      "runs still to do start from the new weights.", stacklevel=2)
    return record, model


def zero_shot_run(results: ResultsFile, scale: Scale, data: Data, base_model: torch.nn.Module, *, seed: int,
                  mode: str, budget: str) -> dict:
    """Test the base model at ``scale.high_res`` with its position embeddings interpolated or re-initialised,
    without any training (or return the record if it is done)."""
    run_id = run_id_for(scale, "zero-shot", mode, seed)
    done = results.get(run_id)
    if done is not None:
        return done
    t0 = time.perf_counter()
    seed_everything(seed)  # 'reinit' draws the new table
    model = resize_vit(base_model, scale.high_res, pos_embed=mode)
    metrics = evaluate(model, data.test_high)
    record = {
        "run_id": run_id, "experiment": results.experiment, "budget": budget, "kind": "run",
        "scale": scale.name, "stage": "zero-shot", "pos_embed_mode": mode, "img_size": scale.high_res,
        "model": config_to_dict(model.cfg), "params": count_parameters(model), "train_size": len(data.train),
        "test_size": len(data.test_high), "seed": seed, "base_run_id": run_id_for(scale, "base", "trained", seed),
        "forward_flops": count_forward_flops(model, tuple(data.test_high.images.shape[1:])), "train_flops": 0,
        "test_accuracy": metrics["accuracy"], "test_loss": metrics["loss"],
        "wall_seconds": round(time.perf_counter() - t0, 2), "commit": git_commit(),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
    results.add(record)
    return record


def fine_tune_run(results: ResultsFile, scale: Scale, data: Data, base_model: torch.nn.Module, *, seed: int,
                  mode: str, budget: str, progress: bool = True, device: str = "cpu") -> dict:
    """Fine-tune the base model: at ``high_res`` with ``mode`` 'interpolate' or 'reinit', or at the low
    resolution with ``mode='control'`` (same recipe and steps). Returns the record."""
    if mode == "control":
        model_fn = lambda: copy.deepcopy(base_model)  # noqa: E731
        train_set, test_set, size = data.train, data.test, scale.low_res
    else:
        model_fn = lambda: resize_vit(base_model, scale.high_res, pos_embed=mode)  # noqa: E731
        train_set, test_set, size = data.train_high, data.test_high, scale.high_res
    return run_classifier(results, run_id_for(scale, "fine-tune", mode, seed), model_fn=model_fn,
                          train_set=train_set, test_set=test_set, train_cfg=finetune_config(scale, seed),
                          budget=budget, progress=progress, device=device, kind="run", scale=scale.name,
                          stage="fine-tune", pos_embed_mode=mode, img_size=size,
                          base_run_id=run_id_for(scale, "base", "trained", seed))


def run(budget: str = "quick", results_path: "str | Path | None" = None, progress: bool = True,
        seeds: "list[int] | None" = None, device: str = "cpu") -> ResultsFile:
    """Run (or resume) the higher-resolution experiment.

    Args:
        budget: 'quick' (scale 'small', seed 0: about a minute on 2 CPU cores) or 'full' (scales 'small'
            and 'main', seeds 0, 1, 2: about an hour on one free CPU core).
        results_path: the JSON results file; default :func:`~vitlab.experiments.common.default_results_path`.
        progress: show progress bars.
        seeds: seeds to run; default the budget's.
        device: where to train.
    Returns:
        The :class:`~vitlab.experiments.common.ResultsFile`: six records per scale and seed, one per
        entry of :data:`CONDITIONS`.
    """
    check_budget(budget)
    seeds = check_seeds(seeds if seeds is not None else BUDGET_SEEDS[budget])
    results = ResultsFile(results_path if results_path is not None else default_results_path(EXPERIMENT, budget),
                          EXPERIMENT)
    for name in BUDGET_SCALES[budget]:
        scale = SCALES[name]
        data = None
        for seed in seeds:
            if all(results.get(run_id_for(scale, stage, mode, seed)) for stage, mode in CONDITIONS):
                continue
            data = data if data is not None else load_data(scale)
            _, base = base_run(results, scale, data, seed=seed, budget=budget, progress=progress, device=device)
            for mode in ("interpolate", "reinit"):
                zero_shot_run(results, scale, data, base, seed=seed, mode=mode, budget=budget)
            for mode in ("interpolate", "reinit", "control"):
                fine_tune_run(results, scale, data, base, seed=seed, mode=mode, budget=budget, progress=progress,
                              device=device)
    return results


# ---- records -> arrays for plotting -------------------------------------------------------------------

def scales_in(results: ResultsFile) -> list[str]:
    """The scales with at least one finished run, in :data:`SCALES` order."""
    have = {r.get("scale") for r in results.records}
    return [name for name in SCALES if name in have]


def condition_accuracies(results: ResultsFile, scale: str) -> dict:
    """Test accuracy of every seed of every condition of one scale.

    Returns:
        ``{label: (S,) array ordered by seed}`` in :data:`CONDITIONS` order (labels from
        :data:`CONDITION_LABELS`); conditions with no finished run are left out.
    """
    out = {}
    for stage, mode in CONDITIONS:
        runs = sorted(results.select(scale=scale, stage=stage, pos_embed_mode=mode), key=lambda r: r["seed"])
        if runs:
            out[CONDITION_LABELS[(stage, mode)]] = np.array([r["test_accuracy"] for r in runs])
    return out


__all__ = ["EXPERIMENT", "CONDITIONS", "CONDITION_LABELS", "PUBLISHED_DEIT_B", "Scale", "SCALES",
           "BUDGET_SCALES", "BUDGET_SEEDS", "upsample_images", "Data", "load_data", "base_config",
           "finetune_config", "run_id_for", "base_run", "zero_shot_run", "fine_tune_run", "run", "scales_in",
           "condition_accuracies", "difference_to_reference"]
