"""Typed errors. Every message says what was wrong and what to do about it.

Each class also derives from the built-in exception a Python user would expect
(``ValueError`` for a bad argument, ``FileNotFoundError`` for a missing file), so
``except ValueError`` keeps working in user code.
"""

from __future__ import annotations


class VitlabError(Exception):
    """Base class of every error vitlab raises on purpose."""


class ConfigError(VitlabError, ValueError):
    """A model or training configuration that cannot work (e.g. dim not divisible by heads)."""


class UnknownPresetError(ConfigError, KeyError):
    """A preset name that does not exist."""

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class InputShapeError(VitlabError, ValueError):
    """A tensor whose shape does not fit the model (image size, channels)."""


class DataNotFoundError(VitlabError, FileNotFoundError):
    """Dataset files that are not where vitlab looked."""


class CheckpointError(VitlabError, ValueError):
    """A checkpoint that is missing, corrupt, foreign, or does not fit the model."""


class PretrainedUnavailableError(VitlabError, RuntimeError):
    """Pretrained weights that cannot be had (offline, no cache)."""


class TrainingDivergedError(VitlabError, FloatingPointError):
    """The loss became NaN or infinite during training."""


class DeviceUnavailableError(ConfigError):
    """A device (``'cuda'``, ``'cuda:1'``, ``'mps'``) that this machine or this torch build does not have."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint path that does not exist."""


class RecorderError(VitlabError, RuntimeError):
    """The attention recorder found no attention to hook, or recorded nothing."""


class ResultsError(VitlabError, ValueError):
    """A results file that cannot be read, is corrupt, or belongs to another experiment."""


class UnknownExperimentError(ConfigError):
    """An experiment name that is not registered (see ``vitlab.experiments.EXPERIMENTS``)."""


class UnknownBudgetError(ConfigError):
    """A budget other than 'quick' or 'full'."""


class TrainSizeError(ConfigError):
    """A training-set size the data cannot provide (larger than the data, or not positive)."""


class PictureUnavailable(VitlabError, RuntimeError):
    """A README picture whose source (a committed full result) is not there yet."""


class FolderBusyError(VitlabError, RuntimeError):
    """A run folder that another vitlab process is writing to right now."""
