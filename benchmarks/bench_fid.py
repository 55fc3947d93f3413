"""FID: the Fréchet distance (Cholesky + triangular congruence + eigvalsh, float64) against the
``scipy.linalg.sqrtm`` route pytorch-fid takes, at d = 256, 1024 and 2048; FIDInceptionV3 feature
extraction at 299x299 (images/s in extra_info, peak memory).

scipy is in the ``bench`` extra. The distances both routes return are kept in extra_info
(``value``) so the two can be held side by side; ``test_frechet_agrees_with_sqrtm`` asserts
the agreement (1e-6 relative) at the small sizes.
"""
import os
import sys

import numpy as np
import pytest
import torch

from benchmarks._record import record
from benchmarks.conftest import DEVICES, sync
from perceptual_ext.metrics import frechet_distance

DIMS = [256, 1024, 2048]
_VALUES = {}  # (impl, d, device) -> the distance the last run returned


def _statistics(d: int, seed: int, shift: float):
    g = np.random.default_rng(seed)
    x = g.standard_normal((d + 512, d)) @ (g.standard_normal((d, d)) / np.sqrt(d)) + shift
    return x.mean(0), np.cov(x, rowvar=False)


def scipy_sqrtm_fid(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's calculate_frechet_distance, written from its documented steps."""
    import warnings

    from scipy import linalg

    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # scipy >= 1.16 deprecates disp=
        covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def workload(impl: str, d: int, device: str = "cpu"):
    mu1, s1 = _statistics(d, 0, 0.0)
    mu2, s2 = _statistics(d, 1, 0.1)
    if impl == "scipy_sqrtm":
        def run():
            _VALUES[impl, d, device] = scipy_sqrtm_fid(mu1, s1, mu2, s2)
    else:
        args = [torch.from_numpy(a).to(device) for a in (mu1, s1, mu2, s2)]

        def run():
            _VALUES[impl, d, device] = frechet_distance(*args)
            sync(device)
    return run


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("impl", ["ours", "scipy_sqrtm"])
def test_frechet_distance(benchmark, impl, d, device):
    if impl == "scipy_sqrtm":
        pytest.importorskip("scipy")
        if device != "cpu":
            pytest.skip("scipy runs on the CPU only")
    slow = impl == "scipy_sqrtm" and d >= 2048
    record(benchmark, f"frechet_distance {device} d{d}", impl, workload, rounds=1 if slow else 3,
           warmup=0 if slow else 1, anchor=impl == "scipy_sqrtm", memory=False, d=d, device=device)
    benchmark.extra_info["value"] = _VALUES[impl, d, device]


@pytest.mark.parametrize("d", DIMS[:2])
def test_frechet_agrees_with_sqrtm(d):
    pytest.importorskip("scipy")
    mu1, s1 = _statistics(d, 0, 0.0)
    mu2, s2 = _statistics(d, 1, 0.1)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(scipy_sqrtm_fid(mu1, s1, mu2, s2), rel=1e-6)


def inception_workload(impl: str, batch: int, device: str = "cpu"):
    """FIDInceptionV3 (random weights in pytorch-fid's layout) on a batch of 299x299 images."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
    from _fid_reference import random_state_dict

    from perceptual_ext.features import FIDInceptionV3

    net = FIDInceptionV3(random_state_dict(), resize="bilinear").to(device)
    x = torch.rand(batch, 3, 299, 299, device=device)

    @torch.no_grad()
    def run():
        net(x)
        sync(device)

    run.extra_info = {"images": batch}
    return run


@pytest.mark.parametrize("device", DEVICES)
def test_inception_features(benchmark, device):
    batch = 50 if device == "cuda" else 4
    record(benchmark, f"FIDInceptionV3 {device} {batch}x3x299x299", "fid_inception", inception_workload,
           rounds=3, anchor=True, batch=batch, device=device)
    benchmark.extra_info["images_per_s"] = batch / benchmark.stats.stats.median
