"""`perceptual-ext match`: JSON locations, the boxes PNG, no silent overwrite, user errors."""
import json
import os

import pytest

from perceptual_ext.cli import main
from perceptual_ext.data import load_image, sample_image, save_image


@pytest.fixture()
def scene(tmp_path):
    image = sample_image("coins", channels=1)[:, :120, :160].contiguous()
    image_path = save_image(image, str(tmp_path / "scene.png"))
    templ_path = save_image(image[:, 40:64, 70:94], str(tmp_path / "templ.png"))
    return image_path, templ_path


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_match_prints_json_and_writes_boxes(scene, tmp_path, capsys):
    out = str(tmp_path / "boxes.png")
    code, stdout, _ = run(["match", *scene, "--top-k", "3", "--out", out], capsys)
    assert code == 0
    result = json.loads(stdout)
    assert result["method"] == "ncc" and len(result["matches"]) == 3
    best = result["matches"][0]
    assert (best["x"], best["y"], best["width"], best["height"]) == (70, 40, 24, 24)
    assert best["score"] == pytest.approx(1.0, abs=1e-4)
    scores = [m["score"] for m in result["matches"]]
    assert scores == sorted(scores, reverse=True)
    boxed = load_image(out, channels=3)
    assert boxed.shape == (3, 120, 160)
    # The best box's top edge is drawn in red.
    assert boxed[0, 40, 80] > 0.9 and boxed[1, 40, 80] < 0.1


def test_match_ssd_minimizes(scene, capsys):
    code, stdout, _ = run(["match", *scene, "--method", "ssd", "--top-k", "1"], capsys)
    assert code == 0
    best = json.loads(stdout)["matches"][0]
    assert (best["x"], best["y"]) == (70, 40) and best["score"] == pytest.approx(0.0, abs=1e-3)


def test_match_never_overwrites_without_flag(scene, tmp_path, capsys):
    out = tmp_path / "boxes.png"
    out.write_bytes(b"keep me")
    code, _, err = run(["match", *scene, "--out", str(out)], capsys)
    assert code == 2 and "exists" in err and out.read_bytes() == b"keep me"
    code, _, _ = run(["match", *scene, "--out", str(out), "--overwrite"], capsys)
    assert code == 0 and load_image(str(out)).shape == (3, 120, 160)


def test_match_user_errors(scene, tmp_path, capsys):
    image_path, templ_path = scene
    code, _, err = run(["match", str(tmp_path / "missing.png"), templ_path], capsys)
    assert code == 2 and "not found" in err
    (tmp_path / "bad.png").write_bytes(b"not an image")
    code, _, err = run(["match", image_path, str(tmp_path / "bad.png")], capsys)
    assert code == 2 and "cannot read image" in err
    code, _, err = run(["match", templ_path, image_path], capsys)
    assert code == 2 and "larger than the image" in err
    code, _, err = run(["match", image_path, templ_path, "--top-k", "0"], capsys)
    assert code == 2 and "--top-k" in err
    assert not os.path.exists(tmp_path / "boxes.png")
    with pytest.raises(SystemExit):
        main(["match", image_path, templ_path, "--method", "sqdiff"])
