"""The other methods that learn: loss-prediction head, rotation head, STN, PAL selection, pseudo-label items.

Tiny models (mobilenet_v2 encoder, 16-channel decoder) on 32×32 synthetic images; CPU, one thread.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import viewal.scoring.scorers.consistency  # noqa: F401  (registers the consistency need providers)
import viewal.scoring.scorers.pal  # noqa: F401  (registers the rotation_score need provider)
from viewal.datasets.base import Frame
from viewal.nn import augment, heads, pseudo
from viewal.nn.model import build_model, images_from_rgb


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _frame(rgb, labels=None, i=0, scene="s0"):
    H, W = rgb.shape[:2]
    return Frame(scene, f"{i:04d}", rgb=rgb, depth=np.ones((H, W), np.float32), K=np.eye(3), world_T_cam=np.eye(4),
                 labels=labels)


def _clean(rng, S=32):
    """Left half red = class 0, right half blue = class 1 (learnable)."""
    rgb = np.zeros((S, S, 3), np.uint8)
    rgb[:, : S // 2, 0] = 200
    rgb[:, S // 2:, 2] = 200
    rgb = np.clip(rgb.astype(int) + rng.integers(-20, 20, rgb.shape), 0, 255).astype(np.uint8)
    lab = np.zeros((S, S), np.int64)
    lab[:, S // 2:] = 1
    return rgb, lab


def _noisy(rng, S=32):
    """Grey noise with random labels (irreducible loss)."""
    rgb = rng.integers(60, 200, (S, S, 3)).astype(np.uint8)
    lab = rng.integers(0, 2, (S, S)).astype(np.int64)
    return rgb, lab


def test_loss_head_ranks_high_loss_image_above_low_loss():
    from viewal.nn.train import TrainConfig, fit

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build_model(2, decoder_channels=16)
    heads.attach_loss_head(model, hidden=32)
    items = []
    for i in range(12):
        rgb, lab = (_clean if i % 2 == 0 else _noisy)(rng)
        items.append((_frame(rgb, i=i), lab))
    cfg = TrainConfig(epochs=12, batch_size=4, lr=1e-2, flip=False, blur=False, seed=0)
    fit(model, items, [], cfg, extra_loss=heads.loss_prediction_extra_loss(weight=1.0), progress=False)
    model.eval()
    with torch.no_grad():
        clean = images_from_rgb(np.stack([_clean(rng)[0] for _ in range(3)]))
        noisy = images_from_rgb(np.stack([_noisy(rng)[0] for _ in range(3)]))
        l_clean = model.loss_head(model.encode(clean))
        l_noisy = model.loss_head(model.encode(noisy))
        # and the true losses agree with that order
        lab_c = torch.as_tensor(np.stack([_clean(rng)[1] for _ in range(3)]))
        true_c, _ = heads.per_image_seg_loss(model(clean), lab_c)
    assert float(true_c.mean()) < np.log(2)
    assert float(l_noisy.min()) > float(l_clean.max())


def test_region_loss_head_trains_and_provider_maps():
    from viewal.nn.train import TrainConfig, fit
    from viewal.scoring.needs import NeedContext, compute_needs

    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    model = build_model(2, decoder_channels=16)
    heads.attach_loss_head(model, hidden=32)
    items = []
    sp = np.zeros((32, 32), np.int32)
    sp[:, 16:] = 1  # region 0 = left half, region 1 = right half
    for i in range(8):
        c, _ = _clean(rng)
        n, nl = _noisy(rng)
        rgb = np.concatenate([c[:, :16], n[:, 16:]], axis=1)  # right half noisy with random labels
        lab = np.zeros((32, 32), np.int64)
        lab[:, 16:] = nl[:, 16:]
        items.append((_frame(rgb, i=i), lab, {"superpixels": sp}))
    cfg = TrainConfig(epochs=10, batch_size=4, lr=1e-2, flip=False, blur=False, seed=0)
    fit(model, items, [], cfg, extra_loss=heads.loss_prediction_extra_loss(region=True), progress=False)
    frames = [it[0] for it in items[:2]]
    ctx = NeedContext(model=model, frames=frames, batch_size=2, options={"superpixels": np.stack([sp, sp])})
    lp = compute_needs(["loss_pred"], ctx)["loss_pred"]
    assert lp.shape == (2, 32, 32)
    # constant over each superpixel, and the noisy right half predicted harder
    for f in lp:
        assert np.ptp(f[:, :16]) < 1e-5 and np.ptp(f[:, 16:]) < 1e-5
    assert (lp[:, 0, 20] > lp[:, 0, 0]).all()
    with pytest.warns(UserWarning):
        lp2 = compute_needs(["loss_pred"], NeedContext(model=model, frames=frames, batch_size=2))["loss_pred"]
    assert lp2.shape == (2, 32, 32)


def _oriented(rng, S=32):
    """A bright top band and a bright left bar: every rotation looks different."""
    rgb = rng.integers(0, 60, (S, S, 3))
    rgb[: S // 4] += 150
    rgb[:, : S // 8] += 90
    return np.clip(rgb, 0, 255).astype(np.uint8)


class _TinyEncoderModel(torch.nn.Module):
    """A small conv encoder with SegModel's ``encode``/``encoder``/``encoder_channels`` (fast, learns quickly)."""

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, 2, 1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, 2, 1), torch.nn.BatchNorm2d(32), torch.nn.ReLU())
        self.encoder_channels = (3, 32)

    def encode(self, x):
        return [x, self.encoder(x)]


