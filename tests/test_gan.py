"""GAN building blocks: pix2pix/CycleGAN networks, adversarial losses, gradient penalty, image pool, paired data."""
import os

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from perceptual_ext.data import (PairedImages, UnpairedImages, sample_pairs, save_image, split_aligned,
                                 write_sample_pairs)
from perceptual_ext.data.pairs import greyscale
from perceptual_ext.losses import GANLoss, gan_loss, gradient_penalty
from perceptual_ext.models import PatchDiscriminator, ResnetGenerator, UNetGenerator, build_gan_model
from perceptual_ext.train import ImagePool


# --------------------------------------------------------------------------- networks

def test_unet_shape_range_and_skips(device):
    g = UNetGenerator(num_downs=6, ngf=8).to(device)
    x = torch.rand(3, 3, 64, 64, device=device)
    y = g(x)
    assert y.shape == (3, 3, 64, 64)
    assert 0 <= y.min() and y.max() <= 1
    g2 = UNetGenerator(in_channels=1, out_channels=2, num_downs=5, ngf=4, norm="instance", dropout=False).to(device)
    assert g2(torch.rand(2, 1, 64, 96, device=device)).shape == (2, 2, 64, 96)
    # dropout 0.5 in the num_downs - 5 blocks outside the innermost one (three for the default 8)
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.5 for m in UNetGenerator(ngf=4).modules()) == 3
    assert not any(isinstance(m, nn.Dropout) for m in UNetGenerator(ngf=4, dropout=False).modules())


def test_resnet_generator_keeps_size(device):
    g = ResnetGenerator(ngf=4, n_blocks=2).to(device)
    for h, w in ((32, 32), (36, 20), (16, 44)):
        y = g(torch.rand(2, 3, h, w, device=device))
        assert y.shape == (2, 3, h, w)
        assert 0 <= y.min() and y.max() <= 1
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in g.modules()) == 2 + 2 * 2
    assert any(isinstance(m, nn.InstanceNorm2d) for m in g.modules())


def test_patch_discriminator_output_shape(device):
    d = PatchDiscriminator(in_channels=6, ndf=4).to(device)
    assert d(torch.rand(2, 6, 256, 256, device=device)).shape == (2, 1, 30, 30)
    d2 = PatchDiscriminator(3, ndf=4, n_layers=2, norm="none").to(device)
    assert d2(torch.rand(1, 3, 64, 64, device=device)).shape == (1, 1, 14, 14)


def test_reference_parameter_counts():
    # the reference implementation prints 54.414 M (unet_256), 11.378 M (resnet_9blocks), 2.769 M (basic D)
    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(UNetGenerator()) == 54_413_955
    assert count(ResnetGenerator()) == 11_378_179
    assert count(PatchDiscriminator()) == 2_768_705


