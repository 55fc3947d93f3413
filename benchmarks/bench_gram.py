"""Gram matrix fwd+bwd: fused op (block triangle + one backward GEMM) vs the torch.bmm composition,
over the feature map's size H·W (B = 4, C = 256: VGG's relu3_3 width at 128², 256², 512² inputs).

Each case records time (pytest-benchmark) and peak memory (child process) under one group, so
`benchmarks/report.py` prints the fused/composition ratios measured in the same run.
"""
import pytest
import torch

from benchmarks._record import record
from benchmarks.conftest import DEVICES, backward_run
from perceptual_ext.ops import gram

BATCH, CHANNELS = 4, 256
LENGTHS = [32 * 32, 64 * 64, 128 * 128]


def composition(x):
    return torch.bmm(x, x.mT) / (x.shape[1] * x.shape[2])


IMPLS = {"fused": gram, "composition": composition}


def workload(impl: str, batch: int, channels: int, length: int, device: str = "cpu"):
    """Inputs allocated once; the returned callable runs forward + backward."""
    x = torch.randn(batch, channels, length, device=device, requires_grad=True)
    weight = torch.randn(batch, channels, channels, device=device)
    fn = IMPLS[impl]
    return backward_run(lambda: (fn(x) * weight).sum(), x, device)


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("length", LENGTHS, ids=lambda n: f"HW{n}")
def test_gram_fwd_bwd(benchmark, impl, length, device):
    record(benchmark, f"gram fwd+bwd {device} B{BATCH}·C{CHANNELS}·HW{length}", impl, workload,
           axis=("H·W", length), batch=BATCH, channels=CHANNELS, length=length, device=device)
