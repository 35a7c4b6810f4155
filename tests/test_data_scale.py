"""The data-scale reproduction: budgets, the budget rule, runs, summaries, landmarks, plots."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from vitlab.errors import ConfigError
from vitlab.experiments import data_scale as experiment
from vitlab.experiments.common import ResultsFile, TrainSizeError, count_train_flops, repo_root
from vitlab.models import build_model
from vitlab.plots.experiments import plot_data_scale

torch.set_num_threads(1)


def test_full_budget_spans_a_few_hundred_to_all_images_with_three_seeds():
    full = experiment.BUDGET_SETTINGS["full"]
    assert len(full.sizes) >= 6 and min(full.sizes) <= 500 and max(full.sizes) == 60000
    assert list(full.sizes) == sorted(full.sizes)
    assert len(full.seeds) >= 3 and full.test_size is None  # the fixed 10,000-image test set
    assert set(experiment.ARMS) == {"vit", "hybrid", "cnn"}


def test_budget_rule_same_epochs_with_a_floor_on_images_seen():
    budget = experiment.DataScaleBudget(sizes=(), seeds=(), epochs=3, min_images=8000, test_size=None)
    assert experiment.epochs_for(60000, budget) == 3
    assert experiment.epochs_for(2500, budget) == 4  # 3 epochs would be 7,500 < 8,000 images
    assert experiment.epochs_for(250, budget) == 32
    assert experiment.epochs_for(7, budget) == 1143  # ceil(8000 / 7)


def test_arms_have_matched_training_compute_per_image():
    flops = {arm: count_train_flops(build_model(cfg), (1, 28, 28), 1) for arm, cfg in experiment.ARMS.items()}
    assert max(flops.values()) / min(flops.values()) < 1.2, flops


def test_run_records_every_arm_size_and_seed_and_resumes(tmp_path, monkeypatch):
    small = experiment.DataScaleBudget(sizes=(30, 60), seeds=(0, 1), epochs=1, min_images=60, test_size=50)
    monkeypatch.setitem(experiment.BUDGET_SETTINGS, "quick", small)
    results = experiment.run("quick", results_path=tmp_path / "d.json", progress=False, arms=["vit", "cnn"])
    assert len(results.records) == 2 * 2 * 2
    record = results.get(experiment.run_id_for("cnn", 30, 1))
    assert record["arm"] == "cnn" and record["size"] == record["train_size"] == 30 and record["seed"] == 1
    assert record["epochs"] == 2 and record["images_seen"] == 60 and record["test_size"] == 50
    assert record["budget"] == "quick" and record["data_seed"] == 1
    reloaded = ResultsFile(tmp_path / "d.json", "data-scale")
    assert reloaded.records == results.records
    again = experiment.run("quick", results_path=tmp_path / "d.json", progress=False, arms=["vit", "cnn"])
    assert [r["finished_at"] for r in again.records] == [r["finished_at"] for r in results.records]


def test_a_train_size_larger_than_the_data_is_a_typed_error(tmp_path):
    with pytest.raises(TrainSizeError, match="70,000 is larger than the Fashion-MNIST training set \\(60,000"):
        experiment.run("quick", results_path=tmp_path / "d.json", sizes=[100, 70000])
    assert not (tmp_path / "d.json").exists()


def test_unknown_arm_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="Unknown data-scale arm"):
        experiment.run("quick", results_path=tmp_path / "d.json", arms=["mlp"])


def test_another_budget_in_the_same_file_is_refused(tmp_path, monkeypatch):
    from vitlab.experiments.common import ResultsError

    small = experiment.DataScaleBudget(sizes=(30,), seeds=(0,), epochs=1, min_images=30, test_size=50)
    monkeypatch.setitem(experiment.BUDGET_SETTINGS, "quick", small)
    experiment.run("quick", results_path=tmp_path / "d.json", progress=False, arms=["vit"])
    monkeypatch.setitem(experiment.BUDGET_SETTINGS, "quick", small.__class__(**{**small.__dict__, "epochs": 2}))
    with pytest.raises(ResultsError, match="already holds run 'vit/n=30/seed=0', but made differently"):
        experiment.run("quick", results_path=tmp_path / "d.json", progress=False, arms=["vit"])


def _records(table):
    return [dict(arm=arm, size=size, seed=seed, test_accuracy=acc, train_flops=size)
            for arm, rows in table.items() for size, accs in rows.items() for seed, acc in enumerate(accs)]


def test_summarize_by_hand():
    summary = experiment.summarize(_records({"vit": {100: [0.5, 0.7], 10: [0.2, 0.2]}, "cnn": {10: [0.4]}}))
    assert list(summary) == ["vit", "cnn"]  # arms in ARMS order
    vit = summary["vit"]
    np.testing.assert_array_equal(vit["sizes"], [10, 100])
    np.testing.assert_allclose(vit["mean"], [0.2, 0.6])
    np.testing.assert_allclose(vit["std"], [0.0, np.std([0.5, 0.7], ddof=1)])
    assert summary["cnn"]["std"][0] == 0.0 and summary["cnn"]["n_seeds"][0] == 1


def test_gap_landmarks_largest_smallest_and_crossing():
    summary = experiment.summarize(_records({"vit": {100: [0.5], 1000: [0.75], 10000: [0.92]},
                                             "cnn": {100: [0.7], 1000: [0.8], 10000: [0.9]}}))
    marks = experiment.gap_landmarks(summary)
    np.testing.assert_allclose(marks["gap"], [0.2, 0.05, -0.02])
    assert marks["largest_at"] == 100 and marks["largest_gap"] == pytest.approx(0.2)
    assert marks["smallest_at"] == 10000 and marks["crossings"] == [(1000, 10000)]
    with pytest.raises(ConfigError, match="No results for arm 'hybrid'"):
        experiment.gap_landmarks(summary, behind="hybrid")


def test_plot_data_scale_returns_a_figure_with_and_without_the_paper():
    summary = experiment.summarize(_records({"vit": {100: [0.5, 0.6], 1000: [0.75, 0.7], 10000: [0.92, 0.9]},
                                             "cnn": {100: [0.7, 0.72], 1000: [0.8, 0.82], 10000: [0.9, 0.91]}}))
    marks = experiment.gap_landmarks(summary)
    fig = plot_data_scale(summary, marks, paper=experiment.PAPER_TABLE5)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert fig.axes[1].get_xscale() == "log"
    assert isinstance(plot_data_scale(summary), Figure)
    with pytest.raises(ConfigError):
        plot_data_scale({})


FULL_RESULTS = repo_root() / "data" / "results" / "data-scale.json"
TOLERANCE = 0.03  # absolute test accuracy at 250 images; exact on the same machine and thread count


def test_smallest_configuration_matches_the_committed_full_result(tmp_path):
    """Re-run the cheapest full-budget run (ViT, 250 images, seed 0: ~20 s) and compare with the file."""
    if not FULL_RESULTS.exists():
        pytest.skip(f"{FULL_RESULTS} is not committed yet: run `vitlab reproduce data-scale --budget full`.")
    smallest = min(experiment.BUDGET_SETTINGS["full"].sizes)
    committed = ResultsFile(FULL_RESULTS, "data-scale").get(experiment.run_id_for("vit", smallest, 0))
    assert committed is not None, "the committed file lacks the smallest ViT run of seed 0"
    rerun = experiment.run("full", results_path=tmp_path / "d.json", progress=False, seeds=[0], sizes=[smallest],
                           arms=["vit"])
    (mine,) = rerun.records
    assert mine["model"] == committed["model"] and mine["train"] == committed["train"]
    assert mine["images_seen"] == committed["images_seen"]
    assert abs(mine["test_accuracy"] - committed["test_accuracy"]) <= TOLERANCE