def test_init_normal_002():
    torch.manual_seed(1)
    g = UNetGenerator(ngf=16)
    convs = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert abs(convs.std().item() - 0.02) < 2e-4 and abs(convs.mean().item()) < 2e-4
    for m in g.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None:
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
    bn = torch.cat([m.weight for m in g.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(bn.mean().item() - 1) < 0.005 and 0.01 < bn.std().item() < 0.03
    # a convolution followed by batch norm has no bias (as the reference); with instance norm it has one
    assert all(m.bias is None for m in PatchDiscriminator(ndf=4).model[2:3])
    assert PatchDiscriminator(ndf=4, norm="instance").model[2].bias is not None


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_patchgan_receptive_field_by_gradients(n_layers):
    torch.manual_seed(0)
    d = PatchDiscriminator(3, ndf=4, n_layers=n_layers, norm="batch").double().eval()
    size = 160
    x = torch.rand(1, 3, size, size, dtype=torch.float64, requires_grad=True)
    out = d(x)
    i, j = out.shape[-2] // 2, out.shape[-1] // 2  # an interior logit: its field lies inside the image
    (grad,) = torch.autograd.grad(out[0, 0, i, j], x)
    rows = torch.nonzero(grad.abs().sum((0, 1)).sum(1)).flatten()
    cols = torch.nonzero(grad.abs().sum((0, 1)).sum(0)).flatten()
    assert 0 < rows.min() and rows.max() < size - 1 and 0 < cols.min() and cols.max() < size - 1
    side_h, side_w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
    assert side_h == side_w == d.receptive_field == {1: 16, 2: 34, 3: 70}[n_layers]
    # and every pixel inside the square matters (LeakyReLU never zeroes a gradient)
    box = grad[0, :, rows.min():rows.max() + 1, cols.min():cols.max() + 1].abs().sum(0)
    assert (box > 0).float().mean() > 0.9


def test_network_bad_input():
    with pytest.raises(ValueError, match="multiples of 256"):
        UNetGenerator(ngf=4)(torch.rand(1, 3, 128, 128))
    with pytest.raises(ValueError, match="input must have 3 channels"):
        UNetGenerator(num_downs=5, ngf=4)(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="multiples of 4"):
        ResnetGenerator(ngf=4, n_blocks=1)(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match="input must be"):
        PatchDiscriminator(ndf=4)(torch.rand(6, 32, 32))
    with pytest.raises(ValueError, match="at least 24"):
        PatchDiscriminator(ndf=4)(torch.rand(1, 6, 16, 16))
    with pytest.raises(TypeError, match="input must be a real floating-point"):
        ResnetGenerator(ngf=4, n_blocks=1)(torch.zeros(1, 3, 32, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="norm must be one of"):
        UNetGenerator(norm="group")
    with pytest.raises(ValueError, match="num_downs must be >= 5"):
        UNetGenerator(num_downs=4)
    with pytest.raises(ValueError, match="model must be one of"):
        build_gan_model("Generator")


# --------------------------------------------------------------------------- losses

def _plain(mode, d, real, for_d):
    """Each loss written from its formula, elementwise, in float64."""
    d = d.double()
    if mode == "vanilla":
        return -torch.log(torch.sigmoid(d)) if real else -torch.log(1 - torch.sigmoid(d))
    if mode == "lsgan":
        return (d - 1) ** 2 if real else d ** 2
    if mode == "wgangp":
        return -d if real else d
    if for_d:
        return torch.clamp(1 - d, min=0) if real else torch.clamp(1 + d, min=0)
    return -d


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "hinge", "wgangp"])
def test_gan_loss_formulas(mode, device):
    d = (torch.randn(3, 1, 7, 5, device=device) * 2)
    cases = [(True, True), (False, True), (True, False)]
    for real, for_d in cases:
        expected = _plain(mode, d, real, for_d)
        for reduction, reduce in (("mean", torch.mean), ("sum", torch.sum), ("none", lambda t: t)):
            got = GANLoss(mode, reduction=reduction)(d, real, for_discriminator=for_d)
            torch.testing.assert_close(got.double(), reduce(expected), rtol=1e-5, atol=1e-6)
            assert got.dtype == d.dtype
        assert torch.equal(gan_loss(d, real, mode, for_discriminator=for_d), GANLoss(mode)(d, real, for_d))


def test_gan_loss_matches_torch_criteria():
    d = torch.randn(4, 1, 30, 30)
    torch.testing.assert_close(GANLoss("vanilla")(d, True), F.binary_cross_entropy_with_logits(d, torch.ones_like(d)))
    torch.testing.assert_close(GANLoss("vanilla")(d, False), F.binary_cross_entropy_with_logits(d, torch.zeros_like(d)))
    torch.testing.assert_close(GANLoss("lsgan")(d, True), F.mse_loss(d, torch.ones_like(d)))
    torch.testing.assert_close(GANLoss("lsgan")(d, False), F.mse_loss(d, torch.zeros_like(d)))
    # vanilla stays finite on saturated logits, where log(sigmoid) would not
    big = torch.tensor([-200.0, 200.0], requires_grad=True)
    value = GANLoss("vanilla")(big, True)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(big.grad).all()
    assert GANLoss("vanilla")(torch.zeros(0), True).item() == 0
    half = GANLoss("lsgan")(d.half(), True)
    assert half.dtype == torch.float16


def test_gan_loss_bad_input():
    with pytest.raises(ValueError, match="mode must be one of"):
        GANLoss("wgan")
    with pytest.raises(ValueError, match="reduction must be one of"):
        GANLoss(reduction="avg")
    with pytest.raises(TypeError, match="target_is_real must be a bool"):
        GANLoss()(torch.zeros(2), 1)
    with pytest.raises(TypeError, match="prediction must be a torch.Tensor"):
        GANLoss()([0.5], True)
    with pytest.raises(ValueError, match="generator's hinge loss"):
        GANLoss("hinge")(torch.zeros(2), False)


def test_gradient_penalty_of_linear_critic_is_norm_minus_one_squared():
    for scale in (0.1, 1.0, 3.0):
        w = torch.randn(1, 3, 6, 6, dtype=torch.float64) * scale / 18
        def critic(x, w=w):
            return (x * w).flatten(1).sum(1)  # gradient w at every x

        real, fake = torch.rand(5, 3, 6, 6, dtype=torch.float64), torch.rand(5, 3, 6, 6, dtype=torch.float64)
        for weight in (1.0, 10.0):
            gp = gradient_penalty(critic, real, fake, weight=weight)
            torch.testing.assert_close(gp, weight * (w.norm() - 1) ** 2, rtol=1e-9, atol=1e-12)


def test_gradient_penalty_nonlinear_reference_and_backprop():
    torch.manual_seed(0)
    d = PatchDiscriminator(6, ndf=4, norm="none").double()
    cond = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    real, fake = torch.rand(2, 3, 32, 32, dtype=torch.float64), torch.rand(2, 3, 32, 32, dtype=torch.float64)
    def critic(y):  # a conditional D
        return d(torch.cat([cond, y], 1))

    gp = gradient_penalty(critic, real, fake, weight=10.0, generator=torch.Generator().manual_seed(5))
    # plain reference: same alphas, per-sample gradient norms one sample at a time
    alpha = torch.rand((2, 1, 1, 1), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    terms = []
    for n in range(2):
        x = (alpha[n] * real[n] + (1 - alpha[n]) * fake[n])[None].requires_grad_(True)
        (g,) = torch.autograd.grad(d(torch.cat([cond[n:n + 1], x], 1)).sum(), x)
        terms.append((g.norm() - 1) ** 2)
    torch.testing.assert_close(gp, 10.0 * torch.stack(terms).mean(), rtol=1e-9, atol=1e-12)
    gp.backward()  # create_graph: the penalty trains D
    weights = [m.weight for m in d.modules() if isinstance(m, nn.Conv2d)]  # biases do not move ∇x D
    assert all(w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0 for w in weights)


def test_gradient_penalty_bad_input():
    def critic(x):
        return x.sum((1, 2, 3))

    with pytest.raises(ValueError, match="real and fake must have the same shape"):
        gradient_penalty(critic, torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 5))
    with pytest.raises(TypeError, match="discriminator must be callable"):
        gradient_penalty("D", torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4))
    with pytest.raises(ValueError, match="weight must be a number >= 0"):
        gradient_penalty(critic, torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4), weight=-1.0)
    with pytest.raises(ValueError, match="does not depend on its input"):
        gradient_penalty(lambda x: torch.zeros(2), torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4))
    with pytest.raises(ValueError, match="non-empty batch"):
        gradient_penalty(critic, torch.rand(0, 3, 4, 4), torch.rand(0, 3, 4, 4))


