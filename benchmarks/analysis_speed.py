"""What it costs to look inside the shipped ViT: recording attention, mean attention distance, rollout.

The model is the shipped Fashion-MNIST ViT (``data/checkpoints/fmnist-vit/model.safetensors``, loaded
with ``vitlab.load_checkpoint``); if that file is missing, an untrained ``build_model('fmnist-vit')``
of the same shape stands in (the timings depend on the shape, not on the weights). The inputs are the
first ``--images`` (default 1,000) images of the class-balanced Fashion-MNIST test subset, preprocessed,
in batches of ``--batch-size``.

Timed, each as the median over ``--repeats`` of the whole set of images:

- forward, fused: eval mode, ``torch.inference_mode()``, ``F.scaled_dot_product_attention``;
- forward, explicit: the same with the explicit softmax path and no hooks (what recording switches to);
- forward, recorded: the forward inside ``vitlab.record_attention`` (explicit path, hooks, the maps of
  every batch kept and concatenated);
- mean attention distance of every layer, head and image, averaged over images -> (L, H);
- attention rollout of every image (mean head fusion) and its CLS map on the patch grid.

The three forwards run in turn within each repeat, in an order that rotates from repeat to repeat, so
background load falls on all of them alike; the ratio of each to the plain forward is the median of the
per-repeat ratios. The issue's targets are printed beside the figures (recorded forward at most 1.5x
the plain one; distance + rollout of 1,000 images at most 3 s on 2 CPU cores); nothing is asserted.

Example::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/analysis_speed.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

import vitlab
from vitlab.cli import positive_int  # the CLI's argparse types
from vitlab.analysis import attention_rollout, mean_attention_distance, record_attention, rollout_to_map
from vitlab.data import data_dir, fashion_mnist, preprocess

RECORDING_TARGET = 1.5  # recorded forward / plain forward, at most
ANALYSIS_TARGET_S = 3.0  # distance + rollout of 1,000 images, seconds on 2 CPU cores, at most


def default_checkpoint() -> Path:
    """The shipped model: ``data/checkpoints/fmnist-vit/model.safetensors``."""
    return data_dir() / "checkpoints" / "fmnist-vit" / "model.safetensors"


def load_model(path: Path, seed: int = 0) -> tuple[nn.Module, str]:
    """The checkpoint's model in eval mode with fused attention, or an untrained fmnist-vit if it is missing.

    Args:
        path: a vitlab checkpoint.
        seed: seed for the untrained stand-in's weights.
    Returns:
        (model, a one-line description of where it came from).
    """
    if path.is_file():
        model = vitlab.load_checkpoint(path)
        epochs = len(model.checkpoint_extra.get("history", []))
        where = f"{path} ({epochs} epoch(s) trained)"
    else:
        vitlab.seed_everything(seed)
        model = vitlab.build_model("fmnist-vit")
        where = f"untrained build_model('fmnist-vit') ({path} not found)"
    model.eval()
    model.fused_attn = True
    return model, where


def forward_all(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """The model on every batch (B, C, H, W) under ``torch.inference_mode()``; the logits are dropped."""
    with torch.inference_mode():
        for batch in batches:
            model(batch)  # (B, num_classes)


def explicit_forward_all(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """:func:`forward_all` with the explicit softmax path and no hooks (fused attention put back after)."""
    model.fused_attn = False
    try:
        forward_all(model, batches)
    finally:
        model.fused_attn = True


def recorded_forward_all(model: nn.Module, batches: list[torch.Tensor]) -> list[torch.Tensor]:
    """:func:`forward_all` inside ``record_attention``; returns its maps, per layer (B_total, H, N, N)."""
    with torch.inference_mode(), record_attention(model) as recorder:
        for batch in batches:
            model(batch)
    return recorder.maps


def analyse(maps: list[torch.Tensor], patch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean attention distance per layer and head, averaged over images, and every image's rollout map.

    Args:
        maps: per-layer attention (B, H, N, N), first layer first.
        patch_size: pixels per patch side.
    Returns:
        distance (L, H) in pixels; rollout CLS maps (B, rows, cols).
    """
    distance = torch.stack([mean_attention_distance(attn, patch_size=patch_size).mean(dim=0)  # (H,)
                            for attn in maps])  # (L, H)
    rollout_maps = rollout_to_map(attention_rollout(maps))  # (B, rows, cols)
    return distance, rollout_maps


def timed(step: Callable[[], object]) -> tuple[float, object]:
    """(wall-clock seconds, result) of one call."""
    start = time.perf_counter()
    result = step()
    return time.perf_counter() - start, result




