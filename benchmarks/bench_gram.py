"""Gram matrix fwd+bwd: fused op (block triangle + one backward GEMM) vs the torch.bmm composition.

Each case records time (pytest-benchmark) and peak memory (child process) under one group, so
`benchmarks/report.py` prints the fused/composition ratios measured in the same run.
"""
import pytest
import torch

from benchmarks._record import record
from benchmarks.conftest import DEVICES, backward_run
from perceptual_ext.ops import gram

SHAPES = [(4, 64, 65536), (4, 256, 4096), (16, 512, 1024)]


def composition(x):
    return torch.bmm(x, x.mT) / (x.shape[1] * x.shape[2])


IMPLS = {"fused": gram, "composition": composition}


def workload(impl: str, batch: int, channels: int, length: int, device: str = "cpu"):
    """Inputs allocated once; the returned callable runs forward + backward."""
    x = torch.randn(batch, channels, length, device=device, requires_grad=True)
    weight = torch.randn(batch, channels, channels, device=device)
    fn = IMPLS[impl]
    return backward_run(lambda: (fn(x) * weight).sum(), x, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-C{}-HW{}".format(*s))
@pytest.mark.parametrize("impl", list(IMPLS))
def test_gram_fwd_bwd(benchmark, impl, shape, device):
    batch, channels, length = shape
    record(benchmark, f"gram fwd+bwd {device} B{batch}·C{channels}·HW{length}", impl, workload, rounds=5,
           batch=batch, channels=channels, length=length, device=device)