# --------------------------------------------------------------------------- image pool

def test_image_pool_size_zero_returns_input():
    x = torch.rand(3, 3, 4, 4)
    assert ImagePool(0).query(x) is x


def test_image_pool_semantics():
    pool = ImagePool(4, seed=3)
    first = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 2, 2).requires_grad_(True)
    out = pool.query(first * 1)  # fills the pool: returned as given, stored detached
    assert torch.equal(out, first) and not out.requires_grad and len(pool) == 4
    stored = {float(im[0, 0, 0]) for im in pool.images}
    assert stored == {0.0, 1.0, 2.0, 3.0}
    swapped = kept = 0
    for step in range(1000):
        new = 100.0 + step
        before = [float(im[0, 0, 0]) for im in pool.images]
        got = float(pool.query(torch.full((1, 1, 2, 2), new))[0, 0, 0, 0])
        after = [float(im[0, 0, 0]) for im in pool.images]
        if got == new:
            kept += 1
            assert after == before  # a returned new image is not stored
        else:
            swapped += 1  # an old one comes back; the new one takes its slot
            slot = before.index(got)
            assert after == before[:slot] + [new] + before[slot + 1:]
    # a batch goes through the same draws image by image
    a, b = ImagePool(3, seed=9), ImagePool(3, seed=9)
    for _ in range(6):
        x = torch.rand(4, 1, 2, 2)
        assert torch.equal(a.query(x), torch.cat([b.query(im[None]) for im in x]))
    assert 0.46 < swapped / (swapped + kept) < 0.54  # each image swapped with probability 1/2 (seeded)