def parse_args(argv: "list[str] | None" = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time a plain forward of the shipped Fashion-MNIST ViT against the forward inside "
                    "record_attention, and the mean attention distance + rollout of all its images.")
    parser.add_argument("--checkpoint", type=Path, default=default_checkpoint(),
                        help="vitlab checkpoint (default: the shipped data/checkpoints/fmnist-vit/model.safetensors; "
                             "an untrained fmnist-vit if it is missing)")
    parser.add_argument("--images", type=positive_int, default=1000,
                        help="Fashion-MNIST test images (default 1000)")
    parser.add_argument("--batch-size", type=positive_int, default=250, help="images per forward (default 250)")
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="timed repeats of everything; medians are reported (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repeats first (default 1)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch.set_num_threads (default: leave torch's default)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the results to this JSON file")
    return parser.parse_args(argv)


def main(argv: "list[str] | None" = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model, where = load_model(args.checkpoint)
    cfg = model.cfg
    images = preprocess(fashion_mnist("test", subset=args.images).images)  # (n, 1, 28, 28)
    batches = list(images.split(args.batch_size))

    forwards: dict[str, Callable[[], object]] = {
        "fused": lambda: forward_all(model, batches),
        "explicit": lambda: explicit_forward_all(model, batches),
        "recorded": lambda: recorded_forward_all(model, batches),
    }
    for _ in range(args.warmup):
        for step in forwards.values():
            step()
        analyse(recorded_forward_all(model, batches), cfg.patch_size)

    seconds: dict[str, list[float]] = {name: [] for name in [*forwards, "distance", "rollout", "analysis"]}
    order = list(forwards)
    for repeat in range(args.repeats):
        maps = None
        for name in order[repeat % 3:] + order[: repeat % 3]:  # rotate the order every repeat
            elapsed, result = timed(forwards[name])
            seconds[name].append(elapsed)
            if name == "recorded":
                maps = result
        distance_s, _ = timed(lambda: [mean_attention_distance(a, patch_size=cfg.patch_size).mean(0) for a in maps])
        rollout_s, _ = timed(lambda: rollout_to_map(attention_rollout(maps)))
        analysis_s, (distance, rollout_maps) = timed(lambda: analyse(maps, cfg.patch_size))
        seconds["distance"].append(distance_s)
        seconds["rollout"].append(rollout_s)
        seconds["analysis"].append(analysis_s)
    ratios = {name: statistics.median(s / p for s, p in zip(seconds[name], seconds["fused"]))
              for name in forwards}
    medians = {name: statistics.median(values) for name, values in seconds.items()}

    print(f"model: {where}")
    print(f"fmnist-vit: depth {cfg.depth}, heads {cfg.heads}, dim {cfg.dim}, {cfg.grid_size}x{cfg.grid_size} patches; "
          f"{len(images)} images in batches of {args.batch_size}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s); median of {args.repeats} repeat(s) after {args.warmup} warm-up")
    print(f"outputs: distance {tuple(distance.shape)}, rollout maps {tuple(rollout_maps.shape)}, "
          f"recorded maps {len(maps)} x {tuple(maps[0].shape)}")
    print()
    rows = [
        ("forward, fused attention", "fused", f"{ratios['fused']:.2f}x", ""),
        ("forward, explicit attention, no hooks", "explicit", f"{ratios['explicit']:.2f}x", ""),
        ("forward inside record_attention", "recorded", f"{ratios['recorded']:.2f}x",
         f"<= {RECORDING_TARGET}x"),
        ("mean attention distance, all layers", "distance", "", ""),
        ("attention rollout + CLS maps", "rollout", "", ""),
        ("distance + rollout (one call)", "analysis", "", f"<= {ANALYSIS_TARGET_S:.0f} s on 2 cores"),
    ]
    print(f"{'step':<40} {'median s':>9} {'min s':>7} {'vs fused':>9}  target")
    for label, key, ratio, target in rows:
        print(f"{label:<40} {medians[key]:>9.3f} {min(seconds[key]):>7.3f} {ratio:>9}  {target}")

    if args.json is not None:
        report = {"model": where, "images": len(images), "batch_size": args.batch_size,
                  "threads": torch.get_num_threads(), "torch": torch.__version__, "repeats": args.repeats,
                  "seconds": seconds, "median_seconds": medians, "ratio_to_fused": ratios,
                  "targets": {"recorded_ratio": RECORDING_TARGET, "analysis_seconds": ANALYSIS_TARGET_S}}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
