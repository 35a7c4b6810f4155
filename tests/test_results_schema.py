"""A results file that lies is refused on read, naming the record and the field; the committed ones pass."""

import copy
import json

import pytest

from vitlab.experiments import committed_results
from vitlab.experiments.common import ResultsError, ResultsFile, repo_root

COMMITTED = repo_root() / "data" / "results" / "data-scale-equal-compute.json"


@pytest.fixture(scope="module")
def committed():
    return json.loads(COMMITTED.read_text())


def _write(tmp_path, data):
    path = tmp_path / "data-scale.json"
    path.write_text(json.dumps(data))
    return path


def _tampered(data, change):
    data = copy.deepcopy(data)
    change(data)
    return data


def _set(field, value, index=3):
    def change(data):
        data["runs"][index][field] = value
    return change


def _drop(field, index=3):
    def change(data):
        del data["runs"][index][field]
    return change


@pytest.mark.parametrize("change, message", [
    (_drop("test_accuracy"), r"record 3 \('vit/n=.*'\) of a finished file lacks \['test_accuracy'\]"),
    (_set("test_accuracy", "0.9"), r"record 3 .*'test_accuracy' must be an accuracy"),
    (_set("test_accuracy", 5.0), r"'test_accuracy' must be an accuracy: a number in \[0, 1\]"),
    (_set("test_accuracy", float("nan")), "'test_accuracy' must be an accuracy"),
    (_set("budget", "quick"), "is of budget 'quick', but the file is marked finished for budget 'full'"),
    (_set("budget", "huge"), r"'budget' must be one of \('quick', 'full'\)"),
    (_set("epochs", 5), "'epochs' is 5 but its recipe trained"),
    (_set("images_seen", 12), "'images_seen' is 12 but"),
    (_set("train_flops", -1), "'train_flops' must be a whole number >= 0"),
    (_set("seed", "0"), "'seed' must be an int"),
    (_set("experiment", "hybrid"), "says it belongs to experiment 'hybrid'"),
    (lambda d: d["runs"][3]["train"].update(lr=float("nan")), "'train' is not a valid TrainConfig"),
    (lambda d: d.update(finished="yes"), "'finished' must be"),
    (lambda d: d["finished"].update(runs=99), "marked finished with 99 runs but holds 54"),
    (lambda d: d["runs"].__setitem__(3, "a string"), "record 3 is not a record"),
])
def test_a_tampered_results_file_is_refused_naming_the_record_and_field(tmp_path, committed, change, message):
    path = _write(tmp_path, _tampered(committed, change))
    with pytest.raises(ResultsError, match=message):
        ResultsFile(path, "data-scale")


def test_committed_results_refuses_a_tampered_file_instead_of_showing_it(tmp_path, monkeypatch, committed):
    from vitlab.experiments import common

    _write(tmp_path, _tampered(committed, _set("test_accuracy", 5.0)))
    monkeypatch.setattr(common, "default_results_path", lambda name, budget: tmp_path / f"{name}.json")
    with pytest.raises(ResultsError, match="test_accuracy"):
        committed_results("data-scale")


def test_the_untampered_copy_reads_and_every_committed_file_passes(tmp_path, committed):
    assert len(ResultsFile(_write(tmp_path, committed), "data-scale")) == 54
    for name in ("hybrid", "ablations", "resolution", "t2t", "swin", "mae", "clip"):
        results, status = committed_results(name)
        assert results is not None and status.startswith("committed full result"), status
    from vitlab.experiments import data_scale

    assert data_scale.equal_compute_results().finished is not None  # the second view: finished, 54 runs
    # the converged headline spans several working sessions: partial while it trains, and still checked on read
    results, status = committed_results("data-scale")
    assert results is not None or "partial" in status or "not committed" in status, status


def test_a_partial_file_needs_no_required_fields_and_a_lie_is_never_written(tmp_path):
    results = ResultsFile(tmp_path / "data-scale.json", "data-scale")
    results.add({"run_id": "vit/n=250/seed=0"})  # a run in progress may write little
    assert len(ResultsFile(tmp_path / "data-scale.json", "data-scale")) == 1
    with pytest.raises(ResultsError, match="'test_accuracy' must be an accuracy"):
        results.add({"run_id": "vit/n=500/seed=0", "test_accuracy": 1.5})
    assert len(ResultsFile(tmp_path / "data-scale.json", "data-scale")) == 1
