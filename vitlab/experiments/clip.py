"""CLIP at toy scale (lesson 12): train vitlab's small CLIP on Fashion-MNIST image-caption pairs,
then classify the test images zero-shot from text prompts and retrieve images by text.

The captions come from a few templates filled with the class names ("a photo of a coat."), drawn
afresh every epoch, so this shows the mechanism of CLIP (two encoders, one embedding space, the
contrastive loss, prompts as classifiers) on 60,000 pairs; the real CLIP learned from 400 million
pairs of web text. :func:`load_pretrained_clip` gets the real one when open_clip and its weights can
be had, and says why not otherwise.

``vitlab reproduce clip --budget quick|full``: one record per seed with zero-shot accuracies (each
training template alone, the ensemble of training templates, held-out templates), retrieval
precision and the learned temperature.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import socket
import time
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..checkpoint import load_checkpoint
from ..config import config_to_dict
from ..data import ImageDataset, fashion_mnist, preprocess
from ..errors import CheckpointError, ConfigError, InputShapeError, PretrainedUnavailableError
from ..models import count_parameters
from ..models.clip import CLIP, CLIPConfig, class_text_embeddings, clip_loss, retrieve, zero_shot_logits
from ..seed import seed_everything
from ..text import (FASHION_MNIST_CAPTION_NAMES, HELD_OUT_TEMPLATES, TRAIN_TEMPLATES, WordTokenizer,
                    fill_template)
from ..training import augment_batch
from .common import ResultsFile, check_budget, default_results_path, git_commit
from ..training import PretrainConfig, pretrain
from .mae import run_dir

EXPERIMENT = "clip"

__all__ = ["run", "BUDGET_SETTINGS", "caption_table", "image_embeddings", "evaluate_clip",
           "retrieval_precision", "trained_clip", "zero_shot_table", "pretrained_clip_status",
           "load_pretrained_clip", "pretrained_zero_shot"]


def caption_table(tokenizer: WordTokenizer, class_names: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """Every caption a (class, template) pair makes, tokenized: row ``label * T + t``.

    Returns:
        (K * T, L) token ids.
    """
    return tokenizer.encode([fill_template(t, name) for name in class_names for t in templates])


@torch.no_grad()
def image_embeddings(model: CLIP, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Unit image embeddings (N, E) of uint8 images (N, C, H, W)."""
    model.eval()
    out = [F.normalize(model.encode_image(preprocess(images[i:i + batch_size])), dim=-1)
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)


def retrieval_precision(class_embeddings: torch.Tensor, gallery: torch.Tensor, gallery_labels: torch.Tensor,
                        k: int = 10) -> torch.Tensor:
    """Text -> image retrieval: for each class prompt, the share of its k nearest images of that class.

    Args:
        class_embeddings: (K, E) one query per class.
        gallery: (N, E) image embeddings.
        gallery_labels: (N,).
    Returns:
        (K,) precision@k per class.
    """
    _, indices = retrieve(class_embeddings, gallery, k)  # (K, k)
    hits = gallery_labels[indices] == torch.arange(len(class_embeddings))[:, None]  # (K, k)
    return hits.float().mean(dim=1)


@torch.no_grad()
def evaluate_clip(model: CLIP, tokenizer: WordTokenizer, test_set: ImageDataset,
                  class_names: Sequence[str] = FASHION_MNIST_CAPTION_NAMES, k: int = 10) -> dict:
    """Zero-shot accuracy with each training template, the training-template ensemble, each held-out
    template and the held-out ensemble; per-class accuracy of the training ensemble; precision@k.

    Returns:
        a JSON-ready dict.
    """
    images = image_embeddings(model, test_set.images)  # (N, E)
    labels = test_set.labels

    def accuracy(templates: Sequence[str]) -> tuple[float, torch.Tensor]:
        pred = zero_shot_logits(images, class_text_embeddings(model, tokenizer, class_names, templates)).argmax(1)
        return (pred == labels).float().mean().item(), pred

    single = {t: accuracy([t])[0] for t in TRAIN_TEMPLATES}
    held_out = {t: accuracy([t])[0] for t in HELD_OUT_TEMPLATES}
    ensemble, pred = accuracy(TRAIN_TEMPLATES)
    per_class = [(pred[labels == c] == c).float().mean().item() for c in range(len(class_names))]
    precision = retrieval_precision(class_text_embeddings(model, tokenizer, class_names, TRAIN_TEMPLATES),
                                    images, labels, k)
    return {"zero_shot_single": single, "zero_shot_ensemble": ensemble,
            "zero_shot_held_out_single": held_out, "zero_shot_held_out_ensemble": accuracy(HELD_OUT_TEMPLATES)[0],
            "zero_shot_per_class": per_class, f"text_to_image_precision_at_{k}": precision.tolist(),
            "logit_scale": model.scale().item()}


