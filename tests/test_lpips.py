"""LPIPS module against a plain-PyTorch composition of lpips v0.1, weight files, losses factory."""
import math

import pytest
import torch
import torch.nn.functional as F

from perceptual_ext.features import AlexNetFeatures, SqueezeNet11Features, VGG16Features
from perceptual_ext.losses import LPIPS, lpips_loss
from perceptual_ext.losses.factory import build_loss

# ---- the reference: torchvision's architectures and lpips v0.1, written out plainly ----------

LIN_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512),
                "squeeze": (64, 128, 256, 384, 384, 512, 512)}
VGG_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# torchvision squeezenet1_1: features index -> (in, squeeze, expand1x1, expand3x3)
FIRES = {3: (64, 16, 64, 64), 4: (128, 16, 64, 64), 6: (128, 32, 128, 128), 7: (256, 32, 128, 128),
         9: (256, 48, 192, 192), 10: (384, 48, 192, 192), 11: (384, 64, 256, 256), 12: (512, 64, 256, 256)}


def torchvision_shapes(net):
    """torchvision's ``features.*`` keys and shapes of alexnet / vgg16 / squeezenet1_1."""
    shapes = {}
    if net == "alex":
        for i, (cin, cout, k) in {0: (3, 64, 11), 3: (64, 192, 5), 6: (192, 384, 3), 8: (384, 256, 3),
                                  10: (256, 256, 3)}.items():
            shapes[f"features.{i}.weight"], shapes[f"features.{i}.bias"] = (cout, cin, k, k), (cout,)
    elif net == "vgg":
        i, cin = 0, 3
        for v in VGG_CFG:
            if v == "M":
                i += 1
                continue
            shapes[f"features.{i}.weight"], shapes[f"features.{i}.bias"] = (v, cin, 3, 3), (v,)
            cin, i = v, i + 2
    else:
        shapes["features.0.weight"], shapes["features.0.bias"] = (64, 3, 3, 3), (64,)
        for i, (cin, sq, e1, e3) in FIRES.items():
            for name, shape in (("squeeze", (sq, cin, 1, 1)), ("expand1x1", (e1, sq, 1, 1)),
                                ("expand3x3", (e3, sq, 3, 3))):
                shapes[f"features.{i}.{name}.weight"], shapes[f"features.{i}.{name}.bias"] = shape, (shape[0],)
    return shapes


def random_backbone(net, seed=1, classifier=False):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in torchvision_shapes(net).items():
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
        state[key] = torch.randn(shape, generator=g) * (math.sqrt(2.0 / fan_in) if len(shape) > 1 else 0.1)
    if classifier:  # a whole torchvision file
        state["classifier.1.weight"] = torch.randn(10, 5, generator=g)
        state["classifier.1.bias"] = torch.randn(10, generator=g)
    return state


def random_lin(net, seed=2):
    g = torch.Generator().manual_seed(seed)
    return {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate(LIN_CHANNELS[net])}


