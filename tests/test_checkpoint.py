
import pytest
import torch

import vitlab
from vitlab import CheckpointError
from vitlab.checkpoint import CheckpointNotFoundError


def _model(**kw):
    return vitlab.build_model("fmnist-vit-tiny", **kw).eval()


def test_checkpoint_round_trip_rebuilds_the_same_model(tmp_path):
    model = _model(pos_embed="sincos2d", pool="gap")
    path = vitlab.save_checkpoint(model, tmp_path / "m.safetensors", extra={"note": "hello"})
    loaded = vitlab.load_checkpoint(path)
    assert loaded.cfg == model.cfg
    assert loaded.checkpoint_extra == {"note": "hello"}
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_resnet_checkpoint_round_trip(tmp_path):
    model = vitlab.build_model("fmnist-resnet").eval()
    loaded = vitlab.load_checkpoint(vitlab.save_checkpoint(model, tmp_path / "r.safetensors"))
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="No checkpoint"):
        vitlab.load_checkpoint(tmp_path / "nope.safetensors")


def test_corrupt_checkpoint(tmp_path):
    path = vitlab.save_checkpoint(_model(), tmp_path / "m.safetensors")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt"):
        vitlab.load_checkpoint(path)


def test_foreign_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "foreign.safetensors")
    with pytest.raises(CheckpointError, match="not a vitlab checkpoint"):
        vitlab.load_checkpoint(tmp_path / "foreign.safetensors")


class _Booby:
    """Unpickling this object creates a file: the proof that a pickle was executed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickled_checkpoint_is_refused_without_running_its_code(tmp_path):
    path, marker = tmp_path / "evil.pt", tmp_path / "the-pickle-ran"
    torch.save({"x": torch.zeros(1), "payload": _Booby(marker)}, path)
    with pytest.raises(CheckpointError):
        vitlab.load_checkpoint(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the same file, unpickled: the payload runs (the test can fail)
    assert marker.exists()


def test_mismatched_checkpoint_names_the_differing_fields(tmp_path):
    from vitlab.checkpoint import load_weights

    path = vitlab.save_checkpoint(_model(), tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="depth"):
        load_weights(_model(depth=2), path)


def test_rewriting_a_checkpoint_leaves_no_temporary_files(tmp_path):
    vitlab.save_checkpoint(_model(), tmp_path / "m.safetensors")
    vitlab.save_checkpoint(_model(), tmp_path / "m.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_a_write_that_dies_halfway_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    import vitlab.checkpoint

    path = vitlab.save_checkpoint(_model(), tmp_path / "m.safetensors")
    before = path.read_bytes()

    def half_then_crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise KeyboardInterrupt  # the process is stopped mid-write

    monkeypatch.setattr(vitlab.checkpoint, "save_file", half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        vitlab.save_checkpoint(_model(), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    vitlab.load_checkpoint(path)


def _with_config(tmp_path, **changes):
    """A real small checkpoint whose stored config was edited (the tensors stay the small model's)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    path = vitlab.save_checkpoint(_model(), tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    model = json.loads(meta["model"])
    model["config"].update(changes)
    meta["model"] = json.dumps(model)
    save_file(tensors, str(tmp_path / "edited.safetensors"), metadata=meta)
    return tmp_path / "edited.safetensors"


@pytest.mark.parametrize("changes", [dict(img_size=2800, patch_size=1), dict(img_size=100_000, patch_size=1),
                                     dict(depth=2)])
def test_a_config_that_does_not_fit_its_tensors_is_refused_from_the_header(tmp_path, changes):
    """Before, the model was built first: 4 GB and 18 s for img_size 2800, a raw allocation error for
    100000. Now the header's shapes are compared with a model built on the meta device."""
    import resource
    import time

    from vitlab.checkpoint import checkpoint_skeleton

    path = _with_config(tmp_path, **changes)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, the process's peak so far
    start = time.perf_counter()
    for read in (checkpoint_skeleton, vitlab.load_checkpoint):
        with pytest.raises(CheckpointError, match="do not fit the model its config describes.*pos_embed|blocks"):
            read(path)
    assert time.perf_counter() - start < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # under 0.5 GB more


def test_info_reports_a_checkpoint_from_its_header(tmp_path, capsys):
    import json

    from vitlab.cli import main

    path = vitlab.save_checkpoint(_model(), tmp_path / "m.safetensors", extra={"epoch": 3, "history": [{"a": 1}]})
    assert main(["info", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"] == sum(p.numel() for p in _model().parameters())
    assert info["extra"]["epoch"] == 3 and info["extra"]["last_epoch"] == {"a": 1}
    assert main(["info", str(_with_config(tmp_path, img_size=2800, patch_size=1))]) == 2
    assert "do not fit" in capsys.readouterr().err


def test_weights_that_do_not_fit_name_the_few_tensors_that_differ(tmp_path):
    """A model without a config (so no field can be compared): the message lists at most five tensors."""
    from vitlab.checkpoint import load_weights

    path = vitlab.save_checkpoint(_model(), tmp_path / "m.safetensors")
    other = _model(depth=2)
    del other.cfg  # e.g. a user's own module: only the tensors can be compared
    with pytest.raises(CheckpointError) as info:
        load_weights(other, path)
    message = str(info.value)
    import re

    assert re.search(r"blocks\.[23]\.[\w.]+: not in this model", message) and re.search(r"and \d+ more\)", message)
    assert len(message) < 600


@pytest.mark.parametrize("extra", ["[1, 2]", "not json", "\"a string\""])
def test_extra_metadata_that_is_not_a_json_object_is_a_typed_error(tmp_path, extra, capsys):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from vitlab.cli import main

    path = vitlab.save_checkpoint(_model(), tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta["extra"] = extra
    save_file(tensors, str(tmp_path / "odd.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="'extra' metadata"):
        vitlab.read_checkpoint_info(tmp_path / "odd.safetensors")
    assert main(["info", str(tmp_path / "odd.safetensors")]) == 2
    assert "'extra' metadata" in capsys.readouterr().err
