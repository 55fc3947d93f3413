"""Colorization (Zhang et al. 2016): Lab conversion vs scikit-image, the 313 bins, soft encoding,
prior and rebalancing, ColorizationLoss vs its composition, annealed mean, the network, a short
training run, bad input."""
import os
import warnings

import numpy as np
import pytest
import torch
from _helpers import ddp_and_single_checkpoints
from torch.nn import functional as F

from perceptual_ext.data import lab_to_rgb, rgb_to_lab, sample_image
from perceptual_ext.losses import (ColorizationLoss, ab_bins, annealed_mean, colorization_loss, estimate_ab_prior,
                                   nearest_bin, rebalance_weights, soft_encode)
from perceptual_ext.models import ColorizationNet

skcolor = pytest.importorskip("skimage.color")


def to_nhwc(x):
    return x.permute(0, 2, 3, 1).cpu().numpy()


def from_nhwc(a):
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)


# ---- Lab ----------------------------------------------------------------------------------

def test_rgb_to_lab_matches_skimage(device):
    x = torch.rand(2, 3, 17, 13, dtype=torch.float64)
    x[0, :, 0, :4] = torch.tensor([0.0, 1.0, 0.04045, 0.0031308]).view(1, 4)  # black, white, the knees
    x[1, :, 0, 0] = 1.0
    ours = rgb_to_lab(x.to(device))
    ref = from_nhwc(skcolor.rgb2lab(to_nhwc(x)))
    assert ours.dtype == torch.float64
    assert (ours.cpu() - ref).abs().max() <= 1e-6
    # The 8-bit cube's corners and a dense sample of it.
    cube = torch.stack(torch.meshgrid(*(torch.linspace(0, 1, 16, dtype=torch.float64),) * 3, indexing="ij"))
    cube = cube.reshape(1, 3, 64, 64)
    assert (rgb_to_lab(cube.to(device)).cpu() - from_nhwc(skcolor.rgb2lab(to_nhwc(cube)))).abs().max() <= 1e-6


def test_lab_to_rgb_matches_skimage_and_round_trips(device):
    lab = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    lab = lab * torch.tensor([100.0, 220.0, 220.0], dtype=torch.float64).view(1, 3, 1, 1)
    lab -= torch.tensor([0.0, 110.0, 110.0], dtype=torch.float64).view(1, 3, 1, 1)  # many out of gamut
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-image warns about the negative Z it clips
        ref = from_nhwc(skcolor.lab2rgb(to_nhwc(lab)))
    assert (lab_to_rgb(lab.to(device)).cpu() - ref).abs().max() <= 1e-6
    x = torch.rand(3, 3, 9, 11, dtype=torch.float64, device=device)
    assert (lab_to_rgb(rgb_to_lab(x)) - x).abs().max() <= 1e-6


def test_lab_differentiable_and_dtypes(device):
    x = (torch.rand(1, 3, 4, 5, dtype=torch.float64, device=device) * 0.9 + 0.05).requires_grad_(True)
    assert torch.autograd.gradcheck(rgb_to_lab, (x,))
    lab = rgb_to_lab(x.detach()).requires_grad_(True)
    assert torch.autograd.gradcheck(lab_to_rgb, (lab,))
    # Black and exact knees give finite gradients.
    edge = torch.tensor([0.0, 0.04045, 1.0], dtype=torch.float64, device=device).view(1, 3, 1, 1).repeat(1, 1, 1, 3)
    edge[0, :, 0, 1] = 0.0  # black
    edge[0, :, 0, 2] = 1.0  # white
    edge.requires_grad_(True)
    rgb_to_lab(edge).sum().backward()
    assert torch.isfinite(edge.grad).all()
    lab_edge = rgb_to_lab(edge.detach()).requires_grad_(True)
    lab_to_rgb(lab_edge).sum().backward()
    assert torch.isfinite(lab_edge.grad).all()
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        out = rgb_to_lab(x.detach().to(dtype))
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), rgb_to_lab(x.detach()), rtol=1e-2, atol=0.5)


def test_lab_bad_input():
    with pytest.raises(ValueError, match=r"x must be \[N, 3, H, W\]"):
        rgb_to_lab(torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"x must be \[N, 3, H, W\]"):
        rgb_to_lab(torch.rand(3, 4, 4))
    with pytest.raises(TypeError, match="lab must be a real floating"):
        lab_to_rgb(torch.ones(1, 3, 2, 2, dtype=torch.int64))


# ---- bins ---------------------------------------------------------------------------------

