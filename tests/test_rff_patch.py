"""Patch random-Fourier-feature op (rff_patch_features): parity with the plain composition,
gradients, opcheck, layouts, errors."""
import math

import pytest
import torch
import torch.nn.functional as F

from perceptual_ext.ops import rff_patch_features


def composition(x, weight, bias, window, stride):
    """What users write today: reflect pad, conv, cos, average pool (materializes [N, F, H, W])."""
    pad = weight.shape[2] // 2
    padded = F.pad(x, [pad] * 4, mode="reflect") if pad else x
    return F.avg_pool2d(torch.cos(F.conv2d(padded, weight, bias)), window, stride)


def random_features(f, c, p, dtype=torch.float64, device="cpu", scale=1.5):
    weight = torch.randn(f, c, p, p, dtype=dtype, device=device) * scale
    bias = torch.rand(f, dtype=dtype, device=device) * 2 * math.pi
    return weight, bias


# (N, C, H, W), P, window, stride: odd and even patches, overlapping, touching and gapped windows,
# sizes that leave pixels past the last window, a single window covering the whole image.
CASES = [
    ((2, 3, 20, 17), 3, 8, 4),
    ((1, 2, 11, 13), 5, 5, 3),
    ((1, 3, 9, 10), 2, 4, 3),
    ((1, 1, 12, 12), 3, 3, 5),
    ((2, 3, 16, 16), 1, 16, 16),
    ((1, 4, 33, 35), 3, 32, 16),
    ((3, 3, 40, 37), 3, 12, 12),
]


@pytest.mark.parametrize("shape,patch,window,stride", CASES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_matches_composition(device, shape, patch, window, stride, dtype, tol):
    x = torch.rand(shape, dtype=torch.float64, device=device) * 2 - 1
    weight, bias = random_features(37, shape[1], patch, device=device)
    out = rff_patch_features(x.to(dtype), weight.to(dtype), bias.to(dtype), window, stride)
    ref = composition(x, weight, bias, window, stride)
    assert out.shape == ref.shape and out.dtype == dtype
    assert (out.double() - ref).abs().max().item() <= tol


@pytest.mark.parametrize("shape,patch,window,stride", CASES)
def test_backward_matches_composition(device, shape, patch, window, stride):
    x = torch.rand(shape, dtype=torch.float64, device=device, requires_grad=True)
    weight, bias = random_features(19, shape[1], patch, device=device)
    grad = torch.randn_like(composition(x, weight, bias, window, stride))
    (ours,) = torch.autograd.grad(rff_patch_features(x, weight, bias, window, stride), x, grad)
    (ref,) = torch.autograd.grad(composition(x, weight, bias, window, stride), x, grad)
    assert (ours - ref).abs().max().item() <= 1e-10


def test_gradcheck(device):
    for shape, patch, window, stride in [((2, 2, 6, 5), 3, 4, 2), ((1, 2, 5, 6), 2, 3, 3), ((1, 1, 5, 5), 5, 5, 1)]:
        x = torch.rand(shape, dtype=torch.float64, device=device, requires_grad=True)
        weight, bias = random_features(3, shape[1], patch, device=device)
        assert torch.autograd.gradcheck(lambda t: rff_patch_features(t, weight, bias, window, stride), (x,))


def test_opcheck(device):
    for shape, patch, window, stride in [((1, 2, 6, 5), 3, 4, 2), ((0, 2, 6, 5), 3, 4, 2)]:
        x = torch.rand(shape, dtype=torch.float64, device=device, requires_grad=True)
        weight, bias = random_features(3, 2, patch, device=device)
        torch.library.opcheck(torch.ops.perceptual_ext.rff_patch_features.default, (x, weight, bias, window, stride))
        out = rff_patch_features(x.detach(), weight, bias, window, stride)
        torch.library.opcheck(torch.ops.perceptual_ext.rff_patch_features_backward.default,
                              (torch.randn_like(out), x.detach(), weight, bias, window, stride))


def test_empty_batch(device):
    weight, bias = random_features(4, 3, 3, device=device)
    x = torch.rand(0, 3, 16, 16, dtype=torch.float64, device=device, requires_grad=True)
    out = rff_patch_features(x, weight, bias, 8, 4)
    assert out.shape == (0, 4, 3, 3)
    out.sum().backward()
    assert x.grad.shape == x.shape


def test_non_contiguous(device):
    base = torch.rand(2, 6, 18, 20, dtype=torch.float64, device=device)
    weight, bias = random_features(9, 3, 3, device=device)
    wide = torch.randn(9, 3, 3, 6, dtype=torch.float64, device=device)
    for x in (base[:, ::2], base.to(memory_format=torch.channels_last)[:, :3], base[:, :3].transpose(2, 3)):
        assert not x.is_contiguous()
        ref = composition(x, weight, bias, 8, 5)
        torch.testing.assert_close(rff_patch_features(x, weight, bias, 8, 5), ref, rtol=0, atol=1e-12)
        w_strided = wide[..., ::2]
        torch.testing.assert_close(rff_patch_features(x, w_strided, bias, 8, 5),
                                   composition(x, w_strided, bias, 8, 5), rtol=0, atol=1e-12)


def test_reduced_precision_on_cpu():
    x = torch.rand(1, 3, 12, 12)
    weight, bias = random_features(8, 3, 3, dtype=torch.float32)
    out = rff_patch_features(x.bfloat16(), weight.bfloat16(), bias.bfloat16(), 6, 3)
    assert out.dtype == torch.bfloat16
    ref = composition(x.bfloat16().double(), weight.bfloat16().double(), bias.bfloat16().double(), 6, 3)
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=2e-2)


