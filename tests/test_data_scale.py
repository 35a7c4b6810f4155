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
import vitlab
from vitlab.data import fashion_mnist, hold_out
from vitlab.training import evaluate

torch.set_num_threads(1)


@pytest.mark.parametrize("settings", [experiment.BUDGET_SETTINGS["full"], experiment.EQUAL_EPOCHS_SETTINGS["full"]])
def test_full_budget_spans_a_few_hundred_to_all_images_with_three_seeds(settings):
    assert len(settings.sizes) >= 6 and min(settings.sizes) <= 500 and max(settings.sizes) == 60000
    assert list(settings.sizes) == sorted(settings.sizes)
    assert len(settings.seeds) >= 3 and settings.test_size is None  # the fixed 10,000-image test set
    assert set(experiment.ARMS) == {"vit", "hybrid", "cnn"}


def test_converged_rule_by_hand():
    full = experiment.BUDGET_SETTINGS["full"]  # cap 3M images (<= 200 epochs); patience 10 epochs or 20k images
    assert full.rule == "converged" and {"vit", "cnn"} <= set(full.arms)
    assert experiment.val_size_for(60000, full) == 6000 and experiment.val_size_for(250, full) == 25
    assert experiment.val_size_for(50, full) == 10  # at least 10 held out
    assert experiment.cap_for(54000, full) == 56  # ceil(3,000,000 / 54,000)
    assert experiment.cap_for(2250, full) == 200  # 1,334 epochs would pass the 200-epoch cap
    assert experiment.patience_for(54000, full) == 10
    assert experiment.patience_for(225, full) == 89  # ceil(20,000 / 225): a few hundred images need more epochs
    with pytest.raises(TrainSizeError, match="too small for a validation split"):
        experiment.val_size_for(15, full)


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
    monkeypatch.setitem(experiment.EQUAL_EPOCHS_SETTINGS, "quick", small)
    results = experiment.run("quick", results_path=tmp_path / "d.json", progress=False, arms=["vit", "cnn"],
                             rule="equal-epochs")
    assert len(results.records) == 2 * 2 * 2
    record = results.get(experiment.run_id_for("cnn", 30, 1))
    assert record["arm"] == "cnn" and record["size"] == record["train_size"] == 30 and record["seed"] == 1
    assert record["epochs"] == 2 and record["images_seen"] == 60 and record["test_size"] == 50
    assert record["budget"] == "quick" and record["data_seed"] == 1
    reloaded = ResultsFile(tmp_path / "d.json", "data-scale")
    assert reloaded.records == results.records
    again = experiment.run("quick", results_path=tmp_path / "d.json", progress=False, arms=["vit", "cnn"],
                           rule="equal-epochs")
    assert [r["finished_at"] for r in again.records] == [r["finished_at"] for r in results.records]


SMALL_CONVERGED = experiment.ConvergedBudget(sizes=(40, 80), seeds=(0,), max_images=320, max_epochs=6,
                                             patience_epochs=1, patience_images=60, val_fraction=0.25, test_size=60,
                                             batch_size=32, augment=False)


def test_converged_run_records_its_stop_and_saves_the_best_weights(tmp_path, monkeypatch):
    monkeypatch.setitem(experiment.BUDGET_SETTINGS, "quick", SMALL_CONVERGED)
    results = experiment.run("quick", results_path=tmp_path / "d.json", progress=False, arms=["vit", "cnn"])
    assert len(results.records) == 4
    record = results.get(experiment.run_id_for("vit", 80, 0))
    assert record["size"] == 80 and record["val_size"] == 20 and record["train_size"] == 60
    assert record["epoch_cap"] == 6 and record["patience"] == 1  # ceil(320 / 60) = 6; max(1, ceil(60 / 60))
    assert 1 <= record["best_epoch"] <= record["epochs_run"] <= 6
    assert record["images_seen"] == record["epochs_run"] * 60 and record["train"]["epochs"] == 6
    assert record["weights"] == "d-runs/vit/n=80/seed=0/model.safetensors"
    model = vitlab.load_checkpoint(tmp_path / record["weights"])
    test_set = fashion_mnist("test", subset=60, seed=0)
    assert evaluate(model, test_set)["accuracy"] == record["test_accuracy"]  # the weights the record measured
    train_set, val_set = hold_out(fashion_mnist("train", subset=80, seed=0), 20, seed=0)
    assert evaluate(model, val_set)["accuracy"] == record["val_accuracy"]
    assert not (tmp_path / "d-runs/vit/n=80/seed=0/train").exists()  # the working folder is cleaned up
    again = experiment.run("quick", results_path=tmp_path / "d.json", progress=False, arms=["vit", "cnn"])
    assert [r["finished_at"] for r in again.records] == [r["finished_at"] for r in results.records]


