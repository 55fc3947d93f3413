"""`perceptual-ext lpips` and `perceptual-ext bapps` end to end: numbers equal the library's, files,
folders, spatial maps, JSON, and user errors (exit 2, one line)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from perceptual_ext.cli import main
from perceptual_ext.data import load_image, sample_image, save_image
from perceptual_ext.losses import LPIPS
from perceptual_ext.metrics import psnr, two_afc_score


def run(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("lpips-weights")
    g = torch.Generator().manual_seed(0)
    lin = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g)
           for k, c in enumerate((64, 192, 384, 256, 256))}
    torch.save(lin, root / "alex.pth", _use_new_zipfile_serialization=False)
    backbone = LPIPS("alex", seed=7).net.state_dict()
    torch.save(backbone, root / "alexnet.pth")
    return root / "alexnet.pth", root / "alex.pth"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("lpips-images")
    (root / "a").mkdir()
    (root / "b").mkdir()
    for i, name in enumerate(("astronaut", "coffee")):
        image = sample_image(name, channels=3, size=64)
        save_image(image, str(root / "a" / f"{name}.png"))
        save_image((image + 0.1 * torch.randn(image.shape, generator=torch.Generator().manual_seed(i))).clamp(0, 1),
                   str(root / "b" / f"{name}.png"))
    save_image(sample_image("chelsea", channels=3, size=64), str(root / "a" / "only_in_a.png"))
    return root


def expected(weights, a, b):
    model = LPIPS("alex", backbone_weights=weights[0], lin_weights=weights[1], reduction="none")
    return float(model(load_image(str(a))[None], load_image(str(b))[None])[0])


def test_two_files(weights, images, capsys):
    a, b = images / "a" / "astronaut.png", images / "b" / "astronaut.png"
    code, out, err = run(["lpips", a, b, "--backbone-weights", weights[0], "--lin-weights", weights[1]], capsys)
    assert code == 0, err
    assert float(out) == pytest.approx(expected(weights, a, b), abs=2e-6)
    assert "not the published LPIPS" not in err


def test_folders_json_and_progress(weights, images, capsys):
    code, out, err = run(["lpips", images / "a", images / "b", "--backbone-weights", weights[0], "--lin-weights",
                          weights[1], "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert set(result["distances"]) == {"astronaut.png", "coffee.png"}
    for name, value in result["distances"].items():
        assert value == pytest.approx(expected(weights, images / "a" / name, images / "b" / name), rel=1e-5)
    assert result["mean"] == pytest.approx(np.mean(list(result["distances"].values())))
    assert result["net"] == "alex" and result["lin_weights"] == str(weights[1])
    assert "only_in_a.png" in err  # skipped, and said so


def test_folders_text_and_random_backbone_note(images, capsys):
    code, out, err = run(["lpips", images / "a", images / "b", "--quiet"], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["astronaut.png", "coffee.png", "mean"]
    assert "random alex backbone" in err and "not the published LPIPS" in err


def test_spatial_map(weights, images, tmp_path, capsys):
    a, b = images / "a" / "coffee.png", images / "b" / "coffee.png"
    out_png = tmp_path / "map.png"
    code, out, err = run(["lpips", a, b, "--lin-weights", weights[1], "--backbone-weights", weights[0],
                          "--spatial-out", out_png], capsys)
    assert code == 0, err
    distance_map = load_image(str(out_png), channels=1)
    assert distance_map.shape == (1, 64, 64) and distance_map.max() == 1.0
    model = LPIPS("alex", backbone_weights=weights[0], lin_weights=weights[1], spatial=True, reduction="none")
    ref = model(load_image(str(a))[None], load_image(str(b))[None])[0]
    torch.testing.assert_close(distance_map, ref / ref.max(), atol=1 / 255 + 1e-6, rtol=0)
    assert float(out) == pytest.approx(float(ref.mean()), rel=1e-5)
    # never overwritten without --overwrite
    code, _, err = run(["lpips", a, b, "--spatial-out", out_png], capsys)
    assert code == 2 and "exists" in err
    # folders: one map per pair in a folder
    code, _, err = run(["lpips", images / "a", images / "b", "--spatial-out", tmp_path / "maps", "--quiet"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["astronaut.png", "coffee.png"]


class _Stop(Exception):
    """Raised by the recording loss factory below: the command got as far as building its losses."""


@pytest.mark.parametrize("module,argv", [
    ("synthesis", ["synthesize", "sample:brick", "--loss", "lpips", "--size", "32", "--out", "{out}.png"]),
    ("synthesis", ["gim", "sample:astronaut", "--losses", "mse,lpips", "--crop-size", "32", "--out-dir", "{out}"]),
    ("style", ["train-style", "brick", "--style-loss", "lpips", "--out-dir", "{out}"]),
    ("superres", ["train-sr", "--loss", "lpips", "--out-dir", "{out}"]),
    ("gan", ["train-pix2pix", "--extra-loss", "lpips:1.0", "--out-dir", "{out}"]),
    ("gan", ["train-cyclegan", "--extra-loss", "lpips:0.5", "--out-dir", "{out}"]),
], ids=lambda v: v[0] if isinstance(v, list) else None)
def test_lpips_weights_reach_the_loss_factory(module, argv, tmp_path, monkeypatch):
    """Every command whose losses may be lpips passes --lpips-weights (and --vgg-weights, lpips'
    backbone) to the loss factory."""
    import importlib

    calls = []

    def recording_build_loss(name, **kwargs):
        calls.append((name, kwargs))
        if name == "lpips":
            raise _Stop
        return torch.nn.MSELoss()

    monkeypatch.setattr(importlib.import_module(f"perceptual_ext.train.{module}"), "build_loss", recording_build_loss)
    lin, vgg = tmp_path / "vgg_lin.pth", tmp_path / "vgg16.pth"
    lin.write_bytes(b"")
    vgg.write_bytes(b"")
    with pytest.raises(_Stop):
        main([a.format(out=tmp_path / "out") for a in argv] + ["--lpips-weights", str(lin), "--vgg-weights", str(vgg),
                                                                "--device", "cpu"])
    name, kwargs = calls[-1]
    assert name == "lpips" and kwargs["lpips_weights"] == str(lin) and kwargs["vgg_weights"] == str(vgg)


def test_synthesize_with_lpips_lin_weights(tmp_path, capsys):
    """End to end: the lin file is read (a wrong one is a one-line error, a right one runs)."""
    g = torch.Generator().manual_seed(0)
    lin = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g)
           for k, c in enumerate((64, 128, 256, 512, 512))}
    torch.save(lin, tmp_path / "vgg.pth", _use_new_zipfile_serialization=False)
    torch.save({"lin0.model.1.weight": torch.rand(1, 3, 1, 1)}, tmp_path / "bad.pth")
    argv = ["synthesize", "sample:brick", "--loss", "lpips", "--size", "32", "--steps", "1", "--quiet"]
    code, _, err = run(argv + ["--lpips-weights", tmp_path / "bad.pth", "--out", tmp_path / "bad.png"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "loss lpips:" in err, err
    code, out, err = run(argv + ["--lpips-weights", tmp_path / "vgg.pth", "--out", tmp_path / "ok.png"], capsys)
    assert code == 0, err
    assert json.loads(out)["loss"] == "lpips" and (tmp_path / "ok.png").exists()


def write_bapps(root, n=4):
    rng = np.random.default_rng(0)
    base = root / "2afc" / "val" / "traditional"
    for d in ("ref", "p0", "p1", "judge"):
        (base / d).mkdir(parents=True)
    jbase = root / "jnd" / "val" / "traditional"
    for d in ("p0", "p1", "same"):
        (jbase / d).mkdir(parents=True)
    ref = (sample_image("astronaut", channels=3, size=64).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    for i in range(n):
        name = f"{i:06d}"
        noisy = [np.clip(ref.astype(np.int16) + rng.integers(-s, s + 1, ref.shape), 0, 255).astype(np.uint8)
                 for s in (10 + 10 * i, 60 - 10 * i)]
        Image.fromarray(ref).save(base / "ref" / f"{name}.png")
        Image.fromarray(noisy[0]).save(base / "p0" / f"{name}.png")
        Image.fromarray(noisy[1]).save(base / "p1" / f"{name}.png")
        np.save(base / "judge" / f"{name}.npy", np.array([rng.random()], dtype=np.float32))
        Image.fromarray(ref).save(jbase / "p0" / f"{name}.png")
        Image.fromarray(noisy[i % 2]).save(jbase / "p1" / f"{name}.png")
        np.save(jbase / "same" / f"{name}.npy", np.array([i % 2 * 0.5 + 0.25], dtype=np.float32))


def test_bapps_command(tmp_path, capsys):
    write_bapps(tmp_path)
    code, out, err = run(["bapps", tmp_path, "--distance", "lpips,ssim,psnr,mse", "--json", "--batch-size", "3",
                          "--quiet"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["distances"] == ["lpips", "ssim", "psnr", "mse"]
    row = result["results"]["2afc"]["traditional"]
    assert row["n"] == 4 and set(row) == {"n", "lpips", "ssim", "psnr", "mse"}
    # -PSNR and MSE rank alike; both equal two_afc_score on the distances computed here
    ref, p0, p1 = ([load_image(str(tmp_path / "2afc/val/traditional" / d / f"{i:06d}.png")) for i in range(4)]
                          for d in ("ref", "p0", "p1"))
    ref, p0, p1 = torch.stack(ref), torch.stack(p0), torch.stack(p1)
    judges = [float(np.load(tmp_path / "2afc/val/traditional/judge" / f"{i:06d}.npy")[0]) for i in range(4)]
    expected_score = two_afc_score(-psnr(ref, p0, reduction="none"), -psnr(ref, p1, reduction="none"), judges)
    assert row["psnr"] == pytest.approx(expected_score) and row["mse"] == pytest.approx(expected_score)
    jnd = result["results"]["jnd"]["traditional"]
    assert jnd["n"] == 4 and all(0 <= jnd[k] <= 1 for k in ("lpips", "ssim", "psnr", "mse"))
    # the table
    code, out, _ = run(["bapps", tmp_path, "--distance", "psnr,ssim", "--kind", "2afc", "--quiet"], capsys)
    assert code == 0
    assert "2AFC" in out and "| traditional | 4 |" in out and "JND" not in out
