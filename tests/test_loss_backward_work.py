"""Every loss does backward work only for the arguments that require grad.

For each loss in perceptual_ext.losses: the value and the input's gradient equal a plain float64
reference (so splitting or reordering the work changed nothing); a target that does not require
grad gets no gradient and no backward op runs for it (the ops run during backward are logged with a
dispatch mode); a target that requires grad gets the reference gradient.
"""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from perceptual_ext.features import SCNN
from perceptual_ext.losses import MMDPlusPlus, NCCLoss, PatchMMDLoss, PerceptualLoss, SCNNLoss, StyleLoss
from perceptual_ext.losses.patch_mmd import local_patch_loss
from test_perceptual import plain_features, plain_gram, plain_vgg16
from test_rff_patch import composition as rff_composition
from test_scnn import reference as scnn_reference


class OpLog(TorchDispatchMode):
    """Records (op name, shapes of the tensor arguments) of every op dispatched while active."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
        self.calls.append((func.name(), shapes, args))
        return func(*args, **(kwargs or {}))

    def named(self, suffix):
        return [c for c in self.calls if c[0].endswith(suffix)]


def backward_log(loss):
    log = OpLog()
    with log:
        loss.backward()
    return log


def images(device, n=2, size=24, dtype=torch.float64):
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(n, 3, size, size, generator=gen, dtype=dtype).to(device).requires_grad_(True)
    y = torch.rand(n, 3, size, size, generator=gen, dtype=dtype).to(device)
    return x, y


def grads_of(loss, *tensors):
    return torch.autograd.grad(loss, tensors)


def backward_like(value, expected, *inputs, rtol=1e-6, atol=1e-10):
    """``value`` (ours) equals ``expected`` (the plain reference), and ``value.sum().backward()`` gives
    each of ``inputs`` the reference's gradient. Returns the log of the ops that backward ran."""
    torch.testing.assert_close(value, expected, rtol=rtol, atol=atol)
    reference_grads = grads_of(expected.sum(), *inputs)
    log = backward_log(value.sum())
    for tensor, grad in zip(inputs, reference_grads):
        torch.testing.assert_close(tensor.grad, grad, rtol=rtol, atol=atol)
    return log


# patch MMD and MMD++ ------------------------------------------------------------------------

def mmd_reference(x, y, loss_fn):
    w, b, win, s = loss_fn.weight.double(), loss_fn.bias.double(), loss_fn.window, loss_fn.stride
    fx = rff_composition(x * 2 - 1, w, b, win, s)
    fy = rff_composition(y * 2 - 1, w, b, win, s)
    return (fx - fy).square().mean(dim=(1, 2, 3))


def mmdpp_reference(x, y, loss_fn):
    a, b = x * 2 - 1, y * 2 - 1
    return (loss_fn.mmd_weight * mmd_reference(x, y, loss_fn.mmd)
            + loss_fn.local_weight * local_patch_loss(a, b, loss_fn.mmd.patch_size, loss_fn.local_sigma)
            + loss_fn.l2_weight * (a - b).square().mean(dim=(1, 2, 3)))


def mmd_losses(device):
    gen = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    return [
        (PatchMMDLoss(num_features=48, window=8, stride=4, resample=False, generator=gen(), reduction="none"),
         mmd_reference),
        (MMDPlusPlus(num_features=48, window=8, stride=4, resample=False, generator=gen(), reduction="none"),
         mmdpp_reference),
    ]


@pytest.mark.parametrize("which", [0, 1], ids=["PatchMMDLoss", "MMDPlusPlus"])
def test_patch_mmd_target_without_grad_costs_no_backward(device, which):
    loss_fn, reference = mmd_losses(device)[which]
    loss_fn = loss_fn.to(device)
    x, y = images(device)
    log = backward_like(loss_fn(x, y), reference(x, y, loss_fn), x)
    assert y.grad is None
    calls = log.named("rff_patch_features_backward")
    # One backward call, on the input's batch only (one call on cat([x, y]) would run it on 2N).
    assert len(calls) == 1 and calls[0][1][1] == tuple(x.shape)


@pytest.mark.parametrize("which", [0, 1], ids=["PatchMMDLoss", "MMDPlusPlus"])
def test_patch_mmd_target_with_grad_gets_its_gradient(device, which):
    loss_fn, reference = mmd_losses(device)[which]
    loss_fn = loss_fn.to(device)
    x, y = images(device)
    y.requires_grad_(True)
    log = backward_like(loss_fn(x, y), reference(x, y, loss_fn), x, y)
    assert len(log.named("rff_patch_features_backward")) == 2
    (gy,) = grads_of(reference(x, y, loss_fn).sum(), y)
    # Only the target requires grad: the input gets none, and one backward call runs.
    x2, y2 = x.detach(), y.detach().requires_grad_(True)
    log = backward_log(loss_fn(x2, y2).sum())
    torch.testing.assert_close(y2.grad, gy, rtol=1e-6, atol=1e-10)
    assert x2.grad is None and len(log.named("rff_patch_features_backward")) == 1


# S-CNN --------------------------------------------------------------------------------------

