"""Reproductions of the ViT paper (and its relatives) at laptop scale, one module per experiment.

Each experiment module has ``run(budget='quick', results_path=None, progress=True, seeds=None)``
returning a :class:`~vitlab.experiments.common.ResultsFile`; ``vitlab reproduce NAME`` calls it.
A module is imported when its experiment first runs, so ``import vitlab`` stays quick.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from .common import (BUDGETS, ResultsError, ResultsFile, TrainSizeError, UnknownBudgetError,
                     UnknownExperimentError, check_budget, committed_results, default_results_path)

# name -> the module whose ``run`` runs it
EXPERIMENTS: dict[str, str] = {
    "data-scale": "vitlab.experiments.data_scale",  # ViT vs CNN vs hybrid over train-set size (paper Fig. 3/4)
    "hybrid": "vitlab.experiments.hybrid",  # accuracy vs training FLOPs, ViT / hybrid / CNN (Fig. 5, Table 6)
    "ablations": "vitlab.experiments.ablations",  # position embeddings, CLS vs GAP ... (Table 8, App. D)
    "resolution": "vitlab.experiments.resolution",  # fine-tuning at a higher resolution
    "t2t": "vitlab.experiments.t2t",  # Tokens-to-Token ViT
    "swin": "vitlab.experiments.swin",  # Swin Transformer
    "mae": "vitlab.experiments.mae",  # masked autoencoder pre-training
    "clip": "vitlab.experiments.clip",  # contrastive image-text pre-training
}


def check_experiment(name: str) -> str:
    """``name`` if it is a registered experiment; otherwise UnknownExperimentError naming the choices."""
    if name not in EXPERIMENTS:
        raise UnknownExperimentError(
            f"Unknown experiment {name!r}; choose one of: {', '.join(EXPERIMENTS)}.")
    return name


def get_experiment(name: str):
    """The ``run`` function of a registered experiment (UnknownExperimentError for another name)."""
    return importlib.import_module(EXPERIMENTS[check_experiment(name)]).run


def available_experiments() -> list[str]:
    """The registered experiments, in the order the lessons take them."""
    return list(EXPERIMENTS)


def run_experiment(name: str, budget: str = "quick", results_path: "str | Path | None" = None,
                   progress: bool = True, **options) -> ResultsFile:
    """Run (or resume) one experiment.

    Args:
        name: a key of :data:`EXPERIMENTS`, e.g. ``'data-scale'``.
        budget: 'quick' (minutes, for notebooks and CI) or 'full' (the committed result).
        results_path: JSON file for the results; default :func:`default_results_path`.
        progress: show progress bars.
        **options: passed on to the experiment's ``run`` (e.g. ``seeds=[0, 1, 2]``, ``device='cuda'``);
            an option the experiment does not take raises a :class:`vitlab.errors.ConfigError`
            naming the options it does take.
    Returns:
        The experiment's :class:`ResultsFile`. A full budget that ran to its end with the planned
        seeds is marked finished (``ResultsFile.finished``); the notebooks and the gallery show
        only a finished file as the committed result.
    """
    check_budget(budget)
    func = get_experiment(name)
    params = inspect.signature(func).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in options if k not in params and not takes_any]
    if unknown:
        from ..errors import ConfigError

        raise ConfigError(f"Experiment {name!r} does not take option(s) {unknown}; it takes "
                          f"{[p for p in params if p not in ('budget', 'results_path', 'progress')]}.")
    if options.get("device") is not None:  # fail now, not after the data loaded
        from ..training import check_device

        check_device(options["device"])
    results = func(budget=budget, results_path=results_path, progress=progress, **options)
    if budget == "full" and not set(options) - {"device"}:  # the whole planned budget, not a subset of seeds
        results.mark_finished(budget)
    return results


__all__ = ["EXPERIMENTS", "BUDGETS", "get_experiment", "available_experiments", "run_experiment",
           "ResultsFile", "ResultsError", "UnknownExperimentError", "UnknownBudgetError", "TrainSizeError",
           "check_budget", "check_experiment", "committed_results", "default_results_path"]
