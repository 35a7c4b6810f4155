import pytest
import torch

import vitlab
from vitlab import CheckpointError, TrainConfig, TrainingDivergedError, data
from vitlab.training import CHECKPOINT_NAME, augment_batch, lr_at

CFG = TrainConfig(epochs=3, batch_size=32, lr=1e-3, warmup_epochs=0.5, seed=7)


def _setup():
    vitlab.seed_everything(7)
    model = vitlab.build_model("fmnist-vit-tiny", depth=1, dim=32, heads=2, drop_rate=0.1)
    return model, data.fashion_mnist("train", subset=96, seed=7), data.fashion_mnist("test", subset=50)


def test_same_seed_same_run():
    results = []
    for _ in range(2):
        model, train_set, _ = _setup()
        results.append(vitlab.train(model, train_set, CFG, progress=False))
    for a, b in zip(results[0].model.state_dict().values(), results[1].model.state_dict().values()):
        assert torch.equal(a, b)
    assert [h["train_loss"] for h in results[0].history] == [h["train_loss"] for h in results[1].history]


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    model, train_set, test_set = _setup()
    straight = vitlab.train(model, train_set, CFG, test_set=test_set, progress=False)

    import vitlab.training as train_module

    calls = {"n": 0}
    real = train_module.augment_batch

    def crash_in_epoch_two(images, gen, pad=2):
        calls["n"] += 1
        if calls["n"] == 5:  # 3 batches per epoch: this is the 2nd batch of epoch 2
            raise KeyboardInterrupt
        return real(images, gen, pad)

    model, train_set, test_set = _setup()
    monkeypatch.setattr(train_module, "augment_batch", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        vitlab.train(model, train_set, CFG, test_set=test_set, out_dir=tmp_path, progress=False)
    monkeypatch.setattr(train_module, "augment_batch", real)
    assert vitlab.read_checkpoint_info(tmp_path / CHECKPOINT_NAME)["extra"]["epoch"] == 1

    vitlab.seed_everything(123)  # a fresh process would start from other weights: resume must not care
    fresh = vitlab.build_model("fmnist-vit-tiny", depth=1, dim=32, heads=2, drop_rate=0.1)
    resumed = vitlab.train(fresh, train_set, CFG, test_set=test_set, out_dir=tmp_path, progress=False)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert len(resumed.history) == 3
    assert [h["test_accuracy"] for h in resumed.history] == [h["test_accuracy"] for h in straight.history]
    saved = vitlab.load_checkpoint(tmp_path / "model.safetensors")
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(saved(x), resumed.model(x))


def test_resuming_a_different_run_is_refused(tmp_path):
    model, train_set, _ = _setup()
    vitlab.train(model, train_set, TrainConfig(epochs=1, batch_size=32), out_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match=r"different run \(train.lr: saved 0.001, now 0.0005\)\. Choose"):
        vitlab.train(model, train_set, TrainConfig(epochs=1, batch_size=32, lr=5e-4), out_dir=tmp_path,
                     progress=False)


def test_nan_loss_stops_with_a_clear_message():
    model, train_set, _ = _setup()
    model.head.register_forward_hook(lambda module, inp, out: out * float("nan"))
    with pytest.raises(TrainingDivergedError, match="Lower the learning rate"):
        vitlab.train(model, train_set, CFG, progress=False)


def test_training_learns_something():
    vitlab.seed_everything(0)
    model = vitlab.build_model("fmnist-vit-tiny")
    result = vitlab.train(model, data.fashion_mnist("train", subset=2000),
                          TrainConfig(epochs=3, batch_size=32, lr=2e-3, warmup_epochs=0.2, augment=False),
                          test_set=data.fashion_mnist("test", subset=500), progress=False)
    assert result.final["test_accuracy"] > 0.4  # chance is 0.1


def test_schedule_warms_up_then_decays_to_min_lr():
    cfg = TrainConfig(lr=1.0, min_lr=0.0)
    lrs = [lr_at(s, 100, 10, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] < 0.001


def _crops_and_flips(image, pad=2):
    """{(dy, dx, flipped): the crop} of every placement augment_batch may choose, by hand."""
    C, H, W = image.shape
    padded = torch.zeros(C, H + 2 * pad, W + 2 * pad, dtype=image.dtype)
    padded[:, pad:pad + H, pad:pad + W] = image
    out = {}
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy:dy + H, dx:dx + W]
            out[(dy, dx, False)], out[(dy, dx, True)] = crop, crop.flip(-1)
    return out


def test_augmentation_is_a_padded_random_crop_and_a_random_flip():
    """Every pixel value is distinct (1..64, padding is 0), so each output is exactly one of the 50
    placements, found by hand; over many images every offset and both flips turn up."""
    images = torch.arange(1, 65, dtype=torch.uint8).reshape(1, 1, 8, 8).repeat(400, 1, 1, 1)
    out = augment_batch(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    placements = _crops_and_flips(images[0])
    chosen = []
    for augmented in out:
        matches = [key for key, crop in placements.items() if torch.equal(augmented, crop)]
        assert len(matches) == 1, "an output that is no padded crop (or flip) of the image"
        chosen.append(matches[0])
    assert {(dy, dx) for dy, dx, _ in chosen} == {(dy, dx) for dy in range(5) for dx in range(5)}
    flipped = sum(f for _, _, f in chosen) / len(chosen)
    assert 0.4 < flipped < 0.6  # a fair coin over 400 images
    again = augment_batch(images, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # the generator decides everything


def test_fit_is_the_loop_written_out_by_hand():
    """train() (through fit) ends with bitwise the weights of the recipe written out in full: per
    epoch a generator seeded from (seed, epoch), a shuffled order, warm-up + cosine lr per step,
    augmentation, label-smoothed cross-entropy, clipping, AdamW without decay on biases/norms/embeddings."""
    import math

    import torch.nn.functional as F

    from vitlab.data import preprocess
    from vitlab.training import _epoch_seed

    model, train_set, _ = _setup()
    trained = vitlab.train(model, train_set, CFG, progress=False).model

    by_hand, train_set, _ = _setup()
    is_table = lambda n, p: p.ndim <= 1 or "pos_embed" in n or n == "cls_token"  # noqa: E731
    decay = [p for n, p in by_hand.named_parameters() if not is_table(n, p)]
    no_decay = [p for n, p in by_hand.named_parameters() if is_table(n, p)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": CFG.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=CFG.lr)
    steps = math.ceil(len(train_set) / CFG.batch_size)
    total, warmup = CFG.epochs * steps, round(CFG.warmup_epochs * steps)
    for epoch in range(CFG.epochs):
        by_hand.train()
        gen = torch.Generator().manual_seed(_epoch_seed(CFG.seed, epoch))
        torch.manual_seed(_epoch_seed(CFG.seed, epoch))
        order = torch.randperm(len(train_set), generator=gen)
        for i in range(steps):
            step = epoch * steps + i
            if step < warmup:
                lr = CFG.lr * (step + 1) / warmup
            else:
                progress = (step - warmup) / (total - warmup)
                lr = CFG.min_lr + 0.5 * (CFG.lr - CFG.min_lr) * (1 + math.cos(math.pi * progress))
            for group in optimizer.param_groups:
                group["lr"] = lr
            idx = order[i * CFG.batch_size:(i + 1) * CFG.batch_size]
            x = preprocess(augment_batch(train_set.images[idx], gen))
            loss = F.cross_entropy(by_hand(x), train_set.labels[idx], label_smoothing=CFG.label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(by_hand.parameters(), CFG.grad_clip)
            optimizer.step()
    for (name, a), b in zip(trained.state_dict().items(), by_hand.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 0, "epochs must be a positive int"), ("epochs", True, "epochs must be a positive int"),
    ("batch_size", 0, "batch_size must be a positive int"),
    ("lr", -1.0, r"lr must be a finite number in \(0, 1\]"), ("lr", 1e38, "lr must be"), ("lr", NAN, "lr must be"),
    ("min_lr", -1.0, r"min_lr must be a finite number in \[0, 1\]"), ("min_lr", 0.5, "min_lr=0.5 is above lr"),
    ("warmup_epochs", NAN, "warmup_epochs must be a finite number >= 0"), ("warmup_epochs", INF, "warmup_epochs"),
    ("weight_decay", NAN, "weight_decay must be a finite number >= 0"), ("weight_decay", -0.1, "weight_decay"),
    ("grad_clip", NAN, "grad_clip must be a finite number >= 0"), ("grad_clip", INF, "grad_clip"),
    ("label_smoothing", 1.0, r"label_smoothing must be in \[0, 1\)"), ("label_smoothing", NAN, "label_smoothing"),
    ("augment", "yes", "augment must be True or False"),
    ("seed", -1, r"seed must be an int in \[0, 4294967296\)"), ("seed", 2**63, "seed must be"), ("seed", 1.5, "seed"),
])
def test_every_number_of_a_recipe_is_checked_before_anything_trains(field, value, message):
    import dataclasses

    from vitlab.training import PretrainConfig

    recipes = [cls for cls in (TrainConfig, PretrainConfig) if field in {f.name for f in dataclasses.fields(cls)}]
    assert recipes
    for cls in recipes:  # the same rule for both recipes that have the field
        with pytest.raises(vitlab.ConfigError, match=f"{cls.__name__}.{message}"):
            cls(**{field: value})


def test_optimizer_step_hand_computed_with_and_without_clipping():
    from vitlab.training import optimizer_step

    # loss = w^2 at w = 1: gradient 2; SGD with lr 0.1 moves w to 1 - 0.1 * 2 = 0.8
    w = torch.nn.Parameter(torch.tensor([1.0]))
    model = torch.nn.Module()
    model.w = w
    optimizer = torch.optim.SGD([w], lr=0.1)
    optimizer_step(model, optimizer, (w ** 2).sum(), 0, epoch=1, step=1, lr=0.1, advice="-")
    assert w.item() == pytest.approx(0.8)
    # clipped to norm 0.5: the gradient 1.6 becomes 0.5, so w = 0.8 - 0.1 * 0.5 = 0.75
    optimizer_step(model, optimizer, (w ** 2).sum(), 0.5, epoch=1, step=2, lr=0.1, advice="-")
    assert w.item() == pytest.approx(0.75)
    # gradients do not pile up across steps: the second step saw 1.6 (not 2 + 1.6) before clipping
    optimizer_step(model, optimizer, (w ** 2).sum(), 0, epoch=1, step=1, lr=0.1, advice="-")
    assert w.item() == pytest.approx(0.75 - 0.1 * 1.5)


def test_optimizer_step_refuses_a_non_finite_loss_and_updates_nothing():
    from vitlab.training import optimizer_step

    w = torch.nn.Parameter(torch.tensor([1.0]))
    model = torch.nn.Module()
    model.w = w
    optimizer = torch.optim.SGD([w], lr=0.1)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(TrainingDivergedError, match=r"became (nan|inf) at epoch 2, step 5 \(lr 0\.1\)\. Lower it\."):
            optimizer_step(model, optimizer, (w * bad).sum(), 1.0, epoch=2, step=5, lr=0.1, advice="Lower it.")
    assert w.item() == 1.0 and w.grad is None


def test_pretraining_stops_with_a_clear_message_when_the_loss_diverges():
    from vitlab.experiments.mae import PretrainConfig, pretrain

    model = torch.nn.Linear(2, 1)

    def batch_loss(model, idx, gen):
        return model(torch.ones(len(idx), 2)).sum() * float("nan")

    with pytest.raises(TrainingDivergedError, match=r"at epoch 1, step 1 \(lr .*\)\. Lower the learning rate\."):
        pretrain(model, 8, batch_loss, PretrainConfig(epochs=1, batch_size=4), progress=False)


# ---- devices ----------------------------------------------------------------------------------------

def test_check_device_accepts_the_cpu_and_names_what_is_wrong_otherwise(monkeypatch):
    from vitlab.training import check_device

    assert check_device("cpu") == torch.device("cpu") and check_device(torch.device("cpu")).type == "cpu"
    with pytest.raises(vitlab.ConfigError, match="Unknown device 'gpu'.*'cuda'"):
        check_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(vitlab.DeviceUnavailableError, match="is_available\\(\\) is False.*'cpu'") as info:
        check_device("cuda")
    assert isinstance(info.value, ValueError)  # a bad argument, as a Python user expects
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(vitlab.DeviceUnavailableError, match="2 CUDA GPU.*cuda:0 .. cuda:1"):
        check_device("cuda:2")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(vitlab.DeviceUnavailableError, match="MPS"):
        check_device("mps")


def test_training_on_a_missing_gpu_fails_before_touching_the_model(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    vitlab.seed_everything(0)
    model = vitlab.build_model("fmnist-vit-tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(vitlab.DeviceUnavailableError):
        vitlab.train(model, data.fashion_mnist("train", subset=20), TrainConfig(epochs=1), progress=False,
                     device="cuda")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(vitlab.DeviceUnavailableError):
        vitlab.load_checkpoint("data/checkpoints/fmnist-vit/model.safetensors", map_location="cuda")
    with pytest.raises(vitlab.DeviceUnavailableError):  # the experiments check before loading data
        vitlab.run_experiment("hybrid", results_path="unused.json", device="cuda")


# ---- the run folder: one commit point, one writer ---------------------------------------------------

def test_a_kill_between_the_last_epochs_writes_is_repaired_by_the_rerun(tmp_path, monkeypatch):
    """The checkpoint is written first; killed before model.safetensors and history.json follow, the
    same command run again brings both to the checkpoint's epoch (they stayed an epoch behind before)."""
    import json

    import vitlab.training as train_module
    from vitlab.checkpoint import load_weights

    real = train_module.save_checkpoint

    def killed_after_the_last_checkpoint(model, path, **kw):
        if path.name == "model.safetensors" and kw["extra"]["epoch"] == CFG.epochs:
            raise KeyboardInterrupt  # kill -9 between the two writes
        return real(model, path, **kw)

    model, train_set, _ = _setup()
    monkeypatch.setattr(train_module, "save_checkpoint", killed_after_the_last_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        vitlab.train(model, train_set, CFG, out_dir=tmp_path, progress=False)
    monkeypatch.undo()
    assert json.loads((tmp_path / "history.json").read_text())["epoch"] == CFG.epochs - 1  # an epoch behind
    (tmp_path / "model.safetensors.x1y2.tmp").write_bytes(b"left by a killed write")

    model, train_set, _ = _setup()
    again = vitlab.train(model, train_set, CFG, out_dir=tmp_path, progress=False)
    assert len(again.history) == CFG.epochs
    assert json.loads((tmp_path / "history.json").read_text())["epoch"] == CFG.epochs
    shipped, resumed = vitlab.load_checkpoint(tmp_path / "model.safetensors"), _setup()[0]
    load_weights(resumed, tmp_path / CHECKPOINT_NAME)
    for (name, a), b in zip(shipped.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert not list(tmp_path.glob("*.tmp"))


def test_a_second_run_into_a_busy_folder_is_refused(tmp_path):
    """Another process holding the run folder (a training in progress): train() refuses at once."""
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from vitlab.checkpoint import folder_lock\n"
         f"with folder_lock({str(tmp_path)!r}):\n    print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        model, train_set, _ = _setup()
        with pytest.raises(vitlab.errors.FolderBusyError, match="another vitlab process"):
            vitlab.train(model, train_set, CFG, out_dir=tmp_path, progress=False)
        assert not (tmp_path / CHECKPOINT_NAME).exists()
    finally:
        holder.communicate("", timeout=30)
    model, train_set, _ = _setup()
    vitlab.train(model, train_set, TrainConfig(epochs=1, batch_size=32), out_dir=tmp_path, progress=False)  # free again


def test_history_times_the_steps_apart_from_the_evaluations(monkeypatch):
    """train_seconds covers the optimisation steps only, seconds adds the per-epoch evaluation: a slow
    evaluation shows in seconds and not in train_seconds (what time-to-accuracy benchmarks read)."""
    import time

    import vitlab.training as train_module

    model, train_set, test_set = _setup()
    real = train_module.evaluate

    def slow_evaluate(*args, **kwargs):
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", slow_evaluate)
    history = vitlab.train(model, train_set, TrainConfig(epochs=2, batch_size=32, seed=7), test_set=test_set,
                           progress=False).history
    for record in history:
        assert 0 < record["train_seconds"] and record["seconds"] - record["train_seconds"] >= 0.3
