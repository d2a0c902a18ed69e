"""Training on partial labels, ignore handling, evaluation, checkpoints."""
import numpy as np
import pytest
import torch

from viewal.datasets.base import Frame
from viewal.nn.data import SegmentationDataset, parse_size
from viewal.nn.model import build_model
from viewal.nn.train import (
    CheckpointError,
    TrainConfig,
    confusion_matrix,
    evaluate,
    fit,
    iou_from_confusion,
    load_checkpoint,
    save_checkpoint,
    segmentation_loss,
)

torch.set_num_threads(1)


def mobilenet_deeplab(num_classes=3, seed=0):
    """A small DeepLabv3+ (MobileNetV2 encoder, 16 decoder channels), seeded."""
    torch.manual_seed(seed)
    return build_model(num_classes, "mobilenet_v2", decoder_channels=16)


def make_frame(i, h=32, w=32, num_classes=3):
    """Blocks of flat class colours plus noise: learnable from colour alone."""
    rng = np.random.default_rng(i)
    palette = np.array([[220, 40, 40], [40, 200, 60], [50, 60, 230], [230, 230, 40]], np.uint8)[:num_classes]
    lab = np.zeros((h, w), np.int64)
    cut_r, cut_c = rng.integers(8, h - 8), rng.integers(8, w - 8)
    lab[:cut_r, cut_c:] = 1
    lab[cut_r:, :] = 2 % num_classes
    rgb = palette[lab].astype(np.int16) + rng.integers(-20, 20, (h, w, 3))
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    return Frame("s", f"{i:03d}", rgb=rgb, depth=np.ones((h, w), np.float32), K=np.eye(3),
                 world_T_cam=np.eye(4), labels=lab)


def test_overfits_tiny_labelled_set():
    frames = [make_frame(i) for i in range(6)]
    model = mobilenet_deeplab(3)
    before = evaluate(model, frames, 3, batch_size=6)["miou"]
    cfg = TrainConfig(epochs=12, batch_size=3, lr=0.01, seed=0, step_at=0.9)
    res = fit(model, frames, frames, cfg, progress=False)
    assert len(res.history) == 12
    assert np.mean(res.losses[-3:]) < 0.6 * np.mean(res.losses[:2])
    after = evaluate(model, frames, 3, batch_size=6)
    assert after["miou"] > 0.7, after["miou"]
    assert after["miou"] > before + 0.2
    assert abs(after["miou"] - res.best_miou) < 1e-6  # best-validation weights restored
    assert after["confusion"].sum() == 6 * 32 * 32


def test_partial_labels_and_extra_loss_hook():
    frames = [make_frame(i) for i in range(4)]
    items = []
    for f in frames:
        lab = f.labels.copy()
        lab[:, 16:] = 255  # only the left half labelled
        items.append((f, lab, {"weight_map": np.ones((32, 32), np.float32)}))
    calls = []

    def extra(model, batch, logits, features):
        calls.append((tuple(batch["image"].shape), tuple(batch["weight_map"].shape), len(features)))
        return logits.mean() * 0.0

    res = fit(mobilenet_deeplab(3), items, [], TrainConfig(epochs=2, batch_size=2), extra_loss=extra, progress=False)
    assert np.isnan(res.best_miou) and res.best_epoch == 2
    assert calls and calls[0] == ((2, 3, 32, 32), (2, 32, 32), 6)


def test_ignore_pixels_have_zero_gradient():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 8, 8, requires_grad=True)
    labels = torch.randint(0, 3, (1, 8, 8))
    labels[0, :4] = 255
    segmentation_loss(logits, labels).backward()
    g = logits.grad.clone()
    assert torch.all(g[0, :, :4] == 0)  # unlabelled rows: no gradient at all
    assert torch.all(g[0, :, 4:].abs().sum(0) > 0)
    # changing the label of an ignored pixel's neighbourhood does nothing, changing a labelled one does
    labels2 = labels.clone()
    labels2[0, 0, 0] = 255  # already ignored: unchanged
    logits.grad = None
    segmentation_loss(logits, labels2).backward()
    assert torch.equal(logits.grad, g)
    labels3 = labels.clone()
    labels3[0, 5, 5] = (labels[0, 5, 5] + 1) % 3
    logits.grad = None
    segmentation_loss(logits, labels3).backward()
    assert not torch.allclose(logits.grad[0, :, 5, 5], g[0, :, 5, 5])


