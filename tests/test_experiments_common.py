"""The shared experiment framework: budgets, results files, FLOP counts, resumable runs, the registry."""

import json
import subprocess
import sys
import time
import types

import pytest
from torch import nn

import vitlab
from vitlab.data import fashion_mnist
from vitlab.errors import ConfigError, VitlabError
from vitlab.experiments import (EXPERIMENTS, available_experiments, get_experiment, run_experiment)
from vitlab.experiments.common import (BUDGETS, ResultsError, ResultsFile, TrainSizeError, UnknownBudgetError,
                                       UnknownExperimentError, check_budget, check_train_sizes,
                                       committed_results, count_train_flops, default_results_path,
                                       epochs_for_images, git_commit, repo_root, run_classifier)
from vitlab.training import TrainConfig


# ---- budgets and paths ------------------------------------------------------------------------------

def test_every_experiment_plans_exactly_the_budgets_check_budget_accepts():
    import importlib

    for name in EXPERIMENTS:
        module = importlib.import_module(get_experiment(name).__module__)
        plans = getattr(module, "BUDGET_SETTINGS", None) or module.BUDGET_SCALES
        assert set(plans) == set(BUDGETS), name
        for budget in plans:
            assert check_budget(budget) == budget


def test_unknown_budget_is_a_typed_error_naming_the_choices():
    with pytest.raises(UnknownBudgetError, match="'quick'.*'full'"):
        check_budget("medium")
    assert issubclass(UnknownBudgetError, ConfigError) and issubclass(UnknownBudgetError, ValueError)


def test_full_results_are_committed_and_quick_results_go_to_the_ignored_folder():
    assert default_results_path("hybrid", "full") == repo_root() / "data" / "results" / "hybrid.json"
    assert default_results_path("hybrid", "quick") == repo_root() / "data" / "results" / "quick" / "hybrid.json"
    gitignore = (repo_root() / ".gitignore").read_text().split()
    assert "data/results/quick/" in gitignore


def test_committed_results_are_shown_only_when_a_whole_full_budget_finished(tmp_path, monkeypatch):
    from vitlab.experiments import common

    monkeypatch.setattr(common, "default_results_path", lambda name, budget: tmp_path / f"{name}.json")
    results, status = committed_results("hybrid")  # missing
    assert results is None
    assert status == ("data/results/hybrid.json is not committed yet (make it with "
                      "`vitlab reproduce hybrid --budget full`)")
    real = ResultsFile(repo_root() / "data" / "results" / "hybrid.json", "hybrid").records[0]  # a valid record
    partial = ResultsFile(tmp_path / "hybrid.json", "hybrid")
    partial.add({**real, "run_id": "a"})
    partial.add({**real, "run_id": "b"})
    results, status = committed_results("hybrid")  # interrupted or still running
    assert results is None
    assert status == ("data/results/hybrid.json is partial (2 records so far; finish it with "
                      "`vitlab reproduce hybrid --budget full`)")
    partial.mark_finished("full")
    results, status = committed_results("hybrid")
    assert [r["run_id"] for r in results.records] == ["a", "b"] and results.finished["runs"] == 2
    assert status.startswith("committed full result: data/results/hybrid.json (2 records, finished 20")
    partial.add({**real, "run_id": "c"})  # a run added afterwards: no longer what the finished budget made
    assert committed_results("hybrid")[0] is None


def test_committed_results_of_an_unknown_experiment_or_a_foreign_file_are_typed_errors(tmp_path, monkeypatch):
    from vitlab.experiments import common

    with pytest.raises(UnknownExperimentError, match="'hybird'.*choose one of: data-scale, hybrid"):
        committed_results("hybird")
    monkeypatch.setattr(common, "default_results_path", lambda name, budget: tmp_path / f"{name}.json")
    ResultsFile(tmp_path / "swin.json", "t2t").add({"run_id": "a"})  # another experiment's file
    with pytest.raises(ResultsError, match="experiment 't2t', not 'swin'"):
        committed_results("swin")


# Results files committed while their full budget still trains (over several working sessions). Each must be
# honest about it: no finished mark, every record a full-budget one, and its run folder holding each record's
# weights. Remove a name once its file is finished.
IN_PROGRESS: set = set()


def _experiment_of(stem: str) -> str | None:
    """The experiment a results file belongs to: its own name, or one of the extra views it declares."""
    import importlib

    for name in EXPERIMENTS:
        module = importlib.import_module(get_experiment(name).__module__)
        if stem == name or stem in getattr(module, "RESULTS_NAMES", {}).values():
            return name
    return None