def backbone_taps(net, x, s):
    """The taps lpips's alexnet / vgg16 / squeezenet classes return, from torchvision's features."""
    s = {k: v.double() for k, v in s.items()}

    def conv(h, i, **kw):
        return F.conv2d(h, s[f"features.{i}.weight"], s[f"features.{i}.bias"], **kw)

    taps = []
    if net == "alex":
        h = F.relu(conv(x, 0, stride=4, padding=2)); taps.append(h)  # noqa: E702
        h = F.relu(conv(F.max_pool2d(h, 3, 2), 3, padding=2)); taps.append(h)  # noqa: E702
        h = F.relu(conv(F.max_pool2d(h, 3, 2), 6, padding=1)); taps.append(h)  # noqa: E702
        h = F.relu(conv(h, 8, padding=1)); taps.append(h)  # noqa: E702
        h = F.relu(conv(h, 10, padding=1)); taps.append(h)  # noqa: E702
    elif net == "vgg":
        i, h = 0, x
        for v in VGG_CFG:
            if v == "M":
                h, i = F.max_pool2d(h, 2, 2), i + 1
                continue
            h = F.relu(conv(h, i, padding=1))
            if i in (2, 7, 14, 21, 28):  # relu1_2 .. relu5_3 (after the ReLU at i + 1)
                taps.append(h)
            i += 2
    else:
        def fire(h, i):
            q = F.relu(F.conv2d(h, s[f"features.{i}.squeeze.weight"], s[f"features.{i}.squeeze.bias"]))
            e1 = F.conv2d(q, s[f"features.{i}.expand1x1.weight"], s[f"features.{i}.expand1x1.bias"])
            return torch.cat([F.relu(e1),
                              F.relu(F.conv2d(q, s[f"features.{i}.expand3x3.weight"], s[f"features.{i}.expand3x3.bias"],
                                              padding=1))], 1)

        def pool(h):
            return F.max_pool2d(h, 3, 2, ceil_mode=True)

        h = F.relu(conv(x, 0, stride=2)); taps.append(h)  # noqa: E702
        h = fire(fire(pool(h), 3), 4); taps.append(h)  # noqa: E702
        h = fire(fire(pool(h), 6), 7); taps.append(h)  # noqa: E702
        for i in (9, 10, 11, 12):
            h = fire(pool(h) if i == 9 else h, i)
            taps.append(h)
    return taps


def reference_lpips(net, x, y, backbone, lin, spatial=False):
    """lpips.LPIPS(net, version='0.1').forward(x, y, normalize=True), plainly, in float64."""
    # lpips registers them as float32 buffers (torch.Tensor([...])): in float64 they keep that rounding.
    shift = torch.tensor([-.030, -.088, -.188], dtype=torch.float32).double().view(1, 3, 1, 1)
    scale = torch.tensor([.458, .448, .450], dtype=torch.float32).double().view(1, 3, 1, 1)
    x, y = x.double(), y.double()
    fx = backbone_taps(net, ((2 * x - 1) - shift) / scale, backbone)
    fy = backbone_taps(net, ((2 * y - 1) - shift) / scale, backbone)
    total = 0
    for k, (a, b) in enumerate(zip(fx, fy)):
        na = a / (torch.sqrt(torch.sum(a ** 2, dim=1, keepdim=True)) + 1e-10)
        nb = b / (torch.sqrt(torch.sum(b ** 2, dim=1, keepdim=True)) + 1e-10)
        w = lin[f"lin{k}.model.1.weight"].double() if lin is not None else torch.ones(1, a.shape[1], 1, 1,
                                                                                      dtype=torch.float64)
        d = F.conv2d((na - nb) ** 2, w)
        if spatial:
            total = total + F.interpolate(d, size=x.shape[2:], mode="bilinear", align_corners=False)
        else:
            total = total + d.mean(dim=(2, 3), keepdim=True)
    return total if spatial else total.flatten()


# Small images keep float64 on the CPU fast: 64² for AlexNet and SqueezeNet, 32² for VGG16 (its
# relu5_3 is then 2x2, still a map to average and to upsample).
SIZES = {"alex": 64, "vgg": 32, "squeeze": 64}


