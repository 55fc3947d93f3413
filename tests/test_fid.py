"""FID / KID: FeatureStatistics vs numpy.cov, frechet_distance vs closed forms and float64 references
(singular covariances included), kid vs the direct formula, FIDInceptionV3 on a random state dict in
pytorch-fid's key format, folder / file list / tensor / .npz inputs, bad input."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _fid_reference import CONVS, random_state_dict, reference_features

from perceptual_ext.data import sample_image, save_image
from perceptual_ext.features import FIDInceptionV3
from perceptual_ext.features.inception import resize_for_inception
from perceptual_ext.metrics import FeatureStatistics, compute_features, fid, frechet_distance, kid, trace_sqrt_product


def _features(n, d, seed, shift=0.0, scale=1.0, rank=None):
    g = np.random.default_rng(seed)
    mix = g.standard_normal((rank or d, d)) / np.sqrt(d)
    return g.standard_normal((n, rank or d)) @ mix * scale + shift


# --- FeatureStatistics ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_statistics_match_numpy(device, dtype):
    x = _features(257, 24, 0, shift=3.0)
    stats = FeatureStatistics()
    for start, stop in ((0, 1), (1, 1), (1, 100), (100, 101), (101, 257)):  # uneven, empty, single rows
        stats.update(torch.from_numpy(x[start:stop]).to(device, dtype))
    ref = x.astype(np.float32).astype(np.float64) if dtype == torch.float32 else x
    assert stats.n == 257 and stats.mean.dtype == torch.float64
    np.testing.assert_allclose(stats.mean.cpu().numpy(), ref.mean(0), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(stats.covariance.cpu().numpy(), np.cov(ref, rowvar=False), rtol=1e-11, atol=1e-13)


def test_statistics_stable_with_a_large_offset():
    # Features far from the origin: the uncentred second moment would lose ~8 of 16 digits.
    x = _features(1000, 8, 1, scale=1e-3) + 1e5
    stats = FeatureStatistics()
    for chunk in np.array_split(x, 7):
        stats.update(chunk)
    ref = np.cov(x - x.mean(0), rowvar=False)
    np.testing.assert_allclose(stats.covariance.numpy(), ref, rtol=1e-7, atol=1e-13)


def test_statistics_merge_equals_one_stream():
    x = _features(90, 6, 2)
    whole = FeatureStatistics().update(x)
    merged = FeatureStatistics().update(x[:30]).merge(FeatureStatistics().update(x[30:]))
    empty_first = FeatureStatistics().merge(FeatureStatistics().update(x))
    for s in (merged, empty_first):
        assert s.n == 90
        torch.testing.assert_close(s.mean, whole.mean, rtol=1e-13, atol=1e-14)
        torch.testing.assert_close(s.covariance, whole.covariance, rtol=1e-12, atol=1e-14)


def test_statistics_save_load_npz(tmp_path):
    x = _features(50, 10, 3)
    stats = FeatureStatistics().update(x[:40])
    path = stats.save(tmp_path / "s.npz")
    with np.load(path) as f:  # pytorch-fid reads exactly these two entries
        np.testing.assert_array_equal(f["mu"], stats.mean.numpy())
        np.testing.assert_array_equal(f["sigma"], stats.covariance.numpy())
        assert f["mu"].dtype == np.float64 and f["sigma"].shape == (10, 10)
    loaded = FeatureStatistics.load(path)
    assert loaded.n == 40
    loaded.update(x[40:])  # the stored count lets the statistics grow
    np.testing.assert_allclose(loaded.covariance.numpy(), np.cov(x, rowvar=False), rtol=1e-12)
    # A file written by pytorch-fid (mu and sigma only) loads but cannot be updated.
    np.savez(tmp_path / "pf.npz", mu=x.mean(0), sigma=np.cov(x, rowvar=False))
    pf = FeatureStatistics.load(tmp_path / "pf.npz")
    assert pf.n is None
    np.testing.assert_array_equal(pf.covariance.numpy(), np.cov(x, rowvar=False))
    with pytest.raises(ValueError, match="without a sample count"):
        pf.update(x)
    with pytest.raises(FileExistsError):
        stats.save(path, overwrite=False)


def test_statistics_bad_input(tmp_path):
    stats = FeatureStatistics().update(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"features must be \[N, 4\]"):
        stats.update(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="features must be finite"):
        stats.update(np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match=r"features must be \[N, d\]"):
        stats.update(np.zeros(4))
    with pytest.raises(TypeError, match="features must be a torch.Tensor or a numpy.ndarray"):
        stats.update([[1.0, 2.0]])
    with pytest.raises(ValueError, match="covariance needs at least 2 samples"):
        _ = FeatureStatistics().update(np.zeros((1, 4))).covariance
    with pytest.raises(ValueError, match="mean: no features yet"):
        _ = FeatureStatistics().mean
    with pytest.raises(ValueError, match="path must end with .npz"):
        stats.save(tmp_path / "s.txt")
    np.savez(tmp_path / "other.npz", mean=np.zeros(3))
    with pytest.raises(ValueError, match="needs entries 'mu' and 'sigma'"):
        FeatureStatistics.load(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read statistics file"):
        FeatureStatistics.load(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="statistics file not found"):
        FeatureStatistics.load(tmp_path / "missing.npz")


# --- frechet_distance ----------------------------------------------------------------------------------

def _reference_fid(mu1, s1, mu2, s2):
    """Plain float64 reference by the symmetric square root: Tr sqrt(S1^1/2 S2 S1^1/2)."""
    w, v = np.linalg.eigh(s1)
    half = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(half @ s2 @ half)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(inner, 0, None))))


def test_frechet_identical_is_zero(device):
    x = _features(300, 40, 4, shift=1.0)
    mu, sigma = torch.from_numpy(x.mean(0)).to(device), torch.from_numpy(np.cov(x, rowvar=False)).to(device)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-10 * float(torch.trace(sigma))


def test_frechet_diagonal_closed_form():
    g = np.random.default_rng(5)
    a, b = g.uniform(0.1, 3.0, 30), g.uniform(0.0, 3.0, 30)
    b[:5] = 0.0  # singular second covariance
    mu1, mu2 = g.standard_normal(30), g.standard_normal(30)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + np.sum((mu1 - mu2) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    assert frechet_distance(np.zeros(2), np.diag([4.0, 1.0]), np.ones(2), np.eye(2)) == pytest.approx(3.0, rel=1e-14)


@pytest.mark.parametrize("d", [7, 64, 520])  # 520 > 2 blocks: the blocked triangular congruence
def test_frechet_matches_float64_reference(device, d):
    x, y = _features(2 * d + 10, d, 6), _features(2 * d + 20, d, 7, shift=0.3, scale=1.3)
    mu1, s1, mu2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    expected = _reference_fid(mu1, s1, mu2, s2)
    got = frechet_distance(*(torch.from_numpy(a).to(device) for a in (mu1, s1, mu2, s2)))
    assert got == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, s1.astype(np.float32), mu2, s2) == pytest.approx(expected, rel=1e-5)


def test_frechet_matches_scipy_sqrtm_route():
    linalg = pytest.importorskip("scipy.linalg")
    x, y = _features(200, 48, 8), _features(220, 48, 9, shift=0.5)
    mu1, s1, mu2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real  # pytorch-fid's route
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("which", ["both", "first", "second"])
def test_frechet_singular_covariances_are_exact(device, which):
    # Fewer samples than dimensions: with S = Xc^T Xc / (n - 1), Tr sqrt(S1 S2) is the nuclear norm
    # of Xc1 Xc2^T / sqrt((n1 - 1)(n2 - 1)), a small matrix: an independent exact reference.
    d = 80
    n1, n2 = (20 if which in ("both", "first") else 200), (25 if which in ("both", "second") else 200)
    x, y = _features(n1, d, 10), _features(n2, d, 11, shift=0.2)
    xc, yc = x - x.mean(0), y - y.mean(0)
    s1, s2 = xc.T @ xc / (n1 - 1), yc.T @ yc / (n2 - 1)
    nuclear = np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / np.sqrt((n1 - 1) * (n2 - 1))
    assert trace_sqrt_product(s1, s2) == pytest.approx(nuclear, rel=1e-8)
    expected = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(s1) + np.trace(s2) - 2 * nuclear
    args = (torch.from_numpy(a).to(device) for a in (x.mean(0), s1, y.mean(0), s2))
    got = frechet_distance(*args)
    assert np.isfinite(got) and got == pytest.approx(expected, rel=1e-8)


def test_frechet_bad_input():
    mu, s = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="one d"):
        frechet_distance(mu, s, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match=r"sigma1 must be \[d, d\]"):
        frechet_distance(mu, np.ones(3), mu, s)
    with pytest.raises(ValueError, match="sigma2 must be finite"):
        frechet_distance(mu, s, mu, np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="mu1 must be finite"):
        frechet_distance(np.array([np.inf, 0, 0]), s, mu, s)
    with pytest.raises(ValueError, match="sigma1 is not a covariance matrix"):
        frechet_distance(mu, -np.eye(3), mu, s)
    with pytest.raises(TypeError, match="mu2 must be a torch.Tensor or a numpy.ndarray"):
        frechet_distance(mu, s, [0, 0, 0], s)


# --- kid ---------------------------------------------------------------------------------------------

def _direct_mmd2(x, y, gamma, coef0, degree):
    m = len(x)
    k = lambda a, b: (gamma * np.dot(a, b) + coef0) ** degree  # noqa: E731
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return kxx + kyy - 2 * kxy


@pytest.mark.parametrize("gamma,coef0,degree", [(None, 1.0, 3), (0.3, 0.5, 2)])
def test_kid_matches_direct_formula(device, gamma, coef0, degree):
    x, y = _features(30, 5, 12), _features(30, 5, 13, shift=0.4)
    # With subset_size = N every subset is the whole set (the unbiased MMD ignores the order).
    mean, std = kid(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device), num_subsets=3, subset_size=30,
                    gamma=gamma, coef0=coef0, degree=degree)
    expected = _direct_mmd2(x, y, gamma or 1 / 5, coef0, degree)
    assert mean == pytest.approx(expected, rel=1e-10) and std == pytest.approx(0.0, abs=1e-12)


def test_kid_subsets_are_seeded_and_unbiased_on_average():
    z = _features(400, 8, 14)
    x, y = z[:200], z[200:]
    a = kid(x, y, num_subsets=20, subset_size=50, seed=1)
    assert a == kid(x, y, num_subsets=20, subset_size=50, seed=1)
    assert a != kid(x, y, num_subsets=20, subset_size=50, seed=2)
    assert a[1] > 0
    # Same distribution: the unbiased estimate scatters around zero (a shifted set does not).
    assert abs(a[0]) < 3 * a[1]
    shifted = kid(x, y + 0.5, num_subsets=20, subset_size=50, seed=1)
    assert shifted[0] > 3 * shifted[1]


def test_kid_bad_input():
    x = np.zeros((10, 4))
    with pytest.raises(ValueError, match=r"subset_size \(20\) is larger than fake_features \(10 samples\)"):
        kid(np.zeros((30, 4)), x, subset_size=20)
    with pytest.raises(ValueError, match="same dimension"):
        kid(x, np.zeros((10, 5)), subset_size=5)
    with pytest.raises(ValueError, match="num_subsets must be >= 1"):
        kid(x, x, num_subsets=0, subset_size=5)
    with pytest.raises(ValueError, match="real_features must be finite"):
        kid(np.full((10, 4), np.nan), x, subset_size=5)


# --- FIDInceptionV3 ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def state():
    return random_state_dict(seed=0)


@pytest.fixture(scope="module")
def weights_file(state, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(state, path)
    return str(path)


@pytest.fixture(scope="module")
def net(weights_file):
    return FIDInceptionV3(weights_file, resize=None)


def test_inception_state_dict_keys_are_pytorch_fid(net, state):
    ours = set(net.state_dict())
    assert len(CONVS) == 94 and len(ours) == 94 * 5
    assert ours == {k for k in state if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    assert not any(p.requires_grad for p in net.parameters()) and not list(net.parameters())


def test_inception_matches_reference(device, net, state):
    x = torch.rand(1, 3, 75, 83, generator=torch.Generator().manual_seed(1))
    got = net.to(device)(x.to(device)).cpu()
    expected = reference_features({k: v.double() for k, v in state.items()}, x.double())
    assert got.shape == (1, 2048) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=2e-4, atol=2e-4)
    empty = net(torch.rand(0, 3, 75, 83, device=device))
    assert empty.shape == (0, 2048)
    net.cpu()


def test_inception_resizes_to_299_bilinear(state, weights_file):
    x = torch.rand(1, 3, 90, 110, generator=torch.Generator().manual_seed(2))
    net = FIDInceptionV3(weights_file)  # default: pytorch-fid's bilinear resize
    resized = F.interpolate(x.double(), size=(299, 299), mode="bilinear", align_corners=False)
    expected = reference_features(state, resized.float()).double()
    torch.testing.assert_close(net(x).double(), expected, rtol=2e-4, atol=2e-4)


def test_clean_resize_is_pil_bicubic_per_channel():
    from PIL import Image

    x = sample_image("chelsea", size=64)[None]
    got = resize_for_inception(x, "clean")
    values = (x[0] * 255).numpy()
    expected = np.stack([np.asarray(Image.fromarray(values[c]).resize((299, 299), Image.Resampling.BICUBIC))
                         for c in range(3)])
    np.testing.assert_allclose(got[0].numpy(), np.clip(expected, 0, 255) / 255, rtol=0, atol=1e-6)
    bilinear = resize_for_inception(x, "bilinear")
    assert got.shape == bilinear.shape == (1, 3, 299, 299)
    assert (got - bilinear).abs().max() > 1e-2  # the two conventions differ
    assert resize_for_inception(torch.rand(1, 3, 299, 299), "clean").shape == (1, 3, 299, 299)


def test_inception_loads_without_optional_entries(state):
    lean = {k: v for k, v in state.items() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    FIDInceptionV3(lean, resize=None)


def test_inception_bad_weights(state, tmp_path):
    with pytest.raises(ValueError, match="pt_inception-2015-12-05-6726825d.pth"):
        FIDInceptionV3()
    with pytest.raises(ValueError, match="no such file"):
        FIDInceptionV3(str(tmp_path / "missing.pth"))
    broken = dict(state)
    del broken["Mixed_7c.branch_pool.conv.weight"]
    broken["AuxLogits.fc.weight"] = torch.zeros(1008, 768)
    with pytest.raises(ValueError, match=r"missing keys \['Mixed_7c.branch_pool.conv.weight'\].*AuxLogits"):
        FIDInceptionV3(broken)
    reshaped = dict(state, **{"Mixed_5b.branch1x1.bn.running_var": torch.ones(65)})
    with pytest.raises(ValueError, match=r"Mixed_5b.branch1x1.bn.running_var has shape \(65,\), expected \(64,\)"):
        FIDInceptionV3(reshaped)
    with pytest.raises(ValueError, match=r"fc.weight has shape \(1000, 2048\)"):
        FIDInceptionV3(dict(state, **{"fc.weight": torch.zeros(1000, 2048)}))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match="could not read"):
        FIDInceptionV3(str(tmp_path / "junk.pth"))
    with pytest.raises(ValueError, match="resize must be one of"):
        FIDInceptionV3(state, resize="bicubic")


def test_inception_bad_input(net):
    with pytest.raises(ValueError, match="x must have 3 channels"):
        net(torch.rand(1, 2, 80, 80))
    with pytest.raises(ValueError, match=r"x must be \[N, 3, H, W\]"):
        net(torch.rand(3, 80, 80))
    with pytest.raises(ValueError, match="at least 75x75"):
        net(torch.rand(1, 3, 60, 80))
    with pytest.raises(TypeError, match="x must be a real floating-point tensor"):
        net(torch.zeros(1, 3, 80, 80, dtype=torch.uint8))


# --- fid over folders, files, tensors and .npz -------------------------------------------------------------

@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    sets = {"a": ("astronaut", "coffee"), "b": ("rocket", "brick")}
    for name, samples in sets.items():
        os.makedirs(root / name)
        for s in samples:
            save_image(sample_image(s, channels=3, size=76), str(root / name / f"{s}.png"))
    (root / "a" / "zz_broken.png").write_bytes(b"not an image")
    os.makedirs(root / "empty")
    return root


def test_fid_folder_npz_tensor_round_trip(net, folders, tmp_path):
    from perceptual_ext.data import load_image

    a = str(folders / "a")
    with pytest.warns(UserWarning, match="skipped 1 unreadable image file"):
        feats_a, skipped = compute_features(a, net, batch_size=3, progress=False)
    assert feats_a.shape == (2, 2048) and len(skipped) == 1 and "zz_broken.png" in skipped[0]
    files_b = sorted(str(folders / "b" / n) for n in os.listdir(folders / "b"))
    feats_b, _ = compute_features(torch.stack([load_image(f) for f in files_b]), net, progress=False)
    stats_a, stats_b = FeatureStatistics().update(feats_a), FeatureStatistics().update(feats_b)
    path_a, path_b = stats_a.save(tmp_path / "a.npz"), stats_b.save(tmp_path / "b.npz")
    value = fid(path_a, path_b)  # no weights needed for two .npz
    assert value > 0 and value == pytest.approx(stats_a.frechet_distance(stats_b), rel=1e-12)
    assert fid(FeatureStatistics.load(path_a), stats_b) == value
    # .npz against a list of files: the same features as the tensor path, up to float32 rounding.
    assert fid(path_a, files_b, weights=net, batch_size=1, progress=False) == pytest.approx(value, rel=1e-5)


def test_fid_bad_input(net, folders, tmp_path):
    with pytest.raises(ValueError, match="no image files in folder"):
        fid(str(folders / "empty"), str(folders / "b"), weights=net, progress=False)
    with pytest.raises(ValueError, match="no such file or folder"):
        fid(str(tmp_path / "nowhere"), str(folders / "b"), weights=net, progress=False)
    with pytest.raises(ValueError, match="pt_inception-2015-12-05-6726825d.pth"):
        fid(str(folders / "b"), str(folders / "b"), progress=False, device="cpu")
    with pytest.raises(ValueError, match="at least 2 images"):
        fid([str(folders / "b" / "rocket.png")], str(folders / "b"), weights=net, progress=False)
    with pytest.raises(TypeError, match="images must be a folder, a list of image files"):
        fid(42, str(folders / "b"), weights=net, progress=False)
    with pytest.raises(ValueError, match="resize must be one of"):
        fid(str(folders / "b"), str(folders / "b"), weights=net, resize="nearest")
    save_image(torch.rand(3, 80, 90), str(tmp_path / "odd.png"))
    with pytest.raises(ValueError, match="cannot be batched without resizing"):
        compute_features([str(folders / "b" / "rocket.png"), str(tmp_path / "odd.png")], net, progress=False)


# --- CLI -------------------------------------------------------------------------------------------

def test_cli_fid_end_to_end(weights_file, folders, tmp_path, capsys):
    import json

    from perceptual_ext.cli import main

    a, b = str(folders / "a"), str(folders / "b")
    stats_a, stats_b = str(tmp_path / "a.npz"), str(tmp_path / "b.npz")
    code = main(["fid", a, b, "--inception-weights", weights_file, "--batch-size", "2", "--kid", "--json",
                 "--save-stats", stats_a, stats_b, "--no-progress", "--device", "cpu"])
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    assert (result["n_A"], result["skipped_A"], result["n_B"], result["skipped_B"]) == (2, 1, 2, 0)
    assert "skipped 1 unreadable image(s) in A" in out.err
    assert result["fid"] == pytest.approx(fid(stats_a, stats_b), rel=1e-12) and result["fid"] > 0
    assert result["kid_subset_size"] == 2 and np.isfinite(result["kid"])
    # The saved statistics are pytorch-fid's format and give the same FID on their own.
    assert main(["fid", stats_a, stats_b]) == 0
    assert capsys.readouterr().out.strip() == f"FID: {result['fid']:.6f}"
    # Nothing is overwritten without --overwrite; --kid needs features, not statistics.
    assert main(["fid", stats_a, stats_b, "--save-stats", stats_a]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["fid", stats_a, stats_b, "--kid"]) == 2
    assert "--kid needs image folders" in capsys.readouterr().err


def test_cli_fid_folder_errors(weights_file, folders, tmp_path, capsys):
    from perceptual_ext.cli import main

    assert main(["fid", str(folders / "empty"), str(folders / "b"), "--inception-weights", weights_file]) == 2
    assert "no image files in folder" in capsys.readouterr().err
    one = tmp_path / "one"
    one.mkdir()
    save_image(sample_image("coffee", size=76), str(one / "x.png"))
    (one / "y.png").write_bytes(b"broken")
    assert main(["fid", str(one), str(folders / "b"), "--inception-weights", weights_file, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "FID needs at least 2 readable images" in err and "Traceback" not in err
