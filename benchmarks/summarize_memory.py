"""Peak memory of a dataset-level attention summary: does ``vitlab.analysis.summarize`` stay bounded?

A randomly initialised model (default ViT-B/16 at 224 px, nothing downloaded) looks at ``--images`` random
images (default 256) through ``summarize(..., analyses=('distance', 'entropy', 'rollout'))`` in batches of
``--batch-size``. Reported: the process's peak resident memory (``resource.getrusage``), the memory the
model itself takes, and what keeping every attention map of every image would take instead. The issue's
target (under 2 GB for ViT-B/16 over 256 images) is printed beside it; nothing is asserted.

Example::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/summarize_memory.py
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch

import vitlab
from vitlab.analysis import summarize
from vitlab.cli import positive_int

TARGET_GB = 2.0


def peak_rss_gb() -> float:
    """The process's peak resident set size so far, in GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="vit-b16", help="a vitlab preset (default vit-b16)")
    parser.add_argument("--images", type=positive_int, default=256)
    parser.add_argument("--batch-size", type=positive_int, default=4)  # 16: 2.16 GB peak for ViT-B/16, 4: 1.40 GB
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    before = peak_rss_gb()
    model = vitlab.build_model(args.preset).eval()
    cfg = model.cfg
    model_gb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e9
    images = torch.randn(args.images, cfg.in_chans, cfg.img_size, cfg.img_size)
    tokens = cfg.num_patches + cfg.num_prefix_tokens
    all_maps_gb = args.images * cfg.depth * cfg.heads * tokens * tokens * 4 / 1e9
    start = time.perf_counter()
    out = summarize(model, images, batch_size=args.batch_size, progress=False)
    seconds = time.perf_counter() - start
    peak = peak_rss_gb()
    figures = {"preset": args.preset, "images": args.images, "batch_size": args.batch_size,
               "peak_rss_gb": round(peak, 3), "rss_before_model_gb": round(before, 3),
               "model_weights_gb": round(model_gb, 3), "all_maps_gb": round(all_maps_gb, 2),
               "seconds": round(seconds, 1), "threads": torch.get_num_threads(), "torch": torch.__version__,
               "distance_shape": list(out["distance"].shape)}
    print(f"{args.preset}: {args.images} images of {cfg.img_size}x{cfg.img_size} in batches of {args.batch_size}, "
          f"{seconds:.1f} s on {torch.get_num_threads()} thread(s)")
    print(f"  peak resident memory {peak:.2f} GB (the process before the model: {before:.2f} GB; the weights: "
          f"{model_gb:.2f} GB); target under {TARGET_GB:.0f} GB")
    print(f"  keeping every map of every image instead: {all_maps_gb:.1f} GB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
