"""What a results record may say: checked whenever a results file is read, so a file that was tampered
with, or written by a broken run, is refused with a ResultsError naming the record and the field
instead of being shown as a result.

Rules go by field name (one rule a field, for every experiment that records it); a file marked
finished must also hold, in every record, the fields its experiment's lessons read, and records
of the budget the mark claims, as many as it says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..config import SEED_LIMIT, is_whole_number, is_finite_number
from ..errors import ConfigError, ResultsError

BUDGETS = ("quick", "full")  # quick: <= 3 min on 2 CPU cores (notebooks, CI); full: the committed result

# The fields every record of a finished file must have, by experiment (what lessons and plots read).
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "data-scale": ("arm", "size", "seed", "model", "train", "images_seen", "forward_flops", "train_flops",
                   "test_accuracy"),
    "hybrid": ("model_name", "family", "epochs", "seed", "model", "train", "images_seen", "forward_flops",
               "train_flops", "test_accuracy"),
    "ablations": ("kind", "scale", "val_accuracy"),
    "resolution": ("kind", "scale", "stage", "seed", "img_size", "test_accuracy"),
    "t2t": ("arm", "scale", "size", "seed", "model", "train", "images_seen", "test_accuracy"),
    "swin": ("arm", "scale", "size", "seed", "model", "train", "images_seen", "test_accuracy"),
    "mae": ("arm", "train_size"),
    "clip": ("seed", "model", "pretrain", "images_seen", "zero_shot_ensemble"),
}
COMMON_FIELDS = ("run_id", "budget", "experiment")


def _fractions(value: Any) -> bool:
    """A number in [0, 1], or a list / dict of them, nested (per class, per prompt, per arm and rate)."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return bool(value) and all(_fractions(v) for v in value)
    return is_finite_number(value) and 0 <= value <= 1


_COUNTS = ("params", "images_seen", "train_size", "test_size", "val_size", "forward_flops", "train_flops",
           "size", "epochs", "threads", "img_size", "epochs_run", "best_epoch", "epoch_cap", "patience")


def _rule(name: str) -> "tuple[str, Callable[[Any], bool]] | None":
    """(what ``name`` must be, test), or None for a field with no rule."""
    if name == "run_id":
        return "a non-empty string", lambda v: isinstance(v, str) and bool(v)
    if name == "budget":
        return f"one of {BUDGETS}", lambda v: v in BUDGETS
    if name.endswith("accuracy") or name.startswith("zero_shot") or name.startswith("text_to_image_precision"):
        return "an accuracy: a number in [0, 1] (or lists / mappings of them)", _fractions
    if name.endswith("_loss") or name == "wall_seconds":
        return "a finite number >= 0", lambda v: is_finite_number(v) and v >= 0
    if name in _COUNTS:
        return "a whole number >= 0", lambda v: is_whole_number(v) and v >= 0
    if name in ("seed", "data_seed"):
        return f"an int in [0, {SEED_LIMIT})", lambda v: is_whole_number(v) and 0 <= v < SEED_LIMIT
    return None


def check_record(record: Any, index: int, experiment: str, path: "str | Path") -> None:
    """Raise ResultsError unless ``record`` (the ``index``-th of the file at ``path``) follows the rules."""
    where = f"{path}: record {index}"
    if not isinstance(record, dict) or not isinstance(record.get("run_id"), str) or not record["run_id"]:
        raise ResultsError(f"{where} is not a record with a 'run_id' string.")
    where = f"{path}: record {index} ({record['run_id']!r})"
    for name, value in record.items():
        rule = _rule(name)
        if rule is not None and not rule[1](value):
            raise ResultsError(f"{where}: {name!r} must be {rule[0]}, got {value!r}.")
    if "experiment" in record and record["experiment"] != experiment:
        raise ResultsError(f"{where} says it belongs to experiment {record['experiment']!r}, not {experiment!r}.")
    for recipe_name in ("train", "pretrain"):
        if recipe_name in record:
            _check_recipe(record, recipe_name, where)


def _check_recipe(record: dict, recipe_name: str, where: str) -> None:
    """The recipe a record states is a valid one, and the images seen and epochs are what it makes."""
    from ..training import PretrainConfig, TrainConfig

    cls = TrainConfig if recipe_name == "train" else PretrainConfig
    recipe = record[recipe_name]
    try:
        cfg = cls(**recipe) if isinstance(recipe, dict) else None
    except (ConfigError, TypeError) as err:
        raise ResultsError(f"{where}: {recipe_name!r} is not a valid {cls.__name__} ({err}).") from None
    if cfg is None:
        raise ResultsError(f"{where}: {recipe_name!r} must be a mapping of {cls.__name__} fields, got {recipe!r}.")
    if "epochs" in record and record["epochs"] != cfg.epochs:
        raise ResultsError(f"{where}: 'epochs' is {record['epochs']!r} but its recipe trained {cfg.epochs} epochs.")
    epochs = cfg.epochs
    if "epochs_run" in record:  # an early-stopped run: the recipe's epochs are its cap
        epochs = record["epochs_run"]
        if not 1 <= epochs <= cfg.epochs or not 1 <= record.get("best_epoch", 1) <= epochs:
            raise ResultsError(f"{where}: 'epochs_run' {epochs!r} and 'best_epoch' {record.get('best_epoch')!r} must "
                               f"satisfy 1 <= best_epoch <= epochs_run <= the cap of {cfg.epochs} epochs.")
    if "images_seen" in record and "train_size" in record and record["images_seen"] != epochs * record["train_size"]:
        raise ResultsError(f"{where}: 'images_seen' is {record['images_seen']!r} but {epochs} epochs of "
                           f"{record['train_size']} images are {epochs * record['train_size']}.")


def check_finished(finished: Any, records: list, experiment: str, path: "str | Path") -> None:
    """Raise ResultsError unless the 'finished' mark is well formed and the records are the budget it claims."""
    if not (isinstance(finished, dict) and finished.get("budget") in BUDGETS and is_whole_number(finished.get("runs"))
            and isinstance(finished.get("at"), str)):
        raise ResultsError(f"{path}: 'finished' must be {{'budget': 'quick' or 'full', 'runs': N, 'at': time}}, "
                           f"got {finished!r}.")
    if finished["runs"] != len(records):
        raise ResultsError(f"{path} is marked finished with {finished['runs']} runs but holds {len(records)}.")
    required = COMMON_FIELDS + REQUIRED_FIELDS[experiment] if experiment in REQUIRED_FIELDS else ()
    for index, record in enumerate(records):
        missing = [name for name in required if name not in record]
        if missing:
            raise ResultsError(f"{path}: record {index} ({record['run_id']!r}) of a finished file lacks {missing}.")
        if record.get("budget", finished["budget"]) != finished["budget"]:
            raise ResultsError(f"{path}: record {index} ({record['run_id']!r}) is of budget {record['budget']!r}, "
                               f"but the file is marked finished for budget {finished['budget']!r}.")