def test_rotation_head_learns_rotations():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = _TinyEncoderModel()
    heads.attach_rotation_head(model, hidden=32)
    train = images_from_rgb(np.stack([_oriented(rng) for _ in range(8)]))
    tuned = heads.finetune_rotation(model, train, steps=60, lr=3e-3, batch_size=4)
    assert tuned is not model
    test = images_from_rgb(np.stack([_oriented(rng) for _ in range(8)]))
    with torch.no_grad():
        x4 = test.repeat(4, 1, 1, 1)
        ks = torch.arange(4).repeat_interleave(8)
        acc = float((heads.rotation_logits(tuned, x4, ks).argmax(1) == ks).float().mean())
        acc0 = float((heads.rotation_logits(model.eval(), x4, ks).argmax(1) == ks).float().mean())
        s_in = heads.rotation_scores(tuned, test)
        s_out = heads.rotation_scores(tuned, images_from_rgb(rng.integers(0, 255, (8, 32, 32, 3)).astype(np.uint8)))
    assert acc > 0.75, acc  # chance is 0.25
    assert acc > acc0
    # PAL's S_S: images like the training ones score lower than unlike ones
    assert float(s_in.mean()) < float(s_out.mean())


def test_rotation_head_on_segmodel_non_square():
    torch.manual_seed(0)
    model = build_model(2, decoder_channels=16)
    heads.attach_rotation_head(model, hidden=16)
    # 90° rotations swap H and W: one encoder pass per k, one logit row per image
    with torch.no_grad():
        out = heads.rotation_logits(model.eval(), torch.randn(4, 3, 32, 48), torch.tensor([0, 1, 2, 3]))
        s = heads.rotation_scores(model, torch.randn(2, 3, 32, 48))
    assert out.shape == (4, 4) and s.shape == (2,) and torch.isfinite(s).all() and (s > 0).all()


def test_rotation_extra_loss_with_fit():
    from viewal.nn.train import TrainConfig, fit

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build_model(2, decoder_channels=16)
    heads.attach_rotation_head(model, hidden=32)
    items = [(_frame(_oriented(rng), i=i), np.full((32, 32), 255, np.int64)) for i in range(4)]
    res = fit(model, items, [], TrainConfig(epochs=2, batch_size=4, flip=False, blur=False),
              extra_loss=heads.rotation_extra_loss(), progress=False)
    assert all(np.isfinite(res.losses)) and res.losses[0] > 0  # unlabelled: the loss is the rotation term


