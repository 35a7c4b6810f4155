"""benchmarks/speed_vs_timm.py runs end to end and reports in the documented format (no timing asserts)."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "speed_vs_timm.py"
TINY = ["--steps", "1", "--warmup", "1", "--repeats", "2", "--batch-size", "4", "--threads", "1"]


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


def load_script_module():
    spec = importlib.util.spec_from_file_location("speed_vs_timm", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_rows(lines: list[str], header_index: int) -> dict[str, list[str]]:
    """The rows under the table header at ``header_index``, by mode, split on whitespace."""
    rows = {}
    for line in lines[header_index + 1:]:
        if not line.strip():
            break
        rows[line.split()[0]] = line.split()
    return rows


def test_tiny_run_prints_both_tables_and_writes_matching_json(tmp_path):
    out = tmp_path / "results" / "speed.json"
    done = run_script(*TINY, "--self-check", "--json", str(out))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("preset fmnist-vit: 28x28x1, patch 4, dim 64, depth 6, heads 4")
    assert "1 thread(s)" in lines[1]
    headers = [i for i, line in enumerate(lines) if line.startswith("mode")]
    assert len(headers) == 2  # vitlab vs timm, then the noise floor
    for column in ("batch", "vitlab img/s", "timm img/s", "vitlab/timm", "quartiles", "CPU-time ratio"):
        assert column in lines[headers[0]]
    assert "copy img/s" in lines[headers[1]] and "vitlab/copy" in lines[headers[1]]
    assert "noise floor" in lines[headers[1] - 1]

    report = json.loads(out.read_text())
    assert report["preset"] == "fmnist-vit" and report["threads"] == 1
    assert report["model"]["config"]["dim"] == 64
    assert (report["steps"], report["warmup"], report["repeats"]) == (1, 1, 2)
    assert report["max_logit_difference"] <= 1e-5
    for key, header_index, reference in (("results", headers[0], "timm"), ("noise_floor", headers[1], "vitlab copy")):
        printed = table_rows(lines, header_index)
        assert [row["mode"] for row in report[key]] == ["inference", "training"] == list(printed)
        for row in report[key]:
            assert row["reference"] == reference and row["batch_size"] == 4
            assert len(row["vitlab_runs"]) == len(row["reference_runs"]) == len(row["ratios"]) == 2
            assert row["vitlab_images_per_s"] > 0 and row["reference_images_per_s"] > 0
            assert row["ratio_min"] <= row["ratio_q1"] <= row["ratio"] <= row["ratio_q3"] <= row["ratio_max"]
            cells = printed[row["mode"]]
            assert float(cells[2]) == pytest.approx(row["vitlab_images_per_s"], abs=0.06)
            assert float(cells[3]) == pytest.approx(row["reference_images_per_s"], abs=0.06)
            assert float(cells[4]) == pytest.approx(row["ratio"], abs=6e-4)
            low, high = cells[5].split("-")
            assert (float(low), float(high)) == pytest.approx((row["ratio_q1"], row["ratio_q3"]), abs=6e-4)
            assert float(cells[6]) == pytest.approx(row["cpu_time_ratio"], abs=6e-4)


def test_without_self_check_there_is_one_table_and_no_noise_floor(tmp_path):
    out = tmp_path / "speed.json"
    done = run_script("--steps", "1", "--warmup", "0", "--repeats", "1", "--threads", "1",
                      "--inference-batch-size", "3", "--training-batch-size", "2", "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert sum(line.startswith("mode") for line in done.stdout.splitlines()) == 1
    report = json.loads(out.read_text())
    assert report["noise_floor"] == []
    assert {row["mode"]: row["batch_size"] for row in report["results"]} == {"inference": 3, "training": 2}


def test_batch_sizes_default_per_preset_and_can_differ_per_mode():
    bench = load_script_module()
    fmnist = bench.parse_args([])
    assert (fmnist.preset, fmnist.inference_batch_size, fmnist.training_batch_size) == ("fmnist-vit", 512, 256)
    tiny = bench.parse_args(["--preset", "vit-ti16"])
    assert (tiny.inference_batch_size, tiny.training_batch_size) == (16, 8)
    both = bench.parse_args(["--batch-size", "4"])
    assert (both.inference_batch_size, both.training_batch_size) == (4, 4)
    split = bench.parse_args(["--batch-size", "4", "--training-batch-size", "2"])
    assert (split.inference_batch_size, split.training_batch_size) == (4, 2)
    assert split.threads is None and split.json is None  # torch's default thread count unless asked


@pytest.mark.parametrize("argv, message", [
    (["--preset", "fmnist-resnet"], "invalid choice"),
    (["--steps", "0"], "positive whole number"),
    (["--batch-size", "many"], "positive whole number"),
    (["--warmup", "-1"], "whole number >= 0"),
])
def test_bad_arguments_exit_with_a_clear_message(argv, message, capsys):
    bench = load_script_module()
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_two_models_are_the_same_function():
    bench = load_script_module()
    ours, theirs = bench.build_pair("fmnist-vit", seed=0)
    assert type(theirs).__name__ == "VisionTransformer"
    assert ours.fused_attn and all(block.attn.fused_attn for block in theirs.blocks)
    assert bench.max_logit_difference(ours, theirs, torch.randn(3, 1, 28, 28)) <= 1e-5


def test_models_that_disagree_stop_the_run_before_any_timing(monkeypatch):
    bench = load_script_module()
    monkeypatch.setattr(bench, "max_logit_difference", lambda ours, theirs, images: 0.5)
    monkeypatch.setattr(bench, "compare", lambda *args, **kwargs: pytest.fail("timed models that disagree"))
    with pytest.raises(SystemExit, match="disagree"):
        bench.main(["--batch-size", "2"])


def test_compare_alternates_order_and_takes_medians():
    bench = load_script_module()
    calls = []

    def step(name):
        def run():
            calls.append(name)
            time.sleep(0.002)
        return run

    result = bench.compare(step("vitlab"), step("timm"), batch_size=2, steps=1, warmup=1, repeats=3)
    # warm-up (vitlab, timm), then AB, BA, AB
    assert calls == ["vitlab", "timm", "vitlab", "timm", "timm", "vitlab", "vitlab", "timm"]
    assert len(result["ratios"]) == 3
    assert result["ratio"] == sorted(result["ratios"])[1]
    assert result["vitlab_images_per_s"] == sorted(result["vitlab_runs"])[1]


def test_training_mode_updates_both_models_and_inference_leaves_them_alone():
    bench = load_script_module()
    ours, theirs = bench.build_pair("fmnist-vit-tiny", seed=0)
    images, labels = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    before = ours.head.weight.detach().clone(), theirs.head.weight.detach().clone()
    bench.time_mode("inference", ours, theirs, images, labels, steps=1, warmup=0, repeats=1)
    assert not ours.training and not theirs.training
    assert torch.equal(ours.head.weight, before[0]) and torch.equal(theirs.head.weight, before[1])
    bench.time_mode("training", ours, theirs, images, labels, steps=1, warmup=0, repeats=1)
    assert ours.training and theirs.training
    assert not torch.equal(ours.head.weight, before[0]) and not torch.equal(theirs.head.weight, before[1])
    # same function, same data, same optimizer: still the same weights after training
    torch.testing.assert_close(ours.head.weight, theirs.head.weight, rtol=0, atol=1e-6)


def test_quartiles_by_hand():
    bench = load_script_module()
    assert bench.quartiles([0.9]) == (0.9, 0.9)
    assert bench.quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 4.0)  # inclusive: the 25th and 75th percentiles
    assert bench.quartiles([4.0, 1.0, 3.0, 2.0]) == pytest.approx((1.75, 3.25))  # 1 + 0.75, 1 + 2.25


def test_summarize_memory_benchmark_runs_on_a_tiny_model(tmp_path, capsys):
    import importlib.util
    import json

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "summarize_memory.py"
    spec = importlib.util.spec_from_file_location("summarize_memory", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "memory.json"
    assert module.main(["--preset", "fmnist-vit-tiny", "--images", "12", "--batch-size", "5", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["distance_shape"] == [4, 4] and figures["peak_rss_gb"] > 0
    # every map of 12 images: 12 x 4 blocks x 4 heads x 50 x 50 tokens x 4 bytes
    assert figures["all_maps_gb"] == round(12 * 4 * 4 * 50 * 50 * 4 / 1e9, 2)
    assert "target under 2 GB" in capsys.readouterr().out
