"""Fused S-CNN op, SCNN features and SCNNLoss: parity with the plain composition, gradients,
opcheck, layouts, errors."""
import pytest
import torch
import torch.nn.functional as F

from perceptual_ext.features import SCNN
from perceptual_ext.losses import SCNNLoss, scnn_loss
from perceptual_ext.losses.factory import build_loss
from perceptual_ext.ops import scnn_features


def reference(x, w0, b0, weights, biases, window, stride, patch_norm=False):
    """The plain composition: zero-padded conv, 1x1 convs, ReLU after each, avg-pool."""
    r = w0.shape[2] // 2
    z = F.conv2d(x, w0, padding=r)
    if patch_norm:
        ones = torch.ones(1, x.shape[1], w0.shape[2], w0.shape[3], dtype=x.dtype, device=x.device)
        z = z / F.conv2d(x * x, ones, padding=r).sqrt().clamp_min(1e-4)
    h = torch.relu(z + b0[None, :, None, None])
    for w, b in zip(weights, biases):
        h = torch.relu(F.conv2d(h, w[:, :, None, None], b))
    return F.avg_pool2d(h, window, stride)


def assert_backward_matches(x, params, window, stride, patch_norm, grad):
    """The op's gradient of <out, grad> w.r.t. x equals the composition's (float64, to 1e-9 relative)."""
    xa = x.clone().requires_grad_(True)
    (scnn_features(xa, *params, window=window, stride=stride, patch_norm=patch_norm) * grad).sum().backward()
    xb = x.clone().requires_grad_(True)
    (reference(xb, *params, window, stride, patch_norm) * grad).sum().backward()
    assert (xa.grad - xb.grad).abs().max() <= 1e-9 * xb.grad.abs().max()


def make_weights(c_in, channels, depth, patch=3, dtype=torch.float64, device="cpu", bias=0.1):
    g = torch.Generator().manual_seed(1)
    w0 = torch.randn(channels, c_in, patch, patch, generator=g, dtype=dtype) * (2 / (c_in * patch * patch)) ** 0.5
    b0 = torch.randn(channels, generator=g, dtype=dtype) * bias
    ws = torch.randn(depth, channels, channels, generator=g, dtype=dtype) * (2 / channels) ** 0.5
    bs = torch.randn(depth, channels, generator=g, dtype=dtype) * bias
    return [t.to(device) for t in (w0, b0, ws, bs)]


# (N, C_in, H, W, C, D, P, window, stride): odd sizes, uncovered border pixels, C not a multiple
# of 32, D = 0, a 5x5 first conv, and (C = 512) several pixel tiles per image.
CASES = [
    (2, 3, 40, 37, 40, 2, 3, 16, 8),
    (1, 1, 21, 30, 33, 0, 3, 7, 5),
    (2, 3, 18, 18, 8, 3, 5, 18, 4),
    (1, 3, 48, 40, 512, 2, 3, 16, 8),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "N{}-Cin{}-{}x{}-C{}-D{}-P{}-W{}-S{}".format(*c))