def test_bins_count_grid_and_ranges():
    bins = ab_bins()
    assert bins.shape == (313, 2) and bins.dtype == torch.float32
    assert torch.equal(bins, torch.round(bins / 10) * 10), "centres on the grid of step 10"
    assert bins[:, 0].min() == -90 and bins[:, 0].max() == 100
    assert bins[:, 1].min() == -110 and bins[:, 1].max() == 100
    assert len({tuple(b) for b in bins.tolist()}) == 313
    assert bins[0].tolist() == [-90.0, 50.0] and bins[-1].tolist() == [100.0, 0.0]  # pts_in_hull.npy's order
    keys = bins[:, 0] * 1000 + bins[:, 1]
    assert torch.equal(keys, keys.sort().values), "a ascending, then b"
    assert ab_bins(torch.float64).dtype == torch.float64


def test_every_srgb_colour_rounds_to_a_bin():
    # The cells reached by sRGB colours (ab rounded to the grid) are all among the 313 bins.
    v = np.linspace(0, 1, 48)
    cube = np.stack(np.meshgrid(v, v, v, indexing="ij"), -1).reshape(1, -1, 1, 3)
    ab = skcolor.rgb2lab(cube).reshape(-1, 3)[:, 1:]
    cells = {tuple(c) for c in (np.floor(ab / 10 + 0.5) * 10).astype(int).tolist()}
    bins = {tuple(b) for b in ab_bins().int().tolist()}
    assert cells <= bins
    assert len(cells) > 240


# ---- soft encoding, nearest bin, prior, weights -------------------------------------------

def test_soft_encode(device):
    ab = torch.randn(2, 2, 5, 6, dtype=torch.float64, device=device) * 40
    z = soft_encode(ab, neighbors=5, sigma=5.0)
    assert z.shape == (2, 313, 5, 6)
    torch.testing.assert_close(z.sum(1), torch.ones(2, 5, 6, dtype=torch.float64, device=device))
    assert ((z > 0).sum(1) == 5).all()
    bins = ab_bins(torch.float64, device)
    # The largest weight sits on the nearest bin; weights follow exp(-d^2 / 2 sigma^2).
    d2 = (ab.permute(0, 2, 3, 1).unsqueeze(-2) - bins).square().sum(-1)
    assert torch.equal(z.argmax(1), d2.argmin(-1))
    p = (0, slice(None), 2, 3)
    nz = z[p].nonzero().flatten()
    ratio = z[p][nz] / z[p][nz].max()
    torch.testing.assert_close(ratio, torch.exp(-(d2[0, 2, 3, nz] - d2[0, 2, 3, nz].min()) / 50.0))
    assert ((soft_encode(ab, neighbors=10) > 0).sum(1) == 10).all()
    assert torch.equal(nearest_bin(ab), d2.argmin(-1))


def test_nearest_bin_outside_the_grid(device):
    ab = torch.tensor([[[500.0, -3.0]], [[-500.0, 101.0]]], device=device).view(1, 2, 1, 2)
    bins = ab_bins(device=device)
    d2 = (ab.permute(0, 2, 3, 1).unsqueeze(-2) - bins).square().sum(-1)
    assert torch.equal(nearest_bin(ab), d2.argmin(-1))


def test_prior_of_a_synthetic_image():
    # Three flat colours covering 1/2, 1/4 and 1/4 of the image.
    colours = torch.tensor([[0.8, 0.2, 0.2], [0.2, 0.7, 0.3], [0.2, 0.3, 0.9]], dtype=torch.float64)
    image = torch.empty(1, 3, 8, 8, dtype=torch.float64)
    image[..., :4] = colours[0].view(3, 1, 1)
    image[..., :4, 4:] = colours[1].view(3, 1, 1)
    image[..., 4:, 4:] = colours[2].view(3, 1, 1)
    ab = rgb_to_lab(colours.view(1, 3, 3, 1))[:, 1:]
    q = nearest_bin(ab).flatten()
    raw = estimate_ab_prior(image, sigma=0)
    expected = torch.zeros(313, dtype=torch.float64)
    expected[q] = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    torch.testing.assert_close(raw, expected)
    smooth = estimate_ab_prior(image, sigma=5.0)
    bins = ab_bins(torch.float64)
    kernel = torch.exp(-torch.cdist(bins, bins).square() / 50.0)
    ref = kernel @ expected
    torch.testing.assert_close(smooth, ref / ref.sum())
    assert abs(float(smooth.sum()) - 1) < 1e-12 and (smooth[q] < expected[q]).all()
    # A folder of images and a list of paths give the same numbers as the tensor.
    assert smooth.argmax() == q[0]


