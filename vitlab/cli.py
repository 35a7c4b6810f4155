"""The one command line: ``vitlab train | eval | info | reproduce``. Subcommands do what the notebooks do."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from .errors import VitlabError


def _whole_number(text: str, minimum: int, wording: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {wording}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {wording}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (shared by the CLI and the benchmark scripts)."""
    return _whole_number(text, 1, "a positive whole number")


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    return _whole_number(text, 0, "a whole number >= 0")



def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _preset(text: str) -> str:
    from .config import PRESETS

    if text not in PRESETS:
        raise argparse.ArgumentTypeError(f"unknown preset {text!r}; choose from {', '.join(sorted(PRESETS))}")
    return text


def _require_classifier(model, what: str) -> None:
    """`vitlab train` / `eval` handle image classifiers; MAE and CLIP have their own experiments."""
    if getattr(getattr(model, "cfg", None), "num_classes", None) is None:
        from .errors import ConfigError

        raise ConfigError(
            f"{what} is a {type(model).__name__}, not an image classifier: `vitlab train` and `vitlab eval` "
            "train and score classifiers. Pre-train it with its experiment instead, e.g. "
            "`vitlab reproduce mae` or `vitlab reproduce clip`.")


def _dataset(name: str, split: str, subset, seed: int):
    from . import data

    loaders = {"fashion-mnist": data.fashion_mnist, "mnist": data.mnist, "cifar10": data.cifar10}
    return loaders[name](split, subset=subset, seed=seed)


def cmd_train(args: argparse.Namespace) -> int:
    from . import build_model, count_parameters, seed_everything
    from .checkpoint import check_writable_folder
    from .training import TrainConfig, check_device, train

    check_device(args.device)  # before any data is read
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, min_lr=args.min_lr,
                      warmup_epochs=args.warmup_epochs, weight_decay=args.weight_decay,
                      label_smoothing=args.label_smoothing, augment=not args.no_augment,
                      grad_clip=args.grad_clip, seed=args.seed)
    check_writable_folder(args.out, "--out folder")  # a valid recipe, then a folder it can write: before any work
    train_set = _dataset(args.data, "train", args.subset, args.seed)
    test_set = _dataset(args.data, "test", None, args.seed)
    seed_everything(args.seed)
    model = build_model(args.preset)
    _require_classifier(model, f"Preset {args.preset!r}")
    print(f"{args.preset}: {count_parameters(model):,} parameters; training on {len(train_set):,} "
          f"{args.data} images for {args.epochs} epochs (seed {args.seed}) -> {args.out}")
    try:
        result = train(model, train_set, cfg, test_set=test_set, out_dir=args.out,
                       resume=not args.no_resume, progress=not args.quiet, device=args.device)
    except KeyboardInterrupt:  # the last finished epoch is in the checkpoint: only the epoch in progress is lost
        print(f"\nvitlab train: interrupted. Every finished epoch is saved in {args.out}; run the same command "
              "again to resume from the last one.", file=sys.stderr)
        return 130
    print(_json_line({k: round(v, 4) if isinstance(v, float) else v for k, v in result.final.items()}))
    return 0


