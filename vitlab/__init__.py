"""vitlab: build a Vision Transformer step by step, reproduce the ViT paper at laptop scale, and
look inside a trained ViT."""

from .analysis import record_attention
from .checkpoint import load_checkpoint, read_checkpoint_info, save_checkpoint
from .config import PRESETS, ResNetConfig, ViTConfig, get_preset
from .errors import (CheckpointError, ConfigError, DataNotFoundError, DeviceUnavailableError, InputShapeError,
                     PretrainedUnavailableError, TrainingDivergedError, UnknownPresetError, VitlabError)
from .models import ResNet, ViT, build_model, count_parameters
from .models.clip import CLIP, CLIPConfig
from .models.hybrid import HybridConfig, HybridViT
from .models.mae import MAE, MAEConfig, vit_from_mae
from .models.resize import resample_pos_embed, resize_vit
from .models.swin import Swin, SwinConfig
from .models.t2t import T2TConfig, T2TViT
from .models.hf_interop import from_hf
from .models.timm_interop import from_timm, load_pretrained, to_timm
from .seed import seed_everything
from .training import EarlyStopping, TrainConfig, check_device, evaluate, predict, train
from .experiments import EXPERIMENTS, run_experiment

__version__ = "0.1.0"

__all__ = [
    "ViTConfig", "ResNetConfig", "PRESETS", "get_preset", "ViT", "ResNet", "build_model",
    "count_parameters", "HybridConfig", "HybridViT", "T2TConfig", "T2TViT", "SwinConfig", "Swin",
    "MAEConfig", "MAE", "vit_from_mae", "CLIPConfig", "CLIP", "resample_pos_embed", "resize_vit", "EXPERIMENTS", "run_experiment", "from_timm", "from_hf", "to_timm", "load_pretrained", "save_checkpoint",
    "load_checkpoint", "read_checkpoint_info", "seed_everything", "TrainConfig", "EarlyStopping", "train",
    "evaluate", "predict", "record_attention", "VitlabError", "ConfigError", "UnknownPresetError", "InputShapeError",
    "DataNotFoundError", "CheckpointError", "PretrainedUnavailableError", "TrainingDivergedError",
    "DeviceUnavailableError", "check_device",
]