def test_prior_from_folder(tmp_path):
    from perceptual_ext.data import save_image

    a, b = torch.rand(3, 16, 16), torch.rand(3, 8, 24)
    save_image(a, str(tmp_path / "a.png"))
    save_image(b, str(tmp_path / "b.png"))
    from perceptual_ext.data import load_image

    expected = estimate_ab_prior(load_image(str(tmp_path / "a.png")).unsqueeze(0), sigma=0) * 256 \
        + estimate_ab_prior(load_image(str(tmp_path / "b.png")).unsqueeze(0), sigma=0) * 192
    torch.testing.assert_close(estimate_ab_prior(str(tmp_path), sigma=0), expected / 448)
    torch.testing.assert_close(estimate_ab_prior([tmp_path / "a.png", tmp_path / "b.png"], sigma=0), expected / 448)
    with pytest.raises(ValueError, match="image folder not found"):
        estimate_ab_prior(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        estimate_ab_prior(str(tmp_path / "empty"))
    with pytest.raises(TypeError, match="images must be a tensor"):
        estimate_ab_prior(42)


def test_rebalance_weights():
    prior = torch.rand(313, dtype=torch.float64) ** 4
    prior /= prior.sum()
    w = rebalance_weights(prior, 0.5)
    torch.testing.assert_close((prior * w).sum(), torch.tensor(1.0, dtype=torch.float64))
    unnorm = 1 / (0.5 * prior + 0.5 / 313)
    torch.testing.assert_close(w / w[0], unnorm / unnorm[0])
    assert torch.equal(w.argmax(), prior.argmin())
    torch.testing.assert_close(rebalance_weights(prior, 1.0), torch.ones(313, dtype=torch.float64))


# ---- loss ---------------------------------------------------------------------------------

def composition_loss(logits, ab, weights, neighbors=5, sigma=5.0):
    """Per-sample loss from the plain pieces: soft_encode + log_softmax + v of the nearest bin."""
    z = soft_encode(ab.double(), neighbors, sigma)
    ce = -(z * torch.log_softmax(logits.double(), 1)).sum(1)
    v = 1.0 if weights is None else weights.double()[z.argmax(1)]
    return (v * ce).flatten(1).mean(1)


@pytest.mark.parametrize("with_prior", [False, True])
def test_loss_matches_composition(device, with_prior):
    prior = estimate_ab_prior(sample_image("coffee", size=32).unsqueeze(0)) if with_prior else None
    loss_fn = ColorizationLoss(prior=prior, reduction="none").to(device)
    logits = torch.randn(3, 313, 6, 5, dtype=torch.float64, device=device, requires_grad=True)
    ab = torch.randn(3, 2, 6, 5, dtype=torch.float64, device=device) * 35
    out = loss_fn(logits, ab)
    ref_logits = logits.detach().clone().requires_grad_(True)
    ref = composition_loss(ref_logits, ab, loss_fn.weights)
    assert out.shape == (3,)
    assert (out - ref).abs().max() <= 1e-8
    g = torch.rand(3, dtype=torch.float64, device=device)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    assert (logits.grad - ref_logits.grad).abs().max() <= 1e-8
    if with_prior:
        assert not torch.allclose(out, composition_loss(logits.detach(), ab, None))
    mean = ColorizationLoss(prior=prior).to(device)(logits, ab)
    torch.testing.assert_close(mean, ref.mean().detach())
    torch.testing.assert_close(colorization_loss(logits, ab, prior=prior, reduction="sum"), ref.sum().detach())


def test_loss_module_has_buffers_only_and_neighbors():
    prior = torch.full((313,), 1 / 313.0)
    loss_fn = ColorizationLoss(prior=prior, neighbors=10)
    assert list(loss_fn.parameters()) == []
    assert set(loss_fn.state_dict()) == {"bins", "weights"}
    torch.testing.assert_close(loss_fn.weights, torch.ones(313))  # a uniform prior does not reweight
    assert set(ColorizationLoss().state_dict()) == {"bins"}
    logits = torch.randn(1, 313, 3, 3, dtype=torch.float64)
    ab = torch.randn(1, 2, 3, 3, dtype=torch.float64) * 30
    torch.testing.assert_close(ColorizationLoss(neighbors=10, reduction="none")(logits, ab),
                               composition_loss(logits, ab, None, neighbors=10))
    assert ColorizationLoss()(torch.randn(0, 313, 4, 4), torch.randn(0, 2, 4, 4)) == 0


def test_loss_bad_input():
    loss_fn = ColorizationLoss()
    with pytest.raises(ValueError, match="logits must have 313 channels"):
        loss_fn(torch.randn(1, 312, 4, 4), torch.randn(1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"ab must be \[N, 2, H, W\]"):
        loss_fn(torch.randn(1, 313, 4, 4), torch.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"ab must be \[N, 2, H, W\] = \[1, 2, 4, 4\]"):
        loss_fn(torch.randn(1, 313, 4, 4), torch.randn(1, 2, 16, 16))
    with pytest.raises(ValueError, match="prior must be a probability distribution"):
        ColorizationLoss(prior=torch.rand(313) + 1)
    with pytest.raises(ValueError, match="prior must be a probability distribution"):
        ColorizationLoss(prior=torch.full((313,), -1.0 / 313) * -1 - 2 * (torch.arange(313) == 0) / 313)
    with pytest.raises(ValueError, match=r"prior must be a distribution over the 313 bins"):
        ColorizationLoss(prior=torch.full((100,), 0.01))
    with pytest.raises(ValueError, match="rebalance"):
        ColorizationLoss(prior=torch.full((313,), 1 / 313), rebalance=1.5)
    with pytest.raises(ValueError, match="reduction"):
        ColorizationLoss(reduction="avg")
    with pytest.raises(ValueError, match="neighbors must be at most"):
        ColorizationLoss(neighbors=40)


# ---- annealed mean ------------------------------------------------------------------------

def test_annealed_mean(device):
    logits = torch.randn(2, 313, 3, 4, dtype=torch.float64, device=device) * 2
    bins = ab_bins(torch.float64, device)
    mean = torch.einsum("nqhw,qc->nchw", torch.softmax(logits, 1), bins)
    torch.testing.assert_close(annealed_mean(logits, temperature=1.0), mean)
    mode = bins[logits.argmax(1)].permute(0, 3, 1, 2)
    torch.testing.assert_close(annealed_mean(logits, temperature=1e-4), mode)
    torch.testing.assert_close(annealed_mean(logits, temperature=0), mode)
    # Lower temperatures move toward the mode, monotonically in distance here.
    d = [(annealed_mean(logits, t) - mode).norm() for t in (1.0, 0.38, 0.1)]
    assert d[0] > d[1] > d[2]
    with pytest.raises(ValueError, match="temperature"):
        annealed_mean(logits, temperature=-1)
    with pytest.raises(ValueError, match="logits must have 313 channels"):
        annealed_mean(torch.randn(1, 10, 2, 2))


# ---- network and training -----------------------------------------------------------------

def test_network_shapes_and_errors():
    net = ColorizationNet(widths=(8, 16, 16), dilated=1)
    assert net(torch.rand(2, 1, 30, 17) * 100).shape == (2, 313, 8, 5)
    assert net.colorize(torch.rand(1, 1, 30, 17)).shape == (1, 3, 30, 17)
    with pytest.raises(ValueError, match=r"lightness must be \[N, 1, H, W\]"):
        net(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="widths"):
        ColorizationNet(widths=(8, 16))


def test_short_training_run_loss_falls():
    torch.manual_seed(0)
    images = torch.stack([sample_image(n, channels=3, size=32) for n in ("astronaut", "coffee", "chelsea",
                                                                         "rocket")])
    lab = rgb_to_lab(images)
    lightness, ab = lab[:, :1], F.avg_pool2d(lab[:, 1:], 4)
    loss_fn = ColorizationLoss(prior=estimate_ab_prior(images))
    net = ColorizationNet(widths=(8, 16, 32), dilated=1)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = loss_fn(net(lightness), ab)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3]), losses


