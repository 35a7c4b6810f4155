import json
import subprocess
import sys

import pytest

from vitlab.cli import main


def test_train_then_eval_then_info(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "fmnist-vit-tiny", "--epochs", "1", "--subset", "200", "--seed", "1",
                 "--out", str(out), "--quiet"]) == 0
    assert (out / "model.safetensors").is_file() and (out / "history.json").is_file()
    capsys.readouterr()
    assert main(["eval", str(out / "model.safetensors"), "--subset", "100"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 100 and 0 <= result["accuracy"] <= 1
    assert main(["info", str(out / "model.safetensors")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model"]["config"]["dim"] == 64 and info["extra"]["last_epoch"]["epoch"] == 1


def test_info_lists_presets(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "fmnist-vit" in out
    assert "632,045,800" in out  # ViT-H/14, counted on the meta device without allocating 2.5 GB


@pytest.mark.parametrize("argv, message", [
    (["train", "--preset", "nope", "--out", "x"], "unknown preset 'nope'"),
    (["train", "--preset", "fmnist-vit", "--out", "x", "--epochs", "0"], "positive whole number"),
    (["train", "--preset", "fmnist-vit", "--out", "x", "--lr", "abc"], "expected a number"),
    (["train", "--preset", "fmnist-vit"], "--out"),
])
def test_argument_errors_are_clear(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--grad-clip", "nan"], "TrainConfig.grad_clip must be a finite number >= 0, got nan."),
    (["--weight-decay", "nan"], "TrainConfig.weight_decay must be a finite number >= 0, got nan."),
    (["--min-lr", "-1"], "TrainConfig.min_lr must be a finite number in [0, 1], got -1.0."),
    (["--warmup-epochs", "inf"], "TrainConfig.warmup_epochs must be a finite number >= 0, got inf."),
    (["--lr", "1e38"], "TrainConfig.lr must be a finite number in (0, 1], got 1e+38."),
    (["--seed", "-1"], "TrainConfig.seed must be an int in [0, 4294967296), got -1."),
    (["--seed", str(2**64)], "TrainConfig.seed must be an int in [0, 4294967296)"),
])
def test_a_recipe_number_out_of_range_is_one_line_before_anything_is_written(flags, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "fmnist-vit-tiny", "--epochs", "1", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_vitlab_errors_become_one_line_messages(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing.safetensors")]) == 2
    assert "No checkpoint" in capsys.readouterr().err
    assert main(["train", "--preset", "fmnist-vit-tiny", "--out", str(tmp_path), "--subset", "70000"]) == 2
    assert "larger than" in capsys.readouterr().err


def test_a_missing_gpu_is_one_line_before_any_data_is_read(tmp_path, capsys, monkeypatch):
    import torch

    import vitlab.cli

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(vitlab.cli, "_dataset", lambda *a, **k: pytest.fail("data read before the device check"))
    assert main(["train", "--preset", "fmnist-vit-tiny", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "torch.cuda.is_available() is False" in capsys.readouterr().err
    assert main(["reproduce", "hybrid", "--device", "cuda", "--results", str(tmp_path / "h.json")]) == 2
    assert "torch.cuda.is_available() is False" in capsys.readouterr().err
    assert not (tmp_path / "h.json").exists()


def test_python_dash_m_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "vitlab.cli", "info", "--preset", "fmnist-vit"],
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["parameters"] == 205_962


def test_the_vitlab_console_script_is_installed_and_runs():
    from pathlib import Path

    script = Path(sys.executable).parent / "vitlab"  # where pip puts [project.scripts] in this environment
    if not script.exists():
        pytest.skip(f"vitlab is not pip-installed in {sys.prefix} (make install puts the script there)")
    done = subprocess.run([str(script), "info", "--preset", "fmnist-vit"], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["parameters"] == 205_962


def test_train_and_eval_refuse_models_that_are_not_classifiers(tmp_path, capsys):
    import vitlab

    assert main(["train", "--preset", "fmnist-mae-tiny", "--epochs", "1", "--out", str(tmp_path / "run")]) == 2
    assert "not an image classifier" in capsys.readouterr().err
    vitlab.save_checkpoint(vitlab.build_model("fmnist-mae-tiny"), tmp_path / "mae.safetensors")
    assert main(["eval", str(tmp_path / "mae.safetensors"), "--subset", "10"]) == 2
    assert "vitlab reproduce mae" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["a file", "under a file", "unwritable"])
def test_an_output_folder_that_cannot_be_written_is_one_line_before_any_training(where, tmp_path, capsys,
                                                                                 monkeypatch):
    import tempfile

    import vitlab.training

    (tmp_path / "f").write_text("x")
    out = {"a file": tmp_path / "f", "under a file": tmp_path / "f" / "run", "unwritable": tmp_path / "ro"}[where]
    if where == "unwritable":  # as root permissions do not bite: make the write itself fail, as a read-only disk does
        def read_only(*args, **kwargs):
            raise PermissionError(13, "Read-only file system")
        monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr(vitlab.training, "train", lambda *a, **k: pytest.fail("trained before checking --out"))
    assert main(["train", "--preset", "fmnist-vit-tiny", "--epochs", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vitlab train: error:") and len(err.strip().splitlines()) == 1
    assert str(out) in err or str(tmp_path / "f") in err


def test_ctrl_c_during_training_is_one_line_that_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import vitlab.training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(vitlab.training, "train", interrupted)
    assert main(["train", "--preset", "fmnist-vit-tiny", "--epochs", "1", "--subset", "100", "--quiet",
                 "--out", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "run the same command again to resume" in err


def test_eval_prints_standard_json_even_when_the_loss_is_not_a_number(tmp_path, capsys, monkeypatch):
    import vitlab
    import vitlab.training

    path = vitlab.save_checkpoint(vitlab.build_model("fmnist-vit-tiny"), tmp_path / "m.safetensors")
    monkeypatch.setattr(vitlab.training, "evaluate", lambda *a, **k: {"accuracy": 0.5, "loss": float("nan")})
    assert main(["eval", str(path), "--subset", "20", "--quiet"]) == 0
    line = capsys.readouterr().out.strip()
    assert json.loads(line)["loss"] is None and "NaN" not in line
