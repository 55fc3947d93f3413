"""benchmarks/report.py (ratio table, skipped cases, GPU results, one plot per op and per loss) and
the memory-skip helper of benchmarks/_record.py, on small synthetic results files."""
import glob
import re
import json
import os

import pytest

from benchmarks import _record, report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench(group, impl, median_s, *, op=None, axis=None, peak=None, anchor=False, fullname=None, params=None):
    info = {"impl": impl}
    if op:
        info["op"] = op
    if axis:
        info["axis"] = list(axis)
    if peak is not None:
        info["peak_mib"] = peak
    if anchor:
        info["anchor"] = True
    return {"group": group, "name": fullname or group, "fullname": fullname or f"benchmarks/bench_x.py::t[{impl}]",
            "params": params, "extra_info": info, "stats": {"median": median_s}}


def results(device="cpu"):
    benches = []
    for n in (1024, 4096, 16384):
        group = f"gram fwd+bwd {device} B4·C256·HW{n}"
        name = f"benchmarks/bench_gram.py::test_gram_fwd_bwd[{device}-HW{n}-IMPL]"
        benches.append(bench(group, "fused", n * 1e-6, op="gram", axis=("H·W", n), peak=n / 100,
                             fullname=name.replace("IMPL", "fused")))
        benches.append(bench(group, "composition", 2 * n * 1e-6, op="gram", axis=("H·W", n), peak=n / 50,
                             fullname=name.replace("IMPL", "composition")))
    for side in (128, 256, 512):
        group = f"PatchMMDLoss fwd+bwd {device} F1024 1x{side}²"
        name = f"benchmarks/bench_losses.py::test_loss_fwd_bwd[{device}-PatchMMDLoss-{side}px-IMPL]"
        benches.append(bench(group, "ours", side * 1e-4, op="PatchMMDLoss", axis=("image side", side), peak=side / 10,
                             fullname=name.replace("IMPL", "ours")))
        if side < 512:
            benches.append(bench(group, "composition", side * 1.2e-3, op="PatchMMDLoss", axis=("image side", side),
                                 peak=side * 10, fullname=name.replace("IMPL", "composition")))
    # A group this report does not know, recorded with the old conventions (no op, no axis).
    for size in (32, 64, 128):
        for impl, t in (("fused", 1e-3), ("composition", 4e-3)):
            benches.append(bench(f"lpips_layer {device} {size}²", impl, t * size, peak=1.0,
                                 fullname=f"benchmarks/bench_lpips_layer.py::test_lpips[{impl}-{size}-{device}]",
                                 params={"impl": impl, "size": size, "device": device}))
    # Nothing numeric to place it on a size axis: drawn in run order.
    benches.append(bench(f"fid {device} default", "ours", 0.5, fullname="benchmarks/bench_fid.py::test_fid[ours]",
                         params={"impl": "ours", "mode": "exact"}))
    benches.append(bench(f"fid {device} default", "scipy", 5.0, fullname="benchmarks/bench_fid.py::test_fid[scipy]",
                         params={"impl": "scipy", "mode": "exact"}))
    skipped = [{"group": f"PatchMMDLoss fwd+bwd {device} F1024 1x512²", "impl": "composition", "op": "PatchMMDLoss",
                "axis": ["image side", 512.0], "reason": "composition would need ~6.0 GiB (estimated)"}]
    return {"machine_info": {"cpu": {"brand_raw": "Test CPU"}, "cpu_count": 2, "torch_threads": 2},
            "datetime": "2026-12-07T04:00:00", "benchmarks": benches, "skipped": skipped,
            "load_average": {"start": [3.0, 2.0, 1.0], "end": [4.0, 3.0, 2.0]}}


def write(path, data):
    with open(path, "w") as f:
        json.dump(data, f)
    return str(path)


def test_table_ratios_skips_and_unknown_groups(tmp_path, capsys):
    path = write(tmp_path / "cpu-20261207.json", results())
    report.main([path, "--results-dir", str(tmp_path)])
    text = capsys.readouterr().out
    assert "Results: cpu-20261207.json, Test CPU, 2 cores, 2 torch threads" in text
    assert "load average 3.0 at start, 4.0 at end" in text
    assert "| gram fwd+bwd cpu B4·C256·HW4096 | fused | composition | 4.10 | 8.19 | 2.00× | 41.0 | 81.9 |" in text
    assert "| PatchMMDLoss fwd+bwd cpu F1024 1x256² | ours | composition | 25.60 | 307.20 | 12.00× |" in text
    # The skipped composition: ours alone in its group, and the skip with its reason below the table.
    assert "| PatchMMDLoss fwd+bwd cpu F1024 1x512² | ours | - | 51.20 | - | -× |" in text
    assert "- PatchMMDLoss fwd+bwd cpu F1024 1x512²: composition skipped: composition would need ~6.0 GiB" in text
    assert "| lpips_layer cpu 64² | fused | composition | 64.00 | 256.00 | 4.00× | 1.0 | 1.0 |" in text
    assert "| fid cpu default | ours | scipy | 500.00 | 5000.00 | 10.00× |" in text


