"""PSNR/SSIM parity with scikit-image; SWD properties and parity with a plain numpy definition."""
import numpy as np
import pytest
import scipy.ndimage
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from perceptual_ext.data import sample_image
from perceptual_ext.metrics import laplacian_pyramid, psnr, ssim, swd


def _pair(n=3, c=3, h=40, w=48, noise=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, h, w, generator=g, dtype=torch.float64)
    y = (x + noise * torch.randn(n, c, h, w, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, y


# ----------------------------------------------------------------------------------- PSNR / SSIM

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_psnr_matches_skimage(device, dtype):
    x, y = _pair()
    ours = psnr(x.to(device, dtype), y.to(device, dtype), reduction="none").cpu()
    ref = [peak_signal_noise_ratio(xi.numpy(), yi.numpy(), data_range=1.0) for xi, yi in zip(x.to(dtype).double(),
                                                                                            y.to(dtype).double())]
    torch.testing.assert_close(ours, torch.tensor(ref, dtype=ours.dtype), atol=1e-4, rtol=0)
    assert psnr(x.to(device, dtype), y.to(device, dtype)).item() == pytest.approx(float(np.mean(ref)), abs=1e-4)


def test_psnr_identical_is_inf_and_data_range_scales():
    x, y = _pair(n=1)
    assert psnr(x, x).item() == float("inf")
    # scaling both images and the range by 255 leaves PSNR unchanged
    assert psnr(x * 255, y * 255, data_range=255.0).item() == pytest.approx(psnr(x, y).item(), abs=1e-9)


@pytest.mark.parametrize("channels,dtype", [(3, torch.float64), (3, torch.float32), (1, torch.float64)])
def test_ssim_matches_skimage(device, channels, dtype):
    x, y = _pair(n=2, c=channels, noise=0.2)
    ours = ssim(x.to(device, dtype), y.to(device, dtype), reduction="none").cpu()
    ref = [structural_similarity(xi.permute(1, 2, 0).numpy(), yi.permute(1, 2, 0).numpy(), gaussian_weights=True,
                                 sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=2)
           for xi, yi in zip(x.to(dtype).double(), y.to(dtype).double())]
    torch.testing.assert_close(ours.double(), torch.tensor(ref, dtype=torch.float64), atol=1e-4, rtol=0)


def test_ssim_on_a_real_image_and_identity():
    img = sample_image("camera", channels=1, size=64)[None].double()
    blurred = torch.from_numpy(scipy.ndimage.gaussian_filter(img[0, 0].numpy(), 1.0))[None, None]
    ref = structural_similarity(img[0, 0].numpy(), blurred[0, 0].numpy(), gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=1.0)
    assert ssim(img, blurred).item() == pytest.approx(ref, abs=1e-4)
    assert ssim(img, img).item() == pytest.approx(1.0, abs=1e-12)


def test_quality_metrics_bad_input():
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, torch.rand(1, 3, 16, 15))
    with pytest.raises(TypeError, match="x must be a real floating-point"):
        ssim(torch.zeros(1, 3, 16, 16, dtype=torch.uint8), x)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(1, 1, 10, 30), torch.rand(1, 1, 10, 30))
    with pytest.raises(ValueError, match="reduction must be one of"):
        psnr(x, x, reduction="avg")
    with pytest.raises(ValueError, match="data_range must be a positive"):
        ssim(x, x, data_range=0)


# ------------------------------------------------------------------------------------------ SWD

# A plain float64 numpy/scipy transcription of Karras et al.'s definition, drawing from the same
# numpy Generator in the documented order (set A positions per level, set B positions, directions).
_GAUSS = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]).astype(np.float64) / 256.0


def _ref_pyr_down(x):
    return scipy.ndimage.convolve(x, _GAUSS[None, None], mode="mirror")[:, :, ::2, ::2]


def _ref_pyr_up(x):
    n, c, h, w = x.shape
    res = np.zeros((n, c, 2 * h, 2 * w))
    res[:, :, ::2, ::2] = x
    return scipy.ndimage.convolve(res, _GAUSS[None, None] * 4.0, mode="mirror")