# ---- trainer and command line -------------------------------------------------------------

TINY = dict(widths=(4, 8, 8), dilated=1, image_size=16, batch_size=2, sample_every=0, checkpoint_every=0,
            progress=False, device="cpu", samples=("coffee", "rocket"))


def test_trainer_checkpoint_prior_and_resume(tmp_path):
    from perceptual_ext.train import load_checkpoint, load_colorization_net, train_colorization

    full = train_colorization(None, out_dir=str(tmp_path / "full"), steps=4, **TINY)
    half = train_colorization(None, out_dir=str(tmp_path / "half"), steps=2, **TINY)
    resumed = train_colorization(None, out_dir=str(tmp_path / "half"), steps=4, resume=half["checkpoint"], **TINY)
    a, b = load_checkpoint(full["checkpoint"]), load_checkpoint(resumed["checkpoint"])
    assert a["task"] == "colorize" and a["history"] == b["history"] and len(b["history"]) == 4
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    prior = torch.tensor(a["train_config"]["prior"], dtype=torch.float64)
    expected = estimate_ab_prior([sample_image("coffee", channels=3), sample_image("rocket", channels=3)])
    torch.testing.assert_close(prior, expected)
    torch.testing.assert_close(full["prior"], expected)
    model, _ = load_colorization_net(full["checkpoint"])
    assert model.config == {"widths": [4, 8, 8], "dilated": 1, "norm": "batch"}
    assert model.colorize(torch.rand(1, 1, 12, 20)).shape == (1, 3, 12, 20)
    with pytest.raises(FileExistsError):
        train_colorization(None, out_dir=str(tmp_path / "full"), steps=1, **TINY)
    unbalanced = train_colorization(None, out_dir=str(tmp_path / "flat"), steps=1, prior=None, **TINY)
    assert unbalanced["prior"] is None and load_checkpoint(unbalanced["checkpoint"])["train_config"]["prior"] is None


