"""CLI end to end on 64² images: synthesize, stylize --optimize, gim; the --overwrite rule; bad input -> exit 2."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from perceptual_ext.cli import main
from perceptual_ext.data import sample_image, save_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture()
def image64(tmp_path):
    path = str(tmp_path / "texture.png")
    save_image(sample_image("gravel", channels=3, size=64), path)
    return path


def _png_size(path):
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        return img.format, img.size


def _needs(module):
    """The loss module must be importable: a missing one fails the test."""
    if module is not None:
        importlib.import_module(module)


def test_synthesize_writes_png_and_respects_overwrite(image64, tmp_path, capsys):
    out = str(tmp_path / "out" / "synth.png")
    args = ["synthesize", image64, "--loss", "l1", "--size", "32", "--steps", "5", "--out", out, "--quiet"]
    assert main(args) == 0
    assert _png_size(out) == ("PNG", (32, 32))
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 5 and report["last_loss"] < report["first_loss"]

    before = open(out, "rb").read()
    assert main(args[:-1] + ["--seed", "3", "--quiet"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert open(out, "rb").read() == before, "a refused run must leave the file untouched"
    assert main(args + ["--seed", "3", "--overwrite"]) == 0
    assert open(out, "rb").read() != before


def test_sample_images_and_bad_inputs(tmp_path, capsys):
    out = str(tmp_path / "s.png")
    assert main(["synthesize", "sample:brick", "--loss", "mse", "--size", "32", "--steps", "2", "--out", out,
                 "--quiet"]) == 0
    assert _png_size(out) == ("PNG", (32, 32))
    capsys.readouterr()

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    cases = [
        (["synthesize", str(tmp_path / "missing.png"), "--out", str(tmp_path / "a.png")], "image file not found"),
        (["synthesize", str(not_an_image), "--loss", "mse", "--out", str(tmp_path / "a.png")], "cannot read image"),
        (["synthesize", "sample:nope", "--out", str(tmp_path / "a.png")], "unknown sample image 'nope'"),
        (["synthesize", "sample:brick", "--size", "0", "--out", str(tmp_path / "a.png")], "--size must be >= 1"),
        (["synthesize", "sample:brick", "--device", "tpu", "--out", str(tmp_path / "a.png")], "--device"),
        (["synthesize", "sample:brick", "--out", str(tmp_path)], "is a directory"),
        (["gim", "sample:astronaut", "--losses", "mse,bogus", "--out-dir", str(tmp_path / "g")], "--losses must be"),
        (["gim", "sample:astronaut", "--losses", "mse,mse", "--out-dir", str(tmp_path / "g")], "twice"),
        (["gim", "sample:astronaut", "--losses", "mse", "--crop-size", "32", "--image-size", "36",
          "--out-dir", str(tmp_path / "g")], "at least crop_size"),
        (["stylize", "--optimize", "sample:chelsea", "--out", str(tmp_path / "a.png")], "takes two images"),
    ]
    if not torch.cuda.is_available():
        cases.append((["synthesize", "sample:brick", "--device", "cuda", "--out", str(tmp_path / "a.png")],
                      "CUDA is not available"))
    for argv, message in cases:
        assert main(argv + ["--quiet"]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    assert not os.path.exists(tmp_path / "a.png") and not os.path.exists(tmp_path / "g")


def test_gim_writes_pngs_grid_and_json(image64, tmp_path, capsys):
    out_dir = str(tmp_path / "gim")
    argv = ["gim", image64, "--losses", "mse,l1", "--crop-size", "32", "--steps", "3", "--swd-nhoods", "64",
            "--out-dir", out_dir, "--quiet"]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "SWD x1e3" in stdout and "l1" in stdout
    for name in ("gim_mse.png", "gim_l1.png", "gim_mean.png"):
        assert _png_size(os.path.join(out_dir, name)) == ("PNG", (32, 32))
    # target crop | mean | mse | l1, 2-pixel gaps
    assert _png_size(os.path.join(out_dir, "gim_grid.png")) == ("PNG", (4 * 32 + 3 * 2, 32))
    assert _png_size(os.path.join(out_dir, "gim_crops.png")) == ("PNG", (9 * 32 + 8 * 2, 32))
    report = json.load(open(os.path.join(out_dir, "gim.json")))
    assert report["grid_order"] == ["target_crop", "init_mean", "mse", "l1"]
    assert len(report["offsets"]) == 9
    for row in ("init_mean", "target_crop", "mse", "l1"):
        assert report["metrics"][row]["swd"] > 0 and len(report["metrics"][row]["swd_levels"]) == 2
    assert main(argv) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0


def test_stylize_needs_a_mode(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["stylize", "sample:chelsea", "sample:gravel", "--out", "x.png"])
    assert exc.value.code == 2
    assert "--optimize" in capsys.readouterr().err


def test_console_entry_point_exit_code(tmp_path):
    result = subprocess.run([sys.executable, "-m", "perceptual_ext", "synthesize", str(tmp_path / "nope.png"),
                             "--out", str(tmp_path / "o.png")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert "perceptual-ext synthesize: error: TEXTURE: image file not found" in result.stderr


def test_stylize_optimize_end_to_end(image64, tmp_path):
    _needs("perceptual_ext.losses.perceptual")
    content = str(tmp_path / "content.png")
    save_image(sample_image("chelsea", channels=3, size=64), content)
    out = str(tmp_path / "stylized.png")
    assert main(["stylize", "--optimize", content, image64, "--size", "64", "--steps", "2", "--out", out,
                 "--quiet"]) == 0
    assert _png_size(out) == ("PNG", (64, 64))


@pytest.mark.parametrize("loss,module", [("mmd", "perceptual_ext.losses.patch_mmd"),
                                         ("gram", "perceptual_ext.losses.perceptual")])
def test_synthesize_factory_losses_end_to_end(image64, tmp_path, loss, module):
    _needs(module)
    out = str(tmp_path / f"{loss}.png")
    assert main(["synthesize", image64, "--loss", loss, "--size", "64", "--steps", "3", "--out", out, "--quiet"]) == 0
    assert _png_size(out) == ("PNG", (64, 64))


def test_gim_factory_losses_end_to_end(image64, tmp_path):
    _needs("perceptual_ext.losses.patch_mmd")
    out_dir = str(tmp_path / "gim")
    assert main(["gim", image64, "--losses", "mse,mmd", "--crop-size", "32", "--steps", "3", "--swd-nhoods", "64",
                 "--out-dir", out_dir, "--quiet"]) == 0
    assert _png_size(os.path.join(out_dir, "gim_mmd.png")) == ("PNG", (32, 32))
