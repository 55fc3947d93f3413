"""VGG16Features, PerceptualLoss and TVLoss: parity with a plain nn.Sequential VGG built from the
same state dict, state-dict round trips, bad weight files."""
import pytest
import torch
from torch import nn

from perceptual_ext.features import VGG16_LAYERS, VGG16Features
from perceptual_ext.losses import PerceptualLoss, TVLoss, total_variation
from perceptual_ext.losses.factory import build_loss
from perceptual_ext.models import SCNN, VGG16Features as ModelsVGG16Features

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def plain_vgg16(state_dict):
    """torchvision's vgg16().features written plainly with nn.Conv2d, loaded from `state_dict`."""
    layers, c = [], 3
    for v in CONFIG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
            c = v
    net = nn.Sequential(*layers)
    net.load_state_dict({k[len("features."):]: v for k, v in state_dict.items() if k.startswith("features.")})
    return net.double().eval()


def plain_features(net, x, names):
    h, out = (x.double() - MEAN.double()) / STD.double(), {}
    last = max(VGG16_LAYERS.index(n) for n in names)
    for i, layer in enumerate(net[: last + 1]):
        h = layer(h)
        if VGG16_LAYERS[i] in names:
            out[VGG16_LAYERS[i]] = h
    return out


def plain_gram(f):
    flat = f.flatten(2)
    return flat @ flat.mT / (flat.shape[1] * flat.shape[2])


LAYERS = ("relu1_2", "relu2_2", "relu3_3")


def test_layer_names_and_early_stop():
    assert VGG16_LAYERS[3] == "relu1_2" and VGG16_LAYERS[22] == "relu4_3" and VGG16_LAYERS[30] == "pool5"
    vgg = VGG16Features(layers=("relu2_2", "relu1_2"))
    called = []
    vgg.features[9].register_forward_hook(lambda *a: called.append(1))  # pool2, after relu2_2
    out = vgg(torch.rand(1, 3, 16, 16))
    assert list(out) == ["relu2_2", "relu1_2"]
    assert out["relu1_2"].shape == (1, 64, 16, 16) and out["relu2_2"].shape == (1, 128, 8, 8)
    assert called == []
    assert list(vgg.parameters()) == []
    assert ModelsVGG16Features is VGG16Features and SCNN.__module__ == "perceptual_ext.features.scnn"


def test_state_dict_has_torchvision_keys_and_is_seeded():
    a, b, c = VGG16Features(seed=1), VGG16Features(seed=1), VGG16Features(seed=2)
    keys = list(a.state_dict())
    assert keys[0] == "features.0.weight" and keys[-1] == "features.28.bias" and len(keys) == 26
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in keys)
    assert not torch.equal(a.state_dict()["features.0.weight"], c.state_dict()["features.0.weight"])


