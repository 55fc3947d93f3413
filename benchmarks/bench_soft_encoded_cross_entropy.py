"""Colorization loss fwd+bwd: the fused soft_encoded_cross_entropy (ColorizationLoss with a prior)
vs the plain PyTorch composition (distances to all 313 bins, top-k, Gaussian weights scattered into a
dense [N, 313, H, W] target, log_softmax, rebalancing weight of the nearest bin).

Targets (issue 16, CPU, [8, 313, 64, 64] logits): peak memory <= 0.35x and time <= 0.7x of the
composition's (at the least <= 0.5x and <= 1.0x). Two more sizes show the trend: a large batch of
small maps and one image at 256² logits.
"""
import pytest
import torch

from benchmarks._record import record
from benchmarks.conftest import DEVICES, backward_run
from perceptual_ext.data import rgb_to_lab
from perceptual_ext.losses import ColorizationLoss, ab_bins

SHAPES = [(8, 64, 64), (32, 32, 32), (1, 256, 256)]
NEIGHBORS, SIGMA = 5, 5.0


def composition(logits, ab, bins, weights):
    """The loss as a user writes it in PyTorch: per-sample mean over pixels, then mean over the batch."""
    d2 = (ab.permute(0, 2, 3, 1).unsqueeze(-2) - bins).square().sum(-1)          # [N, H, W, Q]
    near, idx = torch.topk(d2, NEIGHBORS, dim=-1, largest=False, sorted=True)
    w = torch.exp(-(near - near[..., :1]) / (2 * SIGMA ** 2))
    w = w / w.sum(-1, keepdim=True)
    target = torch.zeros_like(d2).scatter_(-1, idx, w).permute(0, 3, 1, 2)       # [N, Q, H, W]
    ce = -(target * torch.log_softmax(logits, dim=1)).sum(1)
    return (weights[idx[..., 0]] * ce).flatten(1).mean(1).mean()


def workload(impl: str, batch: int, height: int, width: int, device: str = "cpu"):
    """Inputs allocated once (logits, a realistic ab target, a peaked prior); the callable runs fwd+bwd."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(batch, 313, height, width, generator=gen).to(device).requires_grad_(True)
    rgb = torch.rand(batch, 3, height, width, generator=gen)
    ab = rgb_to_lab(rgb)[:, 1:].contiguous().to(device)
    prior = torch.rand(313, generator=gen, dtype=torch.float64) ** 6
    loss_fn = ColorizationLoss(prior=prior / prior.sum(), neighbors=NEIGHBORS, sigma=SIGMA).to(device)
    if impl == "fused":
        return backward_run(lambda: loss_fn(logits, ab), logits, device)
    bins, weights = ab_bins(device=device), loss_fn.weights
    return backward_run(lambda: composition(logits, ab, bins, weights), logits, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}-{}x{}".format(*s))
@pytest.mark.parametrize("impl", ["fused", "composition"])
def test_soft_encoded_cross_entropy_fwd_bwd(benchmark, impl, shape, device):
    batch, height, width = shape
    record(benchmark, f"colorization loss fwd+bwd {device} [{batch}, 313, {height}, {width}]", impl, workload,
           rounds=5, batch=batch, height=height, width=width, device=device)
