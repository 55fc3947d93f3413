"""Feed-forward networks (Johnson et al.): models, datasets, trainers, resume, DDP, CLI."""
import glob
import json
import os
import warnings

import numpy as np
import pytest
import torch
from _helpers import ddp_and_single_checkpoints

from perceptual_ext import cli
from perceptual_ext.data import (COLOUR_SAMPLES, SAMPLE_IMAGES, ImageCrops, StepSampler, load_image, sample_image,
                                  save_image, upsample_bicubic)
from perceptual_ext.models import SRCNN, StyleTransformNet, SuperResolutionNet
from perceptual_ext.train import load_checkpoint, load_transform_net, train_sr, train_style
from perceptual_ext.train import checkpoint as train_checkpoint

TINY_SR = dict(channels=8, num_residual=1, image_size=32, batch_size=2, sample_every=0, checkpoint_every=0,
               progress=False, device="cpu")


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    """Five small RGB PNGs cut from the scikit-image samples."""
    folder = tmp_path_factory.mktemp("images")
    for name in ("astronaut", "coffee", "chelsea", "rocket", "brick"):
        save_image(sample_image(name, channels=3, size=48), str(folder / f"{name}.png"))
    return str(folder)


def test_colour_samples_and_the_motorcycle():
    """COLOUR_SAMPLES are the bundled colour photographs (channels differ), all of SAMPLE_IMAGES;
    "motorcycle" is the left view of scikit-image's stereo pair, and crops of it are cached copies."""
    import skimage.data

    assert set(COLOUR_SAMPLES) <= set(SAMPLE_IMAGES) and "motorcycle" in COLOUR_SAMPLES
    for name in COLOUR_SAMPLES:
        image = sample_image(name)
        assert image.shape[0] == 3 and not torch.equal(image[0], image[1]), name
    left = torch.from_numpy(skimage.data.stereo_motorcycle()[0]).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(sample_image("motorcycle"), left)
    crops = ImageCrops(None, 32, samples=("motorcycle",), seed=0)
    first = crops[(0, 0)]["image"]
    first.mul_(0)  # the caller owns its crop: the decoded sample behind it stays intact
    fresh = ImageCrops(None, 32, samples=("motorcycle",), seed=0)[(0, 0)]["image"]
    torch.testing.assert_close(crops[(0, 0)]["image"], fresh)
    assert crops[(0, 0)]["image"].abs().sum() > 0


# --------------------------------------------------------------------------- models

@pytest.mark.parametrize("upsample", ["deconv", "pixelshuffle", "nearest"])
@pytest.mark.parametrize("scale", [4, 8])
def test_superresolution_shapes(scale, upsample):
    net = SuperResolutionNet(scale, channels=8, num_residual=2, upsample=upsample)
    y = net(torch.rand(2, 3, 5, 7))
    assert y.shape == (2, 3, 5 * scale, 7 * scale)
    assert 0 <= y.min() and y.max() <= 1
    assert SRCNN(scale, channels=8)(torch.rand(1, 3, 5, 7)).shape == (1, 3, 5 * scale, 7 * scale)


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_style_net_shapes_any_size(norm):
    net = StyleTransformNet(channels=8, num_residual=1, norm=norm)
    for h, w in ((16, 16), (18, 23)):
        y = net(torch.rand(2, 3, h, w))
        assert y.shape == (2, 3, h, w)
        assert 0 <= y.min() and y.max() <= 1


def test_paper_architecture():
    net = StyleTransformNet()
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in net.modules()) == 3 + 2 * 5 + 2
    assert len(net.residuals) == 5
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert [c.kernel_size[0] for c in convs] == [9, 3, 3] + [3] * 10 + [3, 3, 9]
    assert [c.out_channels for c in convs][:3] == [32, 64, 128]
    sr = SuperResolutionNet(8)
    assert len(sr.upsample) == 3 and len(sr.residuals) == 4


