"""A ResNet-18-style CNN baseline (He et al., 2016), with its stem adapted to 28x28 images.

The ViT paper's comparison model is a ResNet; here it is the small-image version used by CIFAR and
Fashion-MNIST benchmarks: one 3x3 stride-1 stem convolution and no max-pool, then four stages of
basic blocks at widths (w, 2w, 4w, 8w), each later stage halving the resolution.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ResNetConfig
from ..errors import ConfigError, InputShapeError


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a shortcut: relu(x' + shortcut(x))."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet-18-style classifier: stem -> stages -> global average pool -> linear head.

    ``forward_features`` returns the last stage's feature map (B, 8w, h, w), so a hybrid model can
    take any stage's map as its tokens.
    """

    def __init__(self, cfg: ResNetConfig) -> None:
        super().__init__()
        if not isinstance(cfg, ResNetConfig):
            raise ConfigError(f"ResNet needs a ResNetConfig, got {type(cfg).__name__}.")
        self.cfg = cfg
        w = cfg.width
        if cfg.small_stem:
            self.stem = nn.Sequential(nn.Conv2d(cfg.in_chans, w, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(nn.Conv2d(cfg.in_chans, w, 7, stride=2, padding=3, bias=False),
                                      nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(3, stride=2, padding=1))
        stages, in_ch = [], w
        for i, n_blocks in enumerate(cfg.blocks):
            out_ch = w * 2**i
            blocks = [BasicBlock(in_ch, out_ch, stride=1 if i == 0 else 2)]
            blocks += [BasicBlock(out_ch, out_ch, stride=1) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            in_ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.num_features = in_ch
        self.head = nn.Linear(in_ch, cfg.num_classes) if cfg.num_classes else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> the last stage's feature map (B, 8w, H/8, W/8) with the small stem."""
        if x.ndim != 4 or x.shape[1] != self.cfg.in_chans:
            raise InputShapeError(
                f"ResNet expects (B, {self.cfg.in_chans}, H, W) images, got shape {tuple(x.shape)}."
            )
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))  # global average pool: (B, 8w)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
