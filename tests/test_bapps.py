"""2AFC and JND scores on hand-computed cases, and the BAPPS loader on a folder the test writes."""
import numpy as np
import pytest
import torch
from PIL import Image

from perceptual_ext.data import BAPPS
from perceptual_ext.metrics import jnd_map, two_afc_score


def test_two_afc_hand_computed():
    # (1 < 2) agrees with 0.75 of the judges, (1 < 2 for p1) with 0.6, a tie scores 0.5.
    assert two_afc_score([1.0, 2.0, 3.0], [2.0, 1.0, 3.0], [0.25, 0.6, 0.9]) == pytest.approx((0.75 + 0.6 + 0.5) / 3)
    assert two_afc_score(torch.tensor([0.1, 0.5]), torch.tensor([0.2, 0.4]), np.array([0.0, 1.0])) == 1.0
    assert two_afc_score([0.2, 0.4], [0.1, 0.5], [0.0, 1.0]) == 0.0
    # shapes [N, 1, 1, 1] as the loaders give them are flattened
    assert two_afc_score(torch.zeros(4, 1, 1, 1), torch.ones(4), torch.full((4,), 0.3)) == pytest.approx(0.7)


def test_jnd_hand_computed():
    # sorted same = [1, 0, 1, 0]: precision [1, 1/2, 2/3, 1/2], recall [1/2, 1/2, 1, 1];
    # envelope -> AP = 1/2 * 1 + 1/2 * 2/3.
    assert jnd_map([0.1, 0.2, 0.3, 0.4], [1.0, 0.0, 1.0, 0.0]) == pytest.approx(0.5 + 1 / 3)
    assert jnd_map([0.4, 0.3, 0.2, 0.1], [1.0, 0.0, 1.0, 0.0]) == pytest.approx(0.5 * 0.5 + 0.5 * 0.5)
    assert jnd_map([0.1, 0.2, 0.3], [1.0, 1.0, 0.0]) == 1.0
    # fractional votes, as in BAPPS: TP [0.5, 1.5], FP [0.5, 0.5] -> precision [1/2, 3/4], recall [1/3, 1]
    assert jnd_map([0.1, 0.2], [0.5, 1.0]) == pytest.approx(1 / 3 * 0.75 + 2 / 3 * 0.75)


def test_jnd_matches_lpips_voc_ap_formula():
    rng = np.random.default_rng(0)
    d, same = rng.random(200), rng.random(200)
    # lpips's score_jnd_dataset + voc_ap(use_07_metric=False), written as it is
    order = np.argsort(d, kind="stable")
    s = same[order]
    tps, fps = np.cumsum(s), np.cumsum(1 - s)
    precs, recs = tps / (tps + fps), tps / (tps + (np.sum(s) - tps))
    mrec, mpre = np.concatenate(([0.0], recs, [1.0])), np.concatenate(([0.0], precs, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    expected = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    assert jnd_map(d, same) == pytest.approx(expected, abs=1e-12)


def test_score_errors():
    with pytest.raises(ValueError, match="same number of elements: d0 has 2, d1 has 2, judge has 3"):
        two_afc_score([1, 2], [1, 2], [0, 1, 0])
    with pytest.raises(ValueError, match="judge must hold fractions"):
        two_afc_score([1, 2], [1, 2], [0, 2])
    with pytest.raises(ValueError, match="empty"):
        two_afc_score([], [], [])
    with pytest.raises(ValueError, match="at least one pair judged the same"):
        jnd_map([1, 2], [0, 0])
    with pytest.raises(ValueError, match="d must not contain NaN"):
        jnd_map([float("nan"), 1], [1, 0])
    with pytest.raises(TypeError, match="d0 must be a tensor"):
        two_afc_score("abc", [1], [0])


def write_bapps(root, rng, n=3, subsets=("traditional", "cnn"), size=64):
    for subset in subsets:
        base = root / "2afc" / "val" / subset
        for d in ("ref", "p0", "p1", "judge"):
            (base / d).mkdir(parents=True)
        jbase = root / "jnd" / "val" / subset
        for d in ("p0", "p1", "same"):
            (jbase / d).mkdir(parents=True)
        for i in range(n):
            name = f"{i:06d}"
            for d in ("ref", "p0", "p1"):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(base / d / f"{name}.png")
            np.save(base / "judge" / f"{name}.npy", np.array([rng.random()], dtype=np.float32))
            for d in ("p0", "p1"):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(jbase / d / f"{name}.png")
            np.save(jbase / "same" / f"{name}.npy", np.array([rng.random()], dtype=np.float32))


def test_bapps_loader(tmp_path):
    rng = np.random.default_rng(1)
    write_bapps(tmp_path, rng)
    data = BAPPS(tmp_path, kind="2afc", split="val")
    assert data.subsets == ("cnn", "traditional") and len(data) == 6 and data.counts == {"cnn": 3, "traditional": 3}
    item = data[4]
    assert item["subset"] == "traditional" and item["name"] == "000001"
    assert item["ref"].shape == (3, 64, 64) and item["ref"].dtype == torch.float32
    assert 0 <= item["p0"].min() and item["p1"].max() <= 1
    expected = np.asarray(Image.open(tmp_path / "2afc/val/traditional/p1/000001.png"), dtype=np.float32) / 255
    torch.testing.assert_close(item["p1"], torch.from_numpy(expected).permute(2, 0, 1))
    assert item["judge"] == pytest.approx(float(np.load(tmp_path / "2afc/val/traditional/judge/000001.npy")[0]))
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=4)))
    assert batch["ref"].shape == (4, 3, 64, 64) and batch["judge"].shape == (4,)
    jnd = BAPPS(tmp_path, kind="jnd", subsets=["cnn"])
    assert len(jnd) == 3 and set(jnd[0]) == {"p0", "p1", "same", "subset", "name"}


def test_bapps_resizes_other_sizes(tmp_path):
    write_bapps(tmp_path, np.random.default_rng(2), n=1, subsets=("color",), size=80)
    assert BAPPS(tmp_path)[0]["ref"].shape == (3, 64, 64)


def test_bapps_errors(tmp_path):
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match="no 2afc/val folder"):
        BAPPS(tmp_path)
    write_bapps(tmp_path, rng, n=2, subsets=("traditional",))
    with pytest.raises(ValueError, match="subset 'cnn' not found"):
        BAPPS(tmp_path, subsets=["cnn"])
    with pytest.raises(ValueError, match="kind must be one of"):
        BAPPS(tmp_path, kind="3afc")
    with pytest.raises(ValueError, match="split must be 'val' for kind='jnd'"):
        BAPPS(tmp_path, kind="jnd", split="train")
    (tmp_path / "2afc/val/traditional/p1/000001.png").unlink()
    with pytest.raises(ValueError, match="item '000001' of .* has no file in p1"):
        BAPPS(tmp_path)
    (tmp_path / "2afc/val/traditional/p1/000001.png").write_bytes(b"not a png")
    data = BAPPS(tmp_path)
    with pytest.raises(ValueError, match="cannot read image .*000001.png"):
        data[1]
    np.save(tmp_path / "2afc/val/traditional/judge/000000.npy", np.array([1.5]))
    with pytest.raises(ValueError, match=r"judgement .*000000.npy must be a fraction of judges in \[0, 1\]"):
        data[0]