def test_every_committed_results_file_is_a_finished_full_budget():
    """A partial file (an interrupted or still running full budget) must not be committed unless it is listed as
    in progress: lessons and the gallery would fall back to the quick run while the repository claimed to hold
    the result."""
    import shutil
    import subprocess

    root = repo_root()
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout: cannot tell committed results files from local ones")
    tracked = subprocess.run(["git", "ls-files", "data/results/*.json"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.split()
    assert tracked, "no committed results files found"
    for name in tracked:
        path = root / name
        if path.parent.name != "results":  # only the experiments' own files (not run folders or quick results)
            continue
        experiment = _experiment_of(path.stem)
        assert experiment is not None, f"{name}: not the results file of a registered experiment"
        results = ResultsFile(path, experiment)
        if name in IN_PROGRESS and results.finished is None:
            assert len(results) > 0, f"{name}: committed as in progress but holds no runs"
            for record in results.records:
                assert record["budget"] == "full", f"{name}: {record['run_id']} is not a full-budget run"
                if "weights" in record:
                    assert (path.parent / record["weights"]).is_file(), (
                        f"{name}: {record['run_id']}'s weights {record['weights']} are not committed")
            continue
        assert results.finished is not None and results.finished["budget"] == "full", (
            f"{name} is committed but partial; finish it with `vitlab reproduce {experiment} --budget full`")
        assert results.finished["runs"] == len(results), f"{name}: records added after the finished mark"


def test_train_sizes_larger_than_the_data_are_refused():
    assert check_train_sizes([100, 60000], 60000) == [100, 60000]
    with pytest.raises(TrainSizeError, match="70,000 is larger than the training set \\(60,000"):
        check_train_sizes([100, 70000], 60000)
    with pytest.raises(TrainSizeError, match="positive whole numbers"):
        check_train_sizes([0], 60000)


def test_epochs_for_images_rounds_up_and_is_at_least_one():
    assert epochs_for_images(1000, 300) == 4
    assert epochs_for_images(100, 60000) == 1
    assert epochs_for_images(600, 300) == 2


# ---- results files ----------------------------------------------------------------------------------

def test_results_file_round_trip_and_replace_by_run_id(tmp_path):
    path = tmp_path / "sub" / "exp.json"
    results = ResultsFile(path, "exp")
    assert results.records == [] and not path.exists()
    results.add({"run_id": "a", "test_accuracy": 0.5, "arm": "vit"})
    results.add({"run_id": "b", "test_accuracy": 0.7, "arm": "cnn"})
    results.add({"run_id": "a", "test_accuracy": 0.6, "arm": "vit"})
    again = ResultsFile(path, "exp")
    assert [r["run_id"] for r in again.records] == ["b", "a"]
    assert again.get("a")["test_accuracy"] == 0.6 and again.get("zzz") is None
    assert again.select(arm="cnn") == [{"run_id": "b", "test_accuracy": 0.7, "arm": "cnn"}]
    data = json.loads(path.read_text())
    assert data["experiment"] == "exp" and data["format"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["exp.json"]  # no temporary files left behind


def test_two_results_objects_on_one_file_keep_each_others_records(tmp_path):
    path = tmp_path / "exp.json"
    first, second = ResultsFile(path, "exp"), ResultsFile(path, "exp")  # e.g. two seeds in two processes
    first.add({"run_id": "seed0", "test_accuracy": 0.5})
    second.add({"run_id": "seed1", "test_accuracy": 0.6})  # second never read seed0, and keeps it
    first.add({"run_id": "seed0b", "test_accuracy": 0.7})
    assert [r["run_id"] for r in ResultsFile(path, "exp").records] == ["seed0", "seed1", "seed0b"]
    assert [r["run_id"] for r in first.records] == ["seed0", "seed1", "seed0b"]  # picked up on writing
    second.mark_finished("full")
    assert ResultsFile(path, "exp").finished["runs"] == 3  # the mark counts what the file holds
    first.remove(["seed1"])  # removing is the one way to drop a record from the file
    reread = ResultsFile(path, "exp")
    assert [r["run_id"] for r in reread.records] == ["seed0", "seed0b"] and reread.finished is None


_ADD_MANY = """
import pathlib, sys, time
from vitlab.experiments.common import ResultsFile
results = ResultsFile(sys.argv[1], "exp")  # both processes open the file before either writes
pathlib.Path(sys.argv[3]).touch()
while not pathlib.Path(sys.argv[4]).exists():
    time.sleep(0.01)
for i in range(25):
    results.add({"run_id": sys.argv[2] + str(i)})
"""


def test_two_processes_adding_to_one_file_at_once_lose_nothing(tmp_path):
    path, go = tmp_path / "out" / "exp.json", tmp_path / "go"
    workers = [subprocess.Popen([sys.executable, "-c", _ADD_MANY, str(path), name, str(tmp_path / name), str(go)])
               for name in ("a", "b")]
    deadline = time.monotonic() + 120
    while not all((tmp_path / name).exists() for name in "ab") and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    assert [w.wait(timeout=120) for w in workers] == [0, 0]
    ids = {r["run_id"] for r in ResultsFile(path, "exp").records}
    assert ids == {f"{name}{i}" for name in "ab" for i in range(25)}
    assert [p.name for p in path.parent.iterdir()] == ["exp.json"]  # no lock or temporary file left


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a readable JSON"),
    ('{"hello": 1}', "not a vitlab results file"),
    ('{"experiment": "other", "format": 1, "runs": []}', "experiment 'other', not 'exp'"),
    ('{"experiment": "exp", "format": 99, "runs": []}', "format 99"),
    ('{"experiment": "exp", "format": 1, "runs": [{"no_id": 1}]}', "run_id"),
])
def test_unreadable_or_foreign_results_files_raise_results_error(tmp_path, content, message):
    path = tmp_path / "exp.json"
    path.write_text(content)
    with pytest.raises(ResultsError, match=message) as info:
        ResultsFile(path, "exp")
    assert "--results" in str(info.value)  # the message says what to do
    assert isinstance(info.value, VitlabError)


def test_a_record_needs_a_run_id(tmp_path):
    with pytest.raises(ResultsError, match="run_id"):
        ResultsFile(tmp_path / "x.json", "x").add({"test_accuracy": 1.0})


def test_git_commit_is_a_hash_or_none():
    commit = git_commit()
    assert commit is None or len(commit.split("+")[0]) == 40


# ---- run_classifier ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_data():
    return fashion_mnist("train", subset=100), fashion_mnist("test", subset=200)


def test_run_classifier_records_everything_and_skips_a_finished_run(tmp_path, tiny_data):
    train_set, test_set = tiny_data
    calls = []

    def model_fn():
        calls.append(1)
        return vitlab.build_model("fmnist-vit-tiny", depth=1)

    results = ResultsFile(tmp_path / "r.json", "demo")
    cfg = TrainConfig(epochs=2, batch_size=50, seed=3)
    record = run_classifier(results, "vit/n=100/seed=3", model_fn=model_fn, train_set=train_set,
                            test_set=test_set, train_cfg=cfg, budget="quick", progress=False, arm="vit")
    for key in ("run_id", "experiment", "budget", "model", "params", "train_size", "test_size", "seed", "train",
                "images_seen", "forward_flops", "train_flops", "test_accuracy", "wall_seconds", "commit",
                "finished_at"):
        assert key in record, key
    assert record["arm"] == "vit" and record["seed"] == 3 and record["train_size"] == 100
    assert record["test_size"] == 200 and record["images_seen"] == 200 and record["experiment"] == "demo"
    assert record["model"]["kind"] == "vit" and record["model"]["config"]["depth"] == 1
    model = vitlab.build_model("fmnist-vit-tiny", depth=1)
    assert record["params"] == vitlab.count_parameters(model)
    assert record["train_flops"] == count_train_flops(model, (1, 28, 28), 200)
    assert 0.0 <= record["test_accuracy"] <= 1.0
    again = run_classifier(ResultsFile(tmp_path / "r.json", "demo"), "vit/n=100/seed=3", model_fn=model_fn,
                           train_set=train_set, test_set=test_set, train_cfg=cfg, budget="quick")
    assert again == record  # resumed from the file, not retrained (finished_at and wall time unchanged)
    assert len(calls) == 2  # the model is built again only to check the stored run is the same run


def test_run_classifier_refuses_a_stored_run_made_differently(tmp_path, tiny_data):
    train_set, test_set = tiny_data
    results = ResultsFile(tmp_path / "r.json", "demo")
    kwargs = dict(model_fn=lambda: vitlab.build_model("fmnist-vit-tiny", depth=1), train_set=train_set,
                  test_set=test_set, budget="quick", progress=False)
    run_classifier(results, "x", train_cfg=TrainConfig(epochs=1, batch_size=50), **kwargs)
    with pytest.raises(ResultsError, match="already holds run 'x', but made differently.*epochs"):
        run_classifier(results, "x", train_cfg=TrainConfig(epochs=2, batch_size=50), **kwargs)
    with pytest.raises(ResultsError, match="budget"):
        run_classifier(results, "x", train_cfg=TrainConfig(epochs=1, batch_size=50), **{**kwargs, "budget": "full"})


def test_run_classifier_is_repeatable_for_a_seed(tmp_path, tiny_data):
    train_set, test_set = tiny_data
    kwargs = dict(model_fn=lambda: vitlab.build_model("fmnist-vit-tiny", depth=1), train_set=train_set,
                  test_set=test_set, train_cfg=TrainConfig(epochs=1, batch_size=50, seed=1), budget="quick",
                  progress=False)
    first = run_classifier(ResultsFile(tmp_path / "a.json", "d"), "x", **kwargs)
    second = run_classifier(ResultsFile(tmp_path / "b.json", "d"), "x", **kwargs)
    assert first["test_accuracy"] == second["test_accuracy"] and first["test_loss"] == second["test_loss"]


def test_run_classifier_refuses_an_unknown_budget(tmp_path, tiny_data):
    with pytest.raises(UnknownBudgetError):
        run_classifier(ResultsFile(tmp_path / "a.json", "d"), "x", model_fn=nn.Identity, train_set=tiny_data[0],
                       test_set=tiny_data[1], train_cfg=TrainConfig(), budget="huge")


# ---- the registry -----------------------------------------------------------------------------------

def test_every_planned_experiment_is_registered():
    assert set(EXPERIMENTS) >= {"data-scale", "hybrid", "ablations", "resolution", "t2t", "swin", "mae", "clip"}
    for name, module in EXPERIMENTS.items():
        assert module.startswith("vitlab.experiments.")
        assert callable(get_experiment(name)) and get_experiment(name).__module__ == module
    assert available_experiments() == list(EXPERIMENTS)


def test_unknown_experiment_names_the_choices():
    with pytest.raises(UnknownExperimentError, match="Unknown experiment 'nope'.*data-scale"):
        get_experiment("nope")


@pytest.fixture
def fake_experiment(monkeypatch):
    """A registered experiment whose run() only records its arguments."""
    module = types.ModuleType("vitlab_fake_experiment")
    calls = []

    def run(budget="quick", results_path=None, progress=True, seeds=None):
        calls.append(dict(budget=budget, results_path=results_path, progress=progress, seeds=seeds))
        results = ResultsFile(results_path, "fake")
        results.add({"run_id": f"s{seeds}"})
        return results

    module.run = run
    monkeypatch.setitem(sys.modules, "vitlab_fake_experiment", module)
    monkeypatch.setitem(EXPERIMENTS, "fake", "vitlab_fake_experiment")
    return calls


def test_run_experiment_passes_its_options_on(tmp_path, fake_experiment):
    results = run_experiment("fake", budget="full", results_path=tmp_path / "f.json", progress=False, seeds=[4])
    assert fake_experiment == [dict(budget="full", results_path=tmp_path / "f.json", progress=False, seeds=[4])]
    assert results.records == [{"run_id": "s[4]"}]


def test_run_experiment_rejects_an_option_the_experiment_does_not_take(tmp_path, fake_experiment):
    with pytest.raises(ConfigError, match="does not take option.*device"):
        run_experiment("fake", results_path=tmp_path / "f.json", device="cuda")
    with pytest.raises(UnknownBudgetError):
        run_experiment("fake", budget="slow")
    assert fake_experiment == []


def test_a_whole_full_budget_marks_its_file_finished_and_a_partial_one_does_not(tmp_path, fake_experiment):
    path = tmp_path / "f.json"
    subset = run_experiment("fake", budget="full", results_path=path, progress=False, seeds=[4])
    assert subset.finished is None and ResultsFile(path, "fake").finished is None  # only some seeds
    quick = run_experiment("fake", budget="quick", results_path=tmp_path / "q.json", progress=False)
    assert quick.finished is None
    whole = run_experiment("fake", budget="full", results_path=path, progress=False)
    assert whole.finished["budget"] == "full" and whole.finished["runs"] == 2
    reread = ResultsFile(path, "fake")
    assert reread.finished == whole.finished and len(reread) == 2
    reread.add({"run_id": "one more"})  # the file no longer holds only what the finished budget made
    assert reread.finished is None and ResultsFile(path, "fake").finished is None