def test_finer_grid_view_trains_the_patch_2_vit_under_the_converged_rule(tmp_path, monkeypatch):
    full = experiment.FINER_GRID_SETTINGS["full"]
    assert full.sizes == (60000,) and full.arms == ("vit-p2",) and full.test_size is None
    headline = experiment.BUDGET_SETTINGS["full"]
    assert (full.max_images, full.max_epochs, full.patience_epochs, full.patience_images, full.val_fraction,
            full.batch_size) == (headline.max_images, headline.max_epochs, headline.patience_epochs,
                                 headline.patience_images, headline.val_fraction, headline.batch_size)
    assert experiment.ALL_ARMS["vit-p2"].patch_size == 2 and experiment.ALL_ARMS["vit-p2"].grid_size == 14
    monkeypatch.setitem(experiment.FINER_GRID_SETTINGS, "quick",
                        experiment.ConvergedBudget(**{**SMALL_CONVERGED.__dict__, "sizes": (40,),
                                                      "arms": ("vit-p2",), "rule": "finer-grid"}))
    results = experiment.run("quick", results_path=tmp_path / "f.json", progress=False, rule="finer-grid")
    (record,) = results.records
    assert record["arm"] == "vit-p2" and record["model"]["config"]["patch_size"] == 2
    assert record["val_size"] == 10 and 1 <= record["best_epoch"] <= record["epochs_run"] <= record["epoch_cap"]
    assert vitlab.load_checkpoint(tmp_path / record["weights"]).cfg.grid_size == 14


def _interrupt_at_the_second_validation(monkeypatch, results_path):
    """Run the quick budget's 80-image ViT until its second validation, then stop it as Ctrl-C would:
    epoch 1 stays behind in the run folder."""
    import vitlab.training as train_module

    real, calls = train_module.evaluate, {"n": 0}

    def crash_at_the_second_validation(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", crash_at_the_second_validation)
    with pytest.raises(KeyboardInterrupt):
        experiment.run("quick", results_path=results_path, progress=False, arms=["vit"], sizes=[80])
    monkeypatch.setattr(train_module, "evaluate", real)


def test_an_interrupted_converged_run_resumes_in_its_run_folder(tmp_path, monkeypatch):
    monkeypatch.setitem(experiment.BUDGET_SETTINGS, "quick", SMALL_CONVERGED)
    straight = experiment.run("quick", results_path=tmp_path / "a.json", progress=False, arms=["vit"], sizes=[80])
    _interrupt_at_the_second_validation(monkeypatch, tmp_path / "b.json")
    assert (tmp_path / "b-runs/vit/n=80/seed=0/train/checkpoint.safetensors").is_file()  # epoch 1 is kept
    assert not (tmp_path / "b.json").exists()
    resumed = experiment.run("quick", results_path=tmp_path / "b.json", progress=False, arms=["vit"], sizes=[80])
    (a,), (b,) = straight.records, resumed.records
    assert (a["best_epoch"], a["epochs_run"], a["test_accuracy"]) == (b["best_epoch"], b["epochs_run"], b["test_accuracy"])


def test_a_run_folder_of_another_recipe_is_refused(tmp_path, monkeypatch):
    from vitlab.errors import CheckpointError

    monkeypatch.setitem(experiment.BUDGET_SETTINGS, "quick", SMALL_CONVERGED)
    _interrupt_at_the_second_validation(monkeypatch, tmp_path / "d.json")  # epoch 1 of a 6-epoch cap stays
    other = experiment.ConvergedBudget(**{**SMALL_CONVERGED.__dict__, "max_epochs": 4})
    monkeypatch.setitem(experiment.BUDGET_SETTINGS, "quick", other)
    with pytest.raises(CheckpointError, match="different run .*train.epochs: saved 6, now 4"):
        experiment.run("quick", results_path=tmp_path / "d.json", progress=False, arms=["vit"], sizes=[80])


@pytest.mark.parametrize("field, value", [("patience_epochs", 0), ("max_epochs", 2.5), ("max_images", True),
                                          ("val_fraction", 1.0), ("val_fraction", 0)])
def test_a_budget_with_a_bad_patience_cap_or_split_is_refused(field, value):
    with pytest.raises(ConfigError, match=f"ConvergedBudget.{field} must be"):
        experiment.ConvergedBudget(**{**SMALL_CONVERGED.__dict__, field: value})


def test_an_unknown_rule_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="Unknown data-scale rule 'steps'"):
        experiment.run("quick", results_path=tmp_path / "d.json", rule="steps")


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
    monkeypatch.setitem(experiment.EQUAL_EPOCHS_SETTINGS, "quick", small)
    experiment.run("quick", results_path=tmp_path / "d.json", progress=False, arms=["vit"], rule="equal-epochs")
    monkeypatch.setitem(experiment.EQUAL_EPOCHS_SETTINGS, "quick", small.__class__(**{**small.__dict__, "epochs": 2}))
    with pytest.raises(ResultsError, match="already holds run 'vit/n=30/seed=0', but made differently"):
        experiment.run("quick", results_path=tmp_path / "d.json", progress=False, arms=["vit"], rule="equal-epochs")


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