def _json_line(data: dict) -> str:
    """One line of standard JSON: a NaN or infinite number is written as null (JSON has no NaN)."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}
    return json.dumps(clean, allow_nan=False)


def cmd_eval(args: argparse.Namespace) -> int:
    from . import count_parameters, load_checkpoint
    from .training import evaluate

    model = load_checkpoint(args.checkpoint)
    _require_classifier(model, f"The checkpoint {args.checkpoint}")
    dataset = _dataset(args.data, args.split, args.subset, args.seed)
    try:
        metrics = evaluate(model, dataset, batch_size=args.batch_size, progress=not args.quiet)
    except KeyboardInterrupt:
        print("\nvitlab eval: interrupted (nothing was written).", file=sys.stderr)
        return 130
    print(_json_line({"checkpoint": str(args.checkpoint), "data": dataset.name, "images": len(dataset),
                      "parameters": count_parameters(model), "accuracy": round(metrics["accuracy"], 4),
                      "loss": round(metrics["loss"], 4)}))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from . import PRESETS, build_model, count_parameters
    from .checkpoint import checkpoint_skeleton
    from .config import config_to_dict

    if args.checkpoint is None and args.preset is None:
        print("presets:")
        import torch

        for name, cfg in PRESETS.items():
            with torch.device("meta"):  # shapes only: no memory, no time, even for ViT-H/14
                params = count_parameters(build_model(cfg))
            print(f"  {name:18s} {type(cfg).__name__}  {params:>12,} parameters")
        return 0
    if args.checkpoint is not None:
        model = checkpoint_skeleton(args.checkpoint)  # from the header: no weights read, nothing allocated
        extra = model.checkpoint_extra
        hist = extra.get("history") or []
        info = {"model": config_to_dict(model.cfg), "extra": {k: v for k, v in extra.items() if k != "history"}}
        if hist:
            info["extra"]["last_epoch"] = hist[-1]
    else:
        import torch

        with torch.device("meta"):
            model = build_model(args.preset)
        info = {"model": config_to_dict(model.cfg)}
    info["parameters"] = count_parameters(model)
    print(json.dumps(info, indent=2))
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .checkpoint import check_writable_folder
    from .errors import ConfigError
    from .experiments import run_experiment
    from .experiments.common import default_results_path

    options = {}
    if args.seeds is not None:
        options["seeds"] = args.seeds
    if args.device is not None:
        options["device"] = args.device
    name = args.name
    if args.rule is not None:
        from .experiments import data_scale

        if args.name != data_scale.EXPERIMENT:
            raise ConfigError(f"--rule is a data-scale option ({', '.join(data_scale.RULES)}); "
                              f"{args.name} has one budget rule: drop --rule.")
        options["rule"] = args.rule
        name = data_scale.RESULTS_NAMES[args.rule]
    path = args.results if args.results is not None else default_results_path(name, args.budget)
    if Path(path).is_dir():
        raise ConfigError(f"--results {path} is a folder; give the results JSON file's path, e.g. {Path(path) / 'results.json'}.")
    check_writable_folder(Path(path).parent, "folder of the results file")  # before the first run trains
    try:
        results = run_experiment(args.name, budget=args.budget, results_path=path, progress=not args.quiet,
                                 **options)
    except KeyboardInterrupt:  # every finished run is already in the file: only the run in progress is lost
        print(f"\nvitlab reproduce: interrupted. Finished runs are saved in {path}; run the same command again "
              "to resume from there.", file=sys.stderr)
        return 130
    print(json.dumps({"experiment": args.name, "budget": args.budget, "results": str(results.path),
                      "runs": len(results.records)}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitlab", description="Vision Transformers, step by step.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,eval,info,reproduce}")

    t = sub.add_parser("train", help="train a preset model on Fashion-MNIST (or MNIST/CIFAR-10)")
    t.add_argument("--preset", type=_preset, required=True, help="model preset (see `vitlab info`)")
    t.add_argument("--out", type=Path, required=True, help="run folder: checkpoints and history go here")
    t.add_argument("--epochs", type=positive_int, default=10)
    t.add_argument("--subset", type=positive_int, default=None, help="train on a class-balanced subset of N images")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--data", choices=["fashion-mnist", "mnist", "cifar10"], default="fashion-mnist")
    t.add_argument("--batch-size", type=positive_int, default=128)
    t.add_argument("--lr", type=_positive_float, default=1e-3)
    t.add_argument("--min-lr", type=float, default=1e-5)
    t.add_argument("--warmup-epochs", type=float, default=1.0)
    t.add_argument("--weight-decay", type=float, default=0.05)
    t.add_argument("--label-smoothing", type=float, default=0.1)
    t.add_argument("--grad-clip", type=float, default=1.0)
    t.add_argument("--no-augment", action="store_true", help="turn off random crop + flip")
    t.add_argument("--no-resume", action="store_true", help="start over even if --out holds a checkpoint")
    t.add_argument("--device", default="cpu")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="accuracy of a checkpoint on a dataset split")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("--data", choices=["fashion-mnist", "mnist", "cifar10"], default="fashion-mnist")
    e.add_argument("--split", choices=["train", "test"], default="test")
    e.add_argument("--subset", type=positive_int, default=None)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--batch-size", type=positive_int, default=500)
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_eval)

    i = sub.add_parser("info", help="list presets, or describe a preset or checkpoint")
    group = i.add_mutually_exclusive_group()
    group.add_argument("checkpoint", type=Path, nargs="?", default=None)
    group.add_argument("--preset", type=_preset, default=None)
    i.set_defaults(func=cmd_info)

    from .experiments import BUDGETS, EXPERIMENTS, data_scale

    r = sub.add_parser("reproduce", help="run (or resume) one of the paper's experiments at laptop scale")
    r.add_argument("name", choices=list(EXPERIMENTS), metavar="NAME",
                   help=f"experiment: {', '.join(EXPERIMENTS)}")
    r.add_argument("--budget", choices=list(BUDGETS), default="quick",
                   help="quick: a few minutes (what notebooks and CI run); full: the committed result")
    r.add_argument("--results", type=Path, default=None,
                   help="results JSON (default data/results/NAME.json for full, data/results/quick/NAME.json "
                        "for quick); finished runs in it are skipped")
    r.add_argument("--seeds", type=non_negative_int, nargs="+", default=None,
                   help="seeds to run (default: the budget's own); one process per seed may share one "
                        "results file")
    r.add_argument("--rule", choices=data_scale.RULES, default=None,
                   help="data-scale only: train every run to convergence (default; data/results/data-scale.json) "
                        "or the same epochs for every size (data/results/data-scale-equal-compute.json)")
    r.add_argument("--device", default=None, help="where to train, e.g. cuda (default cpu)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=cmd_reproduce)
    return parser


def main(argv: "list[str] | None" = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except VitlabError as err:
        print(f"vitlab {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