def test_model_bad_input():
    with pytest.raises(ValueError, match=r"input must be \[N, 3, H, W\]"):
        SuperResolutionNet(4)(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="3 channels"):
        StyleTransformNet()(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="power of two"):
        SuperResolutionNet(6)
    with pytest.raises(ValueError, match="upsample must be one of"):
        SuperResolutionNet(4, upsample="bilinear")


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
@pytest.mark.parametrize("scale", [4, 8])
def test_residual_sr_starts_at_bicubic(scale, norm):
    torch.manual_seed(0)
    net = SuperResolutionNet(scale, channels=8, num_residual=2, norm=norm, residual=True)
    assert net.config["residual"] is True and SuperResolutionNet(scale).config["residual"] is False
    # Values outside [0, 1] after bicubic overshoot (sharp 0/1 edges) are clamped like the baseline's.
    x = torch.rand(2, 3, 5, 7).round()
    bicubic = upsample_bicubic(x, scale)
    assert bicubic.shape == (2, 3, 5 * scale, 7 * scale)
    for mode in (net.train, net.eval):
        mode()
        y = net(x)
        assert y.shape == (2, 3, 5 * scale, 7 * scale)
        assert torch.equal(y, bicubic)
    # The plain net with the same seed is not bicubic: the option changes only the output stage.
    torch.manual_seed(0)
    plain = SuperResolutionNet(scale, channels=8, num_residual=2, norm=norm)
    assert (plain.eval()(x) - bicubic).abs().max() > 1e-2
    with pytest.raises(ValueError, match="residual must be a bool"):
        SuperResolutionNet(scale, residual=1)


@pytest.mark.parametrize("channels,num_residual", [(8, 1), (64, 4)])
def test_residual_sr_one_step_decreases_loss(channels, num_residual):
    """One Adam step at the trainers' default lr improves on bicubic (textured crops, where it has room),
    also for the paper-sized net: the 0.1 output factor keeps Adam's first step from overshooting."""
    torch.manual_seed(0)
    data = ImageCrops(None, 32, samples=("brick", "grass", "gravel"), scale=4)
    batch = torch.utils.data.default_collate([data[i] for i in range(3)])
    net = SuperResolutionNet(4, channels=channels, num_residual=num_residual, residual=True)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    before = torch.nn.functional.mse_loss(net(batch["lr"]), batch["image"])
    assert before == torch.nn.functional.mse_loss(upsample_bicubic(batch["lr"], 4), batch["image"])
    before.backward()
    assert net.head[1].weight.grad.abs().sum() > 0  # the zero weights still receive a gradient
    opt.step()
    with torch.no_grad():
        after = torch.nn.functional.mse_loss(net(batch["lr"]), batch["image"])
    assert after < before


def test_residual_checkpoint_round_trip(tmp_path):
    common = dict(samples=("astronaut", "coffee"), **TINY_SR)
    result = train_sr(None, 8, "mse", out_dir=str(tmp_path / "a"), steps=2, residual=True, **common)
    ckpt = load_checkpoint(result["checkpoint"])
    assert ckpt["model"]["config"]["residual"] is True and ckpt["train_config"]["residual"] is True
    model, _ = load_transform_net(result["checkpoint"])
    assert model.residual is True and model.config == result["model"].config
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        assert torch.equal(model(x), result["model"](x))
        assert model(x).shape == (1, 3, 48, 40)
    # Resuming needs the same option; a plain net is refused.
    resumed = train_sr(None, 8, "mse", out_dir=str(tmp_path / "a"), steps=3, residual=True,
                       resume=result["checkpoint"], **common)
    assert len(resumed["history"]) == 3
    with pytest.raises(ValueError, match="model config"):
        train_sr(None, 8, "mse", out_dir=str(tmp_path / "b"), steps=3, resume=result["checkpoint"], **common)
    with pytest.raises(ValueError, match="johnson"):
        train_sr(None, 4, "mse", model="srcnn", out_dir=str(tmp_path / "c"), steps=1, residual=True, **common)
    # A checkpoint written before the option existed (no "residual" key) loads and resumes as a plain net.
    plain = train_sr(None, 4, "mse", out_dir=str(tmp_path / "old"), steps=1, **common)
    old = load_checkpoint(plain["checkpoint"])
    del old["model"]["config"]["residual"]
    train_checkpoint.save_checkpoint(old, plain["checkpoint"])
    assert load_transform_net(plain["checkpoint"])[0].residual is False
    assert len(train_sr(None, 4, "mse", out_dir=str(tmp_path / "old"), steps=2, resume=plain["checkpoint"],
                        **common)["history"]) == 2


# --------------------------------------------------------------------------- data