def test_trainer_refuses_other_checkpoints(tmp_path):
    from perceptual_ext.train import load_colorization_net, train_sr

    sr = train_sr(None, 4, "mse", out_dir=str(tmp_path / "sr"), steps=1, channels=4, num_residual=1, image_size=16,
                  batch_size=1, samples=("coffee",), sample_every=0, progress=False, device="cpu")
    with pytest.raises(ValueError, match="not a colorization one"):
        load_colorization_net(sr["checkpoint"])


def test_cli_train_and_colorize(tmp_path, capsys):
    from perceptual_ext import cli
    from perceptual_ext.data import load_image, save_image

    images = tmp_path / "images"
    images.mkdir()
    for name in ("astronaut", "chelsea"):
        save_image(sample_image(name, channels=3, size=24), str(images / f"{name}.png"))
    run = str(tmp_path / "run")
    assert cli.main(["train-colorize", "--images", str(images), "--steps", "2", "--batch-size", "2",
                     "--image-size", "16", "--widths", "4", "8", "8", "--dilated", "1", "--workers", "0",
                     "--sample-every", "2", "--out-dir", run]) == 0
    assert "checkpoint:" in capsys.readouterr().out
    sample = load_image(os.path.join(run, "samples", "step_000002.png"))
    assert sample.shape == (3, 4 * 16, 4 * 16)  # rows: grey, T=0.38, T=1, ground truth
    ckpt = os.path.join(run, "checkpoint.pt")
    grey_png = str(tmp_path / "grey.png")
    save_image(sample_image("camera", channels=1, size=20), grey_png)
    out = str(tmp_path / "colour.png")
    assert cli.main(["colorize", "--model", ckpt, grey_png, "--out", out, "--temperature", "0.5"]) == 0
    assert load_image(out).shape == (3, 20, 20)
    assert cli.main(["colorize", "--model", ckpt, grey_png, "--out", out]) == 2
    assert "exists" in capsys.readouterr().err
    folder_out = str(tmp_path / "coloured")
    assert cli.main(["colorize", "--model", ckpt, str(images), "--out", folder_out]) == 0
    assert sorted(os.listdir(folder_out)) == ["astronaut.png", "chelsea.png"]


def test_ddp_two_processes_match_single_process(tmp_path):
    """2 gloo processes with batch 2 each == one process with batch 4 (no BatchNorm, plain SGD:
    see tests/test_feedforward.py for why)."""
    from perceptual_ext.data import save_image

    images = tmp_path / "images"
    images.mkdir()
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        save_image(sample_image(name, channels=3, size=24), str(images / f"{name}.png"))
    args = ["train-colorize", "--images", str(images), "--steps", "2", "--image-size", "16", "--widths", "4", "8", "8",
            "--dilated", "1", "--norm", "none", "--workers", "0", "--sample-every", "0", "--device", "cpu",
            "--optimizer", "sgd", "--lr", "0.05"]
    ddp, single = ddp_and_single_checkpoints(args, tmp_path, batch_per_process=2)
    np.testing.assert_allclose(ddp["history"], single["history"], rtol=1e-4)
    for key, value in single["state_dict"].items():
        torch.testing.assert_close(ddp["state_dict"][key], value, atol=2e-5, rtol=1e-4, msg=key)
