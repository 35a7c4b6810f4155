"""record_attention on every vitlab model family, through the one SoftmaxAttention hook point (issue 17).

Each recorded map is checked against an independent computation from the module's own weights and inputs,
recording must not change what the model computes, and every fused_attn flag is restored afterwards.
"""
import pytest
import torch

import vitlab
from vitlab.analysis import record_attention
from vitlab.layers import Attention, SoftmaxAttention
from vitlab.models.swin import SwinBlock, window_attention_to_grid
from vitlab.models.t2t import TokenAttention

IMAGES = torch.rand(2, 1, 28, 28) * 2 - 1


def _models():
    vitlab.seed_everything(0)
    clip = vitlab.build_model("fmnist-clip").eval()
    ids = torch.randint(4, clip.cfg.vocab_size, (2, clip.cfg.context_length))
    ids[:, 0], ids[:, 5], ids[:, 6:] = 2, 3, 0  # [BOS] words [EOS] [PAD]...
    return {
        "vit": (vitlab.build_model("fmnist-vit-tiny").eval(), lambda m: m(IMAGES)),
        "hybrid": (vitlab.build_model("fmnist-hybrid").eval(), lambda m: m(IMAGES)),
        "mae": (vitlab.build_model("fmnist-mae-tiny").eval(),
                lambda m: m(IMAGES, generator=torch.Generator().manual_seed(0))[0]),
        "clip": (clip, lambda m: torch.cat(m(IMAGES, ids)[:2])),  # both towers' embeddings
        "t2t": (vitlab.build_model("fmnist-t2t").eval(), lambda m: m(IMAGES)),
        "swin": (vitlab.build_model("fmnist-swin").eval(), lambda m: m(IMAGES)),
    }


@pytest.mark.parametrize("family", ["vit", "hybrid", "mae", "clip", "t2t", "swin"])
def test_every_family_is_recorded_at_every_attention_layer_without_changing_its_output(family):
    model, run = _models()[family]
    layers = [m for m in model.modules() if isinstance(m, SoftmaxAttention)]
    assert layers and all(m.fused_attn for m in layers)
    with torch.no_grad():
        plain = run(model)
        with record_attention(model) as rec:
            recorded = run(model)
    torch.testing.assert_close(recorded, plain, atol=1e-5, rtol=1e-5)  # watching changes nothing
    assert all(m.fused_attn for m in layers)  # flags restored
    assert len(rec.maps) == len(layers)
    for m in rec.maps:
        torch.testing.assert_close(m.sum(-1), torch.ones_like(m.sum(-1)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["t2t", "clip", "mae"])
def test_recorded_maps_equal_softmax_of_the_modules_own_queries_and_keys(family):
    """Independent computation: the input each layer received, through its own qkv weights."""
    model, run = _models()[family]
    inputs = []
    layers = [m for m in model.modules() if isinstance(m, (Attention, TokenAttention))]
    handles = [m.register_forward_pre_hook(lambda mod, args, kw: inputs.append((mod, args[0], kw)), with_kwargs=True)
               for m in layers]
    with torch.no_grad(), record_attention(model) as rec:
        run(model)
    for h in handles:
        h.remove()
    assert len(inputs) == len(rec.maps)
    for (module, x, kw), recorded in zip(inputs, rec.maps):
        B, N, _ = x.shape
        q, k, _ = module.qkv(x).reshape(B, N, 3, module.heads, -1).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
        padding = kw.get("key_padding") if kw else None
        if padding is not None:
            scores = scores.masked_fill(padding[:, None, None, :], float("-inf"))
        torch.testing.assert_close(recorded, scores.softmax(-1), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("shift", [0, 2])
def test_swin_window_maps_laid_out_over_the_grid_match_a_direct_computation(shift):
    torch.manual_seed(0)
    side, ws, heads, dim = 8, 4, 2, 16
    block = SwinBlock(dim=dim, heads=heads, grid_size=side, window_size=ws, shift_size=shift).eval()
    torch.nn.init.normal_(block.attn.relative_position_bias_table, std=0.5)
    x = torch.randn(2, side, side, dim)
    with torch.no_grad(), record_attention(block) as rec:
        block(x)
    grid = window_attention_to_grid(rec.maps[0], side, ws, shift)  # (B, H, 64, 64)

    # Directly, from the definition: every pair of original positions (r, c), written out with loops.
    attn = block.attn
    with torch.no_grad():
        q, k, _ = attn.qkv(block.norm1(x).reshape(2, side * side, dim)).reshape(2, -1, 3, heads, dim // heads) \
            .permute(2, 0, 3, 1, 4)
    table = attn.relative_position_bias_table
    expected = torch.zeros_like(grid)
    for i in range(side * side):
        (ri, ci) = divmod(i, side)
        rolled_i = ((ri - shift) % side, (ci - shift) % side)  # where the roll puts position i
        keys, scores = [], []
        for j in range(side * side):
            (rj, cj) = divmod(j, side)
            rolled_j = ((rj - shift) % side, (cj - shift) % side)
            same_window = all(a // ws == b // ws for a, b in zip(rolled_i, rolled_j))
            no_wrap = (rolled_i[0] - rolled_j[0], rolled_i[1] - rolled_j[1]) == (ri - rj, ci - cj)
            if same_window and no_wrap:  # the shifted-window mask lets exactly these pairs through
                offset = (ri - rj + ws - 1) * (2 * ws - 1) + (ci - cj + ws - 1)
                keys.append(j)
                scores.append((q[:, :, i] * k[:, :, j]).sum(-1) / (dim // heads) ** 0.5 + table[offset])
        expected[:, :, i, keys] = torch.stack(scores, dim=-1).softmax(-1)
    torch.testing.assert_close(grid, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grid.sum(-1), torch.ones(2, heads, side * side))


def test_window_attention_to_grid_refuses_maps_of_another_shape():
    with pytest.raises(vitlab.InputShapeError, match="window attention"):
        window_attention_to_grid(torch.rand(1, 4, 2, 16, 16), grid_size=8, window_size=2)


def test_in_train_mode_maps_are_the_softmax_before_attention_dropout():
    vitlab.seed_everything(0)
    model = vitlab.build_model("fmnist-vit-tiny", attn_drop_rate=0.5).train()
    with torch.no_grad(), record_attention(model) as rec:
        model(IMAGES)
    model.eval()
    with torch.no_grad(), record_attention(model) as reference:
        model(IMAGES)
    torch.testing.assert_close(rec.maps[0], reference.maps[0])  # the first layer's input is not dropped out
    for m in rec.maps:
        torch.testing.assert_close(m.sum(-1), torch.ones_like(m.sum(-1)), atol=1e-5, rtol=0)  # no dropout in them


def test_every_swin_block_records_its_windows_grouped_by_image():
    """Shifted or not, a block's maps are (B, nW, H, N, N): the layout does not depend on the mask."""
    model, run = _models()["swin"]
    with torch.no_grad(), record_attention(model) as rec:
        run(model)
    blocks = [m for m in model.modules() if isinstance(m, SwinBlock)]
    for block, maps in zip(blocks, rec.maps):
        windows = (block.grid_size // block.window_size) ** 2
        assert maps.shape[:2] == (2, windows), (block.shift_size, tuple(maps.shape))
        grid = window_attention_to_grid(maps, block.grid_size, block.window_size, block.shift_size)
        torch.testing.assert_close(grid.sum(-1), torch.ones_like(grid.sum(-1)), atol=1e-5, rtol=0)
