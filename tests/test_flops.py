"""FLOP counts against formulas written out by hand from each model's architecture, and every
committed results file's FLOPs re-derived under the current code.

Convention (vitlab.flops): 2 FLOPs per multiply-add of matrix products, convolutions and attention;
a training step is forward + backward, where the backward computes every weight gradient, every
input gradient except the images' own (so the first layer costs forward + weight gradient), and
attention's backward is five products of the forward's size-and-a-half (scores recomputed, then
d_scores, d_v, d_q, d_k).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

import vitlab
from vitlab import ConfigError
from vitlab.config import ResNetConfig, ViTConfig, config_from_dict
from vitlab.experiments.common import repo_root
from vitlab.flops import attention_flops, count_forward_flops, count_train_flops
from vitlab.models.hybrid import HybridConfig


@dataclass
class Macs:
    """Multiply-adds of one image's forward pass, split the way the backward pass treats them."""

    first: int = 0  # the layer that reads the images (no input gradient in training)
    layers: int = 0  # every other linear layer and convolution
    attention: list = field(default_factory=list)  # (Nq, Nk, d, heads) per attention call

    def forward_flops(self) -> int:
        attn = sum(2 * nq * nk * d for nq, nk, d, heads in self.attention)  # q k^T and scores v
        return 2 * (self.first + self.layers + attn)

    def train_flops(self) -> int:
        attn = sum(2 * nq * nk * d for nq, nk, d, heads in self.attention)
        linear = 3 * (self.first + self.layers) - self.first  # forward, weight grad, input grad
        return 2 * linear + 2 * attn * 7 // 2  # attention: forward 2 products + backward 5


def vit_macs(cfg: ViTConfig, first: bool = True) -> Macs:
    side = cfg.img_size // cfg.patch_size
    n_patches = side * side
    n, d, hidden = n_patches + cfg.num_prefix_tokens, cfg.dim, int(cfg.dim * cfg.mlp_ratio)
    macs = Macs()
    patch = n_patches * cfg.patch_size**2 * cfg.in_chans * d
    if first:
        macs.first = patch
    else:
        macs.layers = patch
    block = n * d * 3 * d + n * d * d + 2 * n * d * hidden  # qkv, output projection, MLP
    macs.layers += cfg.depth * block + d * cfg.num_classes
    macs.attention = [(n, n, d, cfg.heads)] * cfg.depth
    return macs


def conv_macs(cin: int, cout: int, k: int, side_out: int) -> int:
    return cin * cout * k * k * side_out * side_out


def resnet_macs(cfg: ResNetConfig) -> tuple[Macs, int]:
    """(macs, side of the last feature map) of the ResNet-18-style model."""
    macs, w, side = Macs(), cfg.width, cfg.img_size
    if cfg.small_stem:
        macs.first = conv_macs(cfg.in_chans, w, 3, side)
    else:
        side = (side + 1) // 2
        macs.first = conv_macs(cfg.in_chans, w, 7, side)
        side = (side + 1) // 2  # max-pool: no multiply-adds
    in_ch = w
    for stage, n_blocks in enumerate(cfg.blocks):
        out_ch = w * 2**stage
        for b in range(n_blocks):
            stride = 2 if (stage > 0 and b == 0) else 1
            side = (side + 1) // 2 if stride == 2 else side
            macs.layers += conv_macs(in_ch, out_ch, 3, side) + conv_macs(out_ch, out_ch, 3, side)
            if stride != 1 or in_ch != out_ch:
                macs.layers += conv_macs(in_ch, out_ch, 1, side)  # projection shortcut
            in_ch = out_ch
    macs.layers += in_ch * cfg.num_classes
    return macs, side


def hybrid_macs(cfg: HybridConfig) -> Macs:
    cnn, side = resnet_macs(cfg.cnn_config)
    assert side == cfg.grid_size
    vit = vit_macs(cfg.vit_config, first=False)
    return Macs(first=cnn.first, layers=cnn.layers + vit.layers, attention=vit.attention)


# ---- small cases by hand ------------------------------------------------------------------------

def test_forward_flops_of_a_linear_layer_by_hand():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))  # 12 * 5 multiply-adds per image
    assert count_forward_flops(model, (3, 2, 2)) == 2 * 12 * 5


def test_forward_flops_of_a_convolution_by_hand():
    model = nn.Conv2d(1, 2, kernel_size=3, padding=1)  # 4x4 outputs x 2 channels x 9 taps
    assert count_forward_flops(model, (1, 4, 4)) == 2 * 16 * 2 * 9


def test_train_flops_of_two_linear_layers_by_hand():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 5))
    forward = 2 * (12 * 8 + 8 * 5)
    backward = 2 * (8 * 5 + 8 * 5 + 12 * 8)  # layer 2: weight and input gradients; layer 1: weight only
    assert count_train_flops(model, (1, 3, 4), images_seen=1) == forward + backward
    assert count_train_flops(model, (1, 3, 4), images_seen=1000) == 1000 * (forward + backward)


def test_flop_counting_leaves_the_model_untouched():
    model = vitlab.build_model("fmnist-resnet")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    count_train_flops(model, (1, 28, 28), images_seen=10)
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_flop_counting_rejects_bad_arguments():
    model = nn.Conv2d(1, 1, 3)
    with pytest.raises(ConfigError, match="\\(C, H, W\\)"):
        count_forward_flops(model, (28, 28))
    with pytest.raises(ConfigError, match="images_seen"):
        count_train_flops(model, (1, 8, 8), images_seen=-1)


