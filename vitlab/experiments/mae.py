"""MAE at laptop scale (lesson 11): pre-train a masked autoencoder on Fashion-MNIST without labels,
then use its encoder with few labels, against the same ViT trained from scratch.

One pre-training run (its checkpoint lives beside the results file), then for each labelled subset
size and seed four arms:

* ``probe-mae``: a linear classifier on the frozen pre-trained encoder's features;
* ``probe-random``: the same on a randomly initialised encoder (what the architecture alone gives);
* ``finetune-mae``: every weight trained, starting from the pre-trained encoder;
* ``scratch``: the same ViT and recipe, starting from random weights.

``vitlab reproduce mae --budget quick|full``. Pre-training runs through vitlab's one training loop
(``vitlab.training.pretrain``, re-exported here).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..checkpoint import (load_checkpoint)
from ..config import config_to_dict
from ..data import fashion_mnist, preprocess
from ..errors import CheckpointError, ConfigError, InputShapeError
from ..models import count_parameters
from ..models.mae import MAE, MAEConfig, vit_from_mae
from ..models.vit import ViT
from ..seed import seed_everything
from ..training import PretrainConfig, TrainConfig, augment_batch, pretrain
from .common import ResultsFile, check_budget, default_results_path, git_commit, run_classifier

EXPERIMENT = "mae"
ARMS = ("probe-mae", "probe-random", "finetune-mae", "scratch")

__all__ = ["PretrainConfig", "pretrain", "run", "BUDGET_SETTINGS", "ARMS", "run_dir", "pretrained_mae",
           "encoder_features", "linear_probe", "accuracy_table", "reconstruction_errors", "finetune_config"]


# ---- features and the linear probe (pure tensor functions) -----------------------------------------

@torch.no_grad()
def encoder_features(vit: ViT, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """A frozen ViT's pooled features of uint8 images: (N, D), what its head would see.

    Args:
        vit: a ViT (e.g. ``vit_from_mae(mae, 0)``: the mean of the patch tokens after the final norm);
            no masking here, every patch is seen.
        images: (N, C, H, W) uint8.
    """
    vit.eval()
    out = [vit.forward_head(vit.forward_features(preprocess(images[i:i + batch_size])), pre_logits=True)
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)  # (N, D)


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, *, steps: int = 1000, lr: float = 0.01, weight_decay: float = 1e-3,
                 seed: int = 0) -> dict:
    """Fit a linear classifier on frozen features (standardised with the training statistics, like
    MAE's BatchNorm without affine) by full-batch AdamW on the cross-entropy; score it.

    Args:
        train_features: (n, D); train_labels: (n,).
        test_features: (m, D); test_labels: (m,).
    Returns:
        {'train_accuracy', 'test_accuracy', 'test_loss'}.
    """
    if train_features.ndim != 2 or test_features.shape[1:] != train_features.shape[1:]:
        raise InputShapeError(f"linear_probe expects (n, D) and (m, D) features, got {tuple(train_features.shape)} "
                              f"and {tuple(test_features.shape)}.")
    if len(train_features) != len(train_labels) or len(test_features) != len(test_labels):
        raise InputShapeError("linear_probe: features and labels must have the same length.")
    mean, std = train_features.mean(0), train_features.std(0, unbiased=False).clamp_min(1e-6)
    x_train, x_test = (train_features - mean) / std, (test_features - mean) / std
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    gen = torch.Generator().manual_seed(seed)
    linear = nn.Linear(x_train.shape[1], num_classes)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(linear.weight.shape, generator=gen) * 0.01)
        linear.bias.zero_()
    optimizer = torch.optim.AdamW(linear.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        loss = F.cross_entropy(linear(x_train), train_labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        train_acc = (linear(x_train).argmax(1) == train_labels).float().mean().item()
        logits = linear(x_test)
        return {"train_accuracy": train_acc, "test_accuracy": (logits.argmax(1) == test_labels).float().mean().item(),
                "test_loss": F.cross_entropy(logits, test_labels).item()}


@torch.no_grad()
def reconstruction_errors(mae: MAE, images: torch.Tensor, mask_ratios: "list[float]", seed: int = 0) -> dict:
    """Mean squared error on the masked patches for each mask ratio (same images, seeded masks).

    Args:
        mae: a (pre-trained) MAE.
        images: (N, C, H, W) uint8.
        mask_ratios: e.g. [0.25, 0.5, 0.75, 0.9].
    Returns:
        {ratio: loss} (in the model's target space: normalised patches if norm_pix_loss).
    """
    mae.eval()
    x = preprocess(images)
    return {ratio: mae(x, ratio, torch.Generator().manual_seed(seed)).loss.item() for ratio in mask_ratios}


# ---- the experiment ------------------------------------------------------------------------------

BUDGET_SETTINGS = {
    # quick: the notebook's live run and CI (about 75 s of CPU time)
    "quick": dict(model=MAEConfig(depth=4, decoder_dim=32, decoder_depth=1), pretrain_size=6000,
                  pretrain=PretrainConfig(epochs=4, batch_size=64, lr=2e-3, warmup_epochs=0.5, augment=False),
                  sizes=(200,), seeds=(0,), test_size=2000, finetune_images={200: 6000}),
    # full: the committed result, 30-40 min on one core: pre-training 600k images at 490-640 img/s (16-21 min),
    # then 12 classifier runs (240k images at 260-400 img/s, 10-15 min) and evaluations
    "full": dict(model=MAEConfig(), pretrain_size=60000,
                 pretrain=PretrainConfig(epochs=10, batch_size=256, lr=1.5e-3, warmup_epochs=1.0, augment=False),
                 sizes=(100, 1000), seeds=(0, 1, 2), test_size=None,
                 finetune_images={100: 10000, 1000: 30000}),
}


def run_dir(results_path: "str | Path") -> Path:
    """Where an experiment keeps its checkpoints: ``<results stem>-runs/`` beside the results file
    (MAE: ``pretrain/``; CLIP: ``seed<N>/``)."""
    results_path = Path(results_path)
    return results_path.parent / f"{results_path.stem}-runs"


def pretrained_mae(results_path: "str | Path") -> MAE:
    """The pre-trained MAE of an experiment run (``run_dir(results_path) / 'pretrain/model.safetensors'``)."""
    path = run_dir(results_path) / "pretrain" / "model.safetensors"
    mae = load_checkpoint(path)
    if not isinstance(mae, MAE):
        raise CheckpointError(f"{path} holds a {type(mae).__name__}, not an MAE.")
    return mae


def finetune_config(size: int, images: int, seed: int) -> TrainConfig:
    """The classifier recipe, the same for fine-tuning and for training from scratch."""
    epochs = max(1, math.ceil(images / size))
    return TrainConfig(epochs=epochs, batch_size=32 if size < 500 else 64, lr=1e-3, warmup_epochs=min(5.0, epochs / 5),
                       weight_decay=0.05, label_smoothing=0.1, augment=True, seed=seed)


def _stamp(record: dict, budget: str) -> dict:
    return {**record, "experiment": EXPERIMENT, "budget": budget, "commit": git_commit(),
            "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__}


def run(budget: str = "quick", results_path: "str | Path | None" = None, progress: bool = True,
        seeds: "list[int] | None" = None, device: str = "cpu") -> ResultsFile:
    """Pre-train an MAE, then compare probe / fine-tune / scratch on small labelled subsets.

    Args:
        budget: 'quick' or 'full' (see :data:`BUDGET_SETTINGS`).
        results_path: the results JSON (default: ``default_results_path('mae', budget)``); the
            pre-trained checkpoint goes in :func:`run_dir` of it. Finished runs are skipped.
        progress: tqdm bars.
        seeds: seeds of the labelled runs (default: the budget's); pre-training always uses seed 0.
        device: only 'cpu' is supported here (the runs are sized for a laptop CPU).
    Returns:
        the ResultsFile: one 'pretrain' record and one record per (arm, size, seed).
    """
    check_budget(budget)
    if str(device) != "cpu":
        raise ConfigError("The MAE experiment runs on the CPU only (device='cpu').")
    settings = BUDGET_SETTINGS[budget]
    seeds = list(settings["seeds"] if seeds is None else seeds)
    results = ResultsFile(results_path or default_results_path(EXPERIMENT, budget), EXPERIMENT)
    folder = run_dir(results.path) / "pretrain"
    unlabeled = fashion_mnist("train", subset=settings["pretrain_size"], seed=0)
    test_set = fashion_mnist("test", subset=settings["test_size"], seed=0)
    cfg: MAEConfig = settings["model"]
    pre: PretrainConfig = settings["pretrain"]

    # 1. pre-training (labels never used)
    if results.get("pretrain") is None or not (folder / "model.safetensors").is_file():
        seed_everything(pre.seed)
        mae = MAE(cfg)

        def batch_loss(model: nn.Module, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            images = unlabeled.images[idx]
            if pre.augment:
                images = augment_batch(images, gen)
            return model(preprocess(images), generator=gen).loss

        t0 = time.perf_counter()
        history = pretrain(mae, len(unlabeled), batch_loss, pre, out_dir=folder, progress=progress,
                           run_info={"model": config_to_dict(cfg), "data": unlabeled.name}, desc="MAE pre-training")
        results.add(_stamp({"run_id": "pretrain", "arm": "pretrain", "model": config_to_dict(cfg),
                            "params": count_parameters(mae), "train_size": len(unlabeled),
                            "pretrain": dataclasses.asdict(pre), "images_seen": pre.epochs * len(unlabeled),
                            "history": history, "final_loss": history[-1]["loss"],
                            "checkpoint": str(folder.relative_to(results.path.parent) / "model.safetensors"),
                            "wall_seconds": round(time.perf_counter() - t0, 2)}, budget))
    mae = pretrained_mae(results.path)
    mae_encoder = vit_from_mae(mae, 0)  # the classifiers' backbone: mean of the patch tokens, then the norm
    seed_everything(0)
    encoders = {"probe-mae": mae_encoder, "probe-random": ViT(cfg.encoder_config(0, pool="gap"))}
    test_features: dict[str, torch.Tensor] = {}  # computed once, when first needed

    # 2. labelled runs: one bar over (size, seed); the trainings inside run quietly
    jobs = [(size, seed) for size in settings["sizes"] for seed in seeds]
    for size, seed in tqdm(jobs, desc="labelled runs (probe, fine-tune, scratch)", disable=not progress):
        labelled = fashion_mnist("train", subset=size, seed=seed)
        for arm, encoder in encoders.items():
            run_id = f"{arm}/n={size}/seed={seed}"
            if results.get(run_id) is None:
                t0 = time.perf_counter()
                if arm not in test_features:
                    test_features[arm] = encoder_features(encoder, test_set.images)
                metrics = linear_probe(encoder_features(encoder, labelled.images), labelled.labels,
                                       test_features[arm], test_set.labels, seed=seed)
                results.add(_stamp({"run_id": run_id, "arm": arm, "size": size, "seed": seed,
                                    "train_size": size, "test_size": len(test_set), **metrics,
                                    "wall_seconds": round(time.perf_counter() - t0, 2)}, budget))
        train_cfg = finetune_config(size, settings["finetune_images"][size], seed)
        run_classifier(results, f"finetune-mae/n={size}/seed={seed}", model_fn=lambda: vit_from_mae(mae, 10),
                       train_set=labelled, test_set=test_set, train_cfg=train_cfg, budget=budget,
                       progress=False, arm="finetune-mae", size=size)
        run_classifier(results, f"scratch/n={size}/seed={seed}",
                       model_fn=lambda: ViT(cfg.encoder_config(10, pool="gap")),
                       train_set=labelled, test_set=test_set, train_cfg=train_cfg, budget=budget,
                       progress=False, arm="scratch", size=size)
    return results


def accuracy_table(records: "list[dict]") -> dict:
    """Test accuracies by arm and labelled-set size, for plotting.

    Args:
        records: ``ResultsFile.records`` of the MAE experiment.
    Returns:
        {arm: {size: [accuracy per seed, in seed order]}} for the arms present.
    """
    table: dict = {}
    for r in sorted((r for r in records if r.get("arm") in ARMS), key=lambda r: (r["size"], r["seed"])):
        table.setdefault(r["arm"], {}).setdefault(r["size"], []).append(r["test_accuracy"])
    return {arm: table[arm] for arm in ARMS if arm in table}
