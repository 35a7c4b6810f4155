"""The masked autoencoder (vitlab.models.mae), its experiment and its plots."""

import json
import math

import einops
import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

import vitlab  # noqa: E402
from vitlab.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from vitlab.errors import CheckpointError, ConfigError, InputShapeError  # noqa: E402
from vitlab.experiments import mae as mae_experiment  # noqa: E402
from vitlab.experiments.common import repo_root  # noqa: E402
from vitlab.models.mae import (MAE, MAEConfig, masked_patch_loss, normalize_patches, num_visible_patches,  # noqa: E402
                               random_masking, restore_order, vit_from_mae)
from vitlab.patches import patchify, unpatchify  # noqa: E402
from vitlab.plots.mae import plot_label_efficiency, plot_loss_curves, plot_reconstructions  # noqa: E402

TINY = MAEConfig(img_size=8, patch_size=2, in_chans=1, dim=16, depth=2, heads=2, decoder_dim=8, decoder_depth=1,
                 decoder_heads=2)  # 16 patches


def tiny_mae(**changes) -> MAE:
    torch.manual_seed(0)
    return MAE(TINY.replace(**changes))


# ---- patchify / unpatchify (the MAE target) ----------------------------------------------------------

def test_patchify_matches_einops_and_a_loop_and_unpatchify_inverts_it():
    x = torch.randn(2, 3, 8, 12)
    P = 4
    patches = patchify(x, P)  # (2, 6, 48)
    torch.testing.assert_close(patches, einops.rearrange(x, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=P, p2=P))
    loop = torch.stack([torch.stack([x[b, :, r * P:(r + 1) * P, c * P:(c + 1) * P].flatten()
                                     for r in range(2) for c in range(3)]) for b in range(2)])
    torch.testing.assert_close(patches, loop)
    assert torch.equal(unpatchify(patches, P, 3, (2, 3)), x)


def test_the_mae_target_is_the_patchified_image_or_its_per_patch_normalisation():
    model = tiny_mae()
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(model.target(x), patchify(x, 2))
    normed = tiny_mae(norm_pix_loss=True).target(x)
    torch.testing.assert_close(normed, normalize_patches(patchify(x, 2)))


def test_normalize_patches_hand_case_and_constant_patches():
    patches = torch.tensor([[[1.0, 3.0], [5.0, 5.0]]])  # (1, 2, 2): mean 2, var 1; constant
    out = normalize_patches(patches, eps=0.0 + 1e-12)
    torch.testing.assert_close(out[0, 0], torch.tensor([-1.0, 1.0]))
    torch.testing.assert_close(out[0, 1], torch.zeros(2))


# ---- masking -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("N, ratio", [(49, 0.75), (49, 0.5), (16, 0.75), (16, 0.1), (64, 0.9)])
def test_masking_keeps_exactly_round_n_times_one_minus_ratio_patches_per_sample(N, ratio):
    tokens = torch.randn(5, N, 3)
    visible, mask, ids_restore, ids_keep = random_masking(tokens, ratio, torch.Generator().manual_seed(0))
    keep = round(N * (1 - ratio))
    assert num_visible_patches(N, ratio) == keep
    assert visible.shape == (5, keep, 3) and ids_keep.shape == (5, keep)
    assert mask.shape == (5, N) and torch.equal(mask.sum(1), torch.full((5,), float(N - keep)))
    for b in range(5):  # the kept tokens are the original ones, and exactly the unmasked positions
        assert torch.equal(visible[b], tokens[b, ids_keep[b]])
        assert set(ids_keep[b].tolist()) == set(torch.nonzero(mask[b] == 0).flatten().tolist())


def test_restore_indices_invert_the_shuffle():
    tokens = torch.randn(4, 49, 2)
    gen = torch.Generator().manual_seed(3)
    _, _, ids_restore, _ = random_masking(tokens, 0.75, gen)
    ids_shuffle = ids_restore.argsort(dim=1)  # the shuffle that ids_restore undoes
    shuffled = torch.stack([tokens[b, ids_shuffle[b]] for b in range(4)])  # loop, not gather
    assert torch.equal(restore_order(shuffled, ids_restore), tokens)
    assert torch.equal(torch.gather(ids_shuffle, 1, ids_restore), torch.arange(49).expand(4, -1))