def test_pal_select_budget_and_diversity():
    from viewal.scoring.scorers.pal import pal_select
    from viewal.selection import queries_from_selection

    torch.manual_seed(0)
    rng = np.random.default_rng(3)
    model = build_model(2, decoder_channels=16)
    heads.attach_rotation_head(model, hidden=32)
    frames = [_frame(_oriented(rng) if i < 4 else rng.integers(0, 255, (32, 32, 3)).astype(np.uint8), i=i)
              for i in range(8)]
    regions = np.zeros((8, 32, 32), np.int64)
    regions[:, :, 16:] = 1
    labelled = np.zeros((8, 32, 32), bool)
    labelled[0] = True  # frame 0 already labelled: never picked
    budget = 4 * 512
    sel, pool = pal_select(model, frames, regions, budget, labelled=labelled, sub_queries=2, finetune_steps=3,
                           mc_passes=2, batch_size=4, progress=False)
    assert sel.pixels >= budget and sel.pixels - 512 < budget
    assert len(np.unique(sel.ids)) == len(sel.ids)
    assert not np.isin(sel.ids, [0, 1]).any()
    qs = queries_from_selection(pool, sel, regions)
    assert all(q.n_pixels == 512 for q in qs)
    with pytest.raises(ValueError):
        pal_select(build_model(2, decoder_channels=16), frames, regions, budget, progress=False)


def test_stn_training_moves_theta_within_bound():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build_model(3, decoder_channels=16)
    model.eval()
    imgs = images_from_rgb(np.stack([_clean(rng)[0] for _ in range(4)]))
    before = [p.detach().clone() for p in model.parameters()]
    aug = augment.max_entropy_augmenter(model, imgs, steps=15, batch_size=4, bound=0.3, lr=1e-2)
    dev = aug.theta_deviation(imgs)
    assert 0.0 < dev <= 0.3
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # segmenter frozen
    assert all(p.requires_grad for p in model.parameters())
    assert aug.history[-1]["loss_me"] >= aug.history[0]["loss_me"] - 1e-6
    # with the discriminator on, it trains too
    aug_d = augment.max_entropy_augmenter(model, imgs, steps=3, discriminator=True)
    assert "loss_d" in aug_d.history[-1]
    # as a training term
    lab = torch.randint(0, 3, (4, 32, 32))
    hook = aug.extra_loss(weight=1.0)
    model.train()
    val = hook(model, {"image": imgs, "label": lab}, None, None)
    assert torch.isfinite(val) and val.requires_grad


def test_pseudo_label_items_from_model():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build_model(2, decoder_channels=16)
    frames = [_frame(*_clean(rng), i=i) for i in range(3)]
    for mode in ("confidence", "classwise", "ups"):
        items, stats = pseudo.pseudo_label_items(model, frames, mode, threshold=0.0 if mode == "confidence" else 0.9,
                                                 mc_passes=3, batch_size=2, with_precision=True) \
            if mode == "confidence" else pseudo.pseudo_label_items(model, frames, mode, mc_passes=3, batch_size=2,
                                                                   with_precision=True)
        assert stats["mode"] == mode and stats["frames"] == 3
        for _fr, lab, ex in items:
            assert lab.shape == (32, 32) and lab.dtype == np.int64
            if mode == "ups":
                assert ex["negative"].shape == (2, 32, 32) and ex["negative"].dtype == bool
        if mode == "confidence":  # threshold 0: every pixel pseudo-labelled
            assert stats["coverage"] == pytest.approx(1.0)
            assert 0.0 <= stats["precision"] <= 1.0
    # existing (oracle) labels take precedence over pseudo-labels
    given = np.full((32, 32), 255, np.int64)
    given[0, 0] = 1
    items, _ = pseudo.pseudo_label_items(model, frames[:1], "confidence", threshold=0.0, mc_passes=1,
                                         labels=[given])
    assert items[0][1][0, 0] == 1


