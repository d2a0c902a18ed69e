"""The other methods on hand-built inputs: flip consistency, scorers, pseudo-labels, STN warps, ranking loss,
masked average pooling, negative-label loss."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from viewal.nn import augment, heads, pseudo
from viewal.scoring.scorers import SceneInputs, consistency, get, names, pal, pool_regions


def _softmax(z, axis):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ------------------------------------------------------------------------------------------ flip consistency

def test_identical_predictions_give_zero_inconsistency():
    rng = np.random.default_rng(0)
    p = _softmax(rng.normal(size=(2, 5, 6, 7)), 1)
    ci = consistency.class_inconsistency(p, p.copy())
    assert ci.shape == (2, 6, 7)
    np.testing.assert_allclose(ci, 0.0, atol=1e-6)
    regions = rng.integers(0, 4, size=(6, 7))
    a = p[0].argmax(0)
    li = consistency.localisation_inconsistency_map(a, a.copy(), regions)
    np.testing.assert_allclose(li, 0.0)
    np.testing.assert_allclose(consistency.flip_consistency_map(ci[0], a, a, regions), 0.0, atol=1e-6)


def test_class_inconsistency_known_value():
    # P = (0.5, 0.5), P' = (0.9, 0.1): symmetric KL by hand
    p = np.array([0.5, 0.5]).reshape(2, 1, 1)
    q = np.array([0.9, 0.1]).reshape(2, 1, 1)
    kl_pq = 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1)
    kl_qp = 0.9 * np.log(0.9 / 0.5) + 0.1 * np.log(0.1 / 0.5)
    assert consistency.class_inconsistency(p, q)[0, 0] == pytest.approx(0.5 * (kl_pq + kl_qp), rel=1e-5)
    assert consistency.class_inconsistency(p, q)[0, 0] == pytest.approx(consistency.class_inconsistency(q, p)[0, 0])


def test_region_iou_hand_computed():
    # region 0 = left two columns, region 1 = right two columns
    regions = np.array([[0, 0, 1, 1]] * 2)
    a = np.array([[0, 0, 1, 1],
                  [0, 1, 1, 1]])
    b = np.array([[0, 1, 1, 1],
                  [0, 1, 2, 2]])
    # region 0: class 0: A={(0,0),(0,1),(1,0)}, B={(0,0),(1,0)} -> 2/3; class 1: A={(1,1)}, B={(0,1),(1,1)} -> 1/2
    # region 1: class 1: A=4 px, B=2 px, inter 2 -> 1/2; class 2: A=0, B=2 -> 0
    iou = consistency.region_iou(a, b, regions)
    np.testing.assert_allclose(iou, [(2 / 3 + 1 / 2) / 2, (1 / 2 + 0) / 2])
    li = consistency.localisation_inconsistency_map(a, b, regions)
    np.testing.assert_allclose(li[:, :2], 1 - iou[0], rtol=1e-6)
    np.testing.assert_allclose(li[:, 2:], 1 - iou[1], rtol=1e-6)


def test_flip_consistency_map_pools_to_lcon():
    rng = np.random.default_rng(1)
    p = _softmax(rng.normal(size=(4, 8, 9)), 0)
    q = _softmax(rng.normal(size=(4, 8, 9)), 0)
    regions = rng.integers(0, 5, size=(8, 9))
    ci = consistency.class_inconsistency(p, q)
    m = consistency.flip_consistency_map(ci, p.argmax(0), q.argmax(0), regions)
    pooled = pool_regions(m, regions)
    expect = pool_regions(ci, regions) + (1 - consistency.region_iou(p.argmax(0), q.argmax(0), regions))
    np.testing.assert_allclose(pooled, expect, rtol=1e-5)


class _PixelwiseModel(torch.nn.Module):
    """A 1x1-conv 'segmenter': exactly equivariant to horizontal flips."""

    def __init__(self, C=3):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, C, 1)

    def forward(self, x):
        return self.conv(x)


class _Frame:
    def __init__(self, rgb, scene_id="s", frame_id="0"):
        self.rgb = rgb
        self.scene_id = scene_id
        self.frame_id = frame_id


def test_flip_provider_and_scorer_on_flip_equivariant_model_is_zero():
    from viewal.scoring.needs import NeedContext, compute_needs

    rng = np.random.default_rng(2)
    frames = [_Frame(rng.integers(0, 255, size=(10, 12, 3), dtype=np.uint8), frame_id=str(i)) for i in range(3)]
    ctx = NeedContext(model=_PixelwiseModel(), frames=frames, batch_size=2)
    out = compute_needs(["flip_consistency"], ctx)
    fc = out["flip_consistency"]
    assert fc.shape == (3, 3, 10, 12)
    np.testing.assert_allclose(fc[:, 0], 0.0, atol=1e-5)
    np.testing.assert_array_equal(fc[:, 1], fc[:, 2])
    sp = rng.integers(0, 4, size=(3, 10, 12)).astype(np.int32)
    sc = get("flip_consistency")(SceneInputs("s", ["0", "1", "2"], sp, extras={"flip_consistency": fc}))
    np.testing.assert_allclose(sc.pixel, 0.0, atol=1e-5)


def test_flip_scorer_nonzero_when_predictions_disagree():
    H, W = 4, 6
    sp = np.zeros((1, H, W), np.int32)
    sp[0, :, 3:] = 1
    a = np.zeros((H, W))
    b = np.zeros((H, W))
    b[:, 3:] = 1  # region 1 fully disagrees: IoU over classes {0, 1} = 0 -> LI = 1
    fc = np.stack([np.full((H, W), 0.25), a, b])[None].astype(np.float32)
    sc = get("flip_consistency")(SceneInputs("s", ["0"], sp, extras={"flip_consistency": fc}))
    pooled = pool_regions(sc.pixel[0], sp[0])
    np.testing.assert_allclose(pooled, [0.25, 1.25], rtol=1e-6)


def test_consistency_loss_normalises_and_combines():
    H, W = 4, 6
    sp = np.zeros((2, H, W), np.int32)
    sp[:, :, 3:] = 1
    fc = np.zeros((2, 3, H, W), np.float32)
    fc[0, 0] = 1.0  # frame 0 inconsistent
    loss = np.zeros((2, H, W), np.float32)
    loss[1, :, 3:] = 5.0  # region 1 of frame 1 has a high predicted loss
    inputs = SceneInputs("s", ["0", "1"], sp, extras={"flip_consistency": fc, "loss_pred": loss})
    sc = get("consistency_loss", lam=0.5)(inputs)
    pooled = [pool_regions(sc.pixel[i], sp[i]) for i in range(2)]
    # con normalised to [0,1]: frame 0 regions = 1, frame 1 regions = 0; loss normalised: only f1 r1 = 1
    np.testing.assert_allclose(pooled[0], [1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(pooled[1], [0.0, 0.5], atol=1e-6)
    # pool-level statistics override the per-scene ones
    sc2 = get("consistency_loss", lam=1.0, stats={"con": (0.0, 2.0), "loss": (0.0, 10.0)})(inputs)
    np.testing.assert_allclose(pool_regions(sc2.pixel[1], sp[1]), [0.0, 0.5], atol=1e-6)
    np.testing.assert_allclose(pool_regions(sc2.pixel[0], sp[0]), [0.5, 0.5], atol=1e-6)


def test_pal_scorer_components():
    H, W = 3, 4
    sp = np.zeros((2, H, W), np.int32)
    probs = np.full((2, 3, H, W), 1 / 3, np.float32)
    probs[1] = 0.0
    probs[1, 0] = 1.0  # frame 1 certain -> low S_C
    inputs = SceneInputs("s", ["0", "1"], sp, probs=probs, extras={"rotation_score": np.array([1.0, 3.0], np.float32)})
    sc_map = pal.uniform_kl_score(probs)
    np.testing.assert_allclose(sc_map[0], 0.0, atol=1e-6)  # uniform -> KL(U||P) = 0
    assert (sc_map[1] < -5).all()
    s = get("pal")(inputs).pixel
    # S_S normalised: frame 0 -> 0, frame 1 -> 1; S_C normalised: frame 0 -> 1, frame 1 -> 0
    np.testing.assert_allclose(s, 1.0, atol=1e-6)
    s2 = get("pal", w_ss=0.0)(inputs).pixel
    np.testing.assert_allclose(s2[0], 1.0, atol=1e-6)
    np.testing.assert_allclose(s2[1], 0.0, atol=1e-6)


def test_seed_scorers_registered():
    for n in ("flip_consistency", "loss_prediction", "consistency_loss", "pal"):
        assert n in names()


# ------------------------------------------------------------------------------------------ pseudo-labels

def _probs_grid():
    # 3 classes, 2x3 pixels, columns: confident class 0 / ambiguous / confident class 2
    p = np.zeros((3, 2, 3))
    p[:, 0, 0] = [0.95, 0.03, 0.02]
    p[:, 1, 0] = [0.80, 0.15, 0.05]
    p[:, 0, 1] = [0.40, 0.35, 0.25]
    p[:, 1, 1] = [0.20, 0.60, 0.20]
    p[:, 0, 2] = [0.01, 0.01, 0.98]
    p[:, 1, 2] = [0.02, 0.28, 0.70]
    return p


def test_confidence_pseudo_labels_counts():
    p = _probs_grid()
    lab = pseudo.confidence_pseudo_labels(p, threshold=0.75)
    np.testing.assert_array_equal(lab, [[0, 255, 2], [0, 255, 255]])
    assert (pseudo.confidence_pseudo_labels(p, 0.9) != 255).sum() == 2
    assert (pseudo.confidence_pseudo_labels(p[None], 0.5) != 255).sum() == 5


def test_classwise_thresholds_and_labels():
    p = _probs_grid()
    # argmax: class 0 at confidences 0.95, 0.80, 0.40; class 1 at 0.60; class 2 at 0.98, 0.70
    t = pseudo.classwise_thresholds(p, quantile=0.5, min_threshold=0.0, max_threshold=1.0)
    np.testing.assert_allclose(t, [0.80, 0.60, 0.84])
    lab = pseudo.classwise_pseudo_labels(p, thresholds=t)
    np.testing.assert_array_equal(lab, [[0, 255, 2], [0, 1, 255]])
    # clipping; a class that is never the argmax gets max_threshold
    p4 = np.concatenate([p, np.zeros((1, 2, 3))])
    t4 = pseudo.classwise_thresholds(p4, quantile=0.5, min_threshold=0.7, max_threshold=0.9)
    np.testing.assert_allclose(t4, [0.80, 0.70, 0.84, 0.90])


def test_ups_positive_and_negative_counts():
    p = _probs_grid()
    std = np.full_like(p, 0.001)
    std[:, 1, 0] = 0.2  # pixel (1,0) uncertain under MC dropout -> no positive, no negative there
    lab, neg = pseudo.ups_pseudo_labels(p, std, tau_p=0.7, kappa_p=0.05, tau_n=0.05, kappa_n=0.005)
    np.testing.assert_array_equal(lab, [[0, 255, 2], [255, 255, 2]])
    # negatives: p <= 0.05 with std <= 0.005: (0,0) classes 1,2 ; (0,2) classes 0,1 ; (1,2) class 0 ;
    # (1,0) class 2 has p = 0.05 but std 0.2 -> excluded
    assert neg.sum() == 5
    assert neg[1, 0, 0] and neg[2, 0, 0] and neg[0, 0, 2] and neg[1, 0, 2] and neg[0, 1, 2]
    assert not neg[:, 1, 0].any()
    with pytest.raises(ValueError):
        pseudo.pseudo_labels("ups", p[None])


def test_pseudo_label_precision():
    pl = np.array([[0, 1, 255], [2, 2, 255]])
    gt = np.array([[0, 2, 1], [2, 255, 0]])
    r = pseudo.pseudo_label_precision(pl, gt, num_classes=3)
    # labelled with known gt: (0,0) ok, (0,1) wrong, (1,0) ok -> 2/3; known gt pixels = 5
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["coverage"] == pytest.approx(3 / 5)
    assert r["per_class"][0] == 1.0 and r["per_class"][1] == 0.0 and r["per_class"][2] == 1.0
    neg = np.zeros((3, 2, 3), bool)
    neg[0, 0, 1] = True   # gt 2: correct negative
    neg[2, 0, 1] = True   # gt 2: wrong negative
    neg[1, 1, 1] = True   # gt unknown: not counted
    assert pseudo.negative_label_precision(neg, gt) == {"precision": 0.5, "n_negative": 2}


def test_negative_loss_value_and_gradient_sign():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 3, requires_grad=True)
    neg = torch.zeros(2, 4, 3, 3, dtype=torch.bool)
    neg[:, 1] = True
    loss = pseudo.negative_label_loss(logits, neg)
    p = torch.softmax(logits, 1)
    assert float(loss.detach()) == pytest.approx(float(-torch.log(1 - p[:, 1]).mean()), rel=1e-5)
    loss.backward()
    # pushing down a negative class: d loss / d z_c > 0 at negatives, < 0 on the other classes
    assert (logits.grad[:, 1] > 0).all()
    assert (logits.grad[:, [0, 2, 3]] < 0).all()
    # one gradient step lowers p_c
    with torch.no_grad():
        p2 = torch.softmax(logits - 1.0 * logits.grad, 1)
    assert (p2[:, 1] < p[:, 1]).all()
    # saturated p_c = 1 stays finite
    z = torch.tensor([[[[60.0]], [[0.0]]]], requires_grad=True)
    l2 = pseudo.negative_label_loss(z, torch.tensor([[[[True]], [[False]]]]))
    l2.backward()
    assert torch.isfinite(l2) and torch.isfinite(z.grad).all()
    # hook form, batch without negatives -> 0
    hook = pseudo.negative_loss_hook(2.0)
    assert float(hook(None, {"image": None}, logits, None)) == 0.0
    assert float(hook(None, {"negative": neg}, logits, None)) == pytest.approx(2 * float(loss), rel=1e-5)


def test_ceal_threshold_tightens():
    assert pseudo.ceal_threshold(0) == pytest.approx(0.9)
    assert pseudo.ceal_threshold(3) > pseudo.ceal_threshold(1)
    assert pseudo.ceal_threshold(100) == pytest.approx(0.99)


# ------------------------------------------------------------------------------------------ STN warps

def test_stn_starts_at_identity():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 20, 28)
    for bound in (0.3, None):
        net = augment.LocalisationNet(bound=bound)
        th = net(x)
        torch.testing.assert_close(th, augment.identity_theta(2))
        torch.testing.assert_close(augment.warp_images(x, th), x, atol=1e-5, rtol=0)
    lab = torch.randint(0, 5, (2, 20, 28))
    assert torch.equal(augment.warp_labels(lab, augment.identity_theta(2)), lab)
    aug = augment.MaxEntropyAugmenter(apply_prob=1.0)
    assert aug.theta_deviation(x) == 0.0
    b = aug({"image": x, "label": lab})
    torch.testing.assert_close(b["image"], x, atol=1e-5, rtol=0)
    assert torch.equal(b["label"], lab)


def _palette_image(labels: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    return palette[labels].permute(0, 3, 1, 2).contiguous()


def _decode(img: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    d = ((img.permute(0, 2, 3, 1)[..., None, :] - palette[None, None, None]) ** 2).sum(-1)
    return d.argmin(-1)


def test_warp_keeps_images_and_labels_aligned():
    torch.manual_seed(1)
    B, H, W, C = 2, 32, 48, 6
    palette = torch.rand(C, 3) * 2 + torch.arange(C).float()[:, None] * 3  # well separated colours
    lab = torch.randint(0, C, (B, H // 8, W // 8)).repeat_interleave(8, 1).repeat_interleave(8, 2)
    img = _palette_image(lab, palette)
    a = 0.3
    theta = torch.tensor([[[1.1 * np.cos(a), -np.sin(a), 0.13], [np.sin(a), 0.9 * np.cos(a), -0.07]],
                          [[0.8, 0.1, 0.3], [-0.05, 1.2, 0.2]]], dtype=torch.float32)
    wl = augment.warp_labels(lab, theta)
    inside = wl != 255
    assert inside.float().mean() > 0.5 and (~inside).any()
    # nearest image warp decodes to exactly the warped labels wherever the grid point is inside
    wn = augment.warp_images(img, theta, mode="nearest")
    assert torch.equal(_decode(wn, palette)[inside], wl[inside])
    # bilinear warp: agrees except next to label edges (mixing); require a large majority
    wb = augment.warp_images(img, theta)
    agree = (_decode(wb, palette) == wl)[inside].float().mean()
    assert agree > 0.85
    off = theta.clone()
    off[:, :, 2] += 0.5  # a misaligned label warp would be caught
    assert (_decode(wb, palette) == augment.warp_labels(lab, off))[inside].float().mean() < 0.5
    # pure translation by whole pixels to the right: labels shift, the left strip is out of the image
    shift = torch.tensor([[[1.0, 0.0, -2 * 4 / W], [0.0, 1.0, 0.0]]]).repeat(B, 1, 1)  # 4 pixels
    ws = augment.warp_labels(lab, shift)
    assert (ws[:, :, :4] == 255).all()
    assert torch.equal(ws[:, :, 4:], lab[:, :, :-4])
    torch.testing.assert_close(augment.warp_images(img, shift)[..., 4:], img[..., :-4], atol=1e-5, rtol=0)


def test_max_entropy_loss_grows_with_entropy():
    flat = torch.zeros(1, 4, 2, 2)
    peaked = torch.zeros(1, 4, 2, 2)
    peaked[:, 0] = 5.0
    assert augment.max_entropy_loss(flat) > augment.max_entropy_loss(peaked)
    assert float(augment.max_entropy_loss(flat, eps=1e-4)) == pytest.approx(-np.log(1e-4), rel=1e-4)
    # masked average ignores out-of-image pixels
    mixed = peaked.clone()
    mixed[..., 0, :] = 0.0
    mask = torch.zeros(1, 2, 2, dtype=torch.bool)
    mask[:, 1] = True
    assert augment.max_entropy_loss(mixed, mask) == pytest.approx(float(augment.max_entropy_loss(peaked)))


def test_bounded_localisation_output():
    net = augment.LocalisationNet(bound=0.2)
    torch.nn.init.normal_(net.fc.weight, std=50.0)
    torch.nn.init.normal_(net.fc.bias, std=50.0)
    th = net(torch.randn(3, 3, 16, 16))
    assert ((th - augment.identity_theta(3)).abs() <= 0.2 + 1e-6).all()


# ------------------------------------------------------------------------------------------ heads: pure parts

def test_ranking_loss_hand_values():
    pred = torch.tensor([0.0, 2.0, 0.5])
    target = torch.tensor([1.0, 3.0, 1.0])
    # pairs (0,1): sign -1 -> max(0, (0-2) + 1) = 0 ; (0,2): tie, skipped ; (1,2): sign +1 -> max(0, -(1.5)+1) = 0
    assert float(heads.ranking_loss(pred, target)) == 0.0
    pred2 = torch.tensor([2.0, 0.0, 0.5], requires_grad=True)
    # (0,1): sign -1 -> max(0, 2 + 1) = 3 ; (1,2): sign +1 -> max(0, 0.5 + 1) = 1.5 -> mean 2.25
    loss = heads.ranking_loss(pred2, target)
    assert float(loss) == pytest.approx(2.25)
    loss.backward()
    assert pred2.grad[0] > 0 and pred2.grad[1] < 0  # wrong order gets pushed apart the right way
    assert float(heads.ranking_loss(pred2, target, valid=torch.tensor([True, False, False]))) == 0.0


def test_masked_average_pool_matches_naive():
    torch.manual_seed(0)
    regions = torch.randint(0, 4, (2, 8, 12))
    feat = torch.randn(2, 5, 8, 12)
    w = heads.region_weights(regions, 4, (8, 12))
    pooled, present = heads.masked_average_pool(feat, w)
    for b in range(2):
        for r in range(4):
            m = regions[b] == r
            if m.any():
                torch.testing.assert_close(pooled[b, r], feat[b][:, m].mean(1))
    # at a coarser stage: area weights = fraction of each cell in the region
    w2 = heads.region_weights(regions, 4, (4, 6))
    torch.testing.assert_close(w2.sum(1), torch.ones(2, 4, 6))
    up = feat.reshape(2, 5, 4, 2, 6, 2).mean((3, 5))
    pooled2, _ = heads.masked_average_pool(up, w2)
    for b in range(2):
        for r in range(4):
            m = (regions[b] == r).float()
            expect = (up[b].repeat_interleave(2, 1).repeat_interleave(2, 2) * m).sum((1, 2)) / m.sum()
            torch.testing.assert_close(pooled2[b, r], expect)


def test_per_region_seg_loss():
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 0] = 2.0
    labels = torch.tensor([[[0, 1], [255, 0]]])
    regions = torch.tensor([[[0, 0], [1, 1]]])
    loss, valid = heads.per_region_seg_loss(logits, labels, regions, 3)
    ce0 = float(torch.nn.functional.cross_entropy(torch.tensor([[2.0, 0.0]]), torch.tensor([0])))
    ce1 = float(torch.nn.functional.cross_entropy(torch.tensor([[2.0, 0.0]]), torch.tensor([1])))
    torch.testing.assert_close(loss[0, :2], torch.tensor([(ce0 + ce1) / 2, ce0]))
    assert valid.tolist() == [[True, True, False]]
