"""S-CNN (C=1024, D=6, P=3, W=32, S=16) fwd+bwd w.r.t. the image: fused op vs the nn.Sequential
composition (conv, 1x1 convs, ReLU, AvgPool2d) with the same frozen weights, over the image side.

Targets (CPU): fused >= 0.9x the composition's speed with <= 1/10 of its peak memory. The
composition keeps about nine [C, H, W] float32 maps (2.3 GiB at 256², 9 GiB at 512²); the fused op
keeps one bit per activation. Sides 32² to 64² keep `make bench` short (a 256² call takes ~10 s).
The forward-only group prices the alternative backward that recomputes each tile instead of
keeping the ReLU bit masks: recompute costs one more forward per backward.
"""
import pytest
import torch
from torch import nn

from benchmarks._record import record, skip_over_memory
from benchmarks.conftest import DEVICES, sync
from perceptual_ext.features import SCNN

CHANNELS, DEPTH = 1024, 6
SIZES = [32, 48, 64]


def composition_peak_mib(size: int) -> float:
    """The composition's peak, measured: about nine [C, H, W] float32 maps (one image)."""
    return 9 * CHANNELS * size * size * 4 / 2**20


def composition_of(net: SCNN) -> nn.Sequential:
    """The plain network the fused op replaces, sharing the SCNN's weights (frozen)."""
    c, c_in, p, _ = net.first_weight.shape
    layers = [nn.Conv2d(c_in, c, p, padding=p // 2), nn.ReLU()]
    layers[0].weight.data, layers[0].bias.data = net.first_weight, net.first_bias
    for w, b in zip(net.weights, net.biases):
        conv = nn.Conv2d(c, c, 1)
        conv.weight.data, conv.bias.data = w[:, :, None, None], b
        layers += [conv, nn.ReLU()]
    layers.append(nn.AvgPool2d(net.window, net.stride))
    seq = nn.Sequential(*layers)
    seq.requires_grad_(False)
    return seq


def workload(impl: str, size: int, device: str = "cpu", backward: bool = True):
    """Inputs allocated once; the returned callable runs forward (+ backward w.r.t. the image)."""
    net = SCNN(channels=CHANNELS, depth=DEPTH).to(device)
    fn = net if impl == "fused" else composition_of(net).to(device)
    x = (2 * torch.rand(1, 3, size, size, device=device) - 1).requires_grad_(backward)
    forward = (lambda t: fn((t + 1) / 2)) if impl == "fused" else fn  # SCNN maps [0, 1] -> [-1, 1]

    def run():
        with torch.set_grad_enabled(backward):
            out = forward(x)
            if backward:
                out.square().sum().backward()
        sync(device)
        x.grad = None  # released inside the run, so the memory probe sees it as peak growth

    return run


def _record_scnn(benchmark, group, impl, size, device, backward):
    if impl == "composition":
        skip_over_memory(group, impl, composition_peak_mib(size), device=device, op="scnn", axis=("image side", size))
    record(benchmark, group, impl, workload, axis=("image side", size), size=size, device=device, backward=backward)


@pytest.mark.parametrize("impl", ["fused", "composition"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s}x{s}")
def test_scnn_fwd_bwd(benchmark, impl, size, device):
    _record_scnn(benchmark, f"scnn fwd+bwd {device} C{CHANNELS}·D{DEPTH}·{size}²", impl, size, device, True)


@pytest.mark.parametrize("impl", ["fused", "composition"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s}x{s}")
def test_scnn_forward(benchmark, impl, size, device):
    _record_scnn(benchmark, f"scnn forward {device} C{CHANNELS}·D{DEPTH}·{size}²", impl, size, device, False)
