"""benchmarks/time_to_accuracy.py: the time-to-target rule by hand, and the script end to end (tiny settings)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "time_to_accuracy.py"


def load_script_module():
    spec = importlib.util.spec_from_file_location("time_to_accuracy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_time_to_targets_counts_optimisation_seconds_up_to_the_first_epoch_that_reaches_each_target():
    tta = load_script_module()
    history = [{"train_seconds": 10.0, "seconds": 15.0, "test_accuracy": 0.79},
               {"train_seconds": 12.0, "seconds": 17.0, "test_accuracy": 0.86},
               {"train_seconds": 11.0, "seconds": 16.0, "test_accuracy": 0.84},  # a dip does not undo a hit
               {"train_seconds": 13.0, "seconds": 18.0, "test_accuracy": 0.90}]
    assert tta.time_to_targets(history, [0.8, 0.85, 0.9, 0.95]) == {
        0.8: {"epoch": 2, "seconds": 22.0}, 0.85: {"epoch": 2, "seconds": 22.0},
        0.9: {"epoch": 4, "seconds": 46.0}, 0.95: None}


def test_the_classroom_recipes_are_lesson_03s():
    tta = load_script_module()
    assert tta.RECIPES["vit-p7"][0] == "fmnist-vit-p7" and tta.RECIPES["resnet-tiny"][0] == "fmnist-resnet-tiny"
    cfg = tta.RECIPES["vit-p7"][1]
    assert (cfg.batch_size, cfg.lr, cfg.warmup_epochs, cfg.augment) == (128, 2e-3, 0.5, False)


def run_script(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


def test_the_script_runs_and_reports_reached_and_missed_targets(tmp_path):
    out = tmp_path / "tta.json"
    done = run_script("--recipes", "vit-p7", "--epochs", "2", "--train-images", "200", "--test-images", "100",
                      "--targets", "0.01", "0.999", "--threads", "1", "--quiet", "--json", str(out))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "200 training images, 100 test images" in lines[0]
    row = next(line for line in lines if line.startswith("vit-p7 ") and "min" in line)
    assert "(ep 1)" in row and "not reached" in row
    written = json.loads(out.read_text())
    run, = written["runs"]
    assert [h["epoch"] for h in run["history"]] == [1, 2] and run["train"]["epochs"] == 2
    assert run["reached"]["0.999"] is None and run["reached"]["0.01"]["epoch"] == 1
    assert run["reached"]["0.01"]["seconds"] == run["history"][0]["train_seconds"]


def test_a_target_that_is_not_an_accuracy_is_refused_in_one_line():
    done = run_script("--targets", "90")
    assert done.returncode == 2 and "not an accuracy in (0, 1); give one such as 0.9" in done.stderr
