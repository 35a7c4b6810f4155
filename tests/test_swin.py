"""Swin Transformer: windows, relative position bias, the shifted-window mask, patch merging, the model.

Each piece is checked on a hand-computed case, against timm's implementation of the same piece, and
the masked shifted-window attention against attention computed naively inside each true window.
"""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from timm.models import swin_transformer as timm_swin  # noqa: E402

import vitlab  # noqa: E402
from vitlab.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from vitlab.config import config_from_dict, config_to_dict  # noqa: E402
from vitlab.errors import ConfigError, InputShapeError  # noqa: E402
from vitlab.models.swin import (MASK_VALUE, PatchMerging, Swin, SwinBlock, SwinConfig,  # noqa: E402
                                WindowAttention, relative_position_index, shifted_window_mask,
                                shifted_window_regions, window_partition, window_reverse)
from vitlab.plots.family import (plot_shift_regions, plot_token_counts, plot_window_grid,  # noqa: E402
                                 plot_window_masks)


# --- window partition / reverse --------------------------------------------------------------------

def test_window_partition_hand_computed_on_a_4x4_grid():
    grid = torch.arange(16.0).reshape(1, 4, 4, 1)  # token value = its row-major index
    windows = window_partition(grid, 2)[..., 0]  # (4, 2, 2)
    expected = torch.tensor([[[0, 1], [4, 5]], [[2, 3], [6, 7]], [[8, 9], [12, 13]], [[10, 11], [14, 15]]])
    torch.testing.assert_close(windows, expected.float())


def test_window_reverse_inverts_window_partition():
    x = torch.randn(3, 14, 21, 5)
    windows = window_partition(x, 7)
    assert windows.shape == (3 * 2 * 3, 7, 7, 5)
    torch.testing.assert_close(window_reverse(windows, 7, 14, 21), x, rtol=0, atol=0)


@pytest.mark.parametrize("shape, window", [((2, 14, 14, 8), 7), ((1, 8, 8, 3), 4), ((2, 6, 9, 4), 3)])
def test_window_partition_and_reverse_equal_timm(shape, window):
    x = torch.randn(shape)
    ours = window_partition(x, window)
    torch.testing.assert_close(ours, timm_swin.window_partition(x, (window, window)), rtol=0, atol=0)
    back = timm_swin.window_reverse(ours, (window, window), shape[1], shape[2])
    torch.testing.assert_close(window_reverse(ours, window, shape[1], shape[2]), back, rtol=0, atol=0)


def test_window_that_does_not_divide_the_grid_raises_a_clear_error():
    with pytest.raises(InputShapeError, match=r"window_size=4 does not divide the 14x14 token grid.*\[1, 2, 7, 14\]"):
        window_partition(torch.zeros(1, 14, 14, 3), 4)
    with pytest.raises(InputShapeError, match="does not divide"):
        window_reverse(torch.zeros(4, 4, 4, 3), 4, 14, 14)
    with pytest.raises(InputShapeError, match=r"\(B, h, w, C\)"):
        window_partition(torch.zeros(14, 14, 3), 7)


# --- relative position index and bias -----------------------------------------------------------

def test_relative_position_index_hand_computed_for_a_2x2_window():
    # tokens (0,0), (0,1), (1,0), (1,1); index = (dr + 1) * 3 + (dc + 1) with dr, dc = query - key
    expected = torch.tensor([[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]])
    torch.testing.assert_close(relative_position_index(2), expected)


@pytest.mark.parametrize("window", [1, 2, 3, 7])
def test_relative_position_index_equals_timm(window):
    torch.testing.assert_close(relative_position_index(window),
                               timm_swin.get_relative_position_index(window, window))


def test_relative_position_bias_depends_only_on_the_offset():
    attn = WindowAttention(dim=8, heads=2, window_size=3)
    torch.nn.init.normal_(attn.relative_position_bias_table)
    bias = attn.relative_position_bias()  # (H, 9, 9)
    assert bias.shape == (2, 9, 9)
    pos = [(r, c) for r in range(3) for c in range(3)]
    for i, (r1, c1) in enumerate(pos):
        for j, (r2, c2) in enumerate(pos):
            row = (r1 - r2 + 2) * 5 + (c1 - c2 + 2)
            torch.testing.assert_close(bias[:, i, j], attn.relative_position_bias_table[row])


# --- cyclic shift: regions and mask --------------------------------------------------------------

def test_shifted_window_regions_hand_computed():
    expected = torch.tensor([[0, 0, 1, 2], [0, 0, 1, 2], [3, 3, 4, 5], [6, 6, 7, 8]])
    torch.testing.assert_close(shifted_window_regions(4, 2, 1), expected)