def test_scnn_loss_target_without_grad_costs_no_backward(device):
    loss_fn = SCNNLoss(channels=16, depth=2, window=8, stride=4, seed=3, reduction="none").to(device).double()
    x, y = images(device)
    net = loss_fn.scnn

    def ref(t):
        return scnn_reference(2 * t - 1, net.first_weight, net.first_bias, net.weights, net.biases, net.window,
                              net.stride, net.patch_norm)

    expected = (ref(x) - ref(y)).square().mean(dim=(1, 2, 3))
    log = OpLog()
    with log:
        value = loss_fn(x, y)
    # The op keeps its ReLU masks for backward only for the input (last argument: save_masks).
    forwards = log.named("scnn_features")
    assert [call[2][-1] for call in forwards] == [True, False]
    log = backward_like(value, expected, x)
    assert y.grad is None and len(log.named("scnn_features_backward")) == 1

    y.requires_grad_(True)
    x.grad = None
    log = backward_like(loss_fn(x, y), (ref(x) - ref(y)).square().mean(dim=(1, 2, 3)), x, y)
    assert len(log.named("scnn_features_backward")) == 2


def test_scnn_module_has_no_parameters_to_differentiate():
    assert list(SCNN(channels=4, depth=1).parameters()) == []


# VGG perceptual loss ------------------------------------------------------------------------

LAYERS = ("relu1_2", "relu2_2")


def perceptual_reference(x, y, loss_fn, net):
    fx, fy = plain_features(net, x, LAYERS), plain_features(net, y, LAYERS)
    total = 0
    for name in LAYERS:
        a, b = fx[name], fy[name]
        total = total + (a - b).square().flatten(1).mean(dim=1)
        total = total + loss_fn.style_weight * (plain_gram(a) - plain_gram(b)).square().sum(dim=(1, 2))
    return total


@pytest.fixture
def perceptual():
    loss_fn = PerceptualLoss(layers=LAYERS, feature="both", style_weight=3.0, seed=2, reduction="none")
    state = {f"features.{k}": v for k, v in loss_fn.vgg.features.state_dict().items()}
    loss_fn = loss_fn.double()
    return loss_fn, plain_vgg16({k: v.double() for k, v in state.items()})


def test_perceptual_target_without_grad_costs_no_backward(perceptual):
    loss_fn, net = perceptual
    x, y = images("cpu", size=16)
    log = backward_like(loss_fn(x, y), perceptual_reference(x, y, loss_fn, net), x)
    assert y.grad is None
    convs = log.named("convolution_backward")
    # Four convolutions up to relu2_2, each differentiated once, w.r.t. its input only (frozen weights).
    assert len(convs) == 4 and all(call[1][1][0] == x.shape[0] for call in convs)
    assert all(list(call[2][-1]) == [True, False, False] for call in convs)
    assert len(log.named("gram_backward")) == 2

    y.requires_grad_(True)
    x.grad = None
    log = backward_like(loss_fn(x, y), perceptual_reference(x, y, loss_fn, net), x, y)
    assert len(log.named("convolution_backward")) == 8 and len(log.named("gram_backward")) == 4


# Style (Gram) loss ----------------------------------------------------------------------------

def test_style_loss_differentiates_only_features_that_require_grad():
    gen = torch.Generator().manual_seed(0)
    style = [torch.rand(1, 8, 12, 12, generator=gen, dtype=torch.float64),
             torch.rand(1, 16, 6, 6, generator=gen, dtype=torch.float64)]
    feats = [torch.rand(2, 8, 12, 12, generator=gen, dtype=torch.float64, requires_grad=True),
             torch.rand(2, 16, 6, 6, generator=gen, dtype=torch.float64)]
    loss_fn = StyleLoss(style, layer_weights=[1.0, 0.5], reduction="sum")
    expected = sum(w * (plain_gram(f) - plain_gram(s)).square().sum() for f, s, w in zip(feats, style, [1.0, 0.5]))
    log = backward_like(loss_fn(feats), expected, feats[0])
    assert feats[1].grad is None and all(s.grad is None for s in style)
    calls = log.named("gram_backward")
    assert len(calls) == 1 and calls[0][1][1] == (2, 8, 144)


# NCC ----------------------------------------------------------------------------------------

def ncc_reference(x, y):
    xc = x - x.mean(dim=(2, 3), keepdim=True)
    yc = y - y.mean(dim=(2, 3), keepdim=True)
    r = (xc * yc).sum(dim=(1, 2, 3)) / (xc.square().sum(dim=(1, 2, 3)) * yc.square().sum(dim=(1, 2, 3))).sqrt()
    return 1 - r


@pytest.mark.parametrize("target_batch", [2, 1])
def test_ncc_target_without_grad_costs_no_backward(device, target_batch):
    x, y = images(device, size=10)
    y = y[:target_batch]
    loss_fn = NCCLoss(reduction="none")
    log = backward_like(loss_fn(x, y), ncc_reference(x, y.expand_as(x)), x, rtol=1e-8, atol=1e-12)
    assert y.grad is None
    without = len(log.calls)
    y = y.detach().requires_grad_(True)
    x.grad = None
    log = backward_like(loss_fn(x, y), ncc_reference(x, y.expand_as(x)), x, y, rtol=1e-8, atol=1e-12)
    assert len(log.calls) > without  # the target's side of the graph exists only when asked for
