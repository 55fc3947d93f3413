"""Every command with bad arguments: exit code 2 and one line on stderr naming the problem, never a
traceback; nothing is written before the arguments are checked."""
import os
import subprocess
import sys

import pytest
import torch

from perceptual_ext.cli import main
from perceptual_ext.data import save_image
from perceptual_ext.train.checkpoint import CHECKPOINT_FORMAT, save_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-errors")
    image, small = str(root / "image.png"), str(root / "small.png")
    save_image(torch.rand(3, 64, 64), image)
    save_image(torch.rand(3, 16, 16), small)
    no_weights = str(root / "no_state_dict.pt")
    save_checkpoint({"format": CHECKPOINT_FORMAT, "task": "sr", "step": 1,
                     "model": {"class": "SuperResolutionNet", "config": {"scale": 4}}}, no_weights)
    not_ckpt = str(root / "not_a_checkpoint.pt")
    torch.save({"weights": torch.zeros(2)}, not_ckpt)
    bad_lin = str(root / "bad_lin.pth")  # lpips lin layers of the wrong widths (and not a backbone)
    torch.save({f"lin{k}.model.1.weight": torch.rand(1, 64, 1, 1) for k in range(5)}, bad_lin)
    folder = root / "images"
    folder.mkdir()
    save_image(torch.rand(3, 32, 32), str(folder / "a.png"))
    return {"image": image, "small": small, "no_weights": no_weights, "not_ckpt": not_ckpt, "dir": str(folder),
            "bad_lin": bad_lin,
            "missing": str(root / "missing.png"), "out": str(root / "out"), "root": str(root)}