def test_image_pool_state_resumes_exactly():
    a, b = ImagePool(3, seed=1), ImagePool(3, seed=7)
    for _ in range(5):
        a.query(torch.rand(2, 3, 4, 4))
    b.load_state_dict(a.state_dict())
    for _ in range(5):
        x = torch.rand(2, 3, 4, 4)
        assert torch.equal(a.query(x), b.query(x))


def test_image_pool_bad_input():
    with pytest.raises(ValueError, match="size must be >= 0"):
        ImagePool(-1)
    pool = ImagePool(2)
    pool.query(torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match="like the pooled ones"):
        pool.query(torch.rand(1, 3, 8, 8))
    with pytest.raises(TypeError, match="images must be a torch.Tensor"):
        pool.query([1, 2])
    with pytest.raises(ValueError, match="has size 2, this pool 3"):
        ImagePool(3).load_state_dict(pool.state_dict())


# --------------------------------------------------------------------------- data

def _write(path, tensor):
    save_image(tensor, path)
    return path


def test_builtin_pairs():
    edges = sample_pairs("edges", 64)
    grey = sample_pairs("grey", 64)
    assert len(edges) == 10 and len(grey) == 4
    for _, a, b in edges:
        assert a.shape == b.shape == (3, 64, 64)
        assert set(torch.unique(a).tolist()) == {0.0, 1.0} and 0.4 < a.mean() < 1  # black lines on white
    for _, a, b in grey:
        assert torch.equal(a, greyscale(b)) and not torch.equal(a, b)


def test_paired_aligned_folder_jitter_and_direction(tmp_path):
    torch.manual_seed(0)
    images = {}
    for name in ("x", "y", "z"):
        a = torch.rand(3, 40, 40)
        images[name] = a
        # B is A with the channels reversed: any shared jitter keeps B == flip_channels(A)
        _write(str(tmp_path / f"{name}.png"), torch.cat([a, a.flip(0)], -1))
    ds = PairedImages(str(tmp_path), load_size=36, crop_size=32, seed=3)
    assert len(ds) == 3 and ds.layout == "aligned"
    for key in ((0, 0), (1, 0), (2, 5), (0, 1)):
        item = ds[key]
        assert item["A"].shape == item["B"].shape == (3, 32, 32)
        torch.testing.assert_close(item["B"], item["A"].flip(0))
        assert torch.equal(ds[key]["A"], item["A"])  # a pure function of the key
    assert not torch.equal(ds[(0, 0)]["A"], ds[(0, 7)]["A"])  # other epochs jitter differently
    back = PairedImages(str(tmp_path), load_size=36, crop_size=32, seed=3, direction="BtoA")
    assert torch.equal(back[(1, 2)]["A"], ds[(1, 2)]["B"])
    a, b = split_aligned(torch.rand(3, 4, 9))
    assert a.shape == b.shape == (3, 4, 4)