@pytest.mark.parametrize("patch_norm", [False, True])
def test_matches_composition_float64(device, case, patch_norm):
    n, c_in, h, w, c, d, p, window, stride = case
    x = torch.rand(n, c_in, h, w, dtype=torch.float64, device=device)
    params = make_weights(c_in, c, d, p, device=device)
    out = scnn_features(x, *params, window=window, stride=stride, patch_norm=patch_norm)
    ref = reference(x, *params, window, stride, patch_norm)
    assert out.shape == ref.shape == (n, c, (h - window) // stride + 1, (w - window) // stride + 1)
    assert (out - ref).abs().max() <= 1e-9 * ref.abs().max()


def test_matches_composition_float32_several_tiles(device):
    x = torch.rand(2, 3, 72, 70, device=device)
    params = make_weights(3, 256, 2, dtype=torch.float32, device=device)
    out = scnn_features(x, *params, window=32, stride=16)
    ref = reference(x.double(), *[t.double() for t in params], 32, 16)
    assert ((out.double() - ref).abs().max() / ref.abs().max()) <= 1e-4


@pytest.mark.parametrize("patch_norm", [False, True])
def test_backward_matches_composition(device, patch_norm):
    x = torch.rand(2, 3, 48, 40, dtype=torch.float64, device=device)
    params = make_weights(3, 512, 2, device=device)
    assert_backward_matches(x, params, 16, 8, patch_norm, torch.randn(2, 512, 5, 4, dtype=torch.float64,
                                                                       device=device))


@pytest.mark.parametrize("patch_norm", [False, True])
def test_wide_first_layer(device, patch_norm):
    # C_in P^2 = 363 columns per pixel against C = 8 activations: tiles are sized by the wider
    # buffer (several tiles per image here), forward and backward still match the composition.
    x = torch.rand(2, 3, 70, 64, dtype=torch.float64, device=device)
    params = make_weights(3, 8, 1, patch=11, device=device)
    out = scnn_features(x, *params, window=16, stride=8, patch_norm=patch_norm)
    ref = reference(x, *params, 16, 8, patch_norm)
    assert (out - ref).abs().max() <= 1e-9 * ref.abs().max()
    assert_backward_matches(x, params, 16, 8, patch_norm, torch.randn_like(ref))


@pytest.mark.parametrize("patch_norm", [False, True])
def test_gradcheck(device, patch_norm):
    x = torch.rand(1, 2, 9, 8, dtype=torch.float64, device=device, requires_grad=True)
    params = make_weights(2, 6, 2, device=device)
    # Full Jacobian without patch norm; the patch-norm case adds only a per-patch map (unit-tested in
    # tests/cpp/common_scnn.cpp), checked here in fast mode to keep the file quick.
    assert torch.autograd.gradcheck(lambda t: scnn_features(t, *params, window=6, stride=2, patch_norm=patch_norm),
                                    (x,), fast_mode=patch_norm)


def test_opcheck(device):
    params = make_weights(3, 12, 2, device=device)
    cases = [((2, 3, 12, 13), True, False), ((1, 3, 9, 9), True, True), ((1, 3, 9, 9), False, False),
             ((0, 3, 9, 9), True, False)]
    for shape, save_masks, patch_norm in cases:
        # Without masks there is no backward: x then does not require grad.
        x = torch.rand(shape, dtype=torch.float64, device=device, requires_grad=save_masks)
        torch.library.opcheck(torch.ops.perceptual_ext.scnn_features.default,
                              (x, *params, 8, 3, patch_norm, save_masks))
    x = torch.rand(2, 3, 12, 13, dtype=torch.float64, device=device)
    _, masks = torch.ops.perceptual_ext.scnn_features(x, *params, 8, 3, False, True)
    grad = torch.randn(2, 12, 2, 2, dtype=torch.float64, device=device)
    torch.library.opcheck(torch.ops.perceptual_ext.scnn_features_backward.default,
                          (grad, x, params[0], params[2], masks, 8, 3, False))


def test_masks_are_bits(device):
    x = torch.rand(2, 3, 20, 20, device=device)
    params = make_weights(3, 40, 3, dtype=torch.float32, device=device)
    _, masks = torch.ops.perceptual_ext.scnn_features(x, *params, 16, 4, False, True)
    assert masks.dtype == torch.int32 and masks.shape == (2, 4, 20 * 20, 2)  # ceil(40 / 32) words
    _, none = torch.ops.perceptual_ext.scnn_features(x, *params, 16, 4, False, False)
    assert none.numel() == 0


def test_empty_batch_and_no_grad_path(device):
    params = make_weights(3, 8, 1, device=device)
    x = torch.rand(0, 3, 16, 16, dtype=torch.float64, device=device, requires_grad=True)
    out = scnn_features(x, *params, window=8, stride=8)
    assert out.shape == (0, 8, 2, 2)
    out.sum().backward()
    assert x.grad.shape == x.shape
    y = torch.rand(1, 3, 16, 16, dtype=torch.float64, device=device)
    with torch.no_grad():
        torch.testing.assert_close(scnn_features(y, *params, window=8, stride=8), reference(y, *params, 8, 8))


def test_non_contiguous_and_weight_lists(device):
    base = torch.rand(2, 3, 20, 24, dtype=torch.float64, device=device)
    w0, b0, ws, bs = make_weights(3, 16, 2, device=device)
    expected = reference(base, w0, b0, ws, bs, 8, 4)
    for x in (base.to(memory_format=torch.channels_last), base.transpose(2, 3).contiguous().transpose(2, 3)):
        torch.testing.assert_close(scnn_features(x, w0, b0, ws, bs, 8, 4), expected, rtol=1e-12, atol=1e-12)
    as_convs = [w[:, :, None, None] for w in ws]  # nn.Conv2d 1x1 kernels
    torch.testing.assert_close(scnn_features(base, w0, b0, as_convs, list(bs), 8, 4), expected,
                               rtol=1e-12, atol=1e-12)


def test_torch_compile(device):
    params = make_weights(3, 8, 1, dtype=torch.float32, device=device)

    @torch.compile(backend="aot_eager", fullgraph=True)
    def loss(x):
        return scnn_features(x, *params, window=8, stride=4).square().sum()

    x = torch.rand(2, 3, 16, 16, device=device, requires_grad=True)
    loss(x).backward()
    expected = x.detach().clone().requires_grad_(True)
    scnn_features(expected, *params, window=8, stride=4).square().sum().backward()
    torch.testing.assert_close(x.grad, expected.grad)


def test_bad_input():
    w0, b0, ws, bs = make_weights(3, 8, 1, dtype=torch.float32)
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="smaller than the pooling window 32 x 32"):
        scnn_features(torch.rand(1, 3, 31, 64), w0, b0, ws, bs)
    with pytest.raises(RuntimeError, match="must be at least the pooling window"):
        torch.ops.perceptual_ext.scnn_features(torch.rand(1, 3, 31, 64), w0, b0, ws, bs, 32, 16, False, False)
    with pytest.raises(ValueError, match="x must be"):
        scnn_features(torch.rand(3, 16, 16), w0, b0, ws, bs, 8, 8)
    with pytest.raises(TypeError, match="x must be a real floating"):
        scnn_features(x.long(), w0, b0, ws, bs, 8, 8)
    with pytest.raises(ValueError, match="x has 1 channels but first_weight expects 3"):
        scnn_features(torch.rand(1, 1, 16, 16), w0, b0, ws, bs, 8, 8)
    with pytest.raises(ValueError, match="odd square kernel"):
        scnn_features(x, torch.rand(8, 3, 2, 2), b0, ws, bs, 8, 8)
    with pytest.raises(ValueError, match="weights must be"):
        scnn_features(x, w0, b0, torch.rand(1, 8, 7), bs, 8, 8)
    with pytest.raises(ValueError, match="biases must be"):
        scnn_features(x, w0, b0, ws, torch.rand(2, 8), 8, 8)
    with pytest.raises(TypeError, match="x and weights must have the same dtype"):
        scnn_features(x, w0, b0, ws.double(), bs, 8, 8)
    with pytest.raises(ValueError, match="window must be >= 1"):
        scnn_features(x, w0, b0, ws, bs, 0, 8)
    with pytest.raises(ValueError, match="weights requires grad.*frozen random features"):
        scnn_features(x, w0, b0, ws.requires_grad_(True), bs, 8, 8)