def test_features_match_plain_sequential():
    vgg = VGG16Features(layers=LAYERS, seed=3)
    net = plain_vgg16(vgg.state_dict())
    x = torch.rand(2, 3, 24, 20)
    ours = vgg.double()(x.double())
    ref = plain_features(net, x, LAYERS)
    for name in LAYERS:
        torch.testing.assert_close(ours[name], ref[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("feature", ["l2", "gram", "both"])
def test_perceptual_loss_matches_plain_reference(feature):
    weights = [1.0, 0.5, 2.0]
    loss_fn = PerceptualLoss(layers=LAYERS, layer_weights=weights, feature=feature, style_weight=30.0, seed=4,
                             reduction="none").double()
    net = plain_vgg16(loss_fn.vgg.state_dict())
    x = torch.rand(3, 3, 20, 24, dtype=torch.float64)
    y = torch.rand(3, 3, 20, 24, dtype=torch.float64)
    fx, fy = plain_features(net, x, LAYERS), plain_features(net, y, LAYERS)
    expected = torch.zeros(3, dtype=torch.float64)
    for name, w in zip(LAYERS, weights):
        a, b = fx[name], fy[name]
        if feature in ("l2", "both"):
            expected += w * (a - b).square().sum(dim=(1, 2, 3)) / a[0].numel()
        if feature in ("gram", "both"):
            expected += 30.0 * w * (plain_gram(a) - plain_gram(b)).square().sum(dim=(1, 2))
    torch.testing.assert_close(loss_fn(x, y), expected, rtol=1e-10, atol=1e-12)
    loss_fn.reduction = "mean"
    torch.testing.assert_close(loss_fn(x, y), expected.mean(), rtol=1e-10, atol=1e-12)


def test_perceptual_loss_gradient_and_target_batch_of_one():
    loss_fn = PerceptualLoss(layers=("relu1_2", "relu2_2"), feature="both")
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    style = torch.rand(1, 3, 16, 16)
    loss = loss_fn(x, style)
    loss.backward()
    assert loss.shape == () and x.grad.abs().sum() > 0
    assert loss_fn(style, style) == 0


def test_save_and_load_round_trip(tmp_path):
    vgg = VGG16Features(layers=LAYERS, seed=11)
    path = tmp_path / "vgg16.pth"
    state = dict(vgg.state_dict())
    state["classifier.0.weight"] = torch.zeros(2, 2)  # torchvision files carry the classifier too
    torch.save(state, path)
    loaded = VGG16Features(layers=LAYERS, weights=path, seed=999)
    for k, v in vgg.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    x = torch.rand(1, 3, 16, 16)
    for name in LAYERS:
        assert torch.equal(loaded(x)[name], vgg(x)[name])
    a = PerceptualLoss(layers=LAYERS, weights=str(path))
    b = PerceptualLoss(layers=LAYERS, weights=None, seed=11)
    y = torch.rand(1, 3, 16, 16)
    assert torch.equal(a(x, y), b(x, y))


def test_bad_weights(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        VGG16Features(weights=tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="could not read"):
        VGG16Features(weights=garbage)
    state = VGG16Features().state_dict()
    wrong_keys = tmp_path / "keys.pth"
    torch.save({k.replace("features.", "body."): v for k, v in state.items()}, wrong_keys)
    with pytest.raises(ValueError, match="missing keys.*features.0.bias.*unexpected keys.*body"):
        VGG16Features(weights=wrong_keys)
    wrong_shape = tmp_path / "shape.pth"
    bad = dict(state)
    bad["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(bad, wrong_shape)
    with pytest.raises(ValueError, match=r"features.0.weight has shape \(64, 3, 5, 5\), expected \(64, 3, 3, 3\)"):
        PerceptualLoss(weights=wrong_shape)
    not_dict = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_dict)
    with pytest.raises(ValueError, match="expected a state dict"):
        VGG16Features(weights=not_dict)
    with pytest.raises(TypeError, match="weights must be None"):
        VGG16Features(weights=3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown VGG16 layer 'relu9_9'"):
        VGG16Features(layers=("relu9_9",))
    with pytest.raises(ValueError, match="feature must be one of"):
        PerceptualLoss(feature="l1")
    with pytest.raises(ValueError, match="layer_weights"):
        PerceptualLoss(layers=("relu1_2",), layer_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="input .* and target .* must agree"):
        PerceptualLoss(layers=("relu1_2",))(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        VGG16Features()(torch.rand(1, 4, 16, 16))


def test_tv_loss():
    x = torch.zeros(2, 1, 3, 3)
    x[1, 0, 1, 1] = 1.0  # four unit jumps
    torch.testing.assert_close(TVLoss(reduction="none")(x), torch.tensor([0.0, 4.0]))
    torch.testing.assert_close(TVLoss()(x, x), torch.tensor(2.0))
    y = torch.rand(2, 3, 5, 6, dtype=torch.float64)
    expected = ((y[..., 1:] - y[..., :-1]) ** 2).sum() + ((y[..., 1:, :] - y[..., :-1, :]) ** 2).sum()
    torch.testing.assert_close(total_variation(y, reduction="sum"), expected)


def test_factory_builds_vgg_losses(tmp_path):
    vgg_loss = build_loss("vgg", seed=2)
    gram_loss = build_loss("gram", seed=2)
    assert isinstance(vgg_loss, PerceptualLoss) and vgg_loss.feature == "l2" and gram_loss.feature == "gram"
    x, y = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    assert vgg_loss(x, y) > 0 and gram_loss(x, y) > 0
    path = tmp_path / "w.pth"
    torch.save(VGG16Features(seed=2).state_dict(), path)
    assert torch.equal(build_loss("vgg", vgg_weights=str(path))(x, y), vgg_loss(x, y))


def test_image_too_small_for_the_deepest_layer_names_it():
    with pytest.raises(ValueError, match=r"x is 4x4 pixels: layer relu4_3 comes after 3 2x2 max pools and needs at "
                                         r"least 8x8"):
        PerceptualLoss()(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4))
    assert torch.isfinite(PerceptualLoss()(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)))