def test_plots_one_png_per_op_and_loss(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = write(tmp_path / "cpu-20261207.json", results())
    out = tmp_path / "plots"
    written = report.main([path, "--plots", str(out), "--results-dir", str(tmp_path)])
    names = sorted(os.path.basename(p) for p in written)
    assert names == ["cpu-PatchMMDLoss.png", "cpu-fid.png", "cpu-gram.png", "cpu-lpips_layer.png"]
    for p in written:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(p) > 5000
    assert "Plots: " in capsys.readouterr().out


def test_size_axis_and_families():
    data = results()
    fams = report.families(data)
    assert set(fams) == {"gram", "PatchMMDLoss", "lpips_layer", "fid"}
    assert list(fams["gram"]) == [("test_gram_fwd_bwd", "cpu")]
    sizes = sorted(report._size_of(b) for b in fams["lpips_layer"][("test_lpips", "cpu")])
    assert sizes[0] == ("size", 32.0) and sizes[-1] == ("size", 128.0)
    assert report._size_of(fams["gram"][("test_gram_fwd_bwd", "cpu")][0]) == ("H·W", 1024.0)
    assert report._size_of(fams["fid"][("test_fid", "cpu")][0]) == (None, None)


def test_gpu_results_are_added(tmp_path, capsys):
    cpu = write(tmp_path / "cpu-20261207.json", results())
    write(tmp_path / "gpu-20261201.json", results("cuda"))
    write(tmp_path / "gpu-20261205.json", results("cuda"))
    report.main([cpu, "--results-dir", str(tmp_path)])
    text = capsys.readouterr().out
    assert "Results: gpu-20261205.json" in text and "gpu-20261201.json" not in text
    assert "| gram fwd+bwd cuda B4·C256·HW4096 | fused | composition |" in text
    report.main([cpu, "--results-dir", str(tmp_path), "--no-gpu"])
    assert "gpu-" not in capsys.readouterr().out
    gpu = str(tmp_path / "gpu-20261205.json")
    report.main([cpu, gpu, "--results-dir", str(tmp_path)])
    assert capsys.readouterr().out.count("Results: gpu-20261205.json") == 1
    pytest.importorskip("matplotlib")
    written = report.main([cpu, "--plots", str(tmp_path / "p"), "--results-dir", str(tmp_path)])
    assert {"cpu-gram.png", "gpu-gram.png"} <= {os.path.basename(p) for p in written}


def test_skip_over_memory_records_the_reason(monkeypatch):
    monkeypatch.setenv("BENCH_MEMORY_LIMIT_MIB", "100")
    monkeypatch.setattr(_record, "SKIPPED", [])
    _record.skip_over_memory("g", "composition", 99.0, op="x", axis=("image side", 64))  # under the limit
    assert _record.SKIPPED == []
    with pytest.raises(pytest.skip.Exception, match=r"composition would need ~0.2 GiB .* over the 0.1 GiB limit"):
        _record.skip_over_memory("g", "composition", 200.0, op="x", axis=("image side", 128))
    assert _record.SKIPPED == [{"group": "g", "impl": "composition", "op": "x", "axis": ["image side", 128.0],
                                "estimate_mib": 200.0, "reason": _record.SKIPPED[0]["reason"]}]
    monkeypatch.delenv("BENCH_MEMORY_LIMIT_MIB")
    assert _record.memory_limit_mib("cpu") == 3072.0


def _newest_cpu_results():
    """The newest full `make bench` run, cpu-YYYYMMDD.json (not the per-op or rerun files beside it)."""
    found = sorted(p for p in glob.glob(os.path.join(ROOT, "benchmarks", "results", "cpu-*.json"))
                   if re.fullmatch(r"cpu-\d{8}\.json", os.path.basename(p)))
    return found[-1] if found else None


def test_committed_results_hold_every_op_and_loss_at_three_sizes():
    path = _newest_cpu_results()
    if path is None:
        pytest.skip("no committed CPU results")
    data = report.load(path)
    if not any("axis" in b.get("extra_info", {}) for b in data["benchmarks"]):
        pytest.skip(f"{os.path.basename(path)} predates the size axes")
    skipped = {(s["group"], s["impl"]) for s in data.get("skipped", [])}
    for op, fams in report.families(data).items():
        for (function, device), benches in fams.items():
            sizes = {report._size_of(b)[1] for b in benches}
            assert len(sizes) >= 3, f"{op} {function} [{device}]: sizes {sorted(sizes)}"
            # Every group compares ours with an anchor unless the anchor was skipped (with a reason).
            for group in {b["group"] for b in benches}:
                impls = {b["extra_info"]["impl"] for b in benches if b["group"] == group}
                assert len(impls) >= 2 or any(g == group for g, _ in skipped), group
    ops = set(report.families(data))
    assert {"PatchMMDLoss", "MMDPlusPlus", "SCNNLoss", "PerceptualLoss", "StyleLoss", "NCCLoss"} <= ops
    assert {"gram", "match_template", "rff_patch", "scnn"} <= ops