def test_backward_refuses_weight_gradients():
    w0, b0, ws, bs = make_weights(3, 8, 1, dtype=torch.float32)
    w0.requires_grad_(True)
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    out, _ = torch.ops.perceptual_ext.scnn_features(x, w0, b0, ws, bs, 8, 8, False, True)
    with pytest.raises(RuntimeError, match="gradients with respect to first_weight, first_bias, weights and "
                                           "biases are not implemented"):
        out.sum().backward()


# ---- SCNN features and SCNNLoss ------------------------------------------------------------

def test_scnn_module_seeded_buffers_only():
    a, b, c = SCNN(channels=32, depth=2, seed=3), SCNN(channels=32, depth=2, seed=3), SCNN(channels=32, depth=2, seed=4)
    assert list(a.parameters()) == []
    assert set(a.state_dict()) == {"first_weight", "first_bias", "weights", "biases"}
    assert torch.equal(a.weights, b.weights) and torch.equal(a.first_weight, b.first_weight)
    assert not torch.equal(a.weights, c.weights)
    assert a.weights.shape == (2, 32, 32) and a.first_weight.shape == (32, 3, 3, 3)
    assert torch.all(a.first_bias == 0) and torch.all(a.biases == 0)
    # Kaiming normal, fan-in with ReLU gain: std sqrt(2 / fan_in).
    big = SCNN(channels=1024, depth=1)
    assert abs(big.weights.std().item() - (2 / 1024) ** 0.5) < 1e-3
    zero_mean = SCNN(channels=16, depth=1, zero_mean_filters=True)
    assert zero_mean.first_weight.mean(dim=(2, 3)).abs().max() < 1e-6


def test_scnn_module_forward_is_the_op_on_minus1_1():
    net = SCNN(channels=24, depth=2, window=16, stride=8, patch_norm=True, seed=2)
    x = torch.rand(2, 3, 32, 40)
    expected = reference((2 * x - 1).double(), net.first_weight.double(), net.first_bias.double(), net.weights.double(),
                         net.biases.double(), 16, 8, True)
    torch.testing.assert_close(net(x).double(), expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="patch_size must be odd"):
        SCNN(patch_size=4)


def test_scnn_loss(device):
    kwargs = dict(channels=16, depth=2, window=16, stride=8, seed=5)
    loss_fn = SCNNLoss(reduction="none", **kwargs).to(device)
    x = torch.rand(3, 3, 32, 32, device=device, requires_grad=True)
    y = torch.rand(3, 3, 32, 32, device=device)
    per_sample = loss_fn(x, y)
    fx, fy = loss_fn.scnn(x), loss_fn.scnn(y)
    torch.testing.assert_close(per_sample, (fx - fy).square().mean(dim=(1, 2, 3)))
    torch.testing.assert_close(SCNNLoss(**kwargs).to(device)(x, y), F.mse_loss(fx, fy))
    torch.testing.assert_close(scnn_loss(x, y, reduction="sum", **kwargs), per_sample.sum())
    SCNNLoss(**kwargs).to(device)(x, y).backward()
    assert x.grad.abs().sum() > 0
    assert loss_fn(y, y).abs().max() == 0
    with pytest.raises(ValueError, match="same shape"):
        loss_fn(x, y[:, :, :20])


def test_factory_builds_scnn():
    loss_fn = build_loss("scnn", seed=7, channels=8, depth=1)
    assert isinstance(loss_fn, SCNNLoss) and loss_fn.scnn.seed == 7
    x = torch.rand(1, 3, 32, 32)
    assert loss_fn(x, x) == 0
