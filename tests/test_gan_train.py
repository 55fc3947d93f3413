"""pix2pix and CycleGAN trainers and their commands: learning, exact resume, DDP, CLI, bad input."""
import os
import shutil

import numpy as np
import pytest
import torch
from _helpers import ddp_and_single_checkpoints

from perceptual_ext import cli
from perceptual_ext.data import PairedImages, load_image, write_sample_pairs
from perceptual_ext.train import load_checkpoint, load_gan_generator, train_cyclegan, train_pix2pix, train_sr
from perceptual_ext.models import UNetGenerator
from perceptual_ext.train import gan as train_gan

TINY = dict(crop_size=32, load_size=36, ngf=4, ndf=4, builtin="grey", sample_every=0, checkpoint_every=0,
            progress=False, device="cpu")
TINY_CYCLE = dict(TINY, n_blocks=1, pool_size=2)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny networks: one thread is faster than two on a shared machine (no spinning workers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    """The built-in grey->colour set at 32x32 as A/ and B/ folders."""
    folder = tmp_path_factory.mktemp("pairs")
    write_sample_pairs(str(folder), "grey", size=32, layout="folders")
    return folder


def test_pix2pix_learns_on_builtin_set(tmp_path):
    """40 steps at 32x32 (ngf 8): the L1 of G to the targets of the built-in set falls by a third."""
    ds = PairedImages(builtin="grey", builtin_size=32, load_size=None, crop_size=32, flip=False)
    inputs = torch.stack([ds[i]["A"] for i in range(len(ds))])
    targets = torch.stack([ds[i]["B"] for i in range(len(ds))])
    torch.manual_seed(0)
    before_net = train_gan.PaperInference(UNetGenerator(num_downs=5, ngf=8))
    with torch.no_grad():
        before = (before_net(inputs) - targets).abs().mean().item()
    result = train_pix2pix(out_dir=str(tmp_path), steps=40, decay_steps=0, batch_size=4, lr=1e-3,
                           **dict(TINY, ngf=8, ndf=8, load_size=None))
    model, _ = load_gan_generator(result["checkpoint"])
    with torch.no_grad():
        after = (model(inputs) - targets).abs().mean().item()
    assert after < 0.67 * before, (before, after)
    history = result["history"]
    assert np.mean(history["loss_G_L1"][-5:]) < 0.67 * np.mean(history["loss_G_L1"][:5])
    for key in ("loss_D", "loss_G", "loss_G_GAN", "D_real_acc", "D_fake_acc", "lr"):
        assert len(history[key]) == 40 and np.isfinite(history[key]).all(), key
    assert all(0 <= a <= 1 for a in history["D_real_acc"] + history["D_fake_acc"])


def test_lr_schedule_and_reference_hyperparameters(tmp_path):
    result = train_pix2pix(out_dir=str(tmp_path / "p"), steps=5, decay_steps=3, **TINY)
    expected = [2e-4 * (1 - max(0, t - 2) / 4) for t in range(5)]  # constant, then linear decay (reference policy)
    np.testing.assert_allclose(result["history"]["lr"], expected, rtol=1e-6)
    ckpt = load_checkpoint(result["checkpoint"])
    assert ckpt["task"] == "pix2pix" and set(ckpt["networks"]) == {"G", "D"}
    assert ckpt["optimizers"]["G"]["param_groups"][0]["betas"] == (0.5, 0.999)
    assert ckpt["train_config"]["lambda_l1"] == 100.0 and ckpt["train_config"]["gan_mode"] == "vanilla"
    assert ckpt["networks"]["G"]["config"]["norm"] == "batch" and ckpt["networks"]["D"]["config"]["in_channels"] == 6
    cyc = load_checkpoint(train_cyclegan(out_dir=str(tmp_path / "c"), steps=1, **TINY_CYCLE)["checkpoint"])
    assert cyc["train_config"]["lambda_cycle"] == 10.0 and cyc["train_config"]["lambda_identity"] == 0.5
    assert cyc["train_config"]["gan_mode"] == "lsgan" and cyc["networks"]["G_A"]["config"]["norm"] == "instance"
    assert set(cyc["networks"]) == {"G_A", "G_B", "D_A", "D_B"} and len(cyc["pools"]["A"]["images"]) == 1


def test_extra_loss_and_other_gan_modes(tmp_path):
    r = train_pix2pix(out_dir=str(tmp_path / "x"), steps=1, extra_loss=["l1:2.0", "mse:1"], gan_mode="wgangp", **TINY)
    h = r["history"]
    assert h["loss_G_extra"][0] > 0 and h["loss_D_GP"][0] > 0
    r = train_cyclegan(out_dir=str(tmp_path / "y"), steps=1, extra_loss="l1:1.0", gan_mode="hinge", **TINY_CYCLE)
    assert r["history"]["loss_G_extra"][0] > 0 and r["history"]["loss_cycle"][0] > 0


def _run_with_copy_at(fn, copy_step, copy_to, **kwargs):
    """Run a trainer, keeping a copy of the checkpoint written at ``copy_step`` (a run interrupted there)."""
    original = train_gan.save_checkpoint

    def save(state, path):
        original(state, path)
        if state["step"] == copy_step:
            shutil.copy(path, copy_to)

    train_gan.save_checkpoint = save
    try:
        return fn(**kwargs)
    finally:
        train_gan.save_checkpoint = original


@pytest.mark.parametrize("trainer", ["pix2pix", "cyclegan"])
def test_resume_equals_uninterrupted_run(tmp_path, trainer):
    fn, opts = (train_pix2pix, TINY) if trainer == "pix2pix" else (train_cyclegan, dict(TINY_CYCLE, norm="batch"))
    common = dict(opts, steps=4, decay_steps=2, batch_size=2, checkpoint_every=2)
    interrupted = str(tmp_path / "at2.pt")
    full = _run_with_copy_at(fn, 2, interrupted, out_dir=str(tmp_path / "full"), **common)
    resumed = fn(out_dir=str(tmp_path / "resumed"), resume=interrupted, **common)
    a, b = load_checkpoint(full["checkpoint"]), load_checkpoint(resumed["checkpoint"])
    assert load_checkpoint(interrupted)["step"] == 2
    assert a["history"] == b["history"] and len(b["history"]["loss_D"]) == 4
    for name, net in a["networks"].items():
        for key, value in net["state_dict"].items():
            assert torch.equal(value, b["networks"][name]["state_dict"][key]), (name, key)
    for name, opt in a["optimizers"].items():
        for key, value in opt["state"].items():
            for moment in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(value[moment], b["optimizers"][name]["state"][key][moment])
    for name, pool in a["pools"].items():
        assert len(pool["images"]) == len(b["pools"][name]["images"]) > 0
        assert all(torch.equal(x, y) for x, y in zip(pool["images"], b["pools"][name]["images"]))


def test_resume_refuses_other_runs(tmp_path):
    cyc = train_cyclegan(out_dir=str(tmp_path / "c"), steps=1, **TINY_CYCLE)
    with pytest.raises(ValueError, match="is a 'cyclegan' run, not 'pix2pix'"):
        train_pix2pix(out_dir=str(tmp_path / "p"), steps=2, resume=cyc["checkpoint"], **TINY)
    p = train_pix2pix(out_dir=str(tmp_path / "p2"), steps=1, **TINY)
    with pytest.raises(ValueError, match="has G = UNetGenerator"):
        train_pix2pix(out_dir=str(tmp_path / "p3"), steps=2, resume=p["checkpoint"], **dict(TINY, ngf=8))
    with pytest.raises(FileExistsError, match="checkpoint.pt exists"):
        train_pix2pix(out_dir=str(tmp_path / "p2"), steps=1, **TINY)
    sr = train_sr(None, 4, "mse", out_dir=str(tmp_path / "sr"), steps=1, samples=("coffee",), channels=4,
                  num_residual=1, image_size=16, batch_size=1, sample_every=0, progress=False, device="cpu")
    with pytest.raises(ValueError, match="is a 'sr' checkpoint, not a pix2pix or cyclegan one"):
        load_gan_generator(sr["checkpoint"])
    with pytest.raises(ValueError, match="direction BtoA needs a cyclegan one"):
        load_gan_generator(p["checkpoint"], "BtoA")


def test_trainer_bad_input(tmp_path, pairs_dir):
    with pytest.raises(ValueError, match="extra_loss name must be one of"):
        train_pix2pix(out_dir=str(tmp_path), steps=1, extra_loss="lpipz:1", **TINY)
    with pytest.raises(ValueError, match="extra_loss must be NAME:WEIGHT"):
        train_pix2pix(out_dir=str(tmp_path), steps=1, extra_loss="vgg", **TINY)
    with pytest.raises(ValueError, match="extra_loss weight must be a positive number"):
        train_pix2pix(out_dir=str(tmp_path), steps=1, extra_loss="vgg:-1", **TINY)
    with pytest.raises(ValueError, match="decay_steps must be <= steps"):
        train_pix2pix(out_dir=str(tmp_path), steps=2, decay_steps=3, **TINY)
    with pytest.raises(ValueError, match="crop_size must be a multiple of 2\\*\\*num_downs"):
        train_pix2pix(out_dir=str(tmp_path), steps=1, **dict(TINY, crop_size=48, load_size=None), num_downs=5)
    with pytest.raises(ValueError, match="gan_mode must be one of"):
        train_cyclegan(out_dir=str(tmp_path), steps=1, gan_mode="wgan", **TINY_CYCLE)
    with pytest.raises(ValueError, match="lambda_cycle must be a finite number >= 0"):
        train_cyclegan(out_dir=str(tmp_path), steps=1, lambda_cycle=-1.0, **TINY_CYCLE)
    os.makedirs(tmp_path / "B2")
    shutil.copy(pairs_dir / "B" / "coffee.png", tmp_path / "B2" / "coffee.png")
    with pytest.raises(ValueError, match="mismatched pairs: 3 image"):
        train_pix2pix(str(pairs_dir / "A"), str(tmp_path / "B2"), out_dir=str(tmp_path), steps=1, **TINY)


# --------------------------------------------------------------------------- DDP

def test_ddp_two_processes_match_single_process(tmp_path, pairs_dir):
    """2 gloo processes with batch 1 each == one process with batch 2 (plain SGD, no norm, no dropout:
    see tests/test_feedforward.py for why SGD; dropout masks and batch statistics are per process)."""
    args = ["train-pix2pix", str(pairs_dir / "A"), "--b-dir", str(pairs_dir / "B"), "--steps", "2",
            "--crop-size", "32", "--load-size", "36", "--ngf", "4", "--ndf", "4", "--norm", "none", "--no-dropout",
            "--optimizer", "sgd", "--lr", "0.05", "--workers", "0", "--sample-every", "0", "--device", "cpu"]
    ddp, single = ddp_and_single_checkpoints(args, tmp_path, batch_per_process=1, OMP_NUM_THREADS="1")
    for key in ("loss_D", "loss_G", "loss_G_L1"):
        np.testing.assert_allclose(ddp["history"][key], single["history"][key], rtol=1e-4, err_msg=key)
    for name in ("G", "D"):
        for key, value in single["networks"][name]["state_dict"].items():
            torch.testing.assert_close(ddp["networks"][name]["state_dict"][key], value, atol=2e-5, rtol=1e-4,
                                       msg=f"{name}.{key}")
    assert sorted(os.listdir(tmp_path / "ddp")) == ["checkpoint.pt"]  # rank 0 only, no stray temp files


# --------------------------------------------------------------------------- command line

def test_cli_end_to_end(tmp_path, pairs_dir, capsys):
    tiny = ["--steps", "2", "--crop-size", "32", "--load-size", "36", "--ngf", "4", "--ndf", "4", "--workers", "0",
            "--device", "cpu"]
    p2p = str(tmp_path / "p2p")
    assert cli.main(["train-pix2pix", str(pairs_dir / "A"), "--b-dir", str(pairs_dir / "B"), "--sample-every", "1",
                     "--out-dir", p2p, *tiny]) == 0
    assert "checkpoint:" in capsys.readouterr().out
    assert sorted(os.listdir(os.path.join(p2p, "samples"))) == ["step_000001.png", "step_000002.png"]
    ckpt = os.path.join(p2p, "checkpoint.pt")
    out = str(tmp_path / "translated")
    assert cli.main(["translate", "--model", ckpt, str(pairs_dir / "A"), "--out", out, "--batch-size", "3"]) == 0
    names = sorted(os.listdir(out))
    assert names == sorted(os.listdir(pairs_dir / "A"))
    image = load_image(os.path.join(out, names[0]))
    assert image.shape == (3, 32, 32)
    # any size: a 40x24 input is padded to the U-Net's multiple and cropped back
    odd = str(tmp_path / "odd.png")
    from perceptual_ext.data import save_image
    save_image(torch.rand(3, 40, 24), odd)
    assert cli.main(["translate", "--model", ckpt, odd, "--out", out]) == 0
    assert load_image(os.path.join(out, "odd.png")).shape == (3, 40, 24)
    # never overwrite without --overwrite; nothing is touched
    before = os.path.getmtime(os.path.join(out, names[0]))
    capsys.readouterr()
    assert cli.main(["translate", "--model", ckpt, str(pairs_dir / "A"), "--out", out]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert os.path.getmtime(os.path.join(out, names[0])) == before
    assert cli.main(["translate", "--model", ckpt, str(pairs_dir / "A"), "--out", out, "--overwrite"]) == 0
    assert cli.main(["train-pix2pix", "--out-dir", p2p, *tiny]) == 2  # the run exists
    assert "pass resume= to continue it or overwrite=True" in capsys.readouterr().err
    # aligned inputs: translate their A half
    aligned = str(tmp_path / "aligned")
    assert cli.main(["sample-pairs", "--kind", "grey", "--size", "32", "--out", aligned]) == 0
    assert cli.main(["translate", "--model", ckpt, aligned, "--aligned", "A", "--out", str(tmp_path / "al")]) == 0
    assert load_image(str(tmp_path / "al" / "coffee.png")).shape == (3, 32, 32)
    # CycleGAN both ways
    cyc = str(tmp_path / "cyc")
    assert cli.main(["train-cyclegan", str(pairs_dir / "A"), str(pairs_dir / "B"), "--n-blocks", "1",
                     "--pool-size", "2", "--sample-every", "2", "--out-dir", cyc, *tiny]) == 0
    for direction in ("AtoB", "BtoA"):
        target = str(tmp_path / direction)
        assert cli.main(["translate", "--model", os.path.join(cyc, "checkpoint.pt"), "--direction", direction,
                         str(pairs_dir / "B" / "coffee.png"), "--out", target]) == 0
        assert os.path.exists(os.path.join(target, "coffee.png"))


def test_cli_bad_input(tmp_path, pairs_dir, capsys):
    tiny = ["--steps", "1", "--crop-size", "32", "--load-size", "36", "--ngf", "4", "--ndf", "4", "--workers", "0",
            "--device", "cpu", "--out-dir", str(tmp_path / "run")]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["train-pix2pix", str(empty), *tiny]) == 2
    assert "holds no images" in capsys.readouterr().err
    (tmp_path / "B1").mkdir()
    shutil.copy(pairs_dir / "B" / "rocket.png", tmp_path / "B1" / "other.png")
    assert cli.main(["train-pix2pix", str(pairs_dir / "A"), "--b-dir", str(tmp_path / "B1"), *tiny]) == 2
    err = capsys.readouterr().err
    assert "mismatched pairs" in err and "Traceback" not in err
    assert cli.main(["train-cyclegan", str(pairs_dir / "A"), *tiny]) == 2
    assert "give both A_DIR and B_DIR" in capsys.readouterr().err
    assert cli.main(["train-cyclegan", str(pairs_dir / "A"), str(empty), *tiny]) == 2
    assert "holds no images" in capsys.readouterr().err
    assert cli.main(["train-pix2pix", "--extra-loss", "vgg", *tiny]) == 2
    assert "NAME:WEIGHT" in capsys.readouterr().err
    # a checkpoint of another kind
    sr = train_sr(None, 4, "mse", out_dir=str(tmp_path / "sr"), steps=1, samples=("coffee",), channels=4,
                  num_residual=1, image_size=16, batch_size=1, sample_every=0, progress=False, device="cpu")
    assert cli.main(["translate", "--model", sr["checkpoint"], str(pairs_dir / "A"), "--out", str(tmp_path / "o")]) == 2
    assert "not a pix2pix or cyclegan one" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")
    assert cli.main(["translate", "--model", sr["checkpoint"], str(tmp_path / "missing.png"), "--out", "x"]) == 2
    assert "input not found" in capsys.readouterr().err
    assert cli.main(["translate", "--model", sr["checkpoint"], str(empty), "--out", "x"]) == 2
    assert "no images in" in capsys.readouterr().err


def test_paper_inference_normalizes_each_image_alone():
    """translate's batch norm: each image with its own statistics, running averages untouched, dropout off."""
    torch.manual_seed(0)
    g = UNetGenerator(num_downs=5, ngf=4).train()
    buffers = [b.clone() for b in g.buffers()]
    x = torch.rand(3, 3, 32, 32)
    wrapped = train_gan.PaperInference(g)
    with torch.no_grad():
        batch = wrapped(x)
        alone = torch.cat([wrapped(x[i:i + 1]) for i in range(3)])
        again = wrapped(x)
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-6)  # independent of the batch around it
    assert torch.equal(batch, again)  # deterministic: dropout off
    assert all(torch.equal(a, b) for a, b in zip(buffers, g.buffers())) and g.training
    with torch.no_grad():
        running = g.eval()(x)
    assert not torch.allclose(running, batch, atol=1e-3)  # not the running averages