def test_prepare_model_hooks_and_pal_select_pool():
    from viewal.scoring.scorers import get
    from viewal.selection import build_pool

    torch.manual_seed(0)
    rng = np.random.default_rng(4)
    model = build_model(2, decoder_channels=16)
    pal = get("pal", sub_queries=3, finetune_steps=2)
    hook = pal.prepare_model(model)
    assert callable(hook) and isinstance(model.rotation_head, heads.RotationHead)
    m2 = build_model(2, decoder_channels=16)
    assert callable(get("consistency_loss").prepare_model(m2)) and isinstance(m2.loss_head, heads.LossPredictionHead)
    assert get("flip_consistency").prepare_model(m2) is None

    frames = [_frame(rng.integers(0, 255, (32, 32, 3)).astype(np.uint8), i=i) for i in range(6)]
    sp = np.zeros((6, 32, 32), np.int32)
    sp[:, 16:] = 1
    pixel = rng.random((6, 32, 32)).astype(np.float32)
    pool = build_pool("s0", [f.frame_id for f in frames], sp, pixel)
    sel = pal.select_pool(model, pool, frames, lambda i: sp[i], 5 * 512, progress=False)
    assert sel.pixels >= 5 * 512 and len(set(sel.ids.tolist())) == len(sel.ids) == 5
    # first sub-query (2 regions) follows the base score exactly
    order = np.argsort(-pool.score, kind="stable")
    assert set(sel.ids[:2].tolist()) == set(order[:2].tolist())


def test_providers_honour_working_size():
    from viewal.scoring.needs import NeedContext, compute_needs

    torch.manual_seed(0)
    rng = np.random.default_rng(5)
    model = build_model(2, decoder_channels=16)
    heads.attach_loss_head(model, hidden=8)
    heads.attach_rotation_head(model, hidden=8)
    frames = [_frame(rng.integers(0, 255, (48, 64, 3)).astype(np.uint8), i=i) for i in range(2)]
    sp = np.zeros((2, 48, 64), np.int32)
    sp[:, :, 32:] = 1
    ctx = NeedContext(model=model, frames=frames, batch_size=2, options={"superpixels": sp, "size": (32, 32)})
    out = compute_needs(["flip_consistency", "loss_pred", "rotation_score"], ctx)
    assert out["flip_consistency"].shape == (2, 3, 48, 64)
    assert out["loss_pred"].shape == (2, 48, 64) and out["rotation_score"].shape == (2,)
    for f in out["loss_pred"]:
        assert np.ptp(f[:, :32]) < 1e-5 and np.ptp(f[:, 32:]) < 1e-5


def test_training_options_max_entropy_and_pseudo_labels():
    from viewal.nn.train import TrainConfig

    torch.manual_seed(0)
    rng = np.random.default_rng(6)
    frames = [_frame(*_clean(rng), i=i) for i in range(4)]
    half = np.full((32, 32), 255, np.int64)
    half[:, :8] = 0
    items = [(frames[0], half), (frames[1], np.asarray(frames[1].labels))]
    cfg = TrainConfig(epochs=1, batch_size=2, flip=False, blur=False)
    model = build_model(2, decoder_channels=16)
    res, aug, st = augment.train_with_max_entropy(model, items, frames[2:], cfg, stn_steps=3, finetune_epochs=1,
                                                  progress=False)
    assert st["kept"] in ("base", "finetuned") and 0.0 <= st["theta_dev"] <= 0.3
    assert np.isfinite(st["entropy_identity"]) and np.isfinite(st["entropy_warped"])
    for mode in ("confidence", "classwise", "ups"):
        model = build_model(2, decoder_channels=16)
        res, st = pseudo.train_with_pseudo_labels(model, items, frames, frames[2:], cfg, mode, mc_passes=2,
                                                  finetune_epochs=1, progress=False,
                                                  **({"threshold": 0.5} if mode == "confidence" else {}))
        assert st["mode"] == mode and "val_miou_pseudo" in st and np.isfinite(res.losses).all()