def _ref_pyramid(x, num_levels):
    pyramid = [x.astype(np.float64)]
    for _ in range(1, num_levels):
        pyramid.append(_ref_pyr_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - _ref_pyr_up(pyramid[-1])
    return pyramid


def _ref_descriptors(level, per_image, nhood, rng):
    n, c, h, w = level.shape
    half = nhood // 2
    count = per_image * n
    xs = rng.integers(half, w - half, size=count)
    ys = rng.integers(half, h - half, size=count)
    out = np.empty((count, c, nhood, nhood))
    for i in range(count):
        img = i // per_image
        out[i] = level[img, :, ys[i] - half:ys[i] + half + 1, xs[i] - half:xs[i] + half + 1]
    out -= out.mean(axis=(0, 2, 3), keepdims=True)
    out /= out.std(axis=(0, 2, 3), keepdims=True)
    return out.reshape(count, -1)


def _ref_swd(a, b, seed, nhood=7, per_image=128, repeats=4, dirs_per_repeat=128):
    rng = np.random.default_rng(seed)
    num_levels = 0
    res = a.shape[2]
    while res >= 16:
        num_levels, res = num_levels + 1, res // 2
    desc = [[_ref_descriptors(level, per_image, nhood, rng) for level in _ref_pyramid(s, num_levels)] for s in (a, b)]
    dists = []
    for da, db in zip(*desc):
        results = []
        for _ in range(repeats):
            dirs = rng.standard_normal((da.shape[1], dirs_per_repeat))
            dirs /= np.sqrt(np.sum(np.square(dirs), axis=0, keepdims=True))
            pa, pb = np.sort(da @ dirs, axis=0), np.sort(db @ dirs, axis=0)
            results.append(np.mean(np.abs(pa - pb)))
        dists.append(np.mean(results) * 1e3)
    return np.array(dists)


@pytest.mark.parametrize("seed", [0, 7])
def test_swd_matches_numpy_definition(device, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(3, 3, 64, 64, generator=g)
    b = sample_image("astronaut", channels=3, size=64)[None].repeat(3, 1, 1, 1) * 0.5 + 0.5 * a
    mean, levels = swd(a.to(device), b.to(device), seed=seed, return_levels=True)
    ref = _ref_swd(a.double().numpy(), b.double().numpy(), seed)
    assert levels.shape == (3,)  # 64, 32, 16
    np.testing.assert_allclose(levels.cpu().numpy(), ref, rtol=1e-9, atol=1e-9)
    assert mean.item() == pytest.approx(ref.mean(), rel=1e-9)


def test_swd_pyramid_reconstructs_the_image():
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    levels = laplacian_pyramid(x, 3)
    assert [lv.shape[-1] for lv in levels] == [32, 16, 8]
    ref = _ref_pyramid(x.numpy(), 3)
    for ours, theirs in zip(levels, ref):
        np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-12)


def _textures(n, size, seed, shift=0.0, blur=0.0):
    img = sample_image("gravel", channels=3)
    g = torch.Generator().manual_seed(seed)
    crops = []
    for _ in range(n):
        top, left = torch.randint(0, img.shape[1] - size, (2,), generator=g).tolist()
        crops.append(img[:, top:top + size, left:left + size])
    crops = torch.stack(crops)
    if blur:
        crops = torch.from_numpy(scipy.ndimage.gaussian_filter(crops.numpy(), (0, 0, blur, blur))).float()
    return (crops + shift).clamp(0, 1)


def test_swd_identical_sets_small_shifted_distribution_larger():
    real = _textures(8, 64, seed=1)

    def levels(other, **kw):
        return swd(real, other, seed=3, return_levels=True, **kw)[1]

    same = levels(real)
    other_crops = levels(_textures(8, 64, seed=2))
    blurred = levels(_textures(8, 64, seed=1, blur=1.5))
    noisy = levels((real + 0.15 * torch.randn_like(real)).clamp(0, 1))
    # The finest level sees blur and noise; identical sets (and other crops of the same texture)
    # only differ by which neighbourhoods were drawn.
    assert same[0] < 0.6 * blurred[0] and same[0] < 0.6 * noisy[0]
    assert other_crops[0] < 0.6 * blurred[0] and other_crops[0] < 0.6 * noisy[0]
    # identical sets -> 0 as the sample grows: 4x the neighbourhoods, about half the distance
    assert levels(real, nhoods_per_image=512).mean() < 0.6 * same.mean()
    # a uniform affine change of the pixel values is removed by the per-set normalization
    torch.testing.assert_close(levels(real * 0.5 + 0.25), same, rtol=1e-6, atol=0)


def test_swd_deterministic_and_seeded():
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    assert swd(a, b, seed=1).item() == swd(a, b, seed=1).item()
    assert swd(a, b, seed=1).item() != swd(a, b, seed=2).item()


def test_swd_sets_of_different_sizes_and_odd_sizes():
    crops = _textures(9, 48, seed=0)
    single = swd(crops, crops[:1], seed=0, return_levels=True)
    assert single[1].shape == (2,)  # 48, 24
    assert torch.isfinite(single[0])
    assert torch.isfinite(swd(torch.rand(2, 3, 37, 41), torch.rand(1, 3, 37, 41)))
    # a flat image has no spread in its band-pass levels: finite, not NaN
    assert torch.isfinite(swd(torch.full((1, 3, 32, 32), 0.5), torch.rand(1, 3, 32, 32)))


def test_swd_bad_input():
    with pytest.raises(ValueError, match="same \\[C, H, W\\]"):
        swd(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 31))
    with pytest.raises(ValueError, match="too small"):
        swd(torch.rand(1, 3, 6, 6), torch.rand(1, 3, 6, 6))
    with pytest.raises(ValueError, match="nhood_size must be odd"):
        swd(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), nhood_size=6)
    with pytest.raises(ValueError, match="at least one image"):
        swd(torch.rand(0, 3, 32, 32), torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="set_a must be"):
        swd(torch.rand(32, 32), torch.rand(1, 3, 32, 32))
