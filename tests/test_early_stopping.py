"""Early stopping on a held-out split of the training data: the split, the stopping rule, the kept weights,
resuming, and the refusals (no validation set, the test set, a bad patience)."""

import pytest
import torch

import vitlab
from vitlab import ConfigError, EarlyStopping, TrainConfig, data
from vitlab.training import BEST_NAME, CHECKPOINT_NAME, best_epoch, evaluate

torch.set_num_threads(1)
# 8 epochs of 3 steps at a learning rate high enough that validation accuracy wanders: the stop comes early
CFG = TrainConfig(epochs=8, batch_size=32, lr=5e-3, warmup_epochs=1, augment=False, seed=3)


def _setup():
    vitlab.seed_everything(3)
    model = vitlab.build_model("fmnist-vit-tiny", depth=1, dim=32, heads=2)
    train_set, val_set = data.hold_out(data.fashion_mnist("train", subset=120, seed=3), 24, seed=3)
    return model, train_set, val_set


def test_hold_out_is_disjoint_complete_and_class_balanced():
    full = data.fashion_mnist("train", subset=200, seed=1)
    train_set, val_set = data.hold_out(full, 50, seed=1)
    assert len(train_set) == 150 and len(val_set) == 50
    pairs = {(bytes(img.numpy()), int(y)) for img, y in zip(full.images, full.labels)}
    got = [(bytes(img.numpy()), int(y)) for d in (train_set, val_set) for img, y in zip(d.images, d.labels)]
    assert set(got) == pairs and len(got) == len(pairs)  # every image exactly once
    assert torch.bincount(val_set.labels, minlength=10).tolist() == [5] * 10
    again = data.hold_out(full, 50, seed=1)
    assert torch.equal(again[1].images, val_set.images)  # deterministic
    assert not torch.equal(data.hold_out(full, 50, seed=2)[1].images, val_set.images)  # the seed chooses


@pytest.mark.parametrize("val_size, message", [(200, "leaves nothing to train on"), (0, "positive int"),
                                               (2.5, "positive int"), (True, "positive int")])
def test_hold_out_refuses_a_split_that_is_not_a_part_of_the_data(val_size, message):
    with pytest.raises(ConfigError, match=message):
        data.hold_out(data.fashion_mnist("train", subset=200), val_size)


def test_best_epoch_by_hand():
    history = [{"epoch": 1, "v": 0.2}, {"epoch": 2, "v": 0.5}, {"epoch": 3, "v": 0.5}, {"epoch": 4, "v": 0.4}]
    assert best_epoch(history, "v") == 2  # the earlier of a tie
    assert best_epoch(history, "missing") is None


def test_training_stops_after_patience_epochs_and_keeps_the_best_weights():
    model, train_set, val_set = _setup()
    result = vitlab.train(model, train_set, CFG, val_set=val_set, early_stopping=EarlyStopping(patience=2),
                          progress=False)
    accs = [h["val_accuracy"] for h in result.history]
    best = result.best_epoch
    assert best == 1 + max(range(len(accs)), key=lambda i: (accs[i], -i))
    assert len(result.history) == best + 2 < CFG.epochs  # stopped: two epochs without a better one
    assert evaluate(result.model, val_set)["accuracy"] == accs[best - 1]  # the best epoch's weights, not the last
    # the same run without early stopping trains every epoch, and its weights differ
    model, train_set, val_set = _setup()
    plain = vitlab.train(model, train_set, CFG, val_set=val_set, progress=False)
    assert len(plain.history) == CFG.epochs and plain.best_epoch is None
    assert [h["val_accuracy"] for h in plain.history[:len(accs)]] == accs


def test_no_stop_during_the_warm_up():
    model, train_set, val_set = _setup()
    cfg = TrainConfig(**{**CFG.__dict__, "warmup_epochs": 6})
    result = vitlab.train(model, train_set, cfg, val_set=val_set, early_stopping=EarlyStopping(patience=1),
                          progress=False)
    assert len(result.history) >= 6


