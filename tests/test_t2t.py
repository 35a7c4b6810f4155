"""Tokens-to-Token ViT: soft split (img2col), re-structurisation, the token transformer, the model."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import vitlab  # noqa: E402
from vitlab.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from vitlab.config import config_from_dict, config_to_dict  # noqa: E402
from vitlab.errors import ConfigError, InputShapeError  # noqa: E402
from vitlab.models.t2t import (T2TConfig, T2TViT, TokenAttention, TokenTransformer, soft_split,  # noqa: E402
                               soft_split_grid_size, tokens_to_grid)
from vitlab.plots.family import (plot_accuracy_vs_train_size, plot_arm_accuracies, plot_img2col,  # noqa: E402
                                 plot_soft_split_windows, plot_token_counts)


# --- soft split ---------------------------------------------------------------------------------

def test_soft_split_hand_computed_on_a_3x3_image():
    image = torch.arange(9.0).reshape(1, 1, 3, 3)
    tokens = soft_split(image, kernel=2, stride=1, padding=0)
    expected = torch.tensor([[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]).float()
    torch.testing.assert_close(tokens[0], expected)


def test_soft_split_pads_with_zeros():
    image = torch.ones(1, 1, 2, 2)
    tokens = soft_split(image, kernel=3, stride=1, padding=1)  # (1, 4, 9)
    assert tokens.shape == (1, 4, 9)
    torch.testing.assert_close(tokens[0, 0], torch.tensor([0, 0, 0, 0, 1, 1, 0, 1, 1.0]))


@pytest.mark.parametrize("kernel, stride, padding", [(7, 2, 3), (3, 2, 1), (4, 4, 0), (3, 1, 1)])
def test_soft_split_equals_explicit_windows(kernel, stride, padding):
    images = torch.randn(2, 3, 12, 12)
    tokens = soft_split(images, kernel=kernel, stride=stride, padding=padding)  # (B, L, C*k*k)
    padded = F.pad(images, (padding,) * 4)
    windows = padded.unfold(2, kernel, stride).unfold(3, kernel, stride)  # (B, C, g, g, k, k)
    B, C, g, _, k, _ = windows.shape
    expected = windows.permute(0, 2, 3, 1, 4, 5).reshape(B, g * g, C * k * k)  # channel, row, column
    torch.testing.assert_close(tokens, expected, rtol=0, atol=0)
    assert g == soft_split_grid_size(12, kernel, stride, padding)


def test_soft_split_with_kernel_equal_stride_is_vit_patchify():
    from vitlab.patches import patchify

    images = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(soft_split(images, kernel=4, stride=4, padding=0), patchify(images, 4))


@pytest.mark.parametrize("size, kernel, stride, padding, expected", [
    (28, 7, 2, 3, 14), (14, 3, 2, 1, 7), (224, 7, 4, 2, 56), (56, 3, 2, 1, 28), (28, 3, 2, 1, 14), (28, 4, 4, 0, 7),
])
def test_soft_split_grid_size_hand_computed(size, kernel, stride, padding, expected):
    assert soft_split_grid_size(size, kernel, stride, padding) == expected


def test_soft_split_that_misses_pixels_raises_a_clear_error():
    with pytest.raises(ConfigError, match=r"leaves the last 1 row\(s\)/column\(s\) outside every window"):
        soft_split_grid_size(28, 3, 2, 0)
    with pytest.raises(ConfigError, match="padding=3 must be smaller than kernel=3"):
        soft_split_grid_size(28, 3, 2, 3)
    with pytest.raises(InputShapeError, match=r"\(B, C, H, W\)"):
        soft_split(torch.zeros(28, 28), 3, 2, 1)


def test_tokens_to_grid_inverts_flattening():
    grid = torch.randn(2, 5, 7, 7)
    tokens = grid.flatten(2).transpose(1, 2)  # (B, 49, 5)
    torch.testing.assert_close(tokens_to_grid(tokens, 7), grid, rtol=0, atol=0)
    with pytest.raises(InputShapeError, match="7x7 grid"):
        tokens_to_grid(torch.zeros(2, 48, 5), 7)


# --- token transformer --------------------------------------------------------------------------

def test_token_attention_equals_its_formula_and_its_paths_agree():
    attn = TokenAttention(in_dim=9, dim=6, heads=2).eval()
    x = torch.randn(3, 10, 9)
    q, k, v = attn.qkv(x).chunk(3, dim=-1)  # each (B, L, 6)
    heads = lambda t: t.reshape(3, 10, 2, 3).transpose(1, 2)  # noqa: E731  (B, h, L, 3)
    weights = (heads(q) @ heads(k).transpose(-2, -1) / 3**0.5).softmax(-1)
    mixed = (weights @ heads(v)).transpose(1, 2).reshape(3, 10, 6)
    expected = v + attn.proj(mixed)  # the residual carries the values: widths 9 -> 6
    with torch.no_grad():
        torch.testing.assert_close(attn(x), expected)
        attn.fused_attn = False
        torch.testing.assert_close(attn(x), expected)


def test_token_transformer_changes_the_width():
    layer = TokenTransformer(in_dim=49, dim=40)
    assert layer(torch.randn(2, 196, 49)).shape == (2, 196, 40)


# --- the model ----------------------------------------------------------------------------------

def test_fmnist_t2t_preset_tokens_and_size():
    model = vitlab.build_model("fmnist-t2t")
    assert isinstance(model, T2TViT)
    assert model.cfg.grid_sizes == (28, 14, 7)
    counts = [(s["stage"], s["tokens"], s["width"]) for s in model.token_counts()]
    assert counts == [("image (pixels)", 784, 1), ("soft split 0", 196, 49), ("token transformer 0", 196, 40),
                      ("soft split 1", 49, 360), ("projection", 49, 64), ("backbone (with CLS)", 50, 64)]
    n_vit = vitlab.count_parameters(vitlab.build_model("fmnist-vit"))
    assert abs(vitlab.count_parameters(model) - n_vit) / n_vit < 0.02
    x = torch.randn(2, 1, 28, 28)
    assert model.t2t(x).shape == (2, 49, 64)
    assert model.forward_features(x).shape == (2, 50, 64)
    assert model(x).shape == (2, 10)


def test_t2t_module_equals_the_steps_written_out():
    model = vitlab.build_model("fmnist-t2t").eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        tokens = F.unfold(x, 7, stride=2, padding=3).transpose(1, 2)  # (B, 196, 49)
        tokens = model.t2t.token_transformers[0](tokens)  # (B, 196, 40)
        grid = tokens.transpose(1, 2).reshape(2, 40, 14, 14)  # (B, 40, 14, 14)
        tokens = F.unfold(grid, 3, stride=2, padding=1).transpose(1, 2)  # (B, 49, 360)
        torch.testing.assert_close(model.t2t(x), model.t2t.project(tokens))


def test_paper_t2t_vit_14_has_the_papers_parameter_count():
    cfg = T2TConfig(img_size=224, in_chans=3, num_classes=1000, t2t_kernels=(7, 3, 3), t2t_strides=(4, 2, 2),
                    t2t_paddings=(2, 1, 1), token_dim=64, dim=384, depth=14, heads=6, mlp_ratio=3.0,
                    qkv_bias=False, pos_embed="sincos2d")
    assert cfg.grid_sizes == (224, 56, 28, 14)
    with torch.device("meta"):
        model = T2TViT(cfg)
    assert round(vitlab.count_parameters(model) / 1e6, 1) == 21.5  # Yuan et al., Table 2: T2T-ViT_t-14


@pytest.mark.parametrize("changes", [dict(pool="gap"), dict(pos_embed="sincos2d"), dict(pos_embed="none"),
                                     dict(t2t_kernels=(4,), t2t_strides=(4,), t2t_paddings=(0,)),
                                     dict(t2t_kernels=(3, 3, 3), t2t_strides=(1, 2, 2), t2t_paddings=(1, 1, 1))])
def test_t2t_variants_build_and_run(changes):
    model = vitlab.build_model("fmnist-t2t", **changes).eval()
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_t2t_is_deterministic_and_checkpoints_round_trip(tmp_path):
    vitlab.seed_everything(0)
    a = vitlab.build_model("fmnist-t2t").eval()
    vitlab.seed_everything(0)
    b = vitlab.build_model("fmnist-t2t").eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    save_checkpoint(a, tmp_path / "t2t.safetensors")
    loaded = load_checkpoint(tmp_path / "t2t.safetensors").eval()
    assert loaded.cfg == a.cfg and isinstance(loaded.cfg.t2t_kernels, tuple)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), a(x), rtol=0, atol=0)
    assert config_from_dict(config_to_dict(a.cfg)) == a.cfg


@pytest.mark.parametrize("changes, message", [
    (dict(t2t_kernels=(3, 3), t2t_paddings=(0, 1)), r"soft split 0: .*leaves the last 1 row"),
    (dict(t2t_strides=(2,)), "one entry per soft split"),
    (dict(t2t_kernels=(40, 3)), "kernel=40 is larger than the padded 34x34 grid"),
    (dict(heads=3), "dim=64 is not divisible by heads=3"),
    (dict(token_heads=3), "token_dim=40 is not divisible by token_heads=3"),
    (dict(pos_embed="learned2d"), "pos_embed='learned2d' is unknown"),
])
def test_bad_t2t_configs_raise_clear_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        vitlab.get_preset("fmnist-t2t", **changes)


def test_t2t_rejects_images_of_the_wrong_shape():
    model = vitlab.build_model("fmnist-t2t")
    with pytest.raises(InputShapeError, match=r"built for \(B, 1, 28, 28\) images"):
        model(torch.zeros(2, 3, 28, 28))


# --- plots --------------------------------------------------------------------------------------

def test_t2t_plots_return_figures():
    image = torch.arange(16.0).reshape(4, 4)
    assert isinstance(plot_img2col(image, soft_split(image[None, None], 2, 2, 0)[0], kernel=2), Figure)
    assert isinstance(plot_soft_split_windows(torch.zeros(1, 28, 28), kernel=7, stride=2, padding=3), Figure)
    assert isinstance(plot_token_counts(vitlab.build_model("fmnist-t2t").token_counts()), Figure)
    table = {"vit": {1000: [0.7, 0.72, 0.71], 3000: [0.8, 0.81, 0.79]}, "t2t": {1000: [0.75], 3000: [0.82]}}
    assert isinstance(plot_accuracy_vs_train_size(table), Figure)
    assert isinstance(plot_arm_accuracies({"vit": [0.8, 0.81], "swin": [0.83]}, details={"vit": "206k"}), Figure)
    with pytest.raises(InputShapeError, match="outside the 14x14 token grid"):
        plot_soft_split_windows(torch.zeros(28, 28), kernel=7, stride=2, padding=3, windows=[(14, 0)])


# --- the experiment -----------------------------------------------------------------------------

from vitlab.experiments.common import ResultsFile, default_results_path  # noqa: E402
from vitlab.experiments.t2t import (SCALES, Scale, accuracy_table, run, run_id_for, run_scale,  # noqa: E402
                                    summary, train_config)


def test_t2t_experiment_records_resumes_and_tabulates(tmp_path):
    tiny = Scale("tiny", train_sizes=(20, 40), images_per_run=(20, 40), test_size=20, batch_size=10)
    results = ResultsFile(tmp_path / "t2t.json", "t2t")
    records = run_scale(results, tiny, seeds=[0], budget="quick", progress=False)
    assert [r["run_id"] for r in records] == ["tiny/ViT/n=20/seed=0", "tiny/T2T-ViT/n=20/seed=0",
                                              "tiny/ViT/n=40/seed=0", "tiny/T2T-ViT/n=40/seed=0"]
    assert records[1]["preset"] == "fmnist-t2t" and records[1]["model"]["kind"] == "t2t"
    again = run_scale(ResultsFile(tmp_path / "t2t.json", "t2t"), tiny, seeds=[0], budget="quick", progress=False)
    assert again == records  # read back from the file, nothing trained again
    table = accuracy_table(results, "tiny")
    assert list(table) == ["ViT", "T2T-ViT"] and sorted(table["ViT"]) == [20, 40]
    assert {row["arm"] for row in summary(results, "tiny")} == {"ViT", "T2T-ViT"}
    with pytest.raises(ConfigError, match="no runs of scale 'main'"):
        accuracy_table(results, "main")


def test_t2t_experiment_schedules():
    main = SCALES["main"]
    assert [train_config(main, n, 0).epochs for n in main.train_sizes] == [30, 15, 6]
    assert train_config(SCALES["check"], 1000, 2).seed == 2
    with pytest.raises(ConfigError, match="seeds must be"):
        run(seeds=[], results_path="/nonexistent/never-written.json")


def test_committed_t2t_result_matches_a_rerun_of_its_check_run(tmp_path):
    # Tolerance: 2 percentage points of the 1,000 test images (float rounding differs between CPUs; on
    # the machine that made the file the rerun is identical).
    path = default_results_path("t2t", "full")
    if not path.exists():
        pytest.skip("data/results/t2t.json is not committed yet (vitlab reproduce t2t --budget full).")
    committed = ResultsFile(path, "t2t").get(run_id_for("check", "T2T-ViT", 1000, 0))
    assert committed is not None, "the committed file has no check run"
    rerun = run_scale(ResultsFile(tmp_path / "t2t.json", "t2t"), SCALES["check"], seeds=[0], budget="full",
                      arms={"T2T-ViT": "fmnist-t2t"}, progress=False)[0]
    assert abs(rerun["test_accuracy"] - committed["test_accuracy"]) <= 0.02
