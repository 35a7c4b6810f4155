"""Speed of vitlab's ViT against timm's VisionTransformer: the same function, in one process.

vitlab's model is built from a preset; timm's is made from it with ``vitlab.to_timm`` (same weights),
and the script checks that the two give the same logits before it times anything. Both run in fp32 on
the CPU with fused attention (``F.scaled_dot_product_attention``) on the same input tensors.

Two modes, each in images per second:

- inference: eval mode, ``torch.inference_mode()``, forward only;
- training: train mode, forward + cross-entropy + backward + AdamW step.

After ``--warmup`` untimed steps each, the two models take turns of ``--steps`` timed steps (vitlab,
timm, timm, vitlab, vitlab, timm, ...: the order flips every repeat). The table reports the median
images/s of each model over the ``--repeats`` turns and the median of the per-repeat ratios
vitlab/timm: the two figures of a pair are taken seconds apart, so load from other processes falls on
both models alike. Next to the ratio: the quartiles of the per-repeat ratios (their spread), and the
ratio from this process's CPU time instead of wall-clock time (a cross-check on a busy machine).

``--self-check`` also times vitlab against an identical copy of itself, in the same way. That ratio is
1 in truth, so how far it strays is the noise floor of the measurement on this machine.

Example (the figures in benchmarks/README.md)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/speed_vs_timm.py --preset fmnist-vit --threads 1
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/speed_vs_timm.py --preset vit-ti16 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import timm
import torch
import torch.nn.functional as F
from torch import nn

import vitlab
from vitlab.cli import positive_int, non_negative_int  # the CLI's argparse types
from vitlab.config import ViTConfig, config_to_dict

# Batch sizes, steps per turn and repeats that keep one preset's run to a few minutes on one busy CPU
# thread. Turns are one step long and repeats many, so a pair's two turns see the same background load.
PRESET_DEFAULTS: dict[str, dict[str, int]] = {
    "fmnist-vit": dict(inference_batch_size=512, training_batch_size=256, steps=1, repeats=21),
    "vit-ti16": dict(inference_batch_size=16, training_batch_size=8, steps=1, repeats=11),
}
FALLBACK_DEFAULTS = dict(inference_batch_size=16, training_batch_size=8, steps=1, repeats=11)
MAX_LOGIT_DIFFERENCE = 1e-5  # the two models must be the same function (fp32)
MODES = ("inference", "training")


def vit_presets() -> list[str]:
    """Names of the presets that build a ViT (the ones this benchmark accepts)."""
    return sorted(name for name, cfg in vitlab.PRESETS.items() if isinstance(cfg, ViTConfig))


def build_pair(preset: str, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """vitlab's ViT for ``preset`` and timm's VisionTransformer holding the same weights.

    Both have fused attention switched on and are returned in eval mode.

    Args:
        preset: a ViT preset name, e.g. ``'fmnist-vit'``.
        seed: seed for vitlab's weight initialisation.
    Returns:
        (vitlab_model, timm_model).
    """
    vitlab.seed_everything(seed)
    ours = vitlab.build_model(preset).eval()
    ours.fused_attn = True
    theirs = vitlab.to_timm(ours).eval()
    for block in theirs.blocks:
        block.attn.fused_attn = True
    return ours, theirs


def max_logit_difference(ours: nn.Module, theirs: nn.Module, images: torch.Tensor) -> float:
    """Largest absolute difference between the two models' logits on ``images`` (B, C, H, W)."""
    ours.eval()
    theirs.eval()
    with torch.inference_mode():
        return (ours(images) - theirs(images)).abs().max().item()


def inference_step(model: nn.Module, images: torch.Tensor) -> Callable[[], None]:
    """One forward pass of ``images`` (B, C, H, W) under ``torch.inference_mode()``, as a callable.

    The caller puts the model in eval mode first.
    """

    def step() -> None:
        with torch.inference_mode():
            model(images)  # (B, num_classes)

    return step


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                  labels: torch.Tensor) -> Callable[[], None]:
    """One training step (forward, cross-entropy, backward, optimizer step), as a callable.

    Args:
        model: the model to train; the caller puts it in train mode first.
        optimizer: its optimizer (AdamW here).
        images: (B, C, H, W) input batch.
        labels: (B,) class indices.
    """

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()

    return step


