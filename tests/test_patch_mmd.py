"""PatchMMDLoss, MMD++ and exact patch MMD (built on the rff_patch op): parity with the plain
composition, draws, gradients, errors, and convergence of the RFF estimate to the exact MMD."""
import math

import pytest
import torch
import torch.nn.functional as F

from perceptual_ext.losses import MMDPlusPlus, PatchMMDLoss, patch_mmd_loss
from perceptual_ext.losses.patch_mmd import draw_features
from perceptual_ext.metrics import exact_patch_mmd
from test_rff_patch import composition


def test_window_larger_than_image():
    with pytest.raises(ValueError, match=r"window \(32\) is larger"):
        PatchMMDLoss(num_features=8)(torch.rand(1, 3, 20, 20), torch.rand(1, 3, 20, 20))
    with pytest.raises(ValueError, match=r"window \(32\) is larger"):
        exact_patch_mmd(torch.rand(1, 3, 20, 20), torch.rand(1, 3, 20, 20))


def reference_loss(x, y, weight, bias, window, stride):
    fx = composition(x * 2 - 1, weight, bias, window, stride)
    fy = composition(y * 2 - 1, weight, bias, window, stride)
    return (fx - fy).square().mean(dim=(1, 2, 3))


def test_patch_mmd_loss_matches_composition(device):
    x = torch.rand(3, 3, 24, 20, dtype=torch.float64, device=device)
    y = torch.rand(3, 3, 24, 20, dtype=torch.float64, device=device)
    loss_fn = PatchMMDLoss(num_features=64, window=8, stride=4, resample=False,
                           generator=torch.Generator().manual_seed(3), reduction="none").to(device)
    expected = reference_loss(x, y, loss_fn.weight.double(), loss_fn.bias.double(), 8, 4)
    torch.testing.assert_close(loss_fn(x, y), expected, rtol=1e-6, atol=1e-9)
    loss_fn.reduction = "sum"
    torch.testing.assert_close(loss_fn(x, y), expected.sum(), rtol=1e-6, atol=1e-9)