def _curve_points_under(box, ax) -> list[str]:
    """The curves (lines of more than one point) that pass through a box on the screen."""
    import numpy as np

    hits = []
    for line in ax.lines:
        xy = line.get_xydata()
        if len(xy) < 2:
            continue
        pts = ax.transData.transform(xy)
        dense = np.concatenate([np.linspace(a, b, 60) for a, b in zip(pts[:-1], pts[1:])])
        if any(box.contains(x, y) for x, y in dense):
            hits.append(line.get_label())
    return hits


def test_data_scale_labels_and_legend_never_cover_a_curve():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    for results in (ResultsFile(FULL_RESULTS, "data-scale"), ResultsFile(CONVERGED, "data-scale")):
        summary = experiment.summarize(results.records)
        fig = plot_data_scale(summary, experiment.gap_landmarks(summary), paper=experiment.PAPER_TABLE5,
                              labels=experiment.ARM_LABELS)
        FigureCanvasAgg(fig).draw()
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[-1]
        for text in [t for t in ax.texts if t.get_text().strip()] + [ax.get_legend()]:
            assert not _curve_points_under(text.get_window_extent(renderer), ax), (results.path.name, text)
        legend = " ".join(t.get_text() for t in ax.get_legend().get_texts())
        assert "largest gap" in legend  # the landmarks are named, in the legend


FULL_RESULTS = repo_root() / "data" / "results" / "data-scale-equal-compute.json"
CONVERGED = repo_root() / "data" / "results" / "data-scale.json"
TOLERANCE = 0.03  # absolute test accuracy at 250 images; exact on the same machine and thread count


def test_smallest_configuration_matches_the_committed_full_result(tmp_path):
    """Re-run the cheapest full-budget run (ViT, 250 images, seed 0: ~20 s) and compare with the file."""
    if not FULL_RESULTS.exists():
        pytest.skip(f"{FULL_RESULTS} is not committed yet: run `vitlab reproduce data-scale --budget full`.")
    smallest = min(experiment.EQUAL_EPOCHS_SETTINGS["full"].sizes)
    committed = ResultsFile(FULL_RESULTS, "data-scale").get(experiment.run_id_for("vit", smallest, 0))
    assert committed is not None, "the committed file lacks the smallest ViT run of seed 0"
    rerun = experiment.run("full", results_path=tmp_path / "d.json", progress=False, seeds=[0], sizes=[smallest],
                           arms=["vit"], rule="equal-epochs")
    (mine,) = rerun.records
    assert mine["model"] == committed["model"] and mine["train"] == committed["train"]
    assert mine["images_seen"] == committed["images_seen"]
    assert abs(mine["test_accuracy"] - committed["test_accuracy"]) <= TOLERANCE


def _committed_converged_records():
    if not CONVERGED.exists():
        return []
    return ResultsFile(CONVERGED, "data-scale").records