def test_shifted_window_mask_hand_computed():
    mask = shifted_window_mask(4, 2, 1)  # rolled 4x4 grid, 4 windows of 2x2
    assert mask.shape == (4, 4, 4)
    assert (mask[0] == 0).all()  # the top-left window holds one region (0)
    allowed_last = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]).bool()  # 4 regions
    torch.testing.assert_close(mask[3] == 0, allowed_last)
    allowed_right = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]]).bool()  # regions 1, 2
    torch.testing.assert_close(mask[1] == 0, allowed_right)
    assert set(mask.unique().tolist()) == {0.0, MASK_VALUE}


@pytest.mark.parametrize("grid, window, shift", [(14, 7, 3), (8, 4, 2), (12, 4, 1), (4, 2, 1)])
def test_shifted_window_mask_equals_timm(grid, window, shift):
    block = timm_swin.SwinTransformerBlock(dim=8, input_resolution=(grid, grid), num_heads=2,
                                           window_size=window, shift_size=shift)
    theirs = block.get_attn_mask()  # their -100 convention
    torch.testing.assert_close(shifted_window_mask(grid, window, shift, mask_value=-100.0), theirs)


def test_masked_weights_are_exact_zeros_not_subnormals():
    scores = torch.randn(49, 49) + shifted_window_mask(14, 7, 3)[3]
    weights = scores.softmax(-1)
    tiny = (weights > 0) & (weights < torch.finfo(torch.float32).tiny)
    assert not tiny.any()
    assert (weights[shifted_window_mask(14, 7, 3)[3] != 0] == 0).all()


def test_bad_shift_raises_a_clear_error():
    with pytest.raises(ConfigError, match="shift_size must be between 1 and window_size - 1"):
        shifted_window_mask(14, 7, 7)
    with pytest.raises(ConfigError, match="does not divide the 14x14 grid"):
        shifted_window_regions(14, 5, 2)


# --- shifted-window attention against naive attention inside each true window --------------------

def naive_window_attention(x: torch.Tensor, attn: WindowAttention, window: int, shift: int) -> torch.Tensor:
    """For each token of the unrolled grid, softmax attention over the tokens in the same true window.

    With a shift s the true windows of the original grid start at rows/columns s - w, s, s + w, ...
    (windows cut by the grid's border are smaller): two tokens share one iff floor((r - s) / w) and
    floor((c - s) / w) agree. No roll, no mask: explicit loops over query positions.
    """
    B, h, w, C = x.shape
    H, hd = attn.heads, C // attn.heads
    q, k, v = attn.qkv(x).reshape(B, h, w, 3, H, hd).unbind(3)  # each (B, h, w, H, hd)
    table = attn.relative_position_bias_table  # ((2w-1)^2, H)

    def true_window(r, c):
        return (r - shift) // window, (c - shift) // window

    out = torch.zeros(B, h, w, H, hd)
    for r in range(h):
        for c in range(w):
            keys = [(r2, c2) for r2 in range(h) for c2 in range(w) if true_window(r2, c2) == true_window(r, c)]
            k_sel = torch.stack([k[:, r2, c2] for r2, c2 in keys], dim=1)  # (B, n, H, hd)
            v_sel = torch.stack([v[:, r2, c2] for r2, c2 in keys], dim=1)  # (B, n, H, hd)
            bias = torch.stack([table[(r - r2 + window - 1) * (2 * window - 1) + (c - c2 + window - 1)]
                                for r2, c2 in keys], dim=-1)  # (H, n)
            scores = torch.einsum("bhd,bnhd->bhn", q[:, r, c], k_sel) * hd**-0.5 + bias  # (B, H, n)
            out[:, r, c] = torch.einsum("bhn,bnhd->bhd", scores.softmax(-1), v_sel)
    return attn.proj(out.reshape(B, h, w, C))


@pytest.mark.parametrize("grid, window, shift", [(14, 7, 3), (14, 7, 0), (8, 4, 2), (12, 4, 1)])
@pytest.mark.parametrize("fused", [True, False])
def test_shifted_window_attention_equals_naive_attention_inside_true_windows(grid, window, shift, fused):
    block = SwinBlock(dim=12, heads=3, grid_size=grid, window_size=window, shift_size=shift).eval()
    with torch.no_grad():
        block.attn.relative_position_bias_table.normal_()  # a bias large enough to matter
        block.attn.fused_attn = fused
        x = torch.randn(2, grid, grid, 12)
        torch.testing.assert_close(block.window_attention(x), naive_window_attention(x, block.attn, window, shift),
                                   rtol=1e-4, atol=1e-5)


def test_without_the_mask_the_shifted_attention_would_mix_regions():
    block = SwinBlock(dim=12, heads=3, grid_size=14, window_size=7, shift_size=3).eval()
    x = torch.randn(1, 14, 14, 12)
    with torch.no_grad():
        naive = naive_window_attention(x, block.attn, 7, 3)
        block.attn_mask = torch.zeros_like(block.attn_mask)
        assert not torch.allclose(block.window_attention(x), naive, atol=1e-3)


