"""The higher-resolution reproduction: train at 28x28, move to 56x56, fine-tune."""

import shutil
import warnings

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import vitlab  # noqa: E402
from vitlab.config import PRESETS  # noqa: E402
from vitlab.errors import ConfigError, InputShapeError  # noqa: E402
from vitlab.experiments import EXPERIMENTS, get_experiment, run_experiment  # noqa: E402
from vitlab.experiments import resolution  # noqa: E402
from vitlab.experiments.common import ResultsFile, UnknownBudgetError, repo_root  # noqa: E402
from vitlab.plots.reproductions import plot_resolution  # noqa: E402

# The committed full result must be reproduced by re-running its smallest configuration (the 'small'
# base model of seed 0, tested at 28x28 and, interpolated, at 56x56). Same torch, one thread: exact;
# another thread count, CPU, torch version or attention kernel reorders float sums, which moves a
# 500-image accuracy by a few images. The base model must land within TOLERANCE. Testing it at twice its
# resolution without training amplifies those tiny weight differences (measured: the committed runs
# used a CLS-only last block, this code the full one; seed 0's base moved < 2 points, its zero-shot
# accuracy at 56x56 2.8 points), so the zero-shot rerun must land within the committed seeds' spread
# (their min..max), widened by TOLERANCE.
TOLERANCE = 0.02  # absolute, in accuracy (2 points)
COMMITTED = repo_root() / "data" / "results" / "resolution.json"

MICRO = resolution.Scale("small", train_size=40, test_size=20, base_epochs=1, finetune_epochs=1, batch_size=20,
                         lr=2e-3, finetune_lr=5e-4, preset="micro-vit")


def _shrink(monkeypatch) -> None:
    """The 'small' scale shrunk to seconds: 40 images, one epoch, a one-block ViT with 4x4 patches."""
    micro_vit = vitlab.ViTConfig(img_size=28, patch_size=4, in_chans=1, num_classes=10, dim=16, depth=1, heads=2,
                                 mlp_ratio=2.0)
    monkeypatch.setitem(PRESETS, "micro-vit", micro_vit)
    monkeypatch.setitem(resolution.SCALES, "small", MICRO)