def test_ignore_through_the_network():
    """Weight gradients with ignored pixels equal those of a CE restricted to the labelled pixels, and
    do not depend on anything written at ignored pixels; changing a labelled pixel changes them."""
    model = mobilenet_deeplab(3)
    model.eval()  # deterministic (no dropout, BN running stats)
    f = make_frame(0)
    x = SegmentationDataset([f])[0]["image"][None]
    gt = torch.as_tensor(f.labels)[None]
    lab = gt.clone()
    lab[0, :10] = 255
    params = [p for p in model.parameters()]

    def grads(loss_fn):
        model.zero_grad()
        loss_fn(model(x)).backward()
        return torch.cat([p.grad.flatten() for p in params if p.grad is not None])

    g_ignore = grads(lambda lo: segmentation_loss(lo, lab))
    keep = lab[0] != 255
    g_manual = grads(lambda lo: torch.nn.functional.cross_entropy(lo[0][:, keep].T, lab[0][keep]))
    torch.testing.assert_close(g_ignore, g_manual, rtol=1e-4, atol=1e-6)
    # a labelled pixel turned into ignore: changes; a label changed at a labelled pixel: changes
    lab2 = lab.clone()
    lab2[0, 20, 20] = 255
    assert not torch.allclose(grads(lambda lo: segmentation_loss(lo, lab2)), g_ignore)
    lab3 = lab.clone()
    lab3[0, 20, 20] = (lab[0, 20, 20] + 1) % 3
    assert not torch.allclose(grads(lambda lo: segmentation_loss(lo, lab3)), g_ignore)
    # whatever the ground truth was under the ignored pixels (the full label map vs the partial one),
    # only labelled pixels matter: the full-label gradient differs, the partial one equals the manual
    assert not torch.allclose(grads(lambda lo: segmentation_loss(lo, gt)), g_ignore)
    assert segmentation_loss(model(x), torch.full_like(lab, 255)).item() == 0.0


def test_confusion_and_iou_convention():
    gt = np.array([[0, 0, 1, 255], [1, 1, 2, 2]])
    pred = np.array([[0, 1, 1, 0], [1, 1, 2, 0]])
    conf = confusion_matrix(pred, gt, 4)
    assert conf.sum() == 7  # the 255 pixel is skipped
    assert conf[0, 0] == 1 and conf[0, 1] == 1 and conf[2, 0] == 1
    miou, iou = iou_from_confusion(conf)
    np.testing.assert_allclose(iou[:3], [1 / 3, 3 / 4, 1 / 2])
    assert np.isnan(iou[3])  # class 3: absent from GT and prediction -> excluded
    assert miou == pytest.approx(np.mean([1 / 3, 3 / 4, 1 / 2]))
    # predicted but absent from GT: IoU 0, counted
    _, iou2 = iou_from_confusion(confusion_matrix(np.array([3]), np.array([0]), 4))
    assert iou2[3] == 0 and iou2[0] == 0 and np.isnan(iou2[1])


def test_evaluate_size_option():
    frames = [make_frame(i, 64, 64) for i in range(2)]
    m = evaluate(mobilenet_deeplab(3), frames, 3, batch_size=2, size=(32, 32))
    assert m["confusion"].sum() == 2 * 32 * 32
    assert parse_size("120x160") == (120, 160) and parse_size(None) is None
    with pytest.raises(ValueError, match="HxW"):
        parse_size("120by160")


def test_checkpoint_round_trip_and_errors(tmp_path):
    model = mobilenet_deeplab(3, seed=5)
    path = save_checkpoint(tmp_path / "ck" / "model.pt", model, meta={"val_miou": 0.5})
    assert path.is_file() and not list(path.parent.glob(".*"))  # no temporary left behind
    loaded = load_checkpoint(path)
    assert loaded.num_classes == 3 and loaded.encoder_name == "mobilenet_v2"
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    x = torch.randn(1, 3, 32, 32)
    model.eval(), loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), loaded(x))
    into = load_checkpoint(path, mobilenet_deeplab(3, seed=9))
    assert torch.equal(next(into.parameters()), next(model.parameters()))
    with pytest.raises(CheckpointError, match="3 classes, expected 4"):
        load_checkpoint(path, mobilenet_deeplab(4))
    with pytest.raises(CheckpointError, match="encoder is 'mobilenet_v2', expected 'resnet18'"):
        load_checkpoint(path, encoder="resnet18")
    with pytest.raises(ValueError, match=str(path.name)):
        load_checkpoint(path, num_classes=7)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.pt")
    # a checkpoint is also an encoder-weights file for build_model
    m2 = build_model(5, "mobilenet_v2", decoder_channels=16, encoder_weights=path)
    torch.testing.assert_close(m2.net.encoder.state_dict()["features.0.0.weight"],
                               model.net.encoder.state_dict()["features.0.0.weight"])