def test_step_sampler_matches_single_process_and_resumes():
    def take(sampler, steps, batch):
        it = iter(sampler)
        return [[next(it) for _ in range(batch)] for _ in range(steps)]

    single = take(StepSampler(7, 4, seed=3), 5, 4)
    ranks = [take(StepSampler(7, 2, rank=r, world_size=2, seed=3), 5, 2) for r in range(2)]
    for step in range(5):
        assert sorted(single[step]) == sorted(ranks[0][step] + ranks[1][step])
    assert take(StepSampler(7, 4, seed=3, start_step=3), 2, 4) == single[3:]


def test_sr_pairs_are_deterministic():
    data = ImageCrops(None, 32, samples=("astronaut", "coffee"), seed=1, scale=4)
    a, b = data[(1, 5)], data[(1, 5)]
    assert a["image"].shape == (3, 32, 32) and a["lr"].shape == (3, 8, 8)
    assert torch.equal(a["image"], b["image"]) and not torch.equal(a["image"], data[(1, 6)]["image"])


def test_corrupt_images_skipped_and_counted(tmp_path, image_dir):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in sorted(os.listdir(image_dir))[:3]:
        (folder / name).write_bytes(open(os.path.join(image_dir, name), "rb").read())
    (folder / "garbage.png").write_bytes(b"not an image at all")
    png = (folder / "astronaut.png").read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])  # PNG CRCs: caught when listing
    from PIL import Image
    import io

    jpeg = io.BytesIO()
    coffee = sample_image("coffee", channels=3, size=48).mul(255).byte().permute(1, 2, 0).numpy()
    Image.fromarray(coffee).save(jpeg, "JPEG")
    (folder / "zz_truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])  # fails only to decode
    with pytest.warns(RuntimeWarning, match="skipping unreadable image"):
        data = ImageCrops(str(folder), 16)
    assert sorted(os.path.basename(p) for p, _ in data.skipped) == ["garbage.png", "truncated.png"]
    assert len(data) == 4
    with pytest.warns(RuntimeWarning, match="failed to decode"):
        item = data[(3, 0)]  # zz_truncated.jpg: replaced by the next image (index 0), counted
    assert item["failures"] == 1 and item["image"].shape == (3, 16, 16)
    # A whole run, decoding in a DataLoader worker: no crash, both counts reported (2 steps x 2 = one epoch).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train_sr(str(folder), 4, "mse", out_dir=str(tmp_path / "run"), steps=2, num_workers=1,
                          **{**TINY_SR, "image_size": 16})
    assert result["skipped_files"] == 2 and result["failed_loads"] == 1
    assert load_checkpoint(result["checkpoint"])["skipped_files"][0].endswith("garbage.png")


# --------------------------------------------------------------------------- training

def test_one_step_decreases_loss():
    torch.manual_seed(0)
    data = ImageCrops(None, 32, samples=("astronaut", "coffee"), scale=4)
    batch = torch.utils.data.default_collate([data[i] for i in range(2)])
    for net, x, target in ((SuperResolutionNet(4, channels=8, num_residual=1), batch["lr"], batch["image"]),
                           (StyleTransformNet(channels=8, num_residual=1), batch["image"], batch["image"])):
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        before = torch.nn.functional.mse_loss(net(x), target)
        before.backward()
        opt.step()
        with torch.no_grad():
            after = torch.nn.functional.mse_loss(net(x), target)
        assert after < before


def test_checkpoint_round_trip(tmp_path):
    result = train_sr(None, 4, "l1", out_dir=str(tmp_path), steps=2, samples=("astronaut",),
                      **{**TINY_SR, "sample_every": 1})
    ckpt = load_checkpoint(result["checkpoint"])
    assert ckpt["step"] == 2 and len(ckpt["history"]) == 2 and ckpt["task"] == "sr"
    assert set(ckpt["rng"]) >= {"torch", "numpy", "python", "loss_generators"}
    model, _ = load_transform_net(result["checkpoint"])
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), result["model"](x))
    assert sorted(os.listdir(tmp_path / "samples")) == ["step_000001.png", "step_000002.png"]
    assert not glob.glob(str(tmp_path / ".tmp-*"))
    # rows: bicubic, model, HR
    assert load_image(str(tmp_path / "samples" / "step_000002.png")).shape == (3, 3 * 32, 4 * 32)
    with pytest.raises(FileExistsError, match="checkpoint.pt exists"):
        train_sr(None, 4, "l1", out_dir=str(tmp_path), steps=2, samples=("astronaut",), **TINY_SR)
    with pytest.raises(ValueError, match="not a perceptual_ext feed-forward checkpoint"):
        torch.save({"x": 1}, str(tmp_path / "other.pt"))
        load_checkpoint(str(tmp_path / "other.pt"))