# --- blocks, patch merging and the whole model against timm ---------------------------------------

@pytest.mark.parametrize("shift", [0, 3])
def test_swin_block_equals_timm_block_with_the_same_weights(shift):
    ours = SwinBlock(dim=24, heads=3, grid_size=14, window_size=7, shift_size=shift, mlp_ratio=2.0).eval()
    theirs = timm_swin.SwinTransformerBlock(dim=24, input_resolution=(14, 14), num_heads=3, window_size=7,
                                            shift_size=shift, mlp_ratio=2.0).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0, 0.3)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 14, 14, 24)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


def test_patch_merging_hand_computed_and_equal_to_timm():
    merge = PatchMerging(dim=1).eval()
    with torch.no_grad():
        merge.norm.weight.fill_(1)
        merge.norm.bias.zero_()
        merge.reduction.weight.copy_(torch.eye(4)[:2])  # keep the first two of the four neighbours
    x = torch.arange(16.0).reshape(1, 4, 4, 1)
    concat = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
    assert concat[0, 0, 0].tolist() == [0, 4, 1, 5]  # (0,0), (1,0), (0,1), (1,1) of the top-left 2x2
    with torch.no_grad():
        out = merge(x)
    assert out.shape == (1, 2, 2, 2)
    torch.testing.assert_close(out, torch.nn.functional.layer_norm(concat, (4,), eps=1e-5)[..., :2])

    ours = PatchMerging(dim=6).eval()
    theirs = timm_swin.PatchMerging(dim=6).eval()
    theirs.load_state_dict(ours.state_dict())
    y = torch.randn(2, 8, 8, 6)
    with torch.no_grad():
        torch.testing.assert_close(ours(y), theirs(y))


def test_patch_merging_rejects_an_odd_grid():
    with pytest.raises(InputShapeError, match="even h and w"):
        PatchMerging(dim=4)(torch.zeros(1, 7, 7, 4))


def _timm_twin(cfg: SwinConfig):
    return timm_swin.SwinTransformer(img_size=cfg.img_size, patch_size=cfg.patch_size, in_chans=cfg.in_chans,
                                     num_classes=cfg.num_classes, embed_dim=cfg.embed_dim, depths=cfg.depths,
                                     num_heads=cfg.heads, window_size=cfg.window_size, mlp_ratio=cfg.mlp_ratio)


def _to_timm_names(state: dict) -> dict:
    renamed = {}
    for name, value in state.items():
        name = "layers." + name[len("stages."):] if name.startswith("stages.") else name
        name = "head.fc." + name[len("head."):] if name.startswith("head.") else name
        renamed[name] = value
    return renamed


@pytest.mark.parametrize("preset", ["fmnist-swin"])
def test_swin_equals_timm_swin_transformer_with_the_same_weights(preset):
    ours = vitlab.build_model(preset).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.05 * torch.randn_like(p))  # no weight left at a value that hides a mix-up
    theirs = _timm_twin(ours.cfg).eval()
    theirs.load_state_dict(_to_timm_names(ours.state_dict()))
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)
        ours.fused_attn = False
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


def test_three_stage_swin_on_a_padded_grid_equals_timm():
    cfg = SwinConfig(img_size=32, patch_size=2, in_chans=1, embed_dim=16, depths=(2, 2, 2), heads=(1, 2, 4),
                     window_size=4)
    assert cfg.grid_sizes == (16, 8, 4) and cfg.shift_sizes(0) == (0, 2) and cfg.shift_sizes(2) == (0, 0)
    ours = Swin(cfg).eval()
    theirs = _timm_twin(cfg).eval()
    theirs.load_state_dict(_to_timm_names(ours.state_dict()))
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


# --- the model: preset, shapes, determinism, checkpoints, errors ---------------------------------

def test_fmnist_swin_preset_shapes_and_size():
    model = vitlab.build_model("fmnist-swin")
    assert isinstance(model, Swin)
    n_vit = vitlab.count_parameters(vitlab.build_model("fmnist-vit"))
    assert abs(vitlab.count_parameters(model) - n_vit) / n_vit < 0.05
    x = torch.randn(2, 1, 28, 28)
    grid = model.forward_features(x)
    assert grid.shape == (2, 7, 7, 96)
    assert model(x).shape == (2, 10)
    counts = model.token_counts()
    assert [c["tokens"] for c in counts] == [196, 49]
    assert [c["windows"] for c in counts] == [4, 1]
    assert [c["shifts"] for c in counts] == [(0, 3), (0, 0)]


