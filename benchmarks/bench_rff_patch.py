"""Patch RFF features fwd+bwd (F = 1024, P = 3, W = 32, S = 16): the fused op vs the composition
users write today (reflect pad, conv2d, cos, avg_pool2d), which materializes [N, F, H, W].

Each case records time (pytest-benchmark) and peak memory (child process) under one group, so
`benchmarks/report.py` prints the fused/composition ratios measured in the same run. The
composition takes seconds and GBs at the larger sizes (about five [N, F, H, W] float32 maps at its
peak): where that exceeds the memory limit it is skipped and the skip recorded.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from benchmarks._record import record, skip_over_memory
from benchmarks.conftest import DEVICES, backward_run
from perceptual_ext.ops import rff_patch_features

FEATURES, PATCH, WINDOW, STRIDE = 1024, 3, 32, 16
SIDES = [128, 256, 512]  # one image


def composition_peak_mib(batch: int, size: int) -> float:
    """The composition's peak, measured: about five [N, F, H, W] float32 maps."""
    return 5 * batch * FEATURES * size * size * 4 / 2**20


def composition(x, weight, bias):
    padded = F.pad(x, [PATCH // 2] * 4, mode="reflect")
    return F.avg_pool2d(torch.cos(F.conv2d(padded, weight, bias)), WINDOW, STRIDE)


def fused(x, weight, bias):
    return rff_patch_features(x, weight, bias, WINDOW, STRIDE)


IMPLS = {"fused": fused, "composition": composition}


def workload(impl: str, batch: int, size: int, device: str = "cpu"):
    """Inputs allocated once; the returned callable runs forward + backward (gradient w.r.t. x)."""
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, 3, size, size, generator=gen) * 2 - 1).to(device).requires_grad_(True)
    weight = (torch.randn(FEATURES, 3, PATCH, PATCH, generator=gen) / (0.06 * PATCH ** 2)).to(device)
    bias = (torch.rand(FEATURES, generator=gen) * 2 * math.pi).to(device)
    grad = torch.randn(batch, FEATURES, (size - WINDOW) // STRIDE + 1, (size - WINDOW) // STRIDE + 1,
                       generator=gen).to(device)
    fn = IMPLS[impl]
    return backward_run(lambda: (fn(x, weight, bias) * grad).sum(), x, device)


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", SIDES, ids=lambda s: f"1x{s}px")
def test_rff_patch_fwd_bwd(benchmark, impl, size, device):
    group = f"rff_patch fwd+bwd {device} F{FEATURES} 1x{size}²"
    if impl == "composition":
        skip_over_memory(group, impl, composition_peak_mib(1, size), device=device, op="rff_patch",
                         axis=("image side", size))
    record(benchmark, group, impl, workload, axis=("image side", size), batch=1, size=size, device=device)