# (argv template, text the message must contain). {key} is filled from the files fixture.
CASES = [
    (["match", "{missing}", "{small}"], "image file not found"),
    (["match", "{image}", "{small}", "--top-k", "0"], "--top-k must be >= 1"),
    (["match", "{image}", "{small}", "--min-distance", "-2"], "--min-distance must be >= 1"),
    (["match", "{small}", "{image}"], "larger than the image"),
    (["match", "{image}", "{small}", "--out", "{out}.jpgx"], "unknown image format '.jpgx'"),
    (["match", "{image}", "{small}", "--out", "{root}"], "is a directory"),
    (["match", "sample:nope", "{small}"], "unknown sample image 'nope'"),
    (["synthesize", "sample:brick", "--size", "0", "--out", "{out}.png"], "--size must be >= 1"),
    (["synthesize", "sample:brick", "--steps", "0", "--out", "{out}.png"], "--steps must be >= 1"),
    (["synthesize", "sample:brick", "--out", "{out}.png", "--device", "bogus"], "--device must be 'cpu' or 'cuda"),
    (["synthesize", "{missing}", "--out", "{out}.png"], "TEXTURE: image file not found"),
    (["synthesize", "sample:brick", "--out", "{out}.tiffx"], "unknown image format"),
    (["stylize", "--optimize", "{image}", "--out", "{out}.png"], "--optimize takes two images"),
    (["stylize", "--optimize", "{image}", "{image}", "--size", "-1", "--out", "{out}.png"], "--size must be >= 0"),
    (["stylize", "--model", "{not_ckpt}", "{image}", "--out", "{out}.png"], "not a perceptual_ext feed-forward"),
    (["superres", "--model", "{no_weights}", "{small}", "--out", "{out}.png", "--batch-size", "0"],
     "--batch-size must be >= 1"),
    (["eval-sr", "--checkpoint", "{no_weights}", "--size", "0"], "--size must be >= 1"),
    (["eval-sr", "--checkpoint", "{no_weights}", "--size", "-5"], "--size must be >= 1"),
    (["eval-sr", "--checkpoint", "{no_weights}", "--images", "{missing}"], "image folder not found"),
    (["eval-sr", "--checkpoint", "{no_weights}"], "no 'state_dict' entry"),
    (["eval-sr", "--checkpoint", "{no_weights}", "--device", "cuda:7"], "--device"),
    (["train-sr", "--images", "{dir}", "--steps", "0", "--out-dir", "{out}"], "--steps must be >= 1"),
    (["train-sr", "--images", "{dir}", "--image-size", "0", "--out-dir", "{out}"], "--image-size must be >= 1"),
    (["train-sr", "--images", "{missing}", "--out-dir", "{out}"], "image folder not found"),
    (["train-sr", "--images", "{dir}", "--workers", "-1", "--out-dir", "{out}"], "--workers must be >= 0"),
    (["train-cyclegan", "--workers", "-1", "--out-dir", "{out}"], "--workers must be >= 0"),
    (["train-colorize", "--images", "{dir}", "--workers", "-1", "--out-dir", "{out}"], "--workers must be >= 0"),
    (["train-sr", "--images", "{dir}", "--device", "bogus", "--out-dir", "{out}"], "--device must be"),
    (["train-style", "{missing}", "--content", "{dir}", "--out-dir", "{out}"], "image file not found"),
    (["train-style", "brick", "--content", "{dir}", "--batch-size", "0", "--out-dir", "{out}"],
     "--batch-size must be >= 1"),
    (["gim", "sample:astronaut", "--losses", "mse,bogus", "--out-dir", "{out}"], "--losses must be"),
    (["gim", "sample:astronaut", "--shift", "-1", "--out-dir", "{out}"], "--shift must be >= 0"),
    (["gim", "sample:astronaut", "--num-crops", "0", "--out-dir", "{out}"], "--num-crops must be >= 1"),
    # --lpips-weights: only with the lpips loss, and an existing file
    (["synthesize", "sample:brick", "--lpips-weights", "{image}", "--out", "{out}.png"],
     "--lpips-weights is for the lpips loss; this run uses mmd"),
    (["synthesize", "sample:brick", "--loss", "lpips", "--lpips-weights", "{missing}", "--out", "{out}.png"],
     "--lpips-weights: no such file"),
    (["gim", "sample:astronaut", "--losses", "mse,mmd", "--lpips-weights", "{image}", "--out-dir", "{out}"],
     "--lpips-weights is for the lpips loss; this run uses mse, mmd"),
    (["train-sr", "--images", "{dir}", "--loss", "vgg", "--lpips-weights", "{image}", "--out-dir", "{out}"],
     "--lpips-weights is for the lpips loss; this run uses vgg"),
    (["train-style", "brick", "--content", "{dir}", "--style-loss", "lpips", "--lpips-weights", "{missing}",
      "--out-dir", "{out}"], "--lpips-weights: no such file"),
    (["train-style", "brick", "--content", "{dir}", "--lpips-weights", "{image}", "--out-dir", "{out}"],
     "this run uses gram, vgg"),
    (["train-pix2pix", "--extra-loss", "lpips:1.0", "--lpips-weights", "{missing}", "--out-dir", "{out}"],
     "--lpips-weights: no such file"),
    (["train-cyclegan", "--lpips-weights", "{image}", "--out-dir", "{out}"],
     "--lpips-weights is for the lpips loss; this run uses no loss of the library"),
    (["train-pix2pix", "{missing}", "--out-dir", "{out}"], "data folder not found"),
    (["train-pix2pix", "{dir}", "--b-dir", "{missing}", "--out-dir", "{out}"], "--b-dir folder not found"),
    (["train-pix2pix", "--steps", "0", "--out-dir", "{out}"], "--steps must be >= 1"),
    (["train-pix2pix", "--extra-loss", "vgg", "--out-dir", "{out}"], "extra_loss must be NAME:WEIGHT"),
    (["train-cyclegan", "{dir}", "--out-dir", "{out}"], "give both A_DIR and B_DIR"),
    (["train-cyclegan", "--crop-size", "0", "--out-dir", "{out}"], "--crop-size must be >= 1"),
    (["translate", "--model", "{missing}", "{image}", "--out", "{out}"], "checkpoint not found"),
    (["translate", "--model", "{no_weights}", "{image}", "--out", "{out}"], "no 'state_dict' entry"),
    (["translate", "--model", "{not_ckpt}", "{missing}", "--out", "{out}"], "input not found"),
    (["translate", "--model", "{not_ckpt}", "{image}", "--out", "{out}", "--batch-size", "0"],
     "--batch-size must be >= 1"),
    (["sample-pairs", "--size", "0", "--out", "{out}"], "--size must be >= 8"),
    (["lpips", "{image}", "{missing}"], "image file not found"),
    (["lpips", "{image}", "{dir}"], "both be image files or both be folders"),
    (["lpips", "{image}", "{small}"], "LPIPS compares images of one size"),
    (["lpips", "{image}", "{image}", "--lin-weights", "{not_ckpt}"], "not an lpips v0.1 'alex' lin file"),
    (["lpips", "{image}", "{image}", "--lin-weights", "{bad_lin}"], "lin1.model.1.weight has shape"),
    (["lpips", "{image}", "{image}", "--lin-weights", "{missing}"], "lin_weights: no such file"),
    (["lpips", "{image}", "{image}", "--backbone-weights", "{bad_lin}"], "not a torchvision AlexNet state dict"),
    (["lpips", "{image}", "{image}", "--spatial-out", "{out}.jpgx"], "unknown image format"),
    (["lpips", "{image}", "{image}", "--device", "bogus"], "--device must be"),
    (["bapps", "{missing}"], "BAPPS folder not found"),
    (["bapps", "{dir}", "--distance", "lpips,bogus"], "unknown distance 'bogus'"),
    (["bapps", "{dir}", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["bapps", "{dir}", "--kind", "3afc"], "--kind must be"),
    (["bapps", "{dir}"], "holds neither 2afc/val nor jnd/val"),
    (["fid", "{missing}", "{dir}", "--inception-weights", "{image}"], "no such file or folder"),
    (["fid", "{dir}", "{dir}"], "--inception-weights FILE is required"),
    (["fid", "{dir}", "{dir}", "--inception-weights", "{missing}"], "--inception-weights: no such file"),
    (["fid", "{dir}", "{dir}", "--inception-weights", "{not_ckpt}"], "not pytorch-fid's FID Inception"),
    (["fid", "{dir}"], "B is required unless --save-stats"),
    (["fid", "{dir}", "{image}"], "neither a folder of images nor a .npz"),
    (["fid", "{dir}", "{dir}", "--save-stats", "{out}.txt"], "must end with .npz"),
    (["fid", "{dir}", "{dir}", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["fid", "{dir}", "{dir}", "--device", "bogus", "--inception-weights", "{not_ckpt}"], "--device must be"),
    (["train-colorize", "--images", "{missing}", "--out-dir", "{out}"], "image folder not found"),
    (["train-colorize", "--images", "{dir}", "--steps", "0", "--out-dir", "{out}"], "--steps must be >= 1"),
    (["train-colorize", "--images", "{dir}", "--rebalance", "2", "--out-dir", "{out}"], "rebalance must be"),
    (["train-colorize", "--images", "{dir}", "--neighbors", "40", "--out-dir", "{out}"], "neighbors must be"),
    (["colorize", "--model", "{no_weights}", "{image}", "--out", "{out}.png", "--temperature", "-1"],
     "--temperature must be"),
]

# The commands that apply a trained network (--model CKPT IMAGE_OR_DIR --out OUT) check them alike.
CASES += [([command, "--model", ckpt, source, "--out", out, *extra], message)
          for command in ("stylize", "superres", "colorize")
          for ckpt, source, out, extra, message in [
              ("{missing}", "{image}", "{out}.png", [], "checkpoint not found"),
              ("{no_weights}", "{small}", "{out}.png", [], "no 'state_dict' entry"),
              ("{no_weights}", "{small}", "{out}.png", ["--device", "bogus"], "--device must be 'cpu' or 'cuda"),
              ("{no_weights}", "{small}", "{out}.jpgx", [], "unknown image format"),
              ("{no_weights}", "{missing}", "{out}.png", [], "input not found")]]


@pytest.mark.parametrize("argv,message", CASES, ids=[" ".join(c[0][:2]) + f"-{i}" for i, c in enumerate(CASES)])
def test_bad_arguments_exit_2_with_one_line(files, argv, message, capsys):
    argv = [a.format(**files) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"perceptual-ext {argv[0]}: error: ") and message in err[0], err[0]
    assert not os.path.exists(files["out"] + ".png") and not os.path.exists(files["out"])


def test_decompression_bomb_is_a_user_error(files, monkeypatch, capsys):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64x64 is then over Pillow's 2x limit
    assert main(["match", files["image"], files["small"]]) == 2
    err = capsys.readouterr().err
    assert "too large to decode safely" in err and "Traceback" not in err


def test_every_command_is_walked():
    from perceptual_ext.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices) - {"info"}
    assert commands <= {argv[0] for argv, _ in CASES}


def _commands():
    from perceptual_ext.cli import build_parser

    return sorted(build_parser()._subparsers._group_actions[0].choices)


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_a_description_and_examples(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    usage, description = out.split("\n\n")[:2]
    assert usage.startswith(f"usage: perceptual-ext {command}") and len(description) > 20, out
    examples = out.split("\nexamples:\n")[1].splitlines()
    assert examples and all(line.startswith("  ") for line in examples), out
    assert any(f"perceptual-ext {command} " in line + " " or f"perceptual_ext.cli {command} " in line
               for line in examples)


def test_console_script_prints_no_traceback(files):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-m", "perceptual_ext", "match", files["image"], files["small"],
                          "--out", files["out"] + ".jpgx"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr and out.stdout == ""