BUDGET_SETTINGS = {
    # quick: the notebook's live run and CI (about 40 s of CPU time). No augmentation: in runs this
    # short, random crops and flips slow learning down (zero-shot 56% with them, 69% without, quick budget).
    "quick": dict(model=CLIPConfig(image_depth=3, text_depth=1), train_size=6000,
                  pretrain=PretrainConfig(epochs=3, batch_size=64, lr=2e-3, warmup_epochs=0.5, augment=False),
                  seeds=(0,), test_size=2000),
    # full: the committed result (240k pairs seen per seed at 350-480 img/s on one core: 8-12 min per seed,
    # 25-35 min for the 3 seeds)
    "full": dict(model=CLIPConfig(), train_size=60000,
                 pretrain=PretrainConfig(epochs=4, batch_size=128, lr=2e-3, warmup_epochs=0.5, augment=False),
                 seeds=(0, 1, 2), test_size=None),
}


def trained_clip(results_path: "str | Path", seed: int = 0) -> CLIP:
    """The CLIP model trained by an experiment run (``run_dir(results_path) / f'seed{seed}'``)."""
    path = run_dir(results_path) / f"seed{seed}" / "model.safetensors"
    model = load_checkpoint(path)
    if not isinstance(model, CLIP):
        raise CheckpointError(f"{path} holds a {type(model).__name__}, not a CLIP model.")
    return model