def test_torch_compile():
    weight, bias = random_features(8, 3, 3, dtype=torch.float32)

    @torch.compile(backend="aot_eager", fullgraph=True)
    def pooled(x):
        return rff_patch_features(x, weight, bias, 6, 3).square().sum()

    x = torch.rand(2, 3, 14, 12, requires_grad=True)
    pooled(x).backward()
    expected = x.detach().clone().requires_grad_(True)
    rff_patch_features(expected, weight, bias, 6, 3).square().sum().backward()
    torch.testing.assert_close(x.grad, expected.grad)


def test_window_larger_than_image():
    weight, bias = random_features(4, 3, 3)
    with pytest.raises(ValueError, match=r"window \(32\) is larger than the feature map of x \(20x40"):
        rff_patch_features(torch.rand(1, 3, 20, 40, dtype=torch.float64), weight, bias, 32, 16)
    with pytest.raises(RuntimeError, match="window 32 is larger than the feature map 20x40"):
        torch.ops.perceptual_ext.rff_patch_features(torch.rand(1, 3, 20, 40, dtype=torch.float64), weight, bias, 32, 16)


@pytest.mark.parametrize("args,exc,match", [
    (dict(x=torch.rand(3, 8, 8)), ValueError, r"x must be \[N, C, H, W\]"),
    (dict(x=torch.ones(1, 3, 8, 8, dtype=torch.int64)), TypeError, "x must be a real floating"),
    (dict(weight=torch.randn(4, 2, 3, 3, dtype=torch.float64)), ValueError,
     "weight must be \\[F, C, P, P\\] with C = 3"),
    (dict(weight=torch.randn(4, 3, 3, 2, dtype=torch.float64)), ValueError, "weight must be \\[F, C, P, P\\]"),
    (dict(bias=torch.rand(5, dtype=torch.float64)), ValueError, "bias must be \\[F\\] with F = 4"),
    (dict(bias=torch.rand(4)), TypeError, "x and bias must have the same dtype"),
    (dict(window=0), ValueError, "window must be >= 1"),
    (dict(stride=1.5), TypeError, "stride must be an int"),
    (dict(x=torch.rand(1, 3, 1, 8, dtype=torch.float64)), ValueError, "larger than the reflect padding 1"),
    (dict(weight=torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)), ValueError,
     "weight and bias must not require grad"),
])
def test_bad_input(args, exc, match):
    kwargs = dict(x=torch.rand(1, 3, 8, 8, dtype=torch.float64), weight=torch.randn(4, 3, 3, 3, dtype=torch.float64),
                  bias=torch.rand(4, dtype=torch.float64), window=4, stride=2)
    kwargs.update(args)
    with pytest.raises(exc, match=match):
        rff_patch_features(**kwargs)