def test_dataset_augmentation_keeps_image_and_label_aligned():
    f = make_frame(3)
    neg = np.zeros((3, 32, 32), bool)
    neg[0, :, :5] = True
    ds = SegmentationDataset([(f, f.labels, {"negative": neg})], augment=True, blur=False, seed=0)
    flipped = plain = 0
    for _ in range(20):
        s = ds[0]
        if torch.equal(s["label"], torch.as_tensor(f.labels)):
            plain += 1
            assert s["negative"][0, :, :5].all()
        else:
            flipped += 1
            assert torch.equal(s["label"], torch.as_tensor(f.labels[:, ::-1].copy()))
            assert s["negative"][0, :, -5:].all() and not s["negative"][0, :, :5].any()
    assert flipped and plain


def write_tiny_dataset(root, n_scenes=3, n_frames=3, h=32, w=32):
    from viewal.datasets.canonical import write_frame, write_meta, write_scene_intrinsics

    K = np.array([[30.0, 0, 16], [0, 30.0, 16], [0, 0, 1]])
    for s in range(n_scenes):
        sid = f"scene{s}"
        write_scene_intrinsics(root, sid, K)
        for i in range(n_frames):
            f = make_frame(10 * s + i, h, w)
            write_frame(root, sid, f"{i:06d}", rgb=f.rgb, depth=np.full((h, w), 2.0, np.float32),
                        world_T_cam=np.eye(4), labels=f.labels, color_ext=".png")
    write_meta(root, class_names=["a", "b", "c"], splits={"train": ["scene0"], "val": ["scene1"], "test": ["scene2"]},
               height=h, width=w)


def test_cli_train_and_pretrain(tmp_path, capsys):
    import json

    from viewal.cli import main

    data = tmp_path / "data"
    write_tiny_dataset(data)
    assert main(["pretrain", "--data", str(data), "--out", str(tmp_path / "ss.pt"), "--epochs", "1",
                 "--batch-size", "3", "--size", "32x32", "--proj-dim", "32", "--no-progress"]) == 0
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--epochs", "2", "--size", "32x32",
                 "--batch-size", "3", "--init", str(tmp_path / "ss.pt"), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_frames"] == 3 and metrics["val_frames"] == 3 and metrics["test_frames"] == 3
    assert 0 <= metrics["val_miou"] <= 1 and 0 <= metrics["test_miou"] <= 1
    assert set(metrics["val_per_class_iou"]) == {"a", "b", "c"}
    assert len(metrics["history"]) == 2
    model = load_checkpoint(out / "model.pt", num_classes=3, encoder="efficientnet-lite0")  # the default
    assert model.num_classes == 3
    assert "test mIoU" in capsys.readouterr().out
    # a wrong --init encoder is a clear error (exit code 1, message names the file)
    assert main(["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--encoder", "resnet18",
                 "--init", str(tmp_path / "ss.pt"), "--no-progress"]) == 1
    assert "ss.pt" in capsys.readouterr().err


