"""Gram op and style losses: parity with float64 x @ x.mT, gradients, opcheck, layouts, errors."""
import pytest
import torch

import perceptual_ext as pe
from perceptual_ext.losses import GramLoss, StyleLoss, gram_loss, style_loss
from perceptual_ext.ops import gram


def reference_gram(x, normalize=True):
    """Plain float64 composition: psi psi^T / (C*L)."""
    flat = x.detach().double().flatten(2)
    g = flat @ flat.mT
    return g / (flat.shape[1] * flat.shape[2]) if normalize else g


SHAPES = [(2, 3, 5, 7), (1, 1, 4, 4), (3, 130, 6, 5), (2, 300, 9, 1), (1, 257, 3, 3), (2, 16, 33)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("normalize", [True, False])
def test_matches_reference(device, shape, dtype, tol, normalize):
    x = torch.randn(shape, dtype=dtype, device=device)
    out = gram(x, normalize=normalize)
    ref = reference_gram(x, normalize)
    assert out.shape == (shape[0], shape[1], shape[1])
    assert out.dtype == dtype
    scale = ref.abs().max().clamp_min(1.0)
    assert (out.double() - ref).abs().max() <= tol * scale
    assert torch.equal(out, out.mT), "the mirrored triangle must be exactly symmetric"


def test_non_contiguous_and_channels_last(device):
    base = torch.randn(2, 140, 12, 10, dtype=torch.float64, device=device)
    for x in (base.to(memory_format=torch.channels_last), base.transpose(2, 3), base[:, ::2, :, 1:]):
        assert not x.is_contiguous()
        torch.testing.assert_close(gram(x), reference_gram(x).to(device), rtol=1e-12, atol=1e-12)


def test_empty_batch_and_single_channel(device):
    assert gram(torch.randn(0, 4, 3, 3, device=device)).shape == (0, 4, 4)
    x = torch.randn(3, 1, 5, 5, dtype=torch.float64, device=device)
    torch.testing.assert_close(gram(x), reference_gram(x).to(device))
    assert torch.equal(gram(torch.randn(2, 3, 0, device=device)), torch.zeros(2, 3, 3, device=device))


@pytest.mark.parametrize("normalize", [True, False])
def test_gradcheck(device, normalize):
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: gram(t, normalize=normalize), (x,))
    assert torch.autograd.gradgradcheck(lambda t: gram(t, normalize=normalize), (x,))