# Geometries the CUDA kernels handle differently from the usual 32/16 windows; the CPU must agree
# on each (both devices run these tests, `make gpu-check` on a GPU).

def test_no_channels_gives_cos_bias(device):
    # C = 0: every patch is empty, u = b, so every pooled feature is cos(b) (no division by the
    # patch size anywhere, on either device); the input gradient is empty.
    x = torch.rand(2, 0, 9, 7, dtype=torch.float64, device=device, requires_grad=True)
    weight, bias = random_features(5, 0, 3, device=device)
    out = rff_patch_features(x, weight, bias, 4, 3)
    assert out.shape == (2, 5, 2, 2)
    torch.testing.assert_close(out, bias.cos()[None, :, None, None].expand_as(out), rtol=0, atol=1e-15)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad.shape == x.shape


@pytest.mark.parametrize("dtype,channels", [(torch.float64, 64), (torch.float32, 128)])
def test_many_channels(device, dtype, channels):
    # K = C P^2 = 3136 (float64) and 6272 (float32) patch elements: more than a block's default
    # 48 KiB of shared memory holds for one patch and its gradient; F = 300 spans two feature chunks.
    torch.manual_seed(3)
    x = torch.rand(1, channels, 9, 10, dtype=torch.float64, device=device) * 2 - 1
    weight, bias = random_features(300, channels, 7, device=device, scale=0.05)
    xd = x.to(dtype).requires_grad_(True)
    out = rff_patch_features(xd, weight.to(dtype), bias.to(dtype), 4, 3)
    ref = composition(x, weight, bias, 4, 3)
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    assert (out.double() - ref).abs().max().item() <= tol
    grad = torch.randn_like(ref)
    (ours,) = torch.autograd.grad(out, xd, grad.to(dtype))
    xr = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(composition(xr, weight, bias, 4, 3), xr, grad)
    assert (ours.double() - expected).abs().max().item() <= tol * max(1.0, expected.abs().max().item())


def test_global_window(device):
    # window = stride = the image: one tile of 1296 pixels, summed in parts (several blocks on a GPU).
    x = torch.rand(2, 3, 36, 36, dtype=torch.float64, device=device, requires_grad=True)
    weight, bias = random_features(40, 3, 3, device=device)
    out = rff_patch_features(x, weight, bias, 36, 36)
    assert out.shape == (2, 40, 1, 1)
    ref = composition(x, weight, bias, 36, 36)
    assert (out - ref).abs().max().item() <= 1e-12
    grad = torch.randn_like(ref)
    (ours,) = torch.autograd.grad(out, x, grad)
    (expected,) = torch.autograd.grad(ref, x, grad)
    assert (ours - expected).abs().max().item() <= 1e-12
    small = torch.rand(1, 1, 17, 17, dtype=torch.float64, device=device, requires_grad=True)  # 289 pixels: 2 parts
    w1, b1 = random_features(3, 1, 3, device=device)
    assert torch.autograd.gradcheck(lambda t: rff_patch_features(t, w1, b1, 17, 17), (small,))


def test_float32_global_window_sums_in_parts(device):
    # 65536 pixels in one window: float32 summed in parts of <= 256 pixels, the parts in double,
    # keeps the mean to ~1e-7; one float32 running sum over all of them drifts by several 1e-6.
    x = torch.rand(1, 1, 256, 256, dtype=torch.float64, device=device) * 2 - 1
    weight, bias = random_features(16, 1, 3, device=device, scale=0.3)
    x, weight, bias = x.float(), weight.float(), bias.float()
    out = rff_patch_features(x, weight, bias, 256, 256)
    ref = composition(x.double(), weight.double(), bias.double(), 256, 256)  # the same inputs, exactly
    assert (out.double() - ref).abs().max().item() <= 1e-6
