"""soft_encoded_cross_entropy op: parity with the plain float64 composition (soft encoding over all
bins + log_softmax + rebalancing weight) in value and gradient, gradcheck, opcheck, layouts, errors."""
import pytest
import torch

from perceptual_ext.losses import ab_bins
from perceptual_ext.ops import soft_encoded_cross_entropy


def reference(logits, ab, bins, weights, neighbors, sigma):
    """Plain composition: distances to every bin, the k nearest (stable order), Gaussian weights,
    the dense [N, Q, H, W] target, log_softmax, and v = weights[nearest bin]."""
    x = logits.double()
    d2 = (ab.double().permute(0, 2, 3, 1).unsqueeze(-2) - bins.double()).square().sum(-1)  # [N, H, W, Q]
    d2_sorted, order = torch.sort(d2, dim=-1, stable=True)
    near, idx = d2_sorted[..., :neighbors], order[..., :neighbors]
    w = torch.exp(-(near - near[..., :1]) / (2 * sigma ** 2))  # shifted: equal after normalizing, no 0/0 far away
    w = w / w.sum(-1, keepdim=True)
    target = torch.zeros_like(d2).scatter_(-1, idx, w).permute(0, 3, 1, 2)
    ce = -(target * torch.log_softmax(x, dim=1)).sum(1)
    v = 1.0 if weights is None else weights.double()[idx[..., 0]]
    return v * ce


def random_ab(n, h, w, device, dtype=torch.float64, scale=45.0):
    ab = torch.randn(n, 2, h, w, dtype=dtype, device=device) * scale
    ab[:, 0] += 5
    ab[:, 1] += 10
    return ab


def random_weights(device, dtype=torch.float64):
    w = torch.rand(313, dtype=dtype, device=device) * 3 + 0.1
    return w


def assert_matches_reference(logits, ab, bins, weights, neighbors=5, sigma=5.0):
    """The op's loss and its gradient w.r.t. ``logits`` (a leaf requiring grad) equal the reference's
    (float64, to 1e-8); returns the loss."""
    out = soft_encoded_cross_entropy(logits, ab, bins, weights, neighbors, sigma)
    ref_logits = logits.detach().clone().requires_grad_(True)
    ref = reference(ref_logits, ab, bins, weights, neighbors, sigma)
    assert (out - ref).abs().max() <= 1e-8
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    assert (logits.grad - ref_logits.grad).abs().max() <= 1e-8
    return out


@pytest.mark.parametrize("with_weights", [False, True])
@pytest.mark.parametrize("neighbors,sigma", [(5, 5.0), (10, 5.0), (1, 5.0), (32, 2.0)])
def test_matches_composition_value_and_gradient(device, with_weights, neighbors, sigma):
    bins = ab_bins(torch.float64, device)
    logits = (torch.randn(2, 313, 7, 9, dtype=torch.float64, device=device) * 3).requires_grad_(True)
    ab = random_ab(2, 7, 9, device)
    weights = random_weights(device) if with_weights else None
    out = assert_matches_reference(logits, ab, bins, weights, neighbors, sigma)
    assert out.shape == (2, 7, 9) and out.dtype == torch.float64


def test_far_outside_the_gamut_and_on_bin_centres(device):
    bins = ab_bins(torch.float64, device)
    ab = torch.tensor([[[300.0, -500.0, 0.0, 1e4], [-400.0, 0.0, 0.0, -1e4]]], dtype=torch.float64, device=device)
    ab = ab.view(1, 2, 1, 4)
    logits = torch.randn(1, 313, 1, 4, dtype=torch.float64, device=device)
    out = soft_encoded_cross_entropy(logits, ab, bins, None, 5, 5.0)
    ref = reference(logits, ab, bins, None, 5, 5.0)
    assert torch.isfinite(out).all()
    assert (out - ref).abs().max() <= 1e-8
    # A target exactly on a bin centre with k = 1 is a one-hot cross-entropy.
    ab1 = bins[100].view(1, 2, 1, 1)
    logits1 = torch.randn(1, 313, 1, 1, dtype=torch.float64, device=device)
    out1 = soft_encoded_cross_entropy(logits1, ab1, bins, None, 1, 5.0)
    torch.testing.assert_close(out1.view(()), -torch.log_softmax(logits1.view(313), 0)[100])