@pytest.fixture(scope="module")
def micro_file(tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        _shrink(monkeypatch)
        path = tmp_path_factory.mktemp("resolution") / "resolution.json"
        resolution.run("quick", results_path=path, progress=False)
    return path


@pytest.fixture
def micro_results(micro_file, tmp_path, monkeypatch):
    _shrink(monkeypatch)
    path = tmp_path / "resolution.json"
    shutil.copy(micro_file, path)
    return ResultsFile(path, "resolution")


def test_resolution_is_registered_for_vitlab_reproduce():
    assert EXPERIMENTS["resolution"] == "vitlab.experiments.resolution"
    assert get_experiment("resolution") is resolution.run


def test_upsample_doubles_a_2x2_image_with_hand_computed_bilinear_values():
    image = torch.tensor([[[[0, 40], [80, 120]]]], dtype=torch.uint8)  # (1, 1, 2, 2)
    out = resolution.upsample_images(image, 4)  # (1, 1, 4, 4)
    # align_corners=False: new pixel centres at -0.25, 0.25, 0.75, 1.25 old pixels, clamped at the edges
    row = torch.tensor([0, 10, 30, 40])
    expected = torch.stack([row, row + 20, row + 60, row + 80]).to(torch.uint8)
    assert out.dtype == torch.uint8 and out.shape == (1, 1, 4, 4)
    torch.testing.assert_close(out[0, 0], expected)


def test_upsample_keeps_a_constant_image_and_works_in_chunks():
    images = torch.full((5, 1, 28, 28), 200, dtype=torch.uint8)
    out = resolution.upsample_images(images, 56, chunk=2)
    assert out.shape == (5, 1, 56, 56) and bool((out == 200).all())
    with pytest.raises(InputShapeError, match="uint8"):
        resolution.upsample_images(images.float(), 56)


def test_quick_run_records_every_condition_at_its_resolution(micro_results):
    records = micro_results.select(kind="run")
    assert len(records) == len(resolution.CONDITIONS)
    for stage, mode in resolution.CONDITIONS:
        (record,) = micro_results.select(stage=stage, pos_embed_mode=mode)
        high = mode in ("interpolate", "reinit")
        assert record["img_size"] == (56 if high else 28)
        assert record["model"]["config"]["img_size"] == record["img_size"]
        assert record["test_size"] == 20 and record["seed"] == 0 and record["budget"] == "quick"
        assert 0 <= record["test_accuracy"] <= 1
    zero_shot = micro_results.select(stage="zero-shot")
    assert all(r["train_flops"] == 0 for r in zero_shot)
    base = micro_results.get("small/base/trained/seed=0")
    assert zero_shot[0]["forward_flops"] > 4 * base["forward_flops"]  # 4x the tokens, and longer attention


def test_a_second_run_trains_nothing(micro_results, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(resolution, "run_classifier", refuse)
    monkeypatch.setattr(resolution, "load_data", refuse)
    again = resolution.run("quick", results_path=micro_results.path, progress=False)
    assert again.records == micro_results.records


def test_resuming_trains_the_base_again_and_gets_the_same_numbers(micro_results):
    before = {r["run_id"]: r["test_accuracy"] for r in micro_results.records}
    micro_results.remove([r["run_id"] for r in micro_results.records if r["stage"] != "base"])
    assert [r["stage"] for r in ResultsFile(micro_results.path, "resolution").records] == ["base"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a base that trains differently the second time would warn
        again = resolution.run("quick", results_path=micro_results.path, progress=False)
    assert {r["run_id"]: r["test_accuracy"] for r in again.records} == before


def test_records_turn_into_arrays_and_a_figure(micro_results):
    accuracies = resolution.condition_accuracies(micro_results, "small")
    assert list(accuracies) == [resolution.CONDITION_LABELS[c] for c in resolution.CONDITIONS]
    assert all(values.shape == (1,) for values in accuracies.values())
    assert resolution.scales_in(micro_results) == ["small"]
    assert isinstance(plot_resolution({"small": accuracies}, resolution.PUBLISHED_DEIT_B), Figure)


def test_bad_budget_and_seeds_are_typed_errors(tmp_path):
    with pytest.raises(UnknownBudgetError, match="'quick'.*'full'"):
        run_experiment("resolution", budget="huge", results_path=tmp_path / "r.json")
    with pytest.raises(ConfigError, match="seeds"):
        resolution.run("quick", results_path=tmp_path / "r.json", seeds=[])


def test_full_budget_covers_both_scales_with_three_seeds_and_fine_tunes_at_a_multiple_of_the_patch():
    assert resolution.BUDGET_SCALES == {"quick": ("small",), "full": ("small", "main")}
    assert resolution.BUDGET_SEEDS["full"] == (0, 1, 2)
    for scale in resolution.SCALES.values():
        assert scale.high_res % vitlab.get_preset(scale.preset).patch_size == 0


@pytest.mark.skipif(not COMMITTED.exists(), reason="data/results/resolution.json is not committed yet: the lead "
                    "runs `vitlab reproduce resolution --budget full` and commits it")
def test_committed_result_is_reproduced_by_rerunning_its_smallest_configuration(tmp_path):
    committed = ResultsFile(COMMITTED, "resolution")
    for name in ("small", "main"):  # the full budget ran every condition with three seeds at both scales
        assert all(len(v) == 3 for v in resolution.condition_accuracies(committed, name).values())
    scale = resolution.SCALES["small"]
    data = resolution.load_data(scale)
    fresh = ResultsFile(tmp_path / "again.json", "resolution")
    base_record, base = resolution.base_run(fresh, scale, data, seed=0, budget="quick", progress=False)
    zero_shot = resolution.zero_shot_run(fresh, scale, data, base, seed=0, mode="interpolate", budget="quick")
    expected = committed.get(base_record["run_id"])["test_accuracy"]
    assert base_record["test_accuracy"] == pytest.approx(expected, abs=TOLERANCE)
    seeds = [r["test_accuracy"] for r in committed.records
             if r["run_id"].startswith("small/zero-shot/interpolate/")]
    assert len(seeds) == 3
    assert min(seeds) - TOLERANCE <= zero_shot["test_accuracy"] <= max(seeds) + TOLERANCE, (zero_shot, seeds)


def test_resampled_channels_plot_returns_a_figure_and_checks_shapes():
    from vitlab.plots.reproductions import plot_resampled_channels

    before, after = torch.randn(7, 7, 8), torch.randn(14, 14, 8)
    assert isinstance(plot_resampled_channels(before, after, channels=(0, 5)), Figure)
    with pytest.raises(InputShapeError, match="same D"):
        plot_resampled_channels(before, torch.randn(14, 14, 4))
    with pytest.raises(InputShapeError, match="channels"):
        plot_resampled_channels(before, after, channels=(8,))