def test_recalibrate_bn_uses_current_weights_and_restores_state():
    from viewal.nn.train import recalibrate_bn

    model = mobilenet_deeplab(3)
    model.eval()
    imgs = [SegmentationDataset([make_frame(i)])[0]["image"] for i in range(5)]
    recalibrate_bn(model, imgs, batch_size=2)  # batches 2, 3 (the single last image is merged)
    assert not model.training and model.dropout == 0.25
    bn = model.net.encoder.features[0][1]
    conv = model.net.encoder.features[0][0]
    with torch.no_grad():
        y = conv((torch.stack(imgs) - model.input_mean) / model.input_std)  # encode() normalises for the encoder
    # equal-weight average of the per-batch means (batches [0, 1] and [2, 3, 4])
    expected = (y[:2].mean((0, 2, 3)) + y[2:].mean((0, 2, 3))) / 2
    torch.testing.assert_close(bn.running_mean, expected, rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.1


def test_epoch_batches_draw_in_proportion_to_labels():
    from viewal.nn.train import epoch_batches

    g = torch.Generator().manual_seed(0)
    batches = epoch_batches(3, 4, g, steps=500, weights=np.array([0.0, 100.0, 300.0]))
    assert len(batches) == 500 and all(len(b) == 4 for b in batches)
    counts = np.bincount(np.concatenate(batches), minlength=3)
    assert counts[0] == 0  # an item without labels is never drawn
    assert counts[2] / counts[1] == pytest.approx(3.0, rel=0.1)
    uniform = np.bincount(np.concatenate(epoch_batches(3, 4, g, steps=300)), minlength=3)
    assert uniform.max() - uniform.min() <= 4  # shuffled passes: every item equally often
    one_pass = epoch_batches(8, 3, g)  # steps not counted: one shuffled pass over the items
    assert len(one_pass) == 3 and sorted(sum(one_pass, [])) == list(range(8))
    with pytest.raises(ValueError, match="weights"):
        epoch_batches(3, 2, g, steps=2, weights=np.array([1.0, -1.0, 1.0]))


def test_fit_counts_steps_exactly():
    tiny_frames = [make_frame(i) for i in range(4)]
    model = mobilenet_deeplab(3)
    cfg = TrainConfig(steps=5, steps_per_epoch=2, batch_size=2, size=(32, 32), sampling="labels", bn_recalibrate=0)
    assert cfg.epochs == 3
    res = fit(model, tiny_frames[:3], tiny_frames[3:4], cfg, progress=False)
    assert [h["step"] for h in res.history] == [2, 4, 5]
    assert all(h["val_miou"] is not None for h in res.history)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        TrainConfig(steps=5)
    with pytest.raises(ValueError, match="sampling"):
        TrainConfig(sampling="pixels")


def test_label_mosaic_packs_labelled_pixels_at_their_scale():
    """Four sparsely labelled samples -> one sample whose four quadrants are centred on labelled pixels:
    4x the labelled pixels of one sparse frame, image and extras cropped with the labels."""
    from viewal.nn.train import label_mosaic

    g = torch.Generator().manual_seed(0)
    samples = []
    for k in range(4):
        label = torch.full((32, 48), 255, dtype=torch.int64)
        label[20 + k:24 + k, 30:36] = k  # one small labelled block per frame, off-centre
        image = torch.arange(3 * 32 * 48, dtype=torch.float32).view(3, 32, 48) + 1000 * k
        sp = torch.arange(32 * 48).view(32, 48) + 10_000 * k
        samples.append({"image": image, "label": label, "superpixels": sp, "index": k})
    m = label_mosaic(samples, g)
    assert m["image"].shape == (3, 32, 48) and m["label"].shape == (32, 48) and m["index"] == 0
    assert int((m["label"] != 255).sum()) == 4 * 4 * 6  # every block lands whole in its quadrant
    for q in range(4):
        r, c = divmod(q, 2)
        quad = m["label"][r * 16:(r + 1) * 16, c * 24:(c + 1) * 24]
        assert set(quad.unique().tolist()) == {q, 255}
        # image and superpixels cropped at the same window as the labels
        img = m["image"][:, r * 16:(r + 1) * 16, c * 24:(c + 1) * 24]
        spq = m["superpixels"][r * 16:(r + 1) * 16, c * 24:(c + 1) * 24]
        top, left = divmod(int(spq[0, 0]) - 10_000 * q, 48)
        torch.testing.assert_close(img, samples[q]["image"][:, top:top + 16, left:left + 24])
        assert bool((samples[q]["label"][top:top + 16, left:left + 24] == quad).all())
    with pytest.raises(ValueError, match="4 samples"):
        label_mosaic(samples[:3], g)


def test_fit_with_label_crops_trains():
    frames = [make_frame(i) for i in range(4)]
    items = []
    for f in frames:  # sparse labels: one 6x6 block per frame
        lab = np.full(f.labels.shape, 255, np.int64)
        lab[10:16, 10:16] = f.labels[10:16, 10:16]
        items.append((f, lab))
    model = mobilenet_deeplab(3)
    cfg = TrainConfig(steps=3, steps_per_epoch=3, batch_size=2, size=(32, 32), sampling="crops", bn_recalibrate=0)
    res = fit(model, items, frames[:1], cfg, progress=False)
    assert [h["step"] for h in res.history] == [3] and np.isfinite(res.history[0]["loss"])