def test_swin_is_deterministic_and_batch_independent():
    vitlab.seed_everything(0)
    a = vitlab.build_model("fmnist-swin").eval()
    vitlab.seed_everything(0)
    b = vitlab.build_model("fmnist-swin").eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
        torch.testing.assert_close(a(x)[1:2], a(x[1:2]), rtol=1e-5, atol=1e-6)  # windows never mix images


def test_swin_fused_and_explicit_attention_agree():
    model = vitlab.build_model("fmnist-swin").eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        fused = model(x)
        model.fused_attn = False
        torch.testing.assert_close(model(x), fused, rtol=1e-5, atol=1e-5)


def test_swin_checkpoint_round_trip(tmp_path):
    model = vitlab.build_model("fmnist-swin").eval()
    save_checkpoint(model, tmp_path / "swin.safetensors")
    loaded = load_checkpoint(tmp_path / "swin.safetensors").eval()
    assert loaded.cfg == model.cfg and isinstance(loaded.cfg.depths, tuple)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert config_from_dict(config_to_dict(model.cfg)) == model.cfg


@pytest.mark.parametrize("changes, message", [
    (dict(window_size=4),
     r"window_size=4 does not divide stage 0's 14x14 token grid; windows that tile it: \[1, 2, 7, 14\]"),
    (dict(window_size=14), r"window_size=14 does not divide stage 1's 7x7"),
    (dict(depths=(2, 2, 2), heads=(3, 6, 12)), r"stage 1's 7x7 grid is odd"),
    (dict(patch_size=3), r"img_size=28 is not divisible by patch_size=3"),
    (dict(heads=(5, 6)), r"stage 0 has width 48, not divisible by heads=5"),
    (dict(heads=(3,)), r"one entry per stage"),
])
def test_bad_swin_configs_raise_clear_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        vitlab.get_preset("fmnist-swin", **changes)


def test_swin_rejects_images_of_the_wrong_shape():
    model = vitlab.build_model("fmnist-swin")
    with pytest.raises(InputShapeError, match=r"built for \(B, 1, 28, 28\) images"):
        model(torch.zeros(1, 1, 32, 32))
    with pytest.raises(InputShapeError, match="unsqueeze"):
        model(torch.zeros(1, 28, 28))


# --- plots ----------------------------------------------------------------------------------------

def test_swin_plots_return_figures():
    assert isinstance(plot_shift_regions(shifted_window_regions(14, 7, 3), window_size=7), Figure)
    assert isinstance(plot_window_masks(shifted_window_mask(14, 7, 3)), Figure)
    assert isinstance(plot_window_grid(14, 7, 3), Figure)
    assert isinstance(plot_window_grid(14, 7, 3, image=torch.zeros(28, 28, dtype=torch.uint8)), Figure)
    assert isinstance(plot_token_counts(vitlab.build_model("fmnist-swin").token_counts()), Figure)


# --- the experiment -----------------------------------------------------------------------------

from vitlab.experiments.common import ResultsFile, default_results_path  # noqa: E402
from vitlab.experiments.swin import ARMS, SCALES, arm_accuracies, arm_details, summary  # noqa: E402
from vitlab.experiments.t2t import Scale, run_id_for, run_scale  # noqa: E402


def test_swin_experiment_records_and_tabulates(tmp_path):
    tiny = Scale("tiny", train_sizes=(20,), images_per_run=(20,), test_size=20, batch_size=10)
    results = ResultsFile(tmp_path / "swin.json", "swin")
    records = run_scale(results, tiny, seeds=[0, 1], budget="quick", arms=ARMS, progress=False)
    assert [r["run_id"] for r in records] == ["tiny/ViT/n=20/seed=0", "tiny/Swin/n=20/seed=0",
                                              "tiny/ViT/n=20/seed=1", "tiny/Swin/n=20/seed=1"]
    assert records[1]["model"]["kind"] == "swin"
    accs = arm_accuracies(results, "tiny")
    assert list(accs) == ["ViT", "Swin"] and all(len(v) == 2 for v in accs.values())
    assert "k params" in arm_details(results, "tiny")["Swin"]
    assert [row["arm"] for row in summary(results, "tiny")] == ["ViT", "Swin"]


def test_committed_swin_result_matches_a_rerun_of_its_check_run(tmp_path):
    # Tolerance: 2 percentage points of the 1,000 test images (float rounding differs between CPUs).
    path = default_results_path("swin", "full")
    if not path.exists():
        pytest.skip("data/results/swin.json is not committed yet (vitlab reproduce swin --budget full).")
    committed = ResultsFile(path, "swin").get(run_id_for("check", "Swin", 1000, 0))
    assert committed is not None, "the committed file has no check run"
    rerun = run_scale(ResultsFile(tmp_path / "swin.json", "swin"), SCALES["check"], seeds=[0], budget="full",
                      arms={"Swin": "fmnist-swin"}, progress=False)[0]
    assert abs(rerun["test_accuracy"] - committed["test_accuracy"]) <= 0.02
