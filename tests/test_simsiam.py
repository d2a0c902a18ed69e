"""SimSiam pretraining: loss, collapse guard, weights accepted by build_model."""
import math

import numpy as np
import pytest
import torch

from viewal.datasets.base import Frame
from viewal.nn.model import build_model
from viewal.nn.simsiam import SimSiamConfig, augment_batch, output_std, pretrain, save_encoder, simsiam_loss

torch.set_num_threads(1)


def textured_frames(n, h=32, w=32):
    """Images with a few distinct colour/texture families, so that views of one image can be matched."""
    frames = []
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        rng = np.random.default_rng(i)
        base = rng.integers(0, 255, 3)
        freq = 0.2 + 0.6 * (i % 4) / 3
        stripes = (np.sin(freq * (xx * np.cos(i) + yy * np.sin(i))) > 0)[..., None]
        rgb = np.where(stripes, base, 255 - base) + rng.integers(-10, 10, (h, w, 3))
        frames.append(Frame("s", f"{i:03d}", rgb=np.clip(rgb, 0, 255).astype(np.uint8),
                            depth=np.ones((h, w), np.float32), K=np.eye(3), world_T_cam=np.eye(4)))
    return frames


def test_loss_definition_and_stop_gradient():
    torch.manual_seed(0)
    z = torch.randn(4, 8, requires_grad=True)
    p = z.detach().clone().requires_grad_(True)
    loss = simsiam_loss(p, p, z, z)
    assert loss.item() == pytest.approx(-1.0, abs=1e-6)  # identical directions: -1
    loss.backward()
    assert z.grad is None or torch.all(z.grad == 0)  # stop-gradient on the z branch
    assert p.grad is not None
    # opposite vectors: +1
    assert simsiam_loss(-z, -z, z, z).item() == pytest.approx(1.0, abs=1e-6)


def test_output_std_detects_collapse():
    d = 64
    collapsed = torch.ones(16, d) + 1e-6 * torch.randn(16, d)
    spread = torch.randn(256, d)
    assert output_std(collapsed) < 1e-3
    assert output_std(spread) == pytest.approx(1 / math.sqrt(d), rel=0.15)


def test_augment_batch_shapes():
    frames = textured_frames(3, 40, 56)
    g = torch.Generator().manual_seed(0)
    x1 = augment_batch([f.rgb for f in frames], (32, 48), generator=g)
    x2 = augment_batch([f.rgb for f in frames], (32, 48), generator=g)
    assert x1.shape == (3, 3, 32, 48) and x1.dtype == torch.float32
    assert not torch.allclose(x1, x2)  # two different views


def test_pretrain_loss_falls_without_collapse(tmp_path):
    frames = textured_frames(16)
    d = 64
    cfg = SimSiamConfig(encoder="mobilenet_v2", epochs=16, batch_size=8, lr=0.2, size=(32, 32), proj_dim=d,
                        pred_dim=16, seed=0)
    model, hist = pretrain(frames, cfg, progress=False)
    losses = [h["loss"] for h in hist]
    assert len(losses) == 16
    assert np.mean(losses[-3:]) < np.mean(losses[:2]) - 0.1, losses
    # not collapsed: per-dimension std of normalised outputs stays well above 0
    assert min(h["std"] for h in hist[-3:]) > 0.3 / math.sqrt(d), [h["std"] for h in hist]
    with torch.no_grad():
        x = augment_batch([f.rgb for f in frames], (32, 32), generator=torch.Generator().manual_seed(1))
        model.train()  # batch statistics as in training
        _, z = model(x)
    assert output_std(z) > 0.3 / math.sqrt(d)
    # the saved encoder loads into a segmentation model
    path = save_encoder(tmp_path / "enc.pt", model.encoder, "mobilenet_v2", meta={"epochs": 12})
    seg = build_model(5, "mobilenet_v2", decoder_channels=16, encoder_weights=path)
    for k, v in model.encoder.state_dict().items():
        torch.testing.assert_close(seg.net.encoder.state_dict()[k], v.cpu())
    with pytest.raises(ValueError, match="mobilenet_v2"):
        build_model(5, "resnet18", decoder_channels=16, encoder_weights=path)


def test_config_validation():
    with pytest.raises(ValueError, match="batch_size"):
        SimSiamConfig(batch_size=1)
    with pytest.raises(ValueError, match="at least 2 frames"):
        pretrain(textured_frames(1), SimSiamConfig(epochs=1, batch_size=2), progress=False)