def test_paired_two_folders_match_by_name(tmp_path):
    for name in ("p", "q"):
        img = torch.rand(3, 24, 24)
        _write(str(tmp_path / "A" / f"{name}.png"), img)
        _write(str(tmp_path / "B" / f"{name}.jpg" if name == "q" else tmp_path / "B" / f"{name}.png"), 1 - img)
    ds = PairedImages(str(tmp_path / "A"), str(tmp_path / "B"), load_size=None, crop_size=24, flip=False)
    assert ds.names == ["p", "q"] and ds.layout == "folders"
    item = ds[0]
    torch.testing.assert_close(item["B"], 1 - item["A"], atol=1 / 255 + 1e-6, rtol=0)
    _write(str(tmp_path / "B" / "r.png"), torch.rand(3, 24, 24))
    message = r"mismatched pairs: 0 image\(s\) of folder .* 1 of folder_b none in folder \['r'\]"
    with pytest.raises(ValueError, match=message):
        PairedImages(str(tmp_path / "A"), str(tmp_path / "B"), crop_size=16)


def test_unpaired_and_builtin(tmp_path):
    for i in range(3):
        _write(str(tmp_path / "A" / f"{i}.png"), torch.rand(3, 20, 20))
    for i in range(5):
        _write(str(tmp_path / "B" / f"{i}.png"), torch.rand(3, 30, 30))
    ds = UnpairedImages(str(tmp_path / "A"), str(tmp_path / "B"), load_size=None, crop_size=16)
    assert len(ds) == 5
    item = ds[(4, 2)]
    assert item["A"].shape == item["B"].shape == (3, 16, 16)
    assert torch.equal(ds[(4, 2)]["B"], item["B"])
    builtin = UnpairedImages(builtin="grey", builtin_size=64, load_size=40, crop_size=32)
    assert len(builtin) == 4 and builtin[0]["A"].shape == (3, 32, 32)
    paired = PairedImages(builtin="grey", builtin_size=64, load_size=None, crop_size=64, flip=False)
    assert torch.equal(paired[0]["A"], greyscale(paired[0]["B"]))


def test_write_sample_pairs(tmp_path):
    paths = write_sample_pairs(str(tmp_path / "aligned"), "grey", size=32)
    assert len(paths) == 4
    ds = PairedImages(str(tmp_path / "aligned"), load_size=None, crop_size=32, flip=False)
    assert ds[0]["A"].shape == (3, 32, 32)
    with pytest.raises(FileExistsError, match="exists"):
        write_sample_pairs(str(tmp_path / "aligned"), "grey", size=32)
    write_sample_pairs(str(tmp_path / "two"), "edges", size=32, layout="folders")
    two = PairedImages(str(tmp_path / "two" / "A"), str(tmp_path / "two" / "B"), load_size=None, crop_size=32)
    assert len(two) == 10


def test_data_bad_input(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="holds no images"):
        PairedImages(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="image folder not found"):
        UnpairedImages(str(tmp_path / "missing"), str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="give both folder_a and folder_b"):
        UnpairedImages(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="load_size must be >= crop_size"):
        PairedImages(load_size=100, crop_size=128)
    with pytest.raises(ValueError, match="direction must be one of"):
        PairedImages(direction="AB")
    with pytest.raises(ValueError, match="kind must be one of"):
        sample_pairs("sketch")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not a png")
    _write(str(bad / "fine.png"), torch.rand(3, 16, 32))
    with pytest.warns(RuntimeWarning, match="skipping unreadable image"):
        ds = PairedImages(str(bad), load_size=None, crop_size=16)
    assert len(ds) == 1 and len(ds.skipped) == 1
    os.remove(bad / "fine.png")
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="no readable images"):
        PairedImages(str(bad), crop_size=16)
