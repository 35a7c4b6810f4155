"""Time to accuracy: how many minutes of training each recipe needs to reach 80%, 85%, 90% (...) test accuracy.

A recipe is a preset and a :class:`vitlab.TrainConfig` (the whole schedule: a cosine decay planned over
``epochs``). Each recipe trains once, on all 60,000 Fashion-MNIST training images by default, and is
evaluated on the test set after every epoch. The time to a target is the optimisation time
(``train_seconds`` in the training history, the evaluations left out) summed up to the first epoch whose
test accuracy reaches it; "not reached" if no epoch of the schedule does.

Recipes (``--recipes``):

- ``vit-p7``: lesson 03's classroom ViT (``fmnist-vit-p7``: patch 7, 16 tokens, 4 blocks, D 64), batch 128,
  AdamW at 2e-3, half an epoch of warm-up, no augmentation;
- ``resnet-tiny``: lesson 03's CNN (``fmnist-resnet-tiny``: ResNet-18 layout at width 8), the same recipe;
- ``vit-p4``: the data-scale experiment's ViT (``fmnist-vit-tiny``: patch 4, 49 tokens) with its full-budget
  recipe (``vitlab.experiments.common.recipe``: 10% warm-up, random crop + flip), planned over 56 epochs
  (3 million images, the experiment's cap). Long: the data-scale run of this recipe on 54,000 images
  took 46 minutes on one thread (see ``benchmarks/README.md``).

``--epochs`` replaces every chosen recipe's schedule length (the cosine decay follows it, so a shorter
schedule is a different recipe, not a prefix of the longer one). Nothing is asserted: this is a
measurement, not a test.

Example::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/time_to_accuracy.py --threads 2 --json tta.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

import vitlab
from vitlab.cli import positive_int  # the CLI's argparse types
from vitlab.data import fashion_mnist
from vitlab.experiments.common import recipe

CLASSROOM = vitlab.TrainConfig(epochs=10, batch_size=128, lr=2e-3, warmup_epochs=0.5, augment=False, seed=0)
RECIPES = {
    "vit-p7": ("fmnist-vit-p7", CLASSROOM),
    "resnet-tiny": ("fmnist-resnet-tiny", CLASSROOM),
    "vit-p4": ("fmnist-vit-tiny", recipe(epochs=56, seed=0)),
}
DEFAULT_RECIPES = ("vit-p7", "resnet-tiny")
DEFAULT_TARGETS = (0.80, 0.85, 0.90, 0.91)


def accuracy(text: str) -> float:
    """argparse type: a test accuracy in (0, 1), e.g. 0.9."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give an accuracy such as 0.9") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not an accuracy in (0, 1); give one such as 0.9")
    return value


def time_to_targets(history: list[dict], targets: "tuple[float, ...] | list[float]") -> dict:
    """For each target: the epoch whose test accuracy first reaches it and the optimisation seconds up to
    and including that epoch, or None if no epoch does.

    >>> h = [{"train_seconds": 10.0, "test_accuracy": 0.7}, {"train_seconds": 12.0, "test_accuracy": 0.86}]
    >>> time_to_targets(h, [0.8, 0.9])
    {0.8: {'epoch': 2, 'seconds': 22.0}, 0.9: None}
    """
    reached, elapsed = {target: None for target in targets}, 0.0
    for epoch, record in enumerate(history, start=1):
        elapsed += record["train_seconds"]
        for target in targets:
            if reached[target] is None and record["test_accuracy"] >= target:
                reached[target] = {"epoch": epoch, "seconds": elapsed}
    return reached


def run_recipe(name: str, epochs: "int | None", train_set, test_set, progress: bool) -> dict:
    preset, cfg = RECIPES[name]
    if epochs is not None:
        cfg = replace(cfg, epochs=epochs, warmup_epochs=min(cfg.warmup_epochs, epochs / 2))
    vitlab.seed_everything(cfg.seed)
    model = vitlab.build_model(preset)
    result = vitlab.train(model, train_set, cfg, test_set=test_set, progress=progress)
    return {"recipe": name, "preset": preset, "params": vitlab.count_parameters(model), "train": asdict(cfg),
            "history": [{k: h[k] for k in ("epoch", "train_seconds", "seconds", "test_accuracy")}
                        for h in result.history]}


def format_minutes(hit: "dict | None") -> str:
    return "not reached" if hit is None else f"{hit['seconds'] / 60:.1f} min (ep {hit['epoch']})"


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(DEFAULT_RECIPES),
                        help=f"which recipes (default: {' '.join(DEFAULT_RECIPES)})")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help="schedule length for every chosen recipe (default: each recipe's own)")
    parser.add_argument("--targets", type=accuracy, nargs="+", default=list(DEFAULT_TARGETS),
                        help="test accuracies to time (default: 0.80 0.85 0.90 0.91)")
    parser.add_argument("--train-images", type=positive_int, default=None,
                        help="class-balanced training subset (default: all 60,000)")
    parser.add_argument("--test-images", type=positive_int, default=None,
                        help="class-balanced test subset evaluated after each epoch (default: all 10,000)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch.set_num_threads")
    parser.add_argument("--json", type=Path, default=None, help="also write every epoch's figures here")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    train_set = fashion_mnist("train", subset=args.train_images)
    test_set = fashion_mnist("test", subset=args.test_images)
    targets = sorted(set(args.targets))
    print(f"time to test accuracy: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}; {len(train_set):,} training images, "
          f"{len(test_set):,} test images; optimisation time only (evaluations left out)", flush=True)
    runs = []
    for name in args.recipes:
        start = time.perf_counter()
        run = run_recipe(name, args.epochs, train_set, test_set, progress=not args.quiet)
        run["reached"] = {str(t): hit for t, hit in time_to_targets(run["history"], targets).items()}
        runs.append(run)
        curve = ", ".join(f"{h['test_accuracy']:.1%}" for h in run["history"])
        print(f"{name} ({run['preset']}, {run['params']:,} parameters, {run['train']['epochs']} epochs, "
              f"{time.perf_counter() - start:.0f} s with evaluations): test accuracy by epoch {curve}", flush=True)

    print()
    print(f"{'recipe':12s} " + "".join(f"{f'to {t:.0%}':>22s}" for t in targets) + f"{'best':>10s}")
    for run in runs:
        best = max(h["test_accuracy"] for h in run["history"])
        print(f"{run['recipe']:12s} " + "".join(f"{format_minutes(run['reached'][str(t)]):>22s}" for t in targets)
              + f"{best:>10.2%}")
    if args.json is not None:
        args.json.write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                                         "train_images": len(train_set), "test_images": len(test_set),
                                         "targets": targets, "runs": runs}, indent=1) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
