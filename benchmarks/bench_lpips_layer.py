"""LPIPS head fwd+bwd: the fused op vs lpips v0.1's composition (normalize_tensor, squared
difference, 1x1 lin conv, spatial mean), and the whole LPIPS(net="vgg") loss vs the same
composition over the same VGG16 features.

Head: the five vgg taps of a 2 x 3 x S² image pair (relu1_2 [2, 64, S, S] ... relu5_3
[2, 512, S/16, S/16]), gradient w.r.t. the first image's features only (the target's need none),
the loss the sum over taps of the spatial mean. Targets: peak <= 1/3 of the composition's (at
256²: the composition takes ~192 MiB beyond its inputs, 61 MiB of them the gradients every method
returns), time <= 1.0x.
Whole loss: LPIPS(net="vgg") on 2 x 3 x 256² (gradient w.r.t. the input image) vs the composition
users write: on the CPU no more memory or time (the peak is the backbone convolutions' backward);
on a GPU <= 0.7x the composition's peak (the saved activations, about half of them the head's).
"""
import pytest
import torch
import torch.nn.functional as F

from benchmarks._record import record
from benchmarks.conftest import DEVICES, sync
from perceptual_ext.losses import LPIPS
from perceptual_ext.ops import lpips_layer

VGG_TAPS = ((64, 1), (128, 2), (256, 4), (512, 8), (512, 16))  # channels, downsampling of each vgg tap
HEAD_SIZES = [128, 256, 512]
LOSS_SIZES = [128, 256]
BATCH = 2


def normalize_tensor(x, eps=1e-10):
    """lpips.normalize_tensor."""
    return x / (torch.sqrt(torch.sum(x ** 2, dim=1, keepdim=True)) + eps)


def head_composition(a, b, w):
    """lpips v0.1's per-tap head: lin((normalize(a) - normalize(b)) ** 2), a bias-free 1x1 conv."""
    return F.conv2d((normalize_tensor(a) - normalize_tensor(b)) ** 2, w.view(1, -1, 1, 1))


def head_fused(a, b, w):
    return lpips_layer(a, b, w)


HEADS = {"fused": head_fused, "composition": head_composition}


def head_workload(impl: str, size: int, device: str = "cpu"):
    """The five taps' features allocated once; the callable runs the heads forward + backward."""
    g = torch.Generator().manual_seed(0)
    taps = []
    for channels, down in VGG_TAPS:
        shape = (BATCH, channels, size // down, size // down)
        a = torch.rand(shape, generator=g).to(device).requires_grad_(True)
        b = torch.rand(shape, generator=g).to(device)
        taps.append((a, b, torch.rand(channels, generator=g).to(device)))
    head = HEADS[impl]

    def run():
        loss = sum(head(a, b, w).mean(dim=(2, 3)).sum() for a, b, w in taps)
        loss.backward()
        sync(device)
        for a, _, _ in taps:
            a.grad = None  # released inside the run, so the memory probe sees the gradients as growth

    return run


def lpips_composition(model: LPIPS, x, y):
    """What users write around the same backbone (lpips's LPIPS.forward, normalize=True, v0.1)."""
    def features(t):
        return model.net.taps(((2 * t - 1) - model.shift) / model.scale)

    fx, fy = features(x), features(y)
    total = 0
    for k, name in enumerate(model.taps):
        d = F.conv2d((normalize_tensor(fx[name]) - normalize_tensor(fy[name])) ** 2,
                     getattr(model, f"lin{k}").view(1, -1, 1, 1))
        total = total + d.mean(dim=(2, 3), keepdim=True)
    return total.mean()


def loss_workload(impl: str, size: int, device: str = "cpu"):
    """LPIPS(net="vgg") (random backbone) on a 2 x 3 x size² pair; the callable runs fwd + bwd."""
    model = LPIPS("vgg").to(device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH, 3, size, size, generator=g).to(device).requires_grad_(True)
    y = torch.rand(BATCH, 3, size, size, generator=g).to(device)
    forward = model if impl == "fused" else (lambda a, b: lpips_composition(model, a, b))

    def run():
        forward(x, y).backward()
        sync(device)
        x.grad = None

    return run


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", HEAD_SIZES, ids=lambda s: f"{s}x{s}")
@pytest.mark.parametrize("impl", list(HEADS))
def test_lpips_head_fwd_bwd(benchmark, impl, size, device):
    record(benchmark, f"lpips head (5 vgg taps) fwd+bwd {device} {BATCH}×{size}²", impl, head_workload,
           rounds=5 if size <= 256 else 3, size=size, device=device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", LOSS_SIZES, ids=lambda s: f"{s}x{s}")
@pytest.mark.parametrize("impl", ["fused", "composition"])
def test_lpips_vgg_fwd_bwd(benchmark, impl, size, device):
    record(benchmark, f"LPIPS(net='vgg') fwd+bwd {device} {BATCH}×3×{size}²", impl, loss_workload,
           rounds=3, size=size, device=device)
