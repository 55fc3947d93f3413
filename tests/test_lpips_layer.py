"""lpips_layer op: parity with a float64 composition, gradients, opcheck, layouts, errors."""
import pytest
import torch

from perceptual_ext.ops import lpips_layer


def reference(a, b, weight):
    """lpips v0.1's head, plainly: normalize_tensor, squared difference, 1x1 conv without bias."""
    a, b, w = a.double(), b.double(), weight.double().flatten()
    na = a / (a.square().sum(1, keepdim=True).sqrt() + 1e-10)
    nb = b / (b.square().sum(1, keepdim=True).sqrt() + 1e-10)
    return ((na - nb).square() * w.view(1, -1, 1, 1)).sum(1, keepdim=True)


SHAPES = [(2, 3, 5, 7), (1, 1, 4, 4), (3, 64, 9, 11), (1, 130, 3, 70), (2, 17, 1, 1)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-13), (torch.float32, 2e-6)])
def test_matches_reference(device, shape, dtype, tol):
    a = torch.randn(shape, dtype=dtype, device=device)
    b = torch.randn(shape, dtype=dtype, device=device)
    w = torch.rand(shape[1], dtype=dtype, device=device)
    out = lpips_layer(a, b, w)
    assert out.shape == (shape[0], 1, shape[2], shape[3]) and out.dtype == dtype
    torch.testing.assert_close(out.double(), reference(a, b, w), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-13), (torch.float32, 2e-6)])
def test_zero_feature_vectors(device, dtype, tol):
    # ReLU features: whole pixels of zeros on either side (their norm is 0, the eps decides).
    a = torch.randn(2, 32, 6, 6, dtype=dtype, device=device).clamp_min(0)
    b = torch.randn(2, 32, 6, 6, dtype=dtype, device=device).clamp_min(0)
    a[:, :, :2] = 0
    b[:, :, 1:3] = 0
    w = torch.rand(32, dtype=dtype, device=device)
    torch.testing.assert_close(lpips_layer(a, b, w).double(), reference(a, b, w), rtol=tol, atol=tol)


def test_weight_as_lin_conv_kernel(device):
    a, b = torch.randn(2, 8, 5, 5, device=device), torch.randn(2, 8, 5, 5, device=device)
    w = torch.rand(1, 8, 1, 1, device=device)
    torch.testing.assert_close(lpips_layer(a, b, w), lpips_layer(a, b, w.flatten()))


def test_never_negative_and_zero_at_equal_inputs(device):
    a = torch.randn(4, 32, 6, 6, device=device)
    b = a + 1e-4 * torch.randn_like(a)  # nearly equal: the composition's form could round below 0
    w = torch.rand(32, device=device)
    assert (lpips_layer(a, b, w) >= 0).all()
    assert (lpips_layer(a, a, w) == 0).all()
    # relu features: many zero vectors
    a0 = torch.randn(2, 16, 5, 5, device=device).clamp_min(0)
    a0[:, :, :2] = 0
    assert (lpips_layer(a0, torch.randn_like(a0).clamp_min(0), w[:16]) >= 0).all()


def test_non_contiguous(device):
    base_a = torch.randn(2, 40, 12, 10, dtype=torch.float64, device=device)
    base_b = torch.randn(2, 40, 12, 10, dtype=torch.float64, device=device)
    w = torch.rand(40, dtype=torch.float64, device=device)
    for view in (lambda t: t.to(memory_format=torch.channels_last), lambda t: t.transpose(2, 3),
                 lambda t: t[:, :, ::2, 1:]):
        a, b = view(base_a), view(base_b)
        assert not a.is_contiguous()
        torch.testing.assert_close(lpips_layer(a, b, w), reference(a, b, w), rtol=1e-13, atol=1e-13)
    w_strided = torch.rand(80, dtype=torch.float64, device=device)[::2]
    torch.testing.assert_close(lpips_layer(base_a, base_b, w_strided), reference(base_a, base_b, w_strided))


def test_empty(device):
    w = torch.rand(4, device=device)
    assert lpips_layer(torch.randn(0, 4, 3, 3, device=device), torch.randn(0, 4, 3, 3, device=device), w).shape == \
        (0, 1, 3, 3)
    a = torch.randn(0, 4, 3, 3, device=device, requires_grad=True)
    lpips_layer(a, torch.randn(0, 4, 3, 3, device=device), w).sum().backward()
    assert a.grad.shape == a.shape
    assert lpips_layer(torch.randn(2, 4, 0, 3, device=device), torch.randn(2, 4, 0, 3, device=device), w).shape == \
        (2, 1, 0, 3)


