"""scripts/demo.py: every stage runs (tiny sizes), the result sheet names every picture and number,
the last line names the sheet; the full settings give pictures of at least 256 px."""
import importlib.util
import os
import re
import sys

import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _demo():
    spec = importlib.util.spec_from_file_location("demo", os.path.join(ROOT, "scripts", "demo.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo():
    return _demo()


def test_quick_demo_writes_the_sheet(demo, tmp_path, capsys):
    out = tmp_path / "demo_out"
    assert demo.main(["--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    sheet = out / "index.html"
    assert printed[-1].endswith(str(sheet)), printed[-1]
    # one line per stage says what it does, one says its time
    starts = [line for line in printed if re.match(r"\[\d/\d\] ", line)]
    assert len(starts) == 7
    assert len([line for line in printed if re.match(r"\s+\d+\.\d s \(CPU \d+\.\d s\): ", line)]) == 7
    text = sheet.read_text(encoding="utf-8")
    pictures = re.findall(r"<img src='([^']+)'", text)
    assert pictures == ["textures.png", "style.png", "gim.png", "match.png"]
    for name in pictures + ["summary.png", "texture_mmd.png", "texture_gram.png", "texture_scnn.png"]:
        with Image.open(out / name) as image:
            assert min(image.size) > 0
    assert len(re.findall(r"<figcaption>", text)) == 4
    # the numbers printed under each stage are on the sheet
    for line in printed:
        if line.startswith("      ") and not re.match(r"\s+\d+\.\d s \(CPU", line):
            assert line.strip().replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in text, line
    assert "3/3 templates found" in text
    with Image.open(out / "summary.png") as summary:
        assert summary.width >= 1000


def test_full_settings_make_pictures_of_256_px_or_more(demo):
    s = demo.FULL
    for key in ("mmd", "gram", "scnn"):
        assert s[key][-1][0] >= 256, key
    assert s["style_size"] >= 256
    scale = -(-256 // s["gim_crop"])
    assert s["gim_crop"] * scale >= 256
    assert s["match_size"] >= 256