def test_masks_are_per_sample_and_repeatable_with_a_generator():
    tokens = torch.randn(8, 49, 2)
    a = random_masking(tokens, 0.75, torch.Generator().manual_seed(0))[1]
    b = random_masking(tokens, 0.75, torch.Generator().manual_seed(0))[1]
    c = random_masking(tokens, 0.75, torch.Generator().manual_seed(1))[1]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(row.tolist()) for row in a}) > 1  # different samples, different masks


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 1.5, 0.99, 0.001, True, "0.75"])
def test_mask_ratio_outside_0_1_or_leaving_nothing_to_see_or_predict_raises(ratio):
    with pytest.raises(ConfigError, match="mask_ratio"):
        random_masking(torch.randn(1, 49, 2), ratio)
    with pytest.raises(ConfigError, match="mask_ratio"):
        MAEConfig(mask_ratio=ratio)


# ---- the loss ----------------------------------------------------------------------------------------

def test_masked_patch_loss_hand_case():
    pred = torch.tensor([[[1.0, 1.0], [0.0, 2.0], [3.0, 3.0]]])  # (1, 3, 2)
    target = torch.zeros(1, 3, 2)
    mask = torch.tensor([[1.0, 0.0, 1.0]])  # patches 0 and 2 masked
    # per-patch MSE: 1, 2, 9 -> (1 + 9) / 2 masked patches = 5 (patch 1 ignored)
    assert masked_patch_loss(pred, target, mask).item() == pytest.approx(5.0)
    with pytest.raises(InputShapeError, match="no patch"):
        masked_patch_loss(pred, target, torch.zeros(1, 3))


def test_the_models_loss_ignores_visible_patches():
    model = tiny_mae()
    x = torch.randn(3, 1, 8, 8)
    out = model(x, generator=torch.Generator().manual_seed(0))
    pred = out.pred.detach().requires_grad_(True)
    loss = masked_patch_loss(pred, model.target(x), out.mask)
    torch.testing.assert_close(loss, out.loss)
    loss.backward()
    visible = out.mask == 0  # (B, N)
    assert torch.all(pred.grad[visible] == 0) and torch.any(pred.grad[~visible] != 0)


# ---- the model ---------------------------------------------------------------------------------------

def test_shapes_through_the_model():
    model = tiny_mae()
    x = torch.randn(3, 1, 8, 8)
    latent, mask, ids_restore = model.forward_encoder(x, 0.75)
    assert latent.shape == (3, 1 + 4, 16)  # CLS + round(16 * 0.25) visible patches
    assert mask.shape == ids_restore.shape == (3, 16)
    assert model.forward_decoder(latent, ids_restore).shape == (3, 16, 4)  # (B, N, C*P*P)
    out = model(x)
    assert out.loss.shape == () and out.pred.shape == (3, 16, 4)


def test_the_encoder_sees_only_the_visible_patches():
    model = tiny_mae().eval()
    x = torch.randn(2, 1, 8, 8)
    latent, mask, _ = model.forward_encoder(x, 0.75, torch.Generator().manual_seed(0))
    hidden = unpatchify(mask[:, :, None].expand(-1, -1, 4), 2, 1).bool()  # (B, 1, 8, 8) pixels of masked patches
    changed = torch.where(hidden, torch.randn_like(x) * 100, x)
    latent2, mask2, _ = model.forward_encoder(changed, 0.75, torch.Generator().manual_seed(0))
    assert torch.equal(mask, mask2)
    torch.testing.assert_close(latent, latent2)


def test_forward_is_repeatable_with_a_generator():
    model = tiny_mae()
    x = torch.randn(2, 1, 8, 8)
    a = model(x, generator=torch.Generator().manual_seed(5))
    b = model(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.loss, b.loss) and torch.equal(a.pred, b.pred)


