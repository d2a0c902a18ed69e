"""DeepLabv3+ wrapper, MC-dropout sampling contract, encoder-weights loading."""
import numpy as np
import pytest
import torch

from viewal.datasets.base import Frame
from viewal.nn.model import SegModel, build_model, images_from_rgb, load_encoder_weights, mc_predict, predict_frames

torch.set_num_threads(1)


def mobilenet_deeplab(num_classes=3, dropout=0.25, seed=0):
    """A small DeepLabv3+ (MobileNetV2 encoder, 16 decoder channels), seeded."""
    torch.manual_seed(seed)
    return build_model(num_classes, "mobilenet_v2", dropout=dropout, decoder_channels=16)


def test_shapes_and_attributes():
    m = mobilenet_deeplab(4)
    assert isinstance(m, SegModel)
    assert m.num_classes == 4 and m.encoder_name == "mobilenet_v2"
    assert m.encoder_channels[0] == 3 and len(m.encoder_channels) == 6
    m.eval()
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        feats = m.encode(x)
        logits = m.decode(feats)
    assert logits.shape == (2, 4, 32, 48)
    assert [f.shape[1] for f in feats] == list(m.encoder_channels)
    assert feats[-1].shape[-2:] == (2, 3)  # stride 16


def test_padding_for_sizes_not_multiple_of_16():
    m = mobilenet_deeplab().eval()
    x = torch.randn(1, 3, 40, 24)  # 40 and 24 are not multiples of 16
    with torch.no_grad():
        out = m(x)
    assert out.shape == (1, 3, 40, 24)
    assert torch.isfinite(out).all()


def test_unknown_encoder_and_bad_input():
    with pytest.raises(ValueError, match="encoder"):
        build_model(3, "no_such_encoder")
    with pytest.raises(ValueError, match="dropout"):
        build_model(3, dropout=1.0, decoder_channels=16)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        mobilenet_deeplab().encode(torch.zeros(1, 1, 32, 32))


def test_mc_without_dropout_equals_plain_forward():
    m = mobilenet_deeplab(dropout=0.0).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = torch.softmax(m(x), 1)
    got = mc_predict(m, x, passes=5)
    assert got.dtype == torch.float32 and got.shape == (2, 3, 32, 32)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk", [1, 3])