def image_pair(size, seed=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, size, size, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.randn(2, 3, size, size, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, y


def save_old_format(state, path):
    """As lpips ships its lin files: the legacy (non-zip) torch serialization."""
    torch.save(state, path, _use_new_zipfile_serialization=False)
    with open(path, "rb") as f:
        assert f.read(2) != b"PK", "expected the legacy format, not a zip archive"


# ---- parity -------------------------------------------------------------------------------

@pytest.mark.parametrize("net", ["alex", "vgg", "squeeze"])
def test_matches_lpips_composition_float64(net, tmp_path):
    x, y = image_pair(SIZES[net])
    backbone, lin = random_backbone(net, classifier=(net == "alex")), random_lin(net)
    torch.save(backbone, tmp_path / "backbone.pth")
    save_old_format(lin, tmp_path / f"{net}.pth")
    for spatial in (False, True):
        module = LPIPS(net, backbone_weights=tmp_path / "backbone.pth", lin_weights=str(tmp_path / f"{net}.pth"),
                       spatial=spatial, reduction="none").double()
        out = module(x, y)
        ref = reference_lpips(net, x, y, backbone, lin, spatial)
        assert out.shape == ((2, 1) + x.shape[2:] if spatial else (2,))
        assert (out - ref).abs().max() <= 1e-10 * max(1.0, ref.abs().max().item())
        assert ref.abs().min() > 1e-3  # a meaningful comparison, not two zeros


def test_unit_lin_weights_and_random_backbone():
    x, y = image_pair(32)
    module = LPIPS("squeeze", reduction="none", seed=5).double()  # random backbone, lin=None
    state = {k: v for k, v in module.net.state_dict().items()}
    torch.testing.assert_close(module(x, y), reference_lpips("squeeze", x, y, state, None), rtol=1e-10, atol=1e-12)
    again = LPIPS("squeeze", reduction="none", seed=5).double()
    assert torch.equal(again(x, y), module(x, y))
    assert not torch.equal(LPIPS("squeeze", reduction="none", seed=6).double()(x, y), module(x, y))


def test_float32_and_reductions():
    x, y = image_pair(64)
    module = LPIPS("alex", backbone_weights=random_backbone("alex"), lin_weights=random_lin("alex"), reduction="none")
    per_image = module(x.float(), y.float())
    ref = reference_lpips("alex", x, y, random_backbone("alex"), random_lin("alex"))
    torch.testing.assert_close(per_image.double(), ref, rtol=1e-4, atol=1e-6)
    module.reduction = "mean"
    torch.testing.assert_close(module(x.float(), y.float()), per_image.mean())
    module.reduction = "sum"
    torch.testing.assert_close(module(x.float(), y.float()), per_image.sum())
    # target broadcast from a batch of one
    module.reduction = "none"
    torch.testing.assert_close(module(x.float(), y[:1].float()), module(x.float(), y[:1].expand(2, -1, -1, -1).float()))
    assert module(x[:0].float(), y[:0].float()).shape == (0,)
    # the functional form builds the same module
    torch.testing.assert_close(lpips_loss(x.float(), y.float(), "alex", random_backbone("alex"), random_lin("alex"),
                                          reduction="none"), per_image)


def test_buffers_only_and_state_dict():
    module = LPIPS("alex")
    assert list(module.parameters()) == []
    keys = set(module.state_dict())
    assert {f"lin{k}" for k in range(5)} <= keys and "net.features.0.weight" in keys


def test_loss_gradient():
    x, y = image_pair(64)
    module = LPIPS("alex", lin_weights=random_lin("alex")).double()
    xx = x.clone().requires_grad_(True)
    module(xx, y).backward()
    assert torch.isfinite(xx.grad).all() and xx.grad.abs().sum() > 0
    # gradient at x == y: zero and finite (no sqrt(0) in the head)
    same = y.clone().requires_grad_(True)
    loss = module(same, y)
    loss.backward()
    assert loss.item() == 0 and torch.isfinite(same.grad).all() and same.grad.abs().max() == 0
    # gradient of the composition agrees
    xx.grad = None
    module.reduction = "sum"
    module(xx, y).backward()
    xr = x.clone().requires_grad_(True)
    state = module.net.state_dict()
    reference_lpips("alex", xr, y, state, random_lin("alex")).sum().backward()
    torch.testing.assert_close(xx.grad, xr.grad, rtol=1e-9, atol=1e-12)


def test_target_gradient_only_when_asked():
    x, y = image_pair(32)
    module = LPIPS("squeeze").double()
    yy = y.clone().requires_grad_(True)
    module(x, yy).backward()
    assert yy.grad is not None and torch.isfinite(yy.grad).all()


# ---- weight files -------------------------------------------------------------------------

def test_lin_weights_errors_name_file_and_key(tmp_path):
    path = tmp_path / "alex.pth"
    lin = random_lin("alex")
    cases = {
        "missing": ({k: v for k, v in lin.items() if k != "lin3.model.1.weight"},
                    r"missing keys \['lin3.model.1.weight'\]"),
        "unexpected": (dict(lin, **{"lin5.model.1.weight": torch.rand(1, 3, 1, 1)}),
                       r"unexpected keys \['lin5.model.1.weight'\]"),
        "shape": (dict(lin, **{"lin1.model.1.weight": torch.rand(1, 64, 1, 1)}),
                  r"lin1.model.1.weight has shape \(1, 64, 1, 1\), expected \(1, 192, 1, 1\)"),
        "negative": (dict(lin, **{"lin2.model.1.weight": -torch.rand(1, 384, 1, 1)}),
                     "lin2.model.1.weight has negative"),
        "nan": (dict(lin, **{"lin0.model.1.weight": torch.full((1, 64, 1, 1), float("nan"))}),
                "lin0.model.1.weight has non-finite"),
        "dtype": (dict(lin, **{"lin0.model.1.weight": torch.ones(1, 64, 1, 1, dtype=torch.int64)}),
                  "lin0.model.1.weight must be a floating-point tensor"),
        "squeeze file": (random_lin("squeeze"),
                         r"not an lpips v0.1 'alex' lin file; missing keys \[\], unexpected keys "
                         r"\['lin5.model.1.weight', 'lin6.model.1.weight'\]"),
        "vgg file": (random_lin("vgg"), r"lin1.model.1.weight has shape \(1, 128, 1, 1\), expected \(1, 192, 1, 1\)"),
    }
    for name, (state, match) in cases.items():
        save_old_format(state, path)
        with pytest.raises(ValueError, match=match) as info:
            LPIPS("alex", lin_weights=path)
        assert str(path) in str(info.value), name
    with pytest.raises(ValueError, match="lin_weights: no such file"):
        LPIPS("alex", lin_weights=tmp_path / "absent.pth")
    path.write_bytes(b"\x80\x02garbage that is not a torch file")
    with pytest.raises(ValueError, match=f"lin_weights: could not read '{path}'"):
        LPIPS("alex", lin_weights=path)
    torch.save([torch.ones(3)], path)
    with pytest.raises(ValueError, match="expected a state dict"):
        LPIPS("alex", lin_weights=path)
    with pytest.raises(TypeError, match="lin_weights must be None, a path"):
        LPIPS("alex", lin_weights=3)


def test_lin_weights_saved_from_cuda_tensors_load_on_cpu(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA to write a file of CUDA tensors")
    path = tmp_path / "alex.pth"
    save_old_format({k: v.cuda() for k, v in random_lin("alex").items()}, path)
    assert LPIPS("alex", lin_weights=path).lin0.device.type == "cpu"


def test_backbone_weights_errors(tmp_path):
    path = tmp_path / "squeeze.pth"
    state = random_backbone("squeeze")
    del state["features.12.expand3x3.bias"]
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"backbone|weights.*missing keys \['features.12.expand3x3.bias'\]") as info:
        LPIPS("squeeze", backbone_weights=path)
    assert str(path) in str(info.value) and "SqueezeNet 1.1" in str(info.value)
    state = random_backbone("alex")
    state["features.3.weight"] = torch.rand(192, 64, 3, 3)
    with pytest.raises(ValueError, match=r"features.3.weight has shape \(192, 64, 3, 3\), expected \(192, 64, 5, 5\)"):
        LPIPS("alex", backbone_weights=state)
    with pytest.raises(ValueError, match="no such file"):
        LPIPS("vgg", backbone_weights=tmp_path / "absent.pth")


@pytest.mark.parametrize("cls,net", [(AlexNetFeatures, "alex"), (SqueezeNet11Features, "squeeze"),
                                     (VGG16Features, "vgg")])
def test_feature_extractors_have_torchvision_keys(cls, net):
    model = cls()
    expected = torchvision_shapes(net)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    model = cls(weights=random_backbone(net, classifier=True))  # a whole torchvision file loads
    x = torch.rand(1, 3, 64, 64)
    outputs = model(x)
    assert all(torch.isfinite(v).all() for v in outputs.values())
    assert list(model.parameters()) == []


def test_feature_extractor_shapes():
    alex = AlexNetFeatures()
    assert [tuple(v.shape[1:]) for v in alex(torch.rand(1, 3, 64, 64)).values()] == \
        [(64, 15, 15), (192, 7, 7), (384, 3, 3), (256, 3, 3), (256, 3, 3)]
    squeeze = SqueezeNet11Features()
    assert [tuple(v.shape[1:]) for v in squeeze(torch.rand(1, 3, 64, 64)).values()] == \
        [(64, 31, 31), (128, 15, 15), (256, 7, 7), (384, 3, 3), (384, 3, 3), (512, 3, 3), (512, 3, 3)]
    with pytest.raises(ValueError, match="unknown AlexNet layer 'relu9'"):
        AlexNetFeatures(layers=("relu9",))


# ---- bad input ----------------------------------------------------------------------------

def test_bad_arguments():
    with pytest.raises(ValueError, match="net must be one of"):
        LPIPS("resnet")
    with pytest.raises(ValueError, match="reduction"):
        LPIPS("alex", reduction="avg")
    with pytest.raises(TypeError, match="spatial must be a bool"):
        LPIPS("alex", spatial=1)
    module = LPIPS("alex")
    with pytest.raises(ValueError, match="input must be"):
        module(torch.rand(3, 64, 64), torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match="must agree"):
        module(torch.rand(2, 3, 64, 64), torch.rand(3, 3, 64, 64))
    with pytest.raises(ValueError, match="3 channels"):
        module(torch.rand(2, 4, 64, 64), torch.rand(2, 4, 64, 64))
    with pytest.raises(ValueError, match=r"input is 30x40 pixels: LPIPS\(net='alex'\) needs at least 31x31"):
        module(torch.rand(1, 3, 30, 40), torch.rand(1, 3, 30, 40))
    with pytest.raises(ValueError, match="x is 16x16 pixels: SqueezeNet 1.1 layer fire9 needs at least 17x17"):
        SqueezeNet11Features()(torch.rand(1, 3, 16, 16))
    assert SqueezeNet11Features(layers=("fire5",))(torch.rand(1, 3, 9, 9))["fire5"].shape[1] == 256
    with pytest.raises(TypeError, match="target must be a real floating"):
        module(torch.rand(2, 3, 64, 64), torch.ones(2, 3, 64, 64, dtype=torch.uint8))


def test_factory_builds_lpips(tmp_path):
    loss = build_loss("lpips")
    assert isinstance(loss, LPIPS) and loss.net_name == "vgg" and not loss.pretrained_lin
    save_old_format(random_lin("vgg"), tmp_path / "vgg.pth")
    loss = build_loss("lpips", lpips_net="vgg", lpips_weights=str(tmp_path / "vgg.pth"),
                      vgg_weights=random_backbone("vgg"))
    assert loss.net_name == "vgg" and loss.pretrained_lin
    x = torch.rand(1, 3, 32, 32)
    assert loss(x, x).item() == 0


def test_no_grad_and_autocast():
    x, y = (t.float() for t in image_pair(64))
    module = LPIPS("alex", lin_weights=random_lin("alex"), reduction="none")
    with torch.no_grad():
        expected = module(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = module(x, y)
    torch.testing.assert_close(got.float(), expected, rtol=5e-2, atol=1e-3)


@pytest.mark.parametrize("cls,expected", [
    (AlexNetFeatures, {"relu1": 7, "relu2": 15, "relu3": 31, "relu4": 31, "relu5": 31}),
    (SqueezeNet11Features, {"relu1": 3, "fire3": 5, "fire5": 9, "fire6": 17, "fire7": 17, "fire8": 17, "fire9": 17}),
])
def test_min_size_is_the_smallest_side_torch_accepts(cls, expected):
    """The smallest input side of each tap, computed from the layers, is exactly where torch starts
    to accept the input: one pixel less fails inside the stack."""
    net = cls()
    assert net.min_size == expected
    for name, index in net.TAPS.items():
        side = net.min_size[name]
        assert min(net.features[: index + 1](torch.zeros(1, 3, side, side)).shape[2:]) >= 1
        if side > 1:
            with pytest.raises(RuntimeError):
                net.features[: index + 1](torch.zeros(1, 3, side - 1, side - 1))