def test_reconstruct_pastes_true_visible_patches_and_predicted_masked_ones():
    model = tiny_mae(norm_pix_loss=True)
    x = torch.randn(2, 1, 8, 8)
    rec = model.reconstruct(x, 0.5, torch.Generator().manual_seed(0))
    visible = unpatchify((rec["mask"] == 0)[:, :, None].expand(-1, -1, 4).float(), 2, 1).bool()
    assert torch.equal(rec["pasted"][visible], x[visible])
    assert torch.isnan(rec["masked"][~visible]).all() and not torch.isnan(rec["masked"][visible]).any()
    assert {k: tuple(v.shape) for k, v in rec.items() if k != "mask"} == {k: (2, 1, 8, 8) for k in ("masked", "prediction", "pasted")}


def test_bad_images_raise_input_shape_error():
    with pytest.raises(InputShapeError, match="8x8"):
        tiny_mae()(torch.randn(1, 1, 10, 10))


def test_config_errors_are_clear():
    with pytest.raises(ConfigError, match="decoder_heads"):
        MAEConfig(decoder_dim=48, decoder_heads=5)
    with pytest.raises(ConfigError, match="divisible"):
        MAEConfig(img_size=28, patch_size=5)


def test_vit_from_mae_copies_the_encoder_and_adds_a_head():
    model = tiny_mae()
    x = torch.randn(2, 1, 8, 8)
    same = vit_from_mae(model, num_classes=10, pool="cls")  # the encoder exactly, plus a head
    torch.testing.assert_close(same.forward_features(x), model.encoder.forward_features(x))
    assert same(x).shape == (2, 10) and same.cfg == TINY.encoder_config(10)
    gap = vit_from_mae(model, num_classes=10)  # MAE's fine-tuning: mean of the patch tokens, no CLS token
    assert gap.cfg == TINY.encoder_config(10, pool="gap") and gap.cls_token is None
    torch.testing.assert_close(gap.pos_embed, model.encoder.pos_embed[:, 1:])
    for name, value in gap.state_dict().items():
        if not name.startswith(("head", "pos_embed")):
            torch.testing.assert_close(value, model.encoder.state_dict()[name])
    patch_tokens = model.encoder.blocks(model.encoder.patch_embed(x) + model.encoder.pos_embed[:, 1:])  # (2, 16, 16)
    torch.testing.assert_close(gap.forward_head(gap.forward_features(x), pre_logits=True),
                               model.encoder.norm(patch_tokens.mean(dim=1)))
    assert gap(x).shape == (2, 10)


def test_presets_build_and_checkpoints_round_trip(tmp_path):
    model = vitlab.build_model("fmnist-mae")
    assert isinstance(model, MAE) and model.cfg.num_patches == 49
    assert model.encoder.cfg == vitlab.get_preset("fmnist-vit").replace(num_classes=0, pos_embed="sincos2d")
    path = save_checkpoint(model, tmp_path / "mae.safetensors")
    loaded = load_checkpoint(path)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x, generator=torch.Generator().manual_seed(0)).loss,
                               model.eval()(x, generator=torch.Generator().manual_seed(0)).loss)


# ---- the training loop and the experiment's pieces -----------------------------------------------------

def test_pretrain_resumes_to_the_same_weights_as_an_uninterrupted_run(tmp_path):
    images = torch.randn(24, 1, 8, 8)
    calls = []

    def batch_loss(model, idx, gen):
        return model(images[idx], generator=gen).loss

    def interrupted_loss(model, idx, gen):  # stops at the first batch of epoch 2 (3 batches per epoch)
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return batch_loss(model, idx, gen)

    cfg = mae_experiment.PretrainConfig(epochs=2, batch_size=8, lr=1e-3, warmup_epochs=0.5)
    full = tiny_mae()
    history = mae_experiment.pretrain(full, 24, batch_loss, cfg, progress=False)
    assert [h["epoch"] for h in history] == [1, 2] and all(math.isfinite(h["loss"]) for h in history)
    with pytest.raises(KeyboardInterrupt):
        mae_experiment.pretrain(tiny_mae(), 24, interrupted_loss, cfg, out_dir=tmp_path, progress=False)
    assert json.loads((tmp_path / "history.json").read_text())["epoch"] == 1
    resumed = tiny_mae()
    again = mae_experiment.pretrain(resumed, 24, batch_loss, cfg, out_dir=tmp_path, progress=False)
    assert [h["loss"] for h in again] == pytest.approx([h["loss"] for h in history])
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
    with pytest.raises(CheckpointError, match="different run"):
        mae_experiment.pretrain(tiny_mae(), 24, batch_loss, cfg, out_dir=tmp_path, progress=False,
                                run_info={"another": 1})


