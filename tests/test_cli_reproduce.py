"""`vitlab reproduce NAME --budget quick|full [--results PATH] [--seeds ...] [--quiet]`."""

import json
import sys
import types

import pytest

from vitlab.cli import main
from vitlab.experiments import EXPERIMENTS
from vitlab.experiments.common import ResultsFile


@pytest.fixture
def fake_experiment(monkeypatch):
    """A registered experiment 'fake' whose run() records its arguments and writes one record."""
    module = types.ModuleType("vitlab_fake_cli_experiment")
    calls = []

    def run(budget="quick", results_path=None, progress=True, seeds=None):
        calls.append(dict(budget=budget, results_path=results_path, progress=progress, seeds=seeds))
        results = ResultsFile(results_path, "fake")
        results.add({"run_id": f"{budget}-{seeds}"})
        return results

    module.run = run
    monkeypatch.setitem(sys.modules, "vitlab_fake_cli_experiment", module)
    monkeypatch.setitem(EXPERIMENTS, "fake", "vitlab_fake_cli_experiment")
    return calls


def test_reproduce_runs_the_experiment_and_prints_where_the_results_are(tmp_path, capsys, fake_experiment):
    path = tmp_path / "fake.json"
    assert main(["reproduce", "fake", "--budget", "full", "--results", str(path), "--seeds", "0", "2",
                 "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"experiment": "fake", "budget": "full", "results": str(path), "runs": 1}
    assert fake_experiment == [dict(budget="full", results_path=path, progress=False, seeds=[0, 2])]


def test_reproduce_defaults_to_the_quick_budget_and_its_ignored_folder(capsys, fake_experiment, monkeypatch):
    import vitlab.experiments.common as common

    written = []
    monkeypatch.setattr(common.ResultsFile, "add", lambda self, record: written.append((self.path, record)))
    assert main(["reproduce", "fake", "--quiet"]) == 0
    call = fake_experiment[0]
    assert call["budget"] == "quick" and call["seeds"] is None
    assert call["results_path"].parts[-3:] == ("results", "quick", "fake.json")


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "nope"], "invalid choice: 'nope'"),
    (["reproduce", "data-scale", "--budget", "huge"], "invalid choice: 'huge'"),
    (["reproduce", "data-scale", "--seeds", "-1"], "a whole number >= 0"),
    (["reproduce"], "NAME"),
])
def test_reproduce_argument_errors_are_clear(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_foreign_results_file_is_refused(tmp_path, capsys, fake_experiment):
    path = tmp_path / "other.json"
    path.write_text('{"experiment": "hybrid", "format": 1, "runs": []}')
    assert main(["reproduce", "fake", "--results", str(path), "--quiet"]) == 2
    assert "holds results of experiment 'hybrid'" in capsys.readouterr().err


def test_a_corrupt_results_file_is_refused(tmp_path, capsys, fake_experiment):
    path = tmp_path / "broken.json"
    path.write_text('{"experiment": "fake", "runs": [')
    assert main(["reproduce", "fake", "--results", str(path), "--quiet"]) == 2
    assert "not a readable JSON results file" in capsys.readouterr().err


def test_device_is_refused_by_an_experiment_that_does_not_take_it(tmp_path, capsys, fake_experiment):
    assert main(["reproduce", "fake", "--results", str(tmp_path / "f.json"), "--device", "cuda"]) == 2
    assert "does not take option" in capsys.readouterr().err


def test_the_other_commands_are_still_there():
    from vitlab.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"train", "eval", "info", "reproduce"} <= set(sub.choices)


def test_an_interrupted_run_keeps_finished_runs_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    module = types.ModuleType("vitlab_fake_interrupted")

    def run(budget="quick", results_path=None, progress=True, seeds=None):
        ResultsFile(results_path, "fake").add({"run_id": "first"})
        raise KeyboardInterrupt  # Ctrl-C during the second run

    module.run = run
    monkeypatch.setitem(sys.modules, "vitlab_fake_interrupted", module)
    monkeypatch.setitem(EXPERIMENTS, "fake", "vitlab_fake_interrupted")
    path = tmp_path / "fake.json"
    assert main(["reproduce", "fake", "--results", str(path), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "run the same command again" in err
    assert [r["run_id"] for r in ResultsFile(path, "fake").records] == ["first"]


@pytest.mark.parametrize("where", ["under a file", "a folder", "unwritable"])
def test_a_results_path_that_cannot_be_written_is_one_line_before_the_first_run(where, tmp_path, capsys,
                                                                               fake_experiment, monkeypatch):
    import tempfile

    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    path = {"under a file": tmp_path / "f" / "r.json", "a folder": tmp_path / "d", "unwritable": tmp_path / "ro" / "r.json"}[where]
    if where == "unwritable":  # as root permissions do not bite: make the write itself fail, as a read-only disk does
        def read_only(*args, **kwargs):
            raise PermissionError(13, "Read-only file system")
        monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert main(["reproduce", "fake", "--results", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vitlab reproduce: error:") and len(err.strip().splitlines()) == 1
    assert fake_experiment == []  # nothing ran


def test_rule_picks_the_data_scale_view_and_its_results_file(capsys, monkeypatch):
    """`--rule equal-epochs` runs the second view into its own file; the headline file is never touched."""
    from vitlab.experiments import data_scale

    calls = []

    def run(budget="quick", results_path=None, progress=True, rule="converged"):
        calls.append((budget, results_path, rule))
        return ResultsFile(results_path, "data-scale")

    monkeypatch.setattr(data_scale, "run", run)
    assert main(["reproduce", "data-scale", "--rule", "equal-epochs", "--quiet"]) == 0
    assert main(["reproduce", "data-scale", "--rule", "converged", "--quiet"]) == 0
    assert main(["reproduce", "data-scale", "--rule", "finer-grid", "--budget", "full", "--quiet"]) == 0
    (b1, path1, rule1), (b2, path2, rule2), (b3, path3, rule3) = calls
    assert (rule1, path1.parts[-2:]) == ("equal-epochs", ("quick", "data-scale-equal-compute.json"))
    assert (rule2, path2.parts[-2:]) == ("converged", ("quick", "data-scale.json"))
    assert (b3, rule3, path3.parts[-2:]) == ("full", "finer-grid", ("results", "data-scale-finer-grid.json"))


def test_rule_is_refused_for_an_experiment_without_rules(tmp_path, capsys, fake_experiment):
    assert main(["reproduce", "fake", "--rule", "equal-epochs", "--results", str(tmp_path / "f.json")]) == 2
    err = capsys.readouterr().err
    assert "--rule is a data-scale option" in err and "drop --rule" in err and not fake_experiment
