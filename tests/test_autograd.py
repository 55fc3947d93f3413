"""What every op agrees on (ops/_autograd.py, _checks): double backward, float16/bfloat16, errors."""
import pytest
import torch

from perceptual_ext.ops import (
    find_peaks,
    gram,
    lpips_layer,
    match_template,
    rff_patch_features,
    scnn_features,
    soft_encoded_cross_entropy,
)


def _rff(x):
    f = torch.randn(8, x.shape[1], 3, 3, dtype=x.dtype, device=x.device)
    b = torch.rand(8, dtype=x.dtype, device=x.device)
    return rff_patch_features(x, f, b, window=4, stride=4)


def _scnn(x):
    kw = dict(dtype=x.dtype, device=x.device)
    return scnn_features(x, torch.randn(4, x.shape[1], 3, 3, **kw), torch.zeros(4, **kw), torch.randn(1, 4, 4, **kw),
                         torch.zeros(1, 4, **kw), window=4, stride=4)


def _sece(x):
    """soft_encoded_cross_entropy with 313 logits made from x (differentiable in x) and a fixed ab target."""
    from perceptual_ext.losses import ab_bins

    scale = torch.linspace(-2, 2, 313, device=x.device).to(x.dtype).view(1, 313, 1, 1)
    logits = x.sum(1, keepdim=True) * scale
    n, _, h, w = x.shape
    ab = torch.stack(torch.meshgrid(torch.linspace(-60, 70, h), torch.linspace(-80, 60, w), indexing="ij"))
    return soft_encoded_cross_entropy(logits, ab.expand(n, 2, h, w).to(x.device), ab_bins(device=x.device))


def _templ(x):
    return x[..., 2:6, 1:5].detach().clone().requires_grad_(True)


OPS_WITHOUT_DOUBLE_BACKWARD = {
    "match_template": lambda x: match_template(x, _templ(x), "ncc"),
    "match_template_masked": lambda x: match_template(x, _templ(x), "ncc", mask=torch.ones(4, 4, device=x.device)),
    "rff_patch_features": _rff,
    "scnn_features": _scnn,
    "lpips_layer": lambda x: lpips_layer(x, x.flip(-1).detach() + 0.1, torch.ones(2, dtype=x.dtype, device=x.device)),
    "soft_encoded_cross_entropy": _sece,
}


@pytest.mark.parametrize("name", sorted(OPS_WITHOUT_DOUBLE_BACKWARD))
def test_double_backward_raises_clear_error(name, device):
    x = torch.rand(1, 2, 12, 12, dtype=torch.float64, device=device, requires_grad=True)
    out = OPS_WITHOUT_DOUBLE_BACKWARD[name](x)
    (g,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward .* is not supported"):
        torch.autograd.grad(g.sum(), x)


def test_gradgradcheck_raises_for_match_template(device):
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64, device=device, requires_grad=True)
    t = torch.rand(1, 1, 3, 3, dtype=torch.float64, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="match_template: double backward"):
        torch.autograd.gradgradcheck(lambda a, b: match_template(a, b, "ssd"), (x, t))


def test_gram_double_backward_still_supported(device):
    x = torch.rand(2, 3, 5, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradgradcheck(gram, (x,))


HALF_OPS = {
    "gram": lambda x: gram(x),
    "match_template": lambda x: match_template(x, x[..., 2:6, 1:5].detach(), "ncc"),
    "rff_patch_features": lambda x: rff_patch_features(x, torch.randn(8, 2, 3, 3).to(x), torch.rand(8).to(x), 4, 4),
    "scnn_features": lambda x: scnn_features(x, torch.randn(4, 2, 3, 3).to(x), torch.zeros(4).to(x),
                                             torch.randn(1, 4, 4).to(x) / 2, torch.zeros(1, 4).to(x), 4, 4),
    "find_peaks": lambda x: find_peaks(x.sum(1), k=2)[1],
    "lpips_layer": lambda x: lpips_layer(x, x.flip(-1).detach(), torch.ones(2).to(x)),
    "soft_encoded_cross_entropy": _sece,
}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(HALF_OPS))
def test_half_precision_policy(name, dtype, device):
    # One policy for every op and device: accepted, returned (and differentiated) in the input's
    # dtype, computed in float32 (or natively with float32 accumulation on CUDA).
    torch.manual_seed(1)
    x = torch.rand(2, 2, 12, 12, device=device)
    torch.manual_seed(2)
    ref = HALF_OPS[name](x.to(dtype).float())
    xh = x.to(dtype).requires_grad_(name != "find_peaks")
    torch.manual_seed(2)
    out = HALF_OPS[name](xh)
    assert out.dtype == dtype
    tol = 2e-2 if dtype == torch.float16 else 8e-2
    torch.testing.assert_close(out.float(), ref, atol=tol * max(1.0, ref.abs().max().item()), rtol=tol)
    if xh.requires_grad:
        (grad,) = torch.autograd.grad(out.float().sum(), xh)
        assert grad.dtype == dtype and torch.isfinite(grad.float()).all()


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.int32, torch.complex64])
def test_floating_check_says_what_it_accepts(dtype):
    x = torch.zeros(1, 1, 8, 8).to(dtype)
    with pytest.raises(TypeError, match=r"image must be a real floating-point tensor: float32 or float64, or "
                                        r"float16/bfloat16 \(computed in float32"):
        match_template(x, x[..., :2, :2])


def test_gram_backward_wrong_grad_shape_names_grad():
    f = torch.rand(2, 3, 5)
    with pytest.raises(ValueError, match=r"gram_backward: grad must be \[N, C, C\] = \[2, 3, 3\]"):
        torch.ops.perceptual_ext.gram_backward(torch.rand(2, 4, 4), f, True)


def test_rff_zero_features_names_weight():
    with pytest.raises(ValueError, match=r"weight must have at least one feature \(F >= 1"):
        rff_patch_features(torch.rand(1, 2, 8, 8), torch.randn(0, 2, 3, 3), torch.rand(0), 4, 4)