def test_pseudo_labelled_pool_frames_get_the_training_extras():
    """Items with extras (the learner's superpixels): pseudo-labelled unlabelled frames must carry them too,
    from ``item_extras``, or fine-tuning batches would mix items with and without the key."""
    from viewal.nn.train import TrainConfig

    torch.manual_seed(0)
    rng = np.random.default_rng(7)
    frames = [_frame(*_clean(rng), i=i) for i in range(4)]
    regions = np.repeat(np.arange(4), 8)[None, :].repeat(32, 0).astype(np.int32)  # 4 vertical stripes
    items = [(frames[0], np.asarray(frames[0].labels), {"superpixels": regions})]
    cfg = TrainConfig(epochs=1, batch_size=4, flip=False, blur=False)
    with pytest.raises(ValueError, match="item_extras"):
        pseudo.train_with_pseudo_labels(build_model(2, decoder_channels=16), items, frames, [], cfg, "confidence",
                                        mc_passes=1, finetune_epochs=1, progress=False, threshold=0.0)
    asked = []

    def extras(f):
        asked.append(f.key)
        return {"superpixels": regions + 10}

    res, st = pseudo.train_with_pseudo_labels(build_model(2, decoder_channels=16), items, frames, [], cfg,
                                              "confidence", mc_passes=1, finetune_epochs=1, progress=False,
                                              threshold=0.0, item_extras=extras)
    assert sorted(asked) == sorted(f.key for f in frames[1:])  # the labelled frame keeps its own extras
    assert st["items_used"] == 3 and np.isfinite(res.losses).all()  # the 3 unlabelled frames, all pseudo-labelled


def test_pseudo_label_finetuning_takes_half_the_fits_steps():
    """The fine-tuning over labelled + pseudo-labelled items runs about half the SGD steps of the fit, however
    many epochs the fit needed on its small labelled set (before: fit epochs // 2 over the whole pool, 16x the
    fit on a 2 % seed set)."""
    from viewal.nn.train import FitResult, TrainConfig

    cfg = TrainConfig(epochs=75, batch_size=6)  # 75 epochs: 150 steps over 11 labelled frames
    fit150 = FitResult(best_miou=0.2, best_epoch=75, history=[{"step": 150}])
    assert pseudo.finetune_epochs_for(fit150, 560, cfg) == 1  # half the fit is 75 steps; one pool epoch is 94
    assert pseudo.finetune_epochs_for(FitResult(0.2, 8, [{"step": 560}]), 560, TrainConfig(epochs=8, batch_size=6)) == 3
    assert pseudo.finetune_epochs_for(FitResult(0.2, 1, []), 10, cfg) == 1  # no history: at least one epoch
    counted = TrainConfig(epochs=4, steps=40, steps_per_epoch=10)
    assert pseudo.finetune_epochs_for(FitResult(0.2, 4, [{"step": 40}]), 1000, counted) == 2  # 20 steps

    torch.manual_seed(0)
    rng = np.random.default_rng(8)
    frames = [_frame(*_clean(rng), i=i) for i in range(8)]
    items = [(frames[0], np.asarray(frames[0].labels))]
    cfg = TrainConfig(epochs=12, batch_size=2, flip=False, blur=False)  # 12 steps over one frame
    model = build_model(2, decoder_channels=16)
    res, st = pseudo.train_with_pseudo_labels(model, items, frames, [], cfg, "confidence", mc_passes=1,
                                              progress=False, threshold=0.0)
    assert st["items_used"] >= 7  # 7 or 8 items in the fine-tuning: 4 steps per epoch at batch 2 either way
    assert res.history[-1]["step"] == 8  # round(12 / 2 / 4 steps per epoch over 8 items) = 2 epochs, 8 steps