def test_resume_equals_uninterrupted_run(tmp_path):
    common = dict(samples=("astronaut", "coffee", "rocket"), norm="batch", **TINY_SR)
    full = train_sr(None, 4, "mse", out_dir=str(tmp_path / "full"), steps=6, **common)
    half = train_sr(None, 4, "mse", out_dir=str(tmp_path / "half"), steps=3, **common)
    resumed = train_sr(None, 4, "mse", out_dir=str(tmp_path / "half"), steps=6, resume=half["checkpoint"], **common)
    a, b = load_checkpoint(full["checkpoint"]), load_checkpoint(resumed["checkpoint"])
    assert a["history"] == b["history"] and len(b["history"]) == 6
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for key, value in a["optimizer"]["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(value[name], b["optimizer"]["state"][key][name])
    # Resuming a style checkpoint as an SR run is refused.
    style = train_style("brick", None, style_loss="mse", content_loss="l1", out_dir=str(tmp_path / "style"), steps=1,
                        samples=("coffee",), channels=8, num_residual=1, image_size=16, batch_size=1,
                        sample_every=0, progress=False, device="cpu")
    with pytest.raises(ValueError, match="is a 'style' run"):
        train_sr(None, 4, "mse", out_dir=str(tmp_path / "x"), steps=2, resume=style["checkpoint"], **common)


def test_loss_generator_state_round_trip():
    class RandomFeatures(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.generator = torch.Generator().manual_seed(5)

    loss = torch.nn.Sequential(RandomFeatures())
    state = train_checkpoint.rng_state(loss)
    first = torch.rand(3, generator=loss[0].generator), torch.rand(3), np.random.rand()
    train_checkpoint.set_rng_state(state, loss)
    second = torch.rand(3, generator=loss[0].generator), torch.rand(3), np.random.rand()
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1]) and first[2] == second[2]


def test_ddp_two_processes_match_single_process(tmp_path, image_dir):
    """2 gloo processes with batch 2 each == one process with batch 4 over the same samples.

    Plain SGD, because Adam normalizes each step: where a weight's gradient is near zero, the
    rounding of two averaged half-batch gradients and of one full-batch gradient can differ in
    sign, and Adam turns that into a ±lr step (seen on some machines). SGD moves each weight by
    lr·gradient, so the comparison checks the gradient averaging itself.
    """
    args = ["train-sr", "--images", image_dir, "--scale", "4", "--loss", "mse", "--norm", "none", "--steps", "2",
            "--image-size", "16", "--workers", "0", "--sample-every", "0", "--device", "cpu",
            "--optimizer", "sgd", "--lr", "0.05"]
    ddp, single = ddp_and_single_checkpoints(args, tmp_path, batch_per_process=2)
    np.testing.assert_allclose(ddp["history"], single["history"], rtol=1e-4)
    for key, value in single["state_dict"].items():
        torch.testing.assert_close(ddp["state_dict"][key], value, atol=2e-5, rtol=1e-4, msg=key)
    assert sorted(os.listdir(tmp_path / "ddp")) == ["checkpoint.pt"]  # rank 0 only, no stray temp files


# --------------------------------------------------------------------------- command line

