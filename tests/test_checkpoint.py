
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