def test_patch_mmd_loss_draws():
    x, y = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    fixed = PatchMMDLoss(num_features=32, window=8, stride=4, resample=False,
                         generator=torch.Generator().manual_seed(0))
    assert torch.equal(fixed(x, y), fixed(x, y))
    assert set(fixed.state_dict()) == {"weight", "bias"} and list(fixed.parameters()) == []
    again = PatchMMDLoss(num_features=32, window=8, stride=4, resample=False,
                         generator=torch.Generator().manual_seed(0))
    assert torch.equal(fixed(x, y), again(x, y))
    redrawn = PatchMMDLoss(num_features=32, window=8, stride=4, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(redrawn(x, y), redrawn(x, y))
    assert fixed.weight.std().item() == pytest.approx(1 / 0.54, rel=0.1)
    assert 0 <= fixed.bias.min() and fixed.bias.max() < 2 * math.pi
    g = torch.Generator().manual_seed(5)
    torch.testing.assert_close(patch_mmd_loss(x, y, num_features=32, window=8, stride=4, generator=g),
                               PatchMMDLoss(num_features=32, window=8, stride=4,
                                            generator=torch.Generator().manual_seed(5))(x, y))
    assert PatchMMDLoss(num_features=8, window=8, stride=4)(torch.rand(0, 3, 16, 16), torch.rand(0, 3, 16, 16)) == 0


def test_channel_mean_removes_per_channel_dc():
    weight, _ = draw_features(16, 3, 3, 0.06, channel_mean=True, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(weight.sum(dim=(2, 3)), torch.zeros(16, 3), rtol=0, atol=1e-5)
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    shifted = x + torch.tensor([0.1, -0.2, 0.05], dtype=torch.float64).view(1, 3, 1, 1)
    loss_fn = PatchMMDLoss(num_features=64, window=8, stride=4, channel_mean=True, resample=False,
                           generator=torch.Generator().manual_seed(1))
    assert loss_fn(x, shifted).item() < 1e-12  # a constant shift per channel is invisible
    assert PatchMMDLoss(num_features=64, window=8, stride=4, resample=False,
                        generator=torch.Generator().manual_seed(1))(x, shifted).item() > 1e-4
    assert exact_patch_mmd(x, shifted, window=8, stride=4, channel_mean=True).item() < 1e-12


def test_loss_gradient_flows():
    x = torch.rand(2, 3, 20, 20, requires_grad=True)
    y = torch.rand(2, 3, 20, 20, requires_grad=True)
    PatchMMDLoss(num_features=32, window=8, stride=4)(x, y).backward()
    assert x.grad.abs().sum() > 0 and y.grad.abs().sum() > 0


def exact_reference_slow(x, y, patch_size, sigma, window, stride):
    """Window by window, pair by pair with torch.cdist: independent of exact_patch_mmd's batching."""
    pad = patch_size // 2
    s = sigma * patch_size ** 2
    def k(a, b):
        return torch.exp(-torch.cdist(a, b).square() / (2 * s * s)).mean()

    totals = []
    for n in range(x.shape[0]):
        px = F.unfold(F.pad(x[n:n + 1] * 2 - 1, [pad] * 4, mode="reflect"), patch_size)[0].T
        py = F.unfold(F.pad(y[n:n + 1] * 2 - 1, [pad] * 4, mode="reflect"), patch_size)[0].T
        h, w = x.shape[2:]
        grid_x, grid_y = px.view(h, w, -1), py.view(h, w, -1)
        vals = []
        for r in range(0, h - window + 1, stride):
            for c in range(0, w - window + 1, stride):
                a = grid_x[r:r + window, c:c + window].reshape(-1, px.shape[1])
                b = grid_y[r:r + window, c:c + window].reshape(-1, px.shape[1])
                vals.append(k(a, a) - 2 * k(a, b) + k(b, b))
        totals.append(torch.stack(vals).mean())
    return torch.stack(totals)


def test_exact_patch_mmd_matches_pairwise_reference():
    x = torch.rand(2, 3, 14, 13, dtype=torch.float64)
    y = torch.rand(2, 3, 14, 13, dtype=torch.float64)
    ours = exact_patch_mmd(x, y, 3, 0.06, 6, 4, reduction="none")
    torch.testing.assert_close(ours, exact_reference_slow(x, y, 3, 0.06, 6, 4), rtol=1e-10, atol=1e-12)
    assert exact_patch_mmd(x, x, 3, 0.06, 6, 4).item() == pytest.approx(0, abs=1e-12)
    # Chunking over windows does not change the result.
    import perceptual_ext.metrics.patch_mmd as module
    old, module._CHUNK_ELEMENTS = module._CHUNK_ELEMENTS, 1
    try:
        torch.testing.assert_close(exact_patch_mmd(x, y, 3, 0.06, 6, 4, reduction="none"), ours)
    finally:
        module._CHUNK_ELEMENTS = old


def test_rff_estimate_converges_to_exact_mmd():
    """2 * PatchMMDLoss is an unbiased estimate of the exact MMD^2 whose spread falls like 1/sqrt(F)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 12, 12, generator=gen, dtype=torch.float64)
    y = (x + 0.15 * torch.randn(1, 3, 12, 12, generator=gen, dtype=torch.float64)).clamp(0, 1)
    sigma, window, stride = 0.1, 8, 4
    exact = exact_patch_mmd(x, y, 3, sigma, window, stride).item()
    assert exact > 1e-3
    draws = 24
    rms = {}
    for f in (256, 1024, 4096, 16384):
        loss_fn = PatchMMDLoss(num_features=f, sigma=sigma, window=window, stride=stride,
                               generator=torch.Generator().manual_seed(f))
        estimates = torch.stack([2 * loss_fn(x, y) for _ in range(draws)])
        rms[f] = (estimates - exact).square().mean().sqrt().item()
        # Unbiased: the mean of the draws is within 4 standard errors of the exact value.
        assert abs(estimates.mean().item() - exact) <= 4 * estimates.std().item() / math.sqrt(draws)
    # Error shrinks like 1/sqrt(F): each 4x more features halves it (within sampling noise).
    normalized = [rms[f] * math.sqrt(f) for f in rms]
    assert max(normalized) / min(normalized) < 1.6, rms
    assert rms[16384] < rms[256] / 5, rms
    assert rms[16384] < 0.05 * exact, rms


def test_mmd_plus_plus():
    x = torch.rand(2, 3, 20, 20, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 3, 20, 20, dtype=torch.float64)
    kw = dict(window=8, stride=4, resample=False, generator=torch.Generator().manual_seed(0))
    loss_fn = MMDPlusPlus(reduction="none", **kw)
    assert loss_fn.mmd.num_features == 512 and loss_fn.mmd.channel_mean
    xs, ys = x * 2 - 1, y * 2 - 1
    dist = F.avg_pool2d(F.pad((xs - ys).square().sum(1, keepdim=True), [1] * 4, mode="reflect"), 3, 1) * 9
    local = (1 - torch.exp(-dist / (2 * 0.9 ** 2))).mean(dim=(1, 2, 3))
    l2 = (xs - ys).square().mean(dim=(1, 2, 3))
    mmd = reference_loss(x, y, loss_fn.mmd.weight.double(), loss_fn.mmd.bias.double(), 8, 4)
    torch.testing.assert_close(loss_fn(x, y), mmd + 0.05 * local + 0.001 * l2, rtol=1e-6, atol=1e-9)
    only_local = MMDPlusPlus(mmd_weight=0, l2_weight=0, local_weight=1, **kw)
    torch.testing.assert_close(only_local(x, y), local.mean())
    loss_fn(x, y).sum().backward()
    assert x.grad.abs().sum() > 0
    assert MMDPlusPlus(**kw)(y, y).item() == pytest.approx(0, abs=1e-12)


def test_loss_bad_input():
    with pytest.raises(ValueError, match="reduction"):
        PatchMMDLoss(reduction="avg")
    with pytest.raises(ValueError, match="num_features must be >= 1"):
        PatchMMDLoss(num_features=0)
    with pytest.raises(ValueError, match="sigma must be a positive"):
        PatchMMDLoss(sigma=-1.0)
    with pytest.raises(ValueError, match="same shape"):
        PatchMMDLoss()(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 32))
    with pytest.raises(ValueError, match="local_weight must be a number >= 0"):
        MMDPlusPlus(local_weight=-1)
    with pytest.raises(ValueError, match="input has 1 channels but the fixed features were drawn for 3"):
        PatchMMDLoss(num_features=8, window=8, resample=False)(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16))