def test_linear_probe_separates_separable_features_and_checks_shapes():
    torch.manual_seed(0)
    labels = torch.arange(40) % 2
    features = torch.randn(40, 3) + 4 * labels[:, None].float()
    metrics = mae_experiment.linear_probe(features, labels, features, labels, steps=100)
    assert metrics["train_accuracy"] == metrics["test_accuracy"] == 1.0
    with pytest.raises(InputShapeError):
        mae_experiment.linear_probe(features, labels, features[:, :2], labels)


def test_accuracy_table_groups_by_arm_and_size_in_seed_order():
    records = [{"run_id": "pretrain", "arm": "pretrain"},
               {"arm": "scratch", "size": 100, "seed": 1, "test_accuracy": 0.2},
               {"arm": "scratch", "size": 100, "seed": 0, "test_accuracy": 0.1},
               {"arm": "probe-mae", "size": 1000, "seed": 0, "test_accuracy": 0.5}]
    assert mae_experiment.accuracy_table(records) == {"probe-mae": {1000: [0.5]}, "scratch": {100: [0.1, 0.2]}}


def test_reconstruction_errors_grow_with_nothing_but_are_finite_per_ratio():
    errors = mae_experiment.reconstruction_errors(tiny_mae(), torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8),
                                                  [0.25, 0.75])
    assert set(errors) == {0.25, 0.75} and all(math.isfinite(v) for v in errors.values())


def test_unknown_budget_is_refused():
    with pytest.raises(ConfigError, match="budget"):
        mae_experiment.run("medium")


def test_full_result_reproduces_its_smallest_run():
    """Re-run the cheapest committed run (the linear probe on 100 labels, seed 0, on the committed
    pre-trained encoder) and compare with the committed accuracy (tolerance 0.5 points: float sums
    may differ across machines and thread counts)."""
    results_path = repo_root() / "data" / "results" / "mae.json"
    if not results_path.is_file():
        pytest.skip("data/results/mae.json is not committed yet: run `vitlab reproduce mae --budget full`.")
    if not (mae_experiment.run_dir(results_path) / "pretrain" / "model.safetensors").is_file():
        pytest.skip("the full run's pre-trained MAE (data/results/mae-runs/pretrain/model.safetensors) is not committed.")
    record = json.loads(results_path.read_text())
    record = next(r for r in record["runs"] if r["run_id"] == "probe-mae/n=100/seed=0")
    mae = mae_experiment.pretrained_mae(results_path)
    labelled = vitlab.data.fashion_mnist("train", subset=100, seed=0)
    test_set = vitlab.data.fashion_mnist("test")
    encoder = vit_from_mae(mae, 0)
    metrics = mae_experiment.linear_probe(mae_experiment.encoder_features(encoder, labelled.images),
                                          labelled.labels, mae_experiment.encoder_features(encoder, test_set.images),
                                          test_set.labels, seed=0)
    assert metrics["test_accuracy"] == pytest.approx(record["test_accuracy"], abs=0.005)


# ---- plots -----------------------------------------------------------------------------------------

def test_plots_return_figures():
    model = tiny_mae()
    x = torch.randn(3, 1, 8, 8)
    recs = {r: model.reconstruct(x, r, torch.Generator().manual_seed(0)) for r in (0.25, 0.75)}
    fig = plot_reconstructions(x, recs)
    assert isinstance(fig, Figure) and "hidden patches" in fig._suptitle.get_text()
    assert plot_reconstructions(x, recs, title="")._suptitle is None
    table = {"scratch": {100: [0.3, 0.35], 1000: [0.6]}, "finetune-mae": {100: [0.5], 1000: [0.7, 0.72]}}
    fig = plot_label_efficiency(table)
    assert isinstance(fig, Figure) and [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["100", "1,000"]
    assert isinstance(plot_loss_curves({"MAE": [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}]}), Figure)
    with pytest.raises(InputShapeError):
        plot_reconstructions(x, {})