@pytest.mark.parametrize("record", _committed_converged_records(), ids=lambda r: r["run_id"])
def test_every_committed_converged_run_ships_the_weights_it_measured(record):
    """Each committed run's weights rebuild and score its recorded accuracy on the test set (10,000 images)."""
    model = vitlab.load_checkpoint(CONVERGED.parent / record["weights"])
    assert model.cfg == build_model(experiment.ARMS[record["arm"]]).cfg
    test_set = fashion_mnist("test", subset=experiment.BUDGET_SETTINGS["full"].test_size, seed=0)
    assert abs(evaluate(model, test_set)["accuracy"] - record["test_accuracy"]) <= 1e-4
    assert record["best_epoch"] <= record["epochs_run"] <= record["epoch_cap"]


def test_inside_by_size_analyses_each_saved_vit_and_its_starting_point():
    from vitlab.analysis import pos_embed_distance_correlation, summarize, uniform_attention_distance
    from vitlab.data import preprocess
    from vitlab.patches import foreground_patches

    results = ResultsFile(CONVERGED, "data-scale")
    saved = sorted((r for r in results.records if r["arm"] == "vit" and r["seed"] == 0), key=lambda r: r["size"])
    rows = experiment.inside_by_size(results, test_size=20, seeds=[0], progress=False)
    assert [row["size"] for row in rows] == [0] + [r["size"] for r in saved]
    assert [row["test_accuracy"] for row in rows] == [None] + [r["test_accuracy"] for r in saved]
    # the untrained row is the runs' starting point: seed 0, then the arm's model
    vitlab.seed_everything(0)
    start = build_model(experiment.ARMS["vit"])
    assert rows[0]["pos_r"] == pytest.approx(pos_embed_distance_correlation(start.pos_embed))
    assert rows[0]["distance"].sub(uniform_attention_distance(7, 4)).abs().max() < 0.1  # untrained: uniform
    # the largest size's row: its own weights, analysed directly
    model = vitlab.load_checkpoint(CONVERGED.parent / saved[-1]["weights"])
    test_set = fashion_mnist("test", subset=20, seed=0)
    direct = summarize(model, preprocess(test_set.images), masks=foreground_patches(test_set.images, 4),
                       progress=False)
    torch.testing.assert_close(rows[-1]["distance"], direct["distance"])
    assert rows[-1]["rollout_share"] == pytest.approx(direct["rollout_share"].mean().item(), abs=1e-6)
    assert rows[-1]["pos_r"] == pytest.approx(pos_embed_distance_correlation(model.pos_embed))
    assert rows[-1]["spectrum"].shape == (16,) and rows[-1]["spectrum"].sum() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ConfigError, match="no saved .vit. weights for seeds"):
        experiment.inside_by_size(results, seeds=[99], progress=False)


def test_plot_inside_by_size_draws_every_panel_with_its_reference():
    from vitlab.plots import plot_inside_by_size

    rows = [{"size": size, "seed": seed, "test_accuracy": None if size == 0 else 0.8,
             "distance": torch.full((4, 4), 14.0 - size / 60000), "rollout_share": 0.6, "mask_share": 0.55,
             "pos_r": -size / 100000, "spectrum": torch.linspace(2, 1, 16) / torch.linspace(2, 1, 16).sum()}
            for seed in (0, 1) for size in (0, 250, 60000)]
    fig = plot_inside_by_size(rows, uniform=14.15, max_distance=33.9)
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    full, zoomed = fig.axes[0], fig.axes[1]
    levels = {round(float(line.get_ydata()[0]), 2) for line in full.lines if len(set(line.get_ydata())) == 1}
    assert {14.15, 33.9} <= levels and full.get_ylim()[1] > 33.9  # uniform and largest distance drawn
    assert zoomed.get_ylim()[1] < 33.9 and "off the scale" in zoomed.get_title()
    assert [t.get_text() for t in full.get_xticklabels()] == ["init", "250", "60k"]
    rollout = fig.axes[3]
    assert any(abs(float(line.get_ydata()[0]) - 55.0) < 1e-9 for line in rollout.lines)  # the base rate
    with pytest.raises(ConfigError, match="at least one row"):
        plot_inside_by_size([], uniform=14.15, max_distance=33.9)