def test_cli_end_to_end(tmp_path, image_dir, capsys):
    sr_dir, style_dir = str(tmp_path / "sr"), str(tmp_path / "style")
    assert cli.main(["train-sr", "--images", image_dir, "--scale", "4", "--steps", "2", "--batch-size", "2",
                     "--image-size", "16", "--workers", "0", "--sample-every", "1", "--out-dir", sr_dir]) == 0
    sr_ckpt = os.path.join(sr_dir, "checkpoint.pt")
    small = tmp_path / "small"
    small.mkdir()
    for i, size in enumerate((8, 8, 6)):
        save_image(torch.rand(3, size, size + 2), str(small / f"img{i}.png"))
    out_dir = str(tmp_path / "big")
    assert cli.main(["superres", "--model", sr_ckpt, str(small), "--out", out_dir, "--batch-size", "2"]) == 0
    assert sorted(os.listdir(out_dir)) == ["img0.png", "img1.png", "img2.png"]
    assert load_image(os.path.join(out_dir, "img2.png")).shape == (3, 24, 32)
    before = open(os.path.join(out_dir, "img0.png"), "rb").read()
    assert cli.main(["superres", "--model", sr_ckpt, str(small), "--out", out_dir]) == 2
    assert "exists" in capsys.readouterr().err
    assert open(os.path.join(out_dir, "img0.png"), "rb").read() == before
    assert cli.main(["superres", "--model", sr_ckpt, str(small), "--out", out_dir, "--overwrite"]) == 0
    assert load_checkpoint(sr_ckpt)["model"]["config"]["residual"] is False
    res_dir = str(tmp_path / "sr-residual")
    assert cli.main(["train-sr", "--images", image_dir, "--residual", "--steps", "1", "--batch-size", "2",
                     "--image-size", "16", "--workers", "0", "--sample-every", "0", "--out-dir", res_dir]) == 0
    assert load_checkpoint(os.path.join(res_dir, "checkpoint.pt"))["model"]["config"]["residual"] is True

    assert cli.main(["train-style", "brick", "--content", image_dir, "--style-loss", "mse", "--content-loss", "l1",
                     "--steps", "2", "--batch-size", "2", "--image-size", "16", "--workers", "0",
                     "--out-dir", style_dir]) == 0
    style_ckpt = os.path.join(style_dir, "checkpoint.pt")
    one = str(small / "img2.png")
    assert cli.main(["stylize", "--model", style_ckpt, one, "--out", str(tmp_path / "s.png")]) == 0
    assert load_image(str(tmp_path / "s.png")).shape == (3, 6, 8)

    # bad paths and mismatched checkpoints: exit code 2 with one line on stderr
    capsys.readouterr()
    for argv in (["superres", "--model", sr_ckpt, str(tmp_path / "missing.png"), "--out", "x.png"],
                 ["superres", "--model", str(tmp_path / "missing.pt"), one, "--out", "x.png"],
                 ["stylize", "--model", sr_ckpt, one, "--out", str(tmp_path / "t.png")],
                 ["train-sr", "--images", str(tmp_path / "nowhere")],
                 ["train-style", str(tmp_path / "nostyle.png"), "--steps", "1", "--out-dir", str(tmp_path / "st2")],
                 ["eval-sr", "--checkpoint", sr_ckpt, "--images", str(tmp_path / "nowhere")]):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("perceptual-ext ") and "error:" in err and "Traceback" not in err


def test_eval_sr(tmp_path):
    image_dir = tmp_path / "hr"
    image_dir.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        save_image(sample_image(name, channels=3, size=64), str(image_dir / f"{name}.png"))
    image_dir = str(image_dir)
    result = train_sr(image_dir, 4, "mse", out_dir=str(tmp_path / "sr"), steps=1, **TINY_SR)
    json_path = str(tmp_path / "eval.json")
    assert cli.main(["eval-sr", "--checkpoint", result["checkpoint"], "--images", image_dir, "--json", json_path]) == 0
    data = json.load(open(json_path))
    assert data["images"] == 3 and set(data["methods"]) == {"bicubic", "model"}
    assert all(np.isfinite(v) for m in data["methods"].values() for v in m.values())
    # The bicubic PSNR column against an independent computation.
    expected = []
    for path in sorted(glob.glob(os.path.join(image_dir, "*.png"))):
        hr = load_image(path)[None]
        lr = torch.nn.functional.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1)
        up = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic").clamp(0, 1)
        expected.append(10 * np.log10(1.0 / float(((up - hr) ** 2).double().mean())))
    assert abs(data["methods"]["bicubic"]["psnr"] - np.mean(expected)) < 1e-3
    assert cli.main(["eval-sr", "--checkpoint", result["checkpoint"], "--images", image_dir, "--json", json_path]) == 2


def test_empty_image_and_checkpoint_without_weights_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"input must be at least 1x1 pixels, got shape \(1, 3, 0, 0\)"):
        StyleTransformNet(channels=8, num_residual=1)(torch.rand(1, 3, 0, 0))
    path = str(tmp_path / "no_weights.pt")
    train_checkpoint.save_checkpoint({"format": train_checkpoint.CHECKPOINT_FORMAT, "task": "style", "step": 3,
                                      "model": {"class": "StyleTransformNet", "config": {}}}, path)
    with pytest.raises(ValueError, match=r"checkpoint .*no_weights.pt has no 'state_dict' entry"):
        load_transform_net(path)
    assert os.listdir(tmp_path) == ["no_weights.pt"]  # the atomic writer left no temporary file