def test_mc_with_seed_equals_full_passes_with_same_masks(chunk):
    m = mobilenet_deeplab(dropout=0.25)
    m.train()  # mc_predict must switch to eval itself (BN running stats) and restore the state
    x = torch.randn(2, 3, 32, 32)
    T = 7
    pred = mc_predict(m, x, passes=T, seed=123, return_passes=True, chunk=chunk)
    assert m.training  # state restored
    # reference: T full forward passes (encoder included) drawing masks from the same generator
    m.eval()
    m.mc_dropout = True
    m.generator = torch.Generator().manual_seed(123)
    with torch.no_grad():
        passes = torch.stack([torch.softmax(m(x), 1) for _ in range(T)])
    m.mc_dropout, m.generator = False, None
    torch.testing.assert_close(pred.passes, passes, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(pred.probs, passes.mean(0), rtol=1e-4, atol=1e-5)
    # masks really differ between passes, and probabilities sum to one
    assert (passes[0] - passes[1]).abs().max() > 1e-4
    torch.testing.assert_close(pred.probs.sum(1), torch.ones(2, 32, 32), rtol=1e-5, atol=1e-5)


def test_mc_seed_reproducible_and_different_seeds_differ():
    m = mobilenet_deeplab()
    x = torch.randn(1, 3, 32, 32)
    a = mc_predict(m, x, passes=4, seed=1)
    b = mc_predict(m, x, passes=4, seed=1)
    c = mc_predict(m, x, passes=4, seed=2)
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-5


def test_mc_extra_outputs():
    m = mobilenet_deeplab(5)
    x = torch.randn(3, 3, 32, 32)
    p = mc_predict(m, x, passes=3, return_passes=True, return_features=True, seed=0)
    assert p.passes.shape == (3, 3, 5, 32, 32)
    assert p.features.shape == (3, m.encoder_channels[-1])
    assert [f.shape[1] for f in p.pyramid] == list(m.encoder_channels[1:])
    with pytest.raises(ValueError, match="passes"):
        mc_predict(m, x, passes=0)


def test_dropout_masks_are_channelwise():
    m = mobilenet_deeplab()
    g = torch.Generator().manual_seed(0)
    hi, lo = m.draw_masks(4, g)
    assert hi.shape == (4, m.encoder_channels[-1], 1, 1) and lo.shape == (4, m.encoder_channels[2], 1, 1)
    vals = torch.unique(hi)
    torch.testing.assert_close(vals, torch.tensor([0.0, 1 / 0.75]))
    assert 0.15 < (hi == 0).float().mean() < 0.35


def _frame(i, h=32, w=32, rng=None):
    rng = rng or np.random.default_rng(i)
    return Frame("s", f"{i:03d}", rgb=rng.integers(0, 255, (h, w, 3), dtype=np.uint8),
                 depth=np.ones((h, w), np.float32), K=np.eye(3), world_T_cam=np.eye(4))


def test_predict_frames_numpy_and_resize():
    m = mobilenet_deeplab(3)
    frames = [_frame(i) for i in range(5)]
    probs = predict_frames(m, frames, passes=2, batch_size=2, device="cpu", progress=False, seed=0)
    assert probs.shape == (5, 3, 32, 32) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    # same as mc_predict on the normalised images, batch by batch with one generator
    g = torch.Generator().manual_seed(0)
    ref = [mc_predict(m, images_from_rgb(np.stack([f.rgb for f in frames[s:s + 2]])), 2, generator=g)
           for s in range(0, 5, 2)]
    np.testing.assert_allclose(probs, torch.cat(ref).numpy(), rtol=1e-4, atol=1e-5)
    # working size smaller than the frames: output back at frame size
    out = predict_frames(m, frames, passes=2, batch_size=4, size=(16, 16), return_features=True,
                         return_passes=True, progress=False, seed=3)
    assert out["probs"].shape == (5, 3, 32, 32) and out["features"].shape == (5, m.encoder_channels[-1])
    assert out["passes"].shape == (2, 5, 3, 32, 32)
    np.testing.assert_allclose(out["probs"].sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out["passes"].mean(0), out["probs"], atol=1e-5)
    # extras explicitly off: still a dict (the needs providers rely on it)
    d = predict_frames(m, frames, passes=1, return_passes=False, return_features=False, progress=False)
    assert d["passes"] is None and d["features"] is None and d["probs"].shape == (5, 3, 32, 32)


def test_images_from_rgb():
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 255
    rgb[..., 1] = 51
    x = images_from_rgb(rgb)
    assert x.shape == (1, 3, 4, 6) and x.dtype == torch.float32
    np.testing.assert_allclose(x[0, 0].numpy(), 1.0)
    np.testing.assert_allclose(x[0, 1].numpy(), 0.2, rtol=1e-6)
    np.testing.assert_allclose(x[0, 2].numpy(), 0.0)


def test_encoder_normalises_its_own_input():
    """encode() applies the encoder's mean/std: ImageNet's for mobilenet_v2, 0.5/0.5 for the TF Lite port."""
    m = build_model(3, "mobilenet_v2", decoder_channels=16).eval()
    lite = build_model(3, "efficientnet-lite0", decoder_channels=16, encoder_weights="random").eval()
    assert lite.encoder_name == "timm-tf_efficientnet_lite0"
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        want = m.net.encoder((x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
                             / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))[-1]
        torch.testing.assert_close(m.encode(x)[-1], want)
        torch.testing.assert_close(lite.encode(x)[-1], lite.net.encoder((x - 0.5) / 0.5)[-1])
    assert "input_mean" not in lite.state_dict()  # travels with the class, not with checkpoints


def test_load_encoder_weights(tmp_path):
    src = mobilenet_deeplab(seed=1)
    path = tmp_path / "enc.pt"
    torch.save({"encoder": "mobilenet_v2", "encoder_state": src.net.encoder.state_dict()}, path)
    dst = build_model(3, "mobilenet_v2", decoder_channels=16, encoder_weights=path)
    for k, v in src.net.encoder.state_dict().items():
        torch.testing.assert_close(dst.net.encoder.state_dict()[k], v)
    torch.save({"encoder": "resnet18", "encoder_state": {}}, tmp_path / "r.pt")
    with pytest.raises(ValueError, match="resnet18"):
        load_encoder_weights(mobilenet_deeplab(), tmp_path / "r.pt")
    with pytest.raises(FileNotFoundError):
        load_encoder_weights(mobilenet_deeplab(), tmp_path / "missing.pt")


def test_output_stride_8_keeps_twice_the_resolution_and_survives_a_checkpoint(tmp_path):
    """``output_stride=8`` dilates the encoder's last stage: the ASPP sees 1/8-size features (1/16 by default),
    logits stay at the input size, and a checkpoint rebuilds the same network (same outputs)."""
    from viewal.nn.train import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    x = torch.rand(2, 3, 48, 64)
    for stride in (16, 8):
        m = build_model(3, "efficientnet-lite0", decoder_channels=16, encoder_weights="random",
                        output_stride=stride).eval()
        feats = m.encode(x)
        assert feats[-1].shape[-2:] == (48 // stride, 64 // stride)
        with torch.no_grad():
            out = m(x)
        assert out.shape == (2, 3, 48, 64)
        path = save_checkpoint(tmp_path / f"os{stride}.pt", m)
        back = load_checkpoint(path).eval()
        assert back.output_stride == stride
        with torch.no_grad():
            torch.testing.assert_close(back(x), out)
    with pytest.raises(ValueError, match="output_stride must be 8 or 16"):
        build_model(3, decoder_channels=16, output_stride=12)