def run(budget: str = "quick", results_path: "str | Path | None" = None, progress: bool = True,
        seeds: "list[int] | None" = None, device: str = "cpu") -> ResultsFile:
    """Train CLIP on Fashion-MNIST image-caption pairs (one run per seed) and evaluate it zero-shot.

    Args:
        budget: 'quick' or 'full' (see :data:`BUDGET_SETTINGS`).
        results_path: the results JSON (default ``default_results_path('clip', budget)``); checkpoints
            go in ``run_dir(results_path)/seed<N>/``. Finished seeds are skipped.
        progress: tqdm bars.
        seeds: default: the budget's.
        device: only 'cpu' is supported here.
    Returns:
        the ResultsFile, one record per seed (run_id ``clip/seed=<N>``).
    """
    check_budget(budget)
    if str(device) != "cpu":
        raise ConfigError("The CLIP experiment runs on the CPU only (device='cpu').")
    settings = BUDGET_SETTINGS[budget]
    results = ResultsFile(results_path or default_results_path(EXPERIMENT, budget), EXPERIMENT)
    train_set = fashion_mnist("train", subset=settings["train_size"], seed=0)
    test_set = fashion_mnist("test", subset=settings["test_size"], seed=0)
    cfg: CLIPConfig = settings["model"]
    for seed in (settings["seeds"] if seeds is None else seeds):
        run_id = f"clip/seed={seed}"
        if results.get(run_id) is not None:
            continue
        pre = dataclasses.replace(settings["pretrain"], seed=seed)
        seed_everything(seed)
        model = CLIP(cfg)
        tokenizer = model.tokenizer()
        captions = caption_table(tokenizer, FASHION_MNIST_CAPTION_NAMES, TRAIN_TEMPLATES)  # (K*T, L)
        num_templates = len(TRAIN_TEMPLATES)

        def batch_loss(model: CLIP, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            images = train_set.images[idx]
            if pre.augment:
                images = augment_batch(images, gen)
            template = torch.randint(num_templates, (len(idx),), generator=gen)  # a fresh caption each time
            ids = captions[train_set.labels[idx] * num_templates + template]  # (b, L)
            return clip_loss(*model(preprocess(images), ids))

        t0 = time.perf_counter()
        history = pretrain(model, len(train_set), batch_loss, pre, out_dir=run_dir(results.path) / f"seed{seed}",
                           progress=progress, run_info={"model": config_to_dict(cfg), "data": train_set.name},
                           desc=f"CLIP seed {seed}")
        train_seconds = time.perf_counter() - t0
        metrics = evaluate_clip(model, tokenizer, test_set)
        results.add({"run_id": run_id, "experiment": EXPERIMENT, "budget": budget, "seed": seed,
                     "model": config_to_dict(cfg), "params": count_parameters(model),
                     "train_size": len(train_set), "test_size": len(test_set),
                     "pretrain": dataclasses.asdict(pre), "images_seen": pre.epochs * len(train_set),
                     "history": history, "final_loss": history[-1]["loss"], **metrics,
                     "train_templates": list(TRAIN_TEMPLATES), "held_out_templates": list(HELD_OUT_TEMPLATES),
                     "wall_seconds": round(train_seconds, 2), "commit": git_commit(),
                     "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "torch": torch.__version__})
    return results


def zero_shot_table(records: "list[dict]") -> dict:
    """Zero-shot accuracies across seeds, for plotting.

    Returns:
        {prompting: [accuracy per seed]} with keys 'single: <template>' (each training template),
        'ensemble (train templates)', 'held-out: <template>', 'ensemble (held-out templates)'.
    """
    runs = sorted((r for r in records if r["run_id"].startswith("clip/")), key=lambda r: r["seed"])
    table: dict[str, list] = {}
    for r in runs:
        for t, acc in r["zero_shot_single"].items():
            table.setdefault(f"single: {t}", []).append(acc)
        table.setdefault("ensemble (train templates)", []).append(r["zero_shot_ensemble"])
        for t, acc in r["zero_shot_held_out_single"].items():
            table.setdefault(f"held-out: {t}", []).append(acc)
        table.setdefault("ensemble (held-out templates)", []).append(r["zero_shot_held_out_ensemble"])
    return table


# ---- the real CLIP (open_clip), only when it can be had without waiting --------------------------

def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def pretrained_clip_status(model_name: str = "ViT-B-32", tag: str = "laion2b_s34b_b79k",
                           timeout: float = 3.0) -> dict[str, Any]:
    """Whether the real pretrained CLIP can be loaded now, without a download that might hang.

    Checks, in order: ``import open_clip``; the weights in the local Hugging Face cache; if not,
    whether the hub answers within ``timeout`` seconds (never when ``HF_HUB_OFFLINE`` is set).

    Returns:
        {'available': bool, 'source': local file path, 'hub' or None, 'reason': a sentence}.
    """
    try:
        import open_clip  # noqa: F401
    except ImportError:
        return {"available": False, "source": None,
                "reason": "open_clip is not installed (pip install open_clip_torch to see the real CLIP)."}
    try:
        from huggingface_hub import try_to_load_from_cache

        cfg = open_clip.get_pretrained_cfg(model_name, tag)
        repo = (cfg or {}).get("hf_hub", "").strip("/")
        for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            cached = try_to_load_from_cache(repo, filename) if repo else None
            if isinstance(cached, str) and os.path.isfile(cached):
                return {"available": True, "source": cached, "reason": f"weights found in the local cache ({cached})."}
    except Exception as err:  # an open_clip / hub version with another layout: fall through to the network
        cache_note = f" (cache check failed: {err})"
    else:
        cache_note = ""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return {"available": False, "source": None,
                "reason": f"HF_HUB_OFFLINE is set and the {model_name}/{tag} weights are not cached{cache_note}."}
    if not _hub_reachable(timeout=timeout):
        return {"available": False, "source": None,
                "reason": f"offline: huggingface.co did not answer within {timeout:g} s, and the {model_name}/{tag} "
                          f"weights are not cached{cache_note}."}
    return {"available": True, "source": "hub",
            "reason": f"open_clip installed and the hub reachable: {model_name}/{tag} will be downloaded once (~600 MB)."}


def load_pretrained_clip(model_name: str = "ViT-B-32", tag: str = "laion2b_s34b_b79k", timeout: float = 3.0):
    """The real CLIP from open_clip: ``(model, tokenizer, mean, std)``, or PretrainedUnavailableError.

    Raises:
        PretrainedUnavailableError: open_clip missing, offline without cached weights, or loading failed;
            the message says which.
    """
    status = pretrained_clip_status(model_name, tag, timeout)
    if not status["available"]:
        raise PretrainedUnavailableError(status["reason"])
    import open_clip

    pretrained = tag if status["source"] == "hub" else status["source"]
    try:
        model, _, transform = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
    except Exception as err:
        raise PretrainedUnavailableError(f"open_clip could not load {model_name}/{tag}: {err}") from err
    normalize = next((t for t in getattr(transform, "transforms", []) if hasattr(t, "mean")), None)
    mean = tuple(normalize.mean) if normalize is not None else (0.48145466, 0.4578275, 0.40821073)
    std = tuple(normalize.std) if normalize is not None else (0.26862954, 0.26130258, 0.27577711)
    return model.eval(), open_clip.get_tokenizer(model_name), mean, std


@torch.no_grad()
def pretrained_zero_shot(model, tokenizer, mean: Sequence[float], std: Sequence[float], images: torch.Tensor,
                         class_names: Sequence[str], templates: Sequence[str], size: int = 224,
                         invert: bool = True, batch_size: int = 64) -> torch.Tensor:
    """Zero-shot logits of the real CLIP on grey uint8 images (N, 1, h, w).

    The images are inverted (dark garment on white, like a shop photo) if ``invert``, repeated to three
    channels, resized to ``size`` and normalised with the model's mean and std; the class embeddings are
    the ensemble of ``templates``.

    Returns:
        (N, K) cosine similarities.
    """
    if images.ndim != 4 or images.dtype != torch.uint8:
        raise InputShapeError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}.")
    if len(templates) == 0 or len(class_names) == 0:
        raise InputShapeError("pretrained_zero_shot needs at least one class name and one template.")
    prompts = [fill_template(t, n) for n in class_names for t in templates]
    text = F.normalize(model.encode_text(tokenizer(prompts)).float(), dim=-1)  # (K*T, E)
    text = F.normalize(text.reshape(len(class_names), len(templates), -1).mean(1), dim=-1)  # (K, E)
    mean_t, std_t = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].float() / 255.0
        x = (1.0 - x) if invert else x
        x = F.interpolate(x.expand(-1, 3, -1, -1), size=(size, size), mode="bicubic", align_corners=False)
        x = (x.clamp(0, 1) - mean_t) / std_t
        out.append(F.normalize(model.encode_image(x).float(), dim=-1) @ text.T)
    return torch.cat(out)