def test_gradcheck(device):
    a = torch.randn(2, 5, 3, 4, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(2, 5, 3, 4, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.rand(5, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lpips_layer, (a, b, w))
    assert torch.autograd.gradcheck(lambda x: lpips_layer(x, b.detach(), w.detach()), (a,))
    assert torch.autograd.gradcheck(lambda y: lpips_layer(a.detach(), y, w.detach()), (b,))


def test_backward_matches_composition(device):
    a = torch.randn(2, 70, 9, 13, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(2, 70, 9, 13, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.rand(70, dtype=torch.float64, device=device)
    g = torch.randn(2, 1, 9, 13, dtype=torch.float64, device=device)
    ours = torch.autograd.grad((lpips_layer(a, b, w) * g).sum(), (a, b))
    expected = torch.autograd.grad((reference(a, b, w) * g).sum(), (a, b))
    for x, y in zip(ours, expected):
        torch.testing.assert_close(x, y, rtol=1e-11, atol=1e-13)


def test_gradient_finite_at_equal_and_zero_features(device):
    a = torch.randn(1, 8, 4, 4, dtype=torch.float64, device=device, requires_grad=True)
    b = a.detach().clone().requires_grad_(True)
    w = torch.rand(8, dtype=torch.float64, device=device)
    ga, gb = torch.autograd.grad(lpips_layer(a, b, w).sum(), (a, b))
    assert torch.equal(ga, torch.zeros_like(ga)) and torch.equal(gb, torch.zeros_like(gb))
    # A zero feature vector (a dead ReLU pixel): the composition's sqrt backward gives NaN there.
    z = torch.zeros(1, 8, 4, 4, dtype=torch.float64, device=device, requires_grad=True)
    (gz,) = torch.autograd.grad(lpips_layer(z, b.detach(), w).sum(), (z,))
    assert torch.isfinite(gz).all()
    (gref,) = torch.autograd.grad(reference(z, b.detach(), w).sum(), (z,))
    assert torch.isnan(gref).any(), "the composition is expected to be NaN here; the test would prove nothing"


def test_only_requested_gradients_are_computed(device):
    a = torch.randn(2, 6, 4, 4, device=device, requires_grad=True)
    b = torch.randn(2, 6, 4, 4, device=device)
    w = torch.rand(6, device=device)
    grad = torch.ones(2, 1, 4, 4, device=device)
    da, db = torch.ops.perceptual_ext.lpips_layer_backward(grad, a.detach(), b, w, True, False)
    assert da.shape == a.shape and db.shape == (0,)
    lpips_layer(a, b, w).sum().backward()
    torch.testing.assert_close(a.grad, da)


def test_double_backward_raises(device):
    a = torch.randn(1, 3, 2, 2, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(1, 3, 2, 2, dtype=torch.float64, device=device)
    (g,) = torch.autograd.grad(lpips_layer(a, b, torch.ones(3, dtype=torch.float64, device=device)).sum(), (a,),
                               create_graph=True)
    with pytest.raises(RuntimeError, match="lpips_layer: double backward"):
        g.sum().backward()


def test_opcheck(device):
    for shape in [(2, 6, 5, 4), (1, 70, 3, 3), (0, 3, 4, 4)]:
        a = torch.randn(shape, dtype=torch.float64, device=device, requires_grad=True)
        b = torch.randn(shape, dtype=torch.float64, device=device, requires_grad=True)
        w = torch.rand(shape[1], dtype=torch.float64, device=device)
        torch.library.opcheck(torch.ops.perceptual_ext.lpips_layer.default, (a, b, w))
        grad = torch.randn(shape[0], 1, shape[2], shape[3], dtype=torch.float64, device=device)
        for need in [(True, True), (True, False), (False, True)]:
            torch.library.opcheck(torch.ops.perceptual_ext.lpips_layer_backward.default,
                                  (grad, a.detach(), b.detach(), w, *need))


def test_torch_compile(device):
    @torch.compile(backend="aot_eager", fullgraph=True)
    def head(a, b, w):
        return lpips_layer(a, b, w).mean()

    a = torch.randn(2, 8, 6, 6, device=device, requires_grad=True)
    b, w = torch.randn(2, 8, 6, 6, device=device), torch.rand(8, device=device)
    head(a, b, w).backward()
    expected = a.detach().clone().requires_grad_(True)
    lpips_layer(expected, b, w).mean().backward()
    torch.testing.assert_close(a.grad, expected.grad)


def test_reduced_precision(device):
    a, b, w = torch.randn(2, 24, 8, 8, device=device), torch.randn(2, 24, 8, 8, device=device), torch.rand(24)
    for dtype in (torch.float16, torch.bfloat16):
        x = a.to(dtype).requires_grad_(True)
        out = lpips_layer(x, b.to(dtype), w.to(device))
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), reference(x.detach(), b.to(dtype), w), rtol=2e-2, atol=2e-2)
        out.sum().backward()
        assert x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()


@pytest.mark.parametrize("args,exc,match", [
    ((torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.ones(3)), ValueError, r"a must be \[N, C, H, W\]"),
    ((torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4), torch.ones(3)), ValueError, r"b must be \[N, C, H, W\]"),
    ((torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 5), torch.ones(3)), ValueError, "a and b must have the same shape"),
    ((torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4), torch.ones(4)), ValueError, r"weight must be \[C\]"),
    ((torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4), torch.ones(3, 1)), ValueError, r"weight must be \[C\]"),
    ((torch.ones(1, 3, 4, 4, dtype=torch.int64), torch.randn(1, 3, 4, 4), torch.ones(3)), TypeError,
     "a must be a real floating"),
    ((torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4).double(), torch.ones(3)), TypeError,
     "a and b must have the same dtype"),
    ((torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4), [1.0, 1.0, 1.0]), TypeError, "weight must be a torch.Tensor"),
    ((torch.randn(1, 3, 4, 4), "b", torch.ones(3)), TypeError, "b must be a torch.Tensor"),
])
def test_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        lpips_layer(*args)


def test_kernel_errors_name_argument():
    with pytest.raises(RuntimeError, match=r"lpips_layer: weight must be \[C\] with C = 3"):
        torch.ops.perceptual_ext.lpips_layer(torch.randn(1, 3, 2, 2), torch.randn(1, 3, 2, 2), torch.ones(2))
    with pytest.raises(RuntimeError, match=r"lpips_layer_backward: grad must be \[N, 1, H, W\]"):
        torch.ops.perceptual_ext.lpips_layer_backward(torch.randn(1, 2, 2, 2), torch.randn(1, 3, 2, 2),
                                                      torch.randn(1, 3, 2, 2), torch.ones(3), True, True)