def test_an_interrupted_early_stopped_run_resumes_to_the_same_best_weights(tmp_path, monkeypatch):
    es = EarlyStopping(patience=2)
    model, train_set, val_set = _setup()
    straight = vitlab.train(model, train_set, CFG, val_set=val_set, early_stopping=es, progress=False)

    import vitlab.training as train_module

    real, calls = train_module.evaluate, {"n": 0}

    def crash_in_epoch_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the validation at the end of epoch 3, before its checkpoint
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    model, train_set, val_set = _setup()
    monkeypatch.setattr(train_module, "evaluate", crash_in_epoch_three)
    with pytest.raises(KeyboardInterrupt):
        vitlab.train(model, train_set, CFG, val_set=val_set, early_stopping=es, out_dir=tmp_path, progress=False)
    monkeypatch.setattr(train_module, "evaluate", real)
    assert vitlab.read_checkpoint_info(tmp_path / CHECKPOINT_NAME)["extra"]["epoch"] == 2

    vitlab.seed_everything(99)
    fresh = vitlab.build_model("fmnist-vit-tiny", depth=1, dim=32, heads=2)
    resumed = vitlab.train(fresh, train_set, CFG, val_set=val_set, early_stopping=es, out_dir=tmp_path,
                           progress=False)
    assert resumed.best_epoch == straight.best_epoch and len(resumed.history) == len(straight.history)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert vitlab.read_checkpoint_info(tmp_path / BEST_NAME)["extra"]["epoch"] == straight.best_epoch
    # a finished (stopped) run resumed once more trains nothing and ends with the same weights
    again = vitlab.train(vitlab.build_model("fmnist-vit-tiny", depth=1, dim=32, heads=2), train_set, CFG,
                         val_set=val_set, early_stopping=es, out_dir=tmp_path, progress=False)
    assert len(again.history) == len(straight.history)
    torch.testing.assert_close(again.model.state_dict(), straight.model.state_dict(), rtol=0, atol=0)


def test_a_stopped_run_whose_best_weights_are_gone_is_refused(tmp_path):
    es = EarlyStopping(patience=2)
    model, train_set, val_set = _setup()
    vitlab.train(model, train_set, CFG, val_set=val_set, early_stopping=es, out_dir=tmp_path, progress=False)
    (tmp_path / BEST_NAME).unlink()
    with pytest.raises(vitlab.CheckpointError, match="not its best weights"):
        vitlab.train(model, train_set, CFG, val_set=val_set, early_stopping=es, out_dir=tmp_path, progress=False)


def test_another_patience_in_the_same_folder_is_another_run(tmp_path):
    model, train_set, val_set = _setup()
    vitlab.train(model, train_set, CFG, val_set=val_set, early_stopping=EarlyStopping(patience=2), out_dir=tmp_path,
                 progress=False)
    with pytest.raises(vitlab.CheckpointError, match="early_stopping.patience: saved 2, now 3"):
        vitlab.train(model, train_set, CFG, val_set=val_set, early_stopping=EarlyStopping(patience=3),
                     out_dir=tmp_path, progress=False)


def test_early_stopping_needs_a_validation_set_and_never_the_test_set():
    model, train_set, val_set = _setup()
    with pytest.raises(ConfigError, match="needs a validation set"):
        vitlab.train(model, train_set, CFG, test_set=val_set, early_stopping=EarlyStopping(), progress=False)
    with pytest.raises(ConfigError, match="on the test set"):
        EarlyStopping(metric="test_accuracy")


@pytest.mark.parametrize("patience", [0, -3, 2.5, True, "10"])
def test_a_patience_that_is_not_a_positive_int_is_refused(patience):
    with pytest.raises(ConfigError, match="EarlyStopping.patience must be a positive int"):
        EarlyStopping(patience=patience)