def test_gradcheck_blocked_triangle(device):
    # C above the CPU block size exercises the mirrored blocks in forward and backward.
    x = torch.randn(1, 130, 3, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(gram, (x,), fast_mode=True)


def test_backward_matches_composition(device):
    x = torch.randn(2, 200, 50, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.randn(2, 200, 200, dtype=torch.float64, device=device)
    (gram(x) * w).sum().backward()
    ours = x.grad.clone()
    x.grad = None
    ((x @ x.mT) / (200 * 50) * w).sum().backward()
    torch.testing.assert_close(ours, x.grad, rtol=1e-12, atol=1e-14)


def test_opcheck(device):
    for shape, normalize in [((2, 6, 10), True), ((1, 140, 7), False), ((0, 3, 4), True)]:
        x = torch.randn(shape, dtype=torch.float64, device=device, requires_grad=True)
        torch.library.opcheck(torch.ops.perceptual_ext.gram.default, (x, normalize))
        grad = torch.randn(shape[0], shape[1], shape[1], dtype=torch.float64, device=device)
        torch.library.opcheck(torch.ops.perceptual_ext.gram_backward.default, (grad, x.detach(), normalize))


def test_torch_compile(device):
    @torch.compile(backend="aot_eager", fullgraph=True)
    def style_term(x, target):
        return (gram(x) - target).square().sum()

    x = torch.randn(2, 8, 6, 6, device=device, requires_grad=True)
    target = torch.randn(2, 8, 8, device=device)
    out = style_term(x, target)
    out.backward()
    expected_x = x.detach().clone().requires_grad_(True)
    (gram(expected_x) - target).square().sum().backward()
    torch.testing.assert_close(x.grad, expected_x.grad)


def test_reduced_precision(device):
    x = torch.randn(2, 40, 8, 8, device=device)
    for dtype in (torch.float16, torch.bfloat16):
        out = gram(x.to(dtype))
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), reference_gram(x.to(dtype)).to(device), rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize("bad,exc,match", [
    (torch.randn(3, 4), ValueError, "features must be"),
    (torch.randn(1, 2, 3, 4, 5), ValueError, "features must be"),
    (torch.ones(1, 2, 3, 3, dtype=torch.int64), TypeError, "features must be a real floating"),
    (torch.ones(1, 2, 3, 3, dtype=torch.complex64), TypeError, "features must be a real floating"),
    ([[1.0]], TypeError, "features must be a torch.Tensor"),
])
def test_bad_input(bad, exc, match):
    with pytest.raises(exc, match=match):
        gram(bad)
    with pytest.raises(TypeError, match="normalize"):
        gram(torch.randn(1, 2, 3, 3), normalize=1)


def test_kernel_errors_name_argument():
    with pytest.raises(RuntimeError, match="features must be \\[N, C, L\\]"):
        torch.ops.perceptual_ext.gram(torch.randn(2, 3), True)


# ---- losses -------------------------------------------------------------------------------

def test_style_loss_matches_reference(device):
    style = [torch.rand(1, 8, 16, 16, device=device, dtype=torch.float64),
             torch.rand(1, 16, 8, 8, device=device, dtype=torch.float64)]
    feats = [torch.rand(3, 8, 16, 16, device=device, dtype=torch.float64, requires_grad=True),
             torch.rand(3, 16, 8, 8, device=device, dtype=torch.float64, requires_grad=True)]
    weights = [1.0, 0.25]
    loss_fn = StyleLoss(style, layer_weights=weights, reduction="none")
    per_sample = loss_fn(feats)
    expected = sum(w * (reference_gram(f) - reference_gram(s)).square().sum(dim=(1, 2))
                   for f, s, w in zip(feats, style, weights))
    torch.testing.assert_close(per_sample, expected.to(device))
    torch.testing.assert_close(StyleLoss(style, weights)(feats), expected.mean().to(device))
    torch.testing.assert_close(StyleLoss(style, weights, reduction="sum")(feats), expected.sum().to(device))
    torch.testing.assert_close(style_loss(feats, style, weights), expected.mean().to(device))
    StyleLoss(style, weights)(feats).backward()
    assert feats[0].grad is not None and feats[0].grad.abs().sum() > 0


def test_style_loss_has_buffers_only():
    loss_fn = StyleLoss([torch.rand(1, 4, 8, 8)])
    assert list(loss_fn.parameters()) == []
    assert set(loss_fn.state_dict()) == {"target_gram_0"}


def test_gram_loss_functional_equals_module(device):
    target = torch.rand(1, 6, 10, 10, device=device)
    x = torch.rand(4, 6, 10, 10, device=device)
    assert torch.equal(GramLoss(target)(x), gram_loss(x, target))
    assert GramLoss(target, reduction="none")(x).shape == (4,)
    assert GramLoss(target)(torch.rand(0, 6, 10, 10, device=device)) == 0


def test_loss_under_no_grad_and_autocast():
    target = torch.rand(1, 6, 10, 10)
    x = torch.rand(2, 6, 10, 10)
    with torch.no_grad():
        expected = GramLoss(target)(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = GramLoss(target)(x.bfloat16())
    torch.testing.assert_close(got.float(), expected, rtol=5e-2, atol=1e-4)


def test_loss_bad_input():
    with pytest.raises(ValueError, match="reduction"):
        StyleLoss([torch.rand(1, 4, 8, 8)], reduction="avg")
    with pytest.raises(ValueError, match="layer_weights"):
        StyleLoss([torch.rand(1, 4, 8, 8)], layer_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="list of 2 tensors"):
        StyleLoss([torch.rand(1, 4, 8, 8), torch.rand(1, 4, 4, 4)])([torch.rand(1, 4, 8, 8)])
    with pytest.raises(ValueError, match="channels"):
        GramLoss(torch.rand(1, 4, 8, 8))(torch.rand(1, 5, 8, 8))
    with pytest.raises(ValueError, match="batch"):
        GramLoss(torch.rand(2, 4, 8, 8))(torch.rand(3, 4, 8, 8))
    with pytest.raises(TypeError, match="target_features"):
        StyleLoss("not a tensor")


def test_style_loss_device_mismatch():
    loss_fn = StyleLoss([torch.rand(1, 4, 8, 8)])
    loss_fn.target_gram_0 = loss_fn.target_gram_0.to("meta")
    with pytest.raises(ValueError, match=r"features\[0\] and the target Gram matrix must be on the same device"):
        loss_fn([torch.rand(1, 4, 8, 8)])


def test_build_info():
    info = pe.build_info()
    for key in ("version", "cuda_compiled", "cuda_version", "openmp", "num_threads", "cpu_flags"):
        assert key in info
    assert info["version"] == pe.__version__
    assert info["openmp"] is True