# ---- the formula on its own: one case by hand --------------------------------------------------------

def test_attention_flops_by_hand():
    # 2 heads, 3 queries, 5 keys, width 4: q k^T is 2*3*5*4 multiply-adds, scores v the same
    assert attention_flops((2, 3, 4), (2, 5, 4), (2, 5, 4)) == 2 * (2 * 3 * 5 * 4) * 2
    assert attention_flops((2, 3, 4), (2, 5, 4), (2, 5, 4), backward=True) == 2 * (2 * 3 * 5 * 4) * 5


def test_fused_attention_counts_as_the_explicit_products():
    """The fused kernel is counted as the products of the explicit softmax path it replaces."""
    attention = vitlab.layers.Attention(dim=32, heads=4)
    fused = count_forward_flops(nn.Sequential(nn.Flatten(2), Transpose(), attention), (32, 17, 1))
    attention.fused_attn = False
    explicit = count_forward_flops(nn.Sequential(nn.Flatten(2), Transpose(), attention), (32, 17, 1))
    linear = 2 * (17 * 32 * 96 + 17 * 32 * 32)
    assert fused == explicit == linear + 2 * 2 * 17 * 17 * 32


class Transpose(nn.Module):
    def forward(self, x):
        return x.transpose(1, 2)  # (B, D, N) -> (B, N, D)


# ---- every model family the experiments train -----------------------------------------------------

VIT_CASES = {
    "fmnist-vit": vitlab.get_preset("fmnist-vit"),
    "fmnist-vit gap": vitlab.get_preset("fmnist-vit").replace(pool="gap"),
    "fmnist-vit at 56 px (resolution)": vitlab.get_preset("fmnist-vit").replace(img_size=56),
    "fmnist-vit-tiny": vitlab.get_preset("fmnist-vit-tiny"),
}


@pytest.mark.parametrize("name", VIT_CASES)
def test_vit_flops_match_the_hand_formula(name):
    cfg = VIT_CASES[name]
    model, shape, macs = vitlab.build_model(cfg), (cfg.in_chans, cfg.img_size, cfg.img_size), vit_macs(cfg)
    assert count_forward_flops(model, shape) == macs.forward_flops()
    assert count_train_flops(model, shape, 3) == 3 * macs.train_flops()


@pytest.mark.parametrize("cfg", [vitlab.get_preset("fmnist-resnet"), ResNetConfig(width=8, blocks=(1, 1, 1)),
                                 ResNetConfig(img_size=32, width=8, blocks=(1, 1), small_stem=False)],
                         ids=["fmnist-resnet", "narrow-3-stage", "imagenet-stem"])
def test_resnet_flops_match_the_hand_formula(cfg):
    model, shape = vitlab.build_model(cfg), (cfg.in_chans, cfg.img_size, cfg.img_size)
    macs, _ = resnet_macs(cfg)
    assert count_forward_flops(model, shape) == macs.forward_flops()
    assert count_train_flops(model, shape, 1) == macs.train_flops()


@pytest.mark.parametrize("stage", [1, 2, 3, 4])
def test_hybrid_flops_match_the_hand_formula_at_every_stage(stage):
    cfg = HybridConfig(stage=stage, cnn_width=8, dim=32, depth=2, heads=2)
    model, shape, macs = vitlab.build_model(cfg), (1, 28, 28), hybrid_macs(cfg)
    assert count_forward_flops(model, shape) == macs.forward_flops()
    assert count_train_flops(model, shape, 1) == macs.train_flops()


def test_the_hand_formula_catches_a_missed_attention():
    """The check can fail: with attention left out the formula disagrees with the count."""
    cfg = vitlab.get_preset("fmnist-vit")
    macs = vit_macs(cfg)
    macs.attention = []
    assert count_forward_flops(vitlab.build_model(cfg), (1, 28, 28)) != macs.forward_flops()


# ---- committed results: the FLOPs each record states are what this code counts ---------------------

def _committed_records():
    for path in sorted((repo_root() / "data" / "results").glob("*.json")):
        for record in json.loads(path.read_text())["runs"]:
            if "forward_flops" in record:
                yield path.name, record


@pytest.fixture(scope="module")
def counted():
    cache = {}

    def count(model_dict):
        key = json.dumps(model_dict, sort_keys=True)
        if key not in cache:
            cfg = config_from_dict(model_dict)
            model, shape = vitlab.build_model(cfg), (cfg.in_chans, cfg.img_size, cfg.img_size)
            cache[key] = count_forward_flops(model, shape), count_train_flops(model, shape, 1)
        return cache[key]

    return count


def test_every_committed_record_states_the_flops_this_code_counts(counted):
    checked, wrong = 0, []
    for name, record in _committed_records():
        forward, train_per_image = counted(record["model"])
        train = train_per_image * record["images_seen"] if record["train_flops"] else 0  # 0: no training
        if (record["forward_flops"], record["train_flops"]) != (forward, train):
            wrong.append(f"{name} {record['run_id']}: recorded {record['forward_flops']}, {record['train_flops']}; "
                         f"counted {forward}, {train}")
        checked += 1
    assert checked > 200  # every results file with classifier runs
    assert wrong == []
