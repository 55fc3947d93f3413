"""Gram matrix fwd+bwd: fused op (block triangle + one backward GEMM) vs the torch.bmm composition.

Each case records time (pytest-benchmark) and peak memory (child process) under one group, so
`benchmarks/report.py` prints the fused/composition ratios measured in the same run.
"""
import pytest
import torch

from benchmarks._memory import peak_memory_mib
from benchmarks.conftest import DEVICES, sync
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

    def run():
        (fn(x) * weight).sum().backward()
        sync(device)
        x.grad = None  # released inside the run, so the memory probe sees it as peak growth

    return run


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-C{}-HW{}".format(*s))
@pytest.mark.parametrize("impl", list(IMPLS))
def test_gram_fwd_bwd(benchmark, impl, shape, device):
    benchmark.group = f"gram fwd+bwd {device} B{shape[0]}·C{shape[1]}·HW{shape[2]}"
    benchmark.extra_info["impl"] = impl
    benchmark.extra_info["peak_mib"] = peak_memory_mib("benchmarks.bench_gram:workload", impl=impl, batch=shape[0],
                                                       channels=shape[1], length=shape[2], device=device)
    run = workload(impl, *shape, device=device)
    benchmark.pedantic(run, warmup_rounds=1, rounds=5, iterations=1)