def test_float32_close_to_float64(device):
    bins = ab_bins(torch.float32, device)
    logits = torch.randn(2, 313, 6, 6, device=device) * 4
    ab = random_ab(2, 6, 6, device, torch.float32)
    out = soft_encoded_cross_entropy(logits, ab, bins, random_weights(device, torch.float32))
    assert out.dtype == torch.float32
    for dtype in (torch.float16, torch.bfloat16):
        low = soft_encoded_cross_entropy(logits.to(dtype), ab, bins)
        assert low.dtype == dtype
        torch.testing.assert_close(low.float(), soft_encoded_cross_entropy(logits.to(dtype).float(), ab, bins),
                                   rtol=1e-2, atol=1e-2)
    ref = reference(logits, ab, bins, None, 5, 5.0)
    torch.testing.assert_close(soft_encoded_cross_entropy(logits, ab, bins).double(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("with_weights", [False, True])
def test_gradcheck(device, with_weights):
    bins = ab_bins(torch.float64, device)
    logits = torch.randn(2, 313, 2, 3, dtype=torch.float64, device=device, requires_grad=True)
    ab = random_ab(2, 2, 3, device)
    weights = random_weights(device) if with_weights else None
    assert torch.autograd.gradcheck(lambda x: soft_encoded_cross_entropy(x, ab, bins, weights, 5, 5.0), (logits,),
                                    fast_mode=True)


def test_double_backward_is_a_clear_error(device):
    bins = ab_bins(torch.float64, device)
    logits = torch.randn(1, 313, 2, 2, dtype=torch.float64, device=device, requires_grad=True)
    out = soft_encoded_cross_entropy(logits, random_ab(1, 2, 2, device), bins).sum()
    (g,) = torch.autograd.grad(out, logits, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        g.sum().backward()


def test_gradient_of_the_target_is_a_clear_error(device):
    bins = ab_bins(torch.float64, device)
    logits = torch.randn(1, 313, 2, 2, dtype=torch.float64, device=device, requires_grad=True)
    ab = random_ab(1, 2, 2, device).requires_grad_(True)
    with pytest.raises(RuntimeError, match="gradients with respect to ab"):
        soft_encoded_cross_entropy(logits, ab, bins).sum().backward()


def test_opcheck(device):
    bins = ab_bins(torch.float64, device)
    for n, h, w, weights in [(2, 3, 4, True), (1, 5, 2, False), (0, 3, 3, True)]:
        logits = torch.randn(n, 313, h, w, dtype=torch.float64, device=device, requires_grad=True)
        ab = random_ab(n, h, w, device)
        wt = random_weights(device) if weights else logits.new_empty(0)
        torch.library.opcheck(torch.ops.perceptual_ext.soft_encoded_cross_entropy.default,
                              (logits, ab, bins, wt, 5, 5.0))
        loss, lse = torch.ops.perceptual_ext.soft_encoded_cross_entropy(logits.detach(), ab, bins, wt, 5, 5.0)
        torch.library.opcheck(torch.ops.perceptual_ext.soft_encoded_cross_entropy_backward.default,
                              (torch.randn_like(loss), logits.detach(), ab, bins, wt, lse, 5, 5.0))


def test_empty_batch_and_empty_image(device):
    bins = ab_bins(torch.float64, device)
    logits = torch.randn(0, 313, 4, 4, dtype=torch.float64, device=device, requires_grad=True)
    out = soft_encoded_cross_entropy(logits, random_ab(0, 4, 4, device), bins)
    assert out.shape == (0, 4, 4)
    out.sum().backward()
    assert logits.grad.shape == logits.shape
    assert soft_encoded_cross_entropy(torch.randn(2, 313, 0, 3, device=device), torch.randn(2, 2, 0, 3, device=device),
                                      ab_bins(device=device)).shape == (2, 0, 3)


def test_non_contiguous(device):
    bins = ab_bins(torch.float64, device)
    base = torch.randn(2, 313, 6, 8, dtype=torch.float64, device=device)
    ab = random_ab(2, 8, 6, device).transpose(2, 3)
    weights = random_weights(device)
    assert not ab.is_contiguous()
    for x in (base.to(memory_format=torch.channels_last), base.transpose(2, 3).contiguous().transpose(2, 3),
              torch.randn(2, 626, 6, 8, dtype=torch.float64, device=device)[:, ::2]):
        assert not x.is_contiguous()
        assert_matches_reference(x.requires_grad_(True), ab, bins, weights)


def test_non_finite_target_gives_nan_only_there(device):
    bins = ab_bins(torch.float64, device)
    ab = random_ab(1, 2, 2, device)
    ab[0, 0, 0, 0] = float("nan")
    ab[0, 1, 1, 1] = float("inf")
    logits = torch.randn(1, 313, 2, 2, dtype=torch.float64, device=device, requires_grad=True)
    out = soft_encoded_cross_entropy(logits, ab, bins)
    assert torch.isnan(out[0, 0, 0]) and torch.isnan(out[0, 1, 1])
    assert torch.isfinite(out[0, 0, 1]) and torch.isfinite(out[0, 1, 0])
    out.backward(torch.ones_like(out))
    assert torch.isfinite(logits.grad[0, :, 0, 1]).all() and torch.isfinite(logits.grad[0, :, 1, 0]).all()
    assert torch.isnan(logits.grad[0, :, 0, 0]).all() and torch.isnan(logits.grad[0, :, 1, 1]).all()


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(ab=torch.randn(2, 3, 4, 4)), ValueError, r"ab must be \[N, 2, H, W\]"),
    (dict(ab=torch.randn(2, 2, 4, 5)), ValueError, r"ab must be \[N, 2, H, W\]"),
    (dict(logits=torch.randn(2, 300, 4, 4)), ValueError, r"bins must be \[Q, 2\] with Q = 300"),
    (dict(logits=torch.randn(313, 4, 4)), ValueError, r"logits must be \[N, Q, H, W\]"),
    (dict(logits=torch.ones(2, 313, 4, 4, dtype=torch.int64)), TypeError, "logits must be a real floating"),
    (dict(weights=torch.rand(312)), ValueError, r"weights must be \[Q\] with Q = 313"),
    (dict(neighbors=0), ValueError, "neighbors must be >= 1"),
    (dict(neighbors=33), ValueError, "neighbors must be at most"),
    (dict(neighbors=2.5), TypeError, "neighbors must be an int"),
    (dict(sigma=0.0), ValueError, "sigma must be a positive"),
    (dict(bins=ab_bins() + 3.0 * (torch.arange(313) == 7).unsqueeze(1)), RuntimeError, "regular square grid"),
    (dict(bins=torch.cat([ab_bins()[:312], ab_bins()[:1]])), RuntimeError, "same point"),
])
def test_bad_input(kwargs, exc, match):
    args = dict(logits=torch.randn(2, 313, 4, 4), ab=torch.randn(2, 2, 4, 4), bins=ab_bins(), weights=None,
                neighbors=5, sigma=5.0)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        soft_encoded_cross_entropy(**args)


def test_kernel_errors_name_argument():
    with pytest.raises(RuntimeError, match=r"ab must be \[N, 2, H, W\]"):
        torch.ops.perceptual_ext.soft_encoded_cross_entropy(torch.randn(1, 313, 2, 2), torch.randn(1, 2, 3, 2),
                                                            ab_bins(), torch.empty(0), 5, 5.0)


def test_torch_compile(device):
    bins = ab_bins(device=device)
    weights = random_weights(device, torch.float32)

    @torch.compile(backend="aot_eager", fullgraph=True)
    def loss_of(x, ab):
        return soft_encoded_cross_entropy(x, ab, bins, weights).mean()

    x = torch.randn(2, 313, 4, 5, device=device, requires_grad=True)
    ab = random_ab(2, 4, 5, device, torch.float32)
    loss_of(x, ab).backward()
    eager_x = x.detach().clone().requires_grad_(True)
    soft_encoded_cross_entropy(eager_x, ab, bins, weights).mean().backward()
    torch.testing.assert_close(x.grad, eager_x.grad)