def time_steps(step: Callable[[], None], steps: int) -> tuple[float, float]:
    """Run ``step`` ``steps`` times; return (wall-clock seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return time.perf_counter() - wall, time.process_time() - cpu


def quartiles(values: list[float]) -> tuple[float, float]:
    """First and third quartiles of ``values`` (inclusive method: both lie between min and max)."""
    if len(values) < 2:
        return values[0], values[0]
    first, _, third = statistics.quantiles(values, n=4, method="inclusive")
    return first, third


def compare(step_ours: Callable[[], None], step_reference: Callable[[], None], *, batch_size: int, steps: int,
            warmup: int, repeats: int) -> dict:
    """Time two step functions in turn, flipping the order every repeat (AB, BA, AB, ...).

    Each model first runs ``warmup`` untimed steps; then each repeat times ``steps`` steps of both,
    so a pair's two figures are taken seconds apart and see the same background load.

    Args:
        step_ours: one step of vitlab's model.
        step_reference: one step of the model it is compared with (timm's, or vitlab's copy).
        batch_size: images per step (to turn seconds into images/s).
        steps: timed steps per model per repeat.
        warmup: untimed steps per model before the first repeat.
        repeats: number of timed pairs.
    Returns:
        dict with the medians over repeats (``vitlab_images_per_s``, ``reference_images_per_s``), the
        median of the per-repeat ratios vitlab/reference (``ratio``, from wall-clock time;
        ``cpu_time_ratio``, from this process's CPU time), the quartiles and range of the wall-clock
        ratios, and the per-repeat figures.
    """
    for _ in range(warmup):
        step_ours()
        step_reference()
    images = steps * batch_size
    ours_runs, reference_runs, ratios, cpu_ratios = [], [], [], []
    for repeat in range(repeats):
        if repeat % 2 == 0:
            ours_wall, ours_cpu = time_steps(step_ours, steps)
            reference_wall, reference_cpu = time_steps(step_reference, steps)
        else:
            reference_wall, reference_cpu = time_steps(step_reference, steps)
            ours_wall, ours_cpu = time_steps(step_ours, steps)
        ours_runs.append(images / ours_wall)
        reference_runs.append(images / reference_wall)
        ratios.append(reference_wall / ours_wall)  # = vitlab img/s / reference img/s
        cpu_ratios.append(reference_cpu / ours_cpu if ours_cpu > 0 and reference_cpu > 0 else float("nan"))
    first_quartile, third_quartile = quartiles(ratios)
    return {
        "batch_size": batch_size,
        "vitlab_images_per_s": statistics.median(ours_runs),
        "reference_images_per_s": statistics.median(reference_runs),
        "ratio": statistics.median(ratios),
        "ratio_q1": first_quartile,
        "ratio_q3": third_quartile,
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "cpu_time_ratio": statistics.median(cpu_ratios),
        "vitlab_runs": ours_runs,
        "reference_runs": reference_runs,
        "ratios": ratios,
        "cpu_time_ratios": cpu_ratios,
    }


def time_mode(mode: str, ours: nn.Module, reference: nn.Module, images: torch.Tensor, labels: torch.Tensor,
              **settings: int) -> dict:
    """Compare ``ours`` with ``reference`` in one mode ('inference' or 'training') on one batch.

    Args:
        mode: 'inference' (eval, forward only) or 'training' (train, forward + backward + AdamW step).
        ours: vitlab's model.
        reference: timm's model, or a copy of ours.
        images: (B, C, H, W) batch.
        labels: (B,) class indices (used in training).
        **settings: ``steps``, ``warmup``, ``repeats`` for :func:`compare`.
    Returns:
        :func:`compare`'s dict with ``mode`` added.
    """
    if mode == "inference":
        ours.eval()
        reference.eval()
        steps = inference_step(ours, images), inference_step(reference, images)
    elif mode == "training":
        ours.train()
        reference.train()
        steps = tuple(training_step(model, torch.optim.AdamW(model.parameters(), lr=1e-4), images, labels)
                      for model in (ours, reference))
    else:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    return {"mode": mode, **compare(*steps, batch_size=images.shape[0], **settings)}


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()






def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Images/s of vitlab's ViT and timm's VisionTransformer (same weights, same inputs, "
                    "CPU, fp32, fused attention), inference and training, interleaved.")
    parser.add_argument("--preset", default="fmnist-vit", choices=vit_presets(), metavar="NAME",
                        help=f"ViT preset to build (default fmnist-vit; one of {', '.join(vit_presets())})")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="batch size for both modes (default: per preset, fmnist-vit 512 inference / "
                             "256 training, vit-ti16 16 / 8)")
    parser.add_argument("--inference-batch-size", type=positive_int, default=None,
                        help="batch size for inference only (overrides --batch-size)")
    parser.add_argument("--training-batch-size", type=positive_int, default=None,
                        help="batch size for training only (overrides --batch-size)")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="timed steps per model per repeat (default: per preset, 1)")
    parser.add_argument("--warmup", type=non_negative_int, default=2,
                        help="untimed steps per model and mode before timing (default 2)")
    parser.add_argument("--repeats", type=positive_int, default=None,
                        help="timed (vitlab, timm) pairs per mode; medians are reported (default: per preset, "
                             "fmnist-vit 21, vit-ti16 11)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch.set_num_threads (default: leave torch's default)")
    parser.add_argument("--self-check", action="store_true",
                        help="also time vitlab against an identical copy of itself: the noise floor")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed for weights and inputs (default 0)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    defaults = PRESET_DEFAULTS.get(args.preset, FALLBACK_DEFAULTS)
    args.inference_batch_size = args.inference_batch_size or args.batch_size or defaults["inference_batch_size"]
    args.training_batch_size = args.training_batch_size or args.batch_size or defaults["training_batch_size"]
    args.steps = args.steps or defaults["steps"]
    args.repeats = args.repeats or defaults["repeats"]
    return args


def format_table(results: list[dict], reference: str = "timm") -> str:
    """The results as a fixed-width text table.

    Columns: mode, batch, vitlab img/s, reference img/s, median ratio vitlab/reference, the ratios'
    quartiles, and the median CPU-time ratio.
    """
    lines = [f"{'mode':<10} {'batch':>5} {'vitlab img/s':>13} {reference + ' img/s':>11} "
             f"{'vitlab/' + reference:>12} {'quartiles':>13} {'CPU-time ratio':>15}"]
    for row in results:
        spread = f"{row['ratio_q1']:.3f}-{row['ratio_q3']:.3f}"
        lines.append(
            f"{row['mode']:<10} {row['batch_size']:>5} {row['vitlab_images_per_s']:>13.1f} "
            f"{row['reference_images_per_s']:>11.1f} {row['ratio']:>12.3f} {spread:>13} "
            f"{row['cpu_time_ratio']:>15.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cfg = vitlab.get_preset(args.preset)
    ours, theirs = build_pair(args.preset, seed=args.seed)

    generator = torch.Generator().manual_seed(args.seed)
    largest = max(args.inference_batch_size, args.training_batch_size)
    images = torch.randn(largest, cfg.in_chans, cfg.img_size, cfg.img_size, generator=generator)  # (B, C, H, W)
    labels = torch.randint(0, max(cfg.num_classes, 1), (largest,), generator=generator)  # (B,)

    difference = max_logit_difference(ours, theirs, images[: min(largest, 8)])
    if not difference <= MAX_LOGIT_DIFFERENCE:
        raise SystemExit(f"vitlab and timm disagree: max |logit difference| = {difference:.2e} > "
                         f"{MAX_LOGIT_DIFFERENCE:.0e}, so timing them would compare different functions.")

    print(f"preset {args.preset}: {cfg.img_size}x{cfg.img_size}x{cfg.in_chans}, patch {cfg.patch_size}, "
          f"dim {cfg.dim}, depth {cfg.depth}, heads {cfg.heads}, {vitlab.count_parameters(ours):,} parameters")
    print(f"torch {torch.__version__}, timm {timm.__version__}, {torch.get_num_threads()} thread(s), "
          f"CPU: {cpu_name()}")
    print(f"same function: max |logit difference| = {difference:.1e}; fp32, fused attention; "
          f"{args.warmup} warm-up steps, then {args.repeats} interleaved repeats x {args.steps} step(s); medians")

    settings = dict(steps=args.steps, warmup=args.warmup, repeats=args.repeats)
    batch_sizes = {"inference": args.inference_batch_size, "training": args.training_batch_size}
    results, noise_floor = [], []
    for mode in MODES:
        size = batch_sizes[mode]
        results.append(time_mode(mode, ours, theirs, images[:size], labels[:size], **settings))
        if args.self_check:  # the copy is taken now, so both start from the same weights
            noise_floor.append(time_mode(mode, ours, copy.deepcopy(ours), images[:size], labels[:size], **settings))

    print()
    print(format_table(results, reference="timm"))
    if args.self_check:
        print()
        print("noise floor: vitlab against an identical copy of itself (truly 1.000)")
        print(format_table(noise_floor, reference="copy"))

    if args.json is not None:
        report = {
            "preset": args.preset,
            "model": config_to_dict(cfg),
            "parameters": vitlab.count_parameters(ours),
            "torch": torch.__version__,
            "timm": timm.__version__,
            "threads": torch.get_num_threads(),
            "cpu": cpu_name(),
            "steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "max_logit_difference": difference,
            "results": [{"reference": "timm", **row} for row in results],
            "noise_floor": [{"reference": "vitlab copy", **row} for row in noise_floor],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
