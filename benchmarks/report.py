"""Print the ours-vs-anchor ratio table of pytest-benchmark JSON files (markdown) and, with
``--plots DIR``, draw one PNG per op and per loss: time and peak memory against size.

Usage: python benchmarks/report.py benchmarks/results/cpu-YYYYMMDD.json [more.json ...] [--plots DIR]

Within each benchmark group, every implementation is compared with the group's anchor: the
benchmark whose extra_info["anchor"] is true, else the first of ANCHORS present: speed-up = anchor
median / impl median, memory ratio = impl peak / anchor peak. Cases the run skipped (the JSON's
"skipped" list, e.g. a composition over the memory limit) are listed under the table.

When benchmarks/results/gpu-*.json exists (the newest by name), its table and plots are added
(``--no-gpu`` leaves it out; a gpu file named on the command line is not added twice).

Plots: every case belongs to an op (extra_info["op"], else the bench file's name without
``bench_``) and lies on a size axis (extra_info["axis"] = [label, value], else the product of its
numeric parameters); cases of one test function on one device form one row of the op's figure
(time | peak memory), one line per implementation, log axes. Groups this script does not know
(any bench file following benchmarks/_record.py's conventions) are drawn the same way. Files are
named ``<results kind>-<op>.png``, the kind being the JSON file's name before its first "-"
(``cpu``, ``gpu``).
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import sys
from collections import defaultdict

ANCHORS = ("composition", "opencv", "opencv_loop", "torch", "optimization", "scipy", "skimage")
OURS = ("fused", "ours")
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _anchor(impls):
    """The implementation a group is compared with: an explicit extra_info["anchor"], else by ANCHORS order."""
    marked = [impl for impl, bench in impls.items() if bench.get("extra_info", {}).get("anchor")]
    if marked:
        return marked[0]
    return next((a for a in ANCHORS if a in impls), None)


def load(path):
    with open(path) as f:
        return json.load(f)


def _groups(data):
    groups = defaultdict(dict)
    for bench in data.get("benchmarks", []):
        impl = bench.get("extra_info", {}).get("impl", bench["name"])
        groups[bench.get("group") or bench["name"]][impl] = bench
    return groups


def rows(data):
    """One dict per (group, non-anchor implementation), in the order the run recorded them."""
    if isinstance(data, str):
        data = load(data)
    machine = data.get("machine_info", {}).get("cpu", {}).get("brand_raw", "")
    for group, impls in _groups(data).items():
        anchor = _anchor(impls)
        for impl, bench in impls.items():
            if impl == anchor and len(impls) > 1:
                continue
            median = bench["stats"]["median"]
            ref_bench = impls[anchor] if anchor and impl != anchor else None
            ref = ref_bench["stats"]["median"] if ref_bench else None
            peak = bench.get("extra_info", {}).get("peak_mib")
            ref_peak = ref_bench.get("extra_info", {}).get("peak_mib") if ref_bench else None
            yield dict(group=group, impl=impl, anchor=(anchor if ref_bench else None) or "-", ms=median * 1e3,
                       anchor_ms=ref * 1e3 if ref else None, speedup=(ref / median) if ref else None, peak=peak,
                       anchor_peak=ref_peak, machine=machine)


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def describe_run(data, path) -> str:
    """One line: file, CPU (and GPU), threads, torch, date, load average around the run."""
    info = data.get("machine_info", {})
    parts = [os.path.basename(path)]
    cpu = info.get("cpu", {}).get("brand_raw")
    if cpu:
        parts.append(cpu)
    if info.get("gpu"):
        parts.append(info["gpu"])
    if info.get("cpu_count"):
        parts.append(f"{info['cpu_count']} cores")
    if info.get("torch_threads"):
        parts.append(f"{info['torch_threads']} torch threads")
    if info.get("torch"):
        parts.append(f"torch {info['torch']}")
    if data.get("datetime"):
        parts.append(data["datetime"][:16].replace("T", " ") + " UTC")
    load = data.get("load_average")
    if load and load.get("start") and load.get("end"):
        parts.append(f"load average {load['start'][0]:.1f} at start, {load['end'][0]:.1f} at end")
    return ", ".join(parts)


def print_table(data, path, out=None):
    out = out or sys.stdout
    print(f"Results: {describe_run(data, path)}\n", file=out)
    print("| benchmark | ours | anchor | ours ms | anchor ms | speed-up | ours peak MiB | anchor peak MiB |", file=out)
    print("|---|---|---|---:|---:|---:|---:|---:|", file=out)
    for r in rows(data):
        print(f"| {r['group']} | {r['impl']} | {r['anchor']} | {fmt(r['ms'], '.2f')} | {fmt(r['anchor_ms'], '.2f')} "
              f"| {fmt(r['speedup'], '.2f')}× | {fmt(r['peak'], '.1f')} | {fmt(r['anchor_peak'], '.1f')} |", file=out)
    skipped = data.get("skipped", [])
    if skipped:
        print("\nSkipped:\n", file=out)
        for s in skipped:
            print(f"- {s.get('group', '?')}: {s.get('impl', '?')} skipped: {s.get('reason', '')}", file=out)


# plots --------------------------------------------------------------------------------------

def _op_of(bench) -> str:
    info = bench.get("extra_info", {})
    if info.get("op"):
        return str(info["op"])
    module = bench.get("fullname", bench.get("name", "")).split("::")[0]
    stem = os.path.splitext(os.path.basename(module))[0]
    return stem[len("bench_"):] if stem.startswith("bench_") else (stem or bench.get("group", "benchmark"))


def _function_of(bench) -> str:
    name = bench.get("fullname", bench.get("name", "")).split("::")[-1]
    return name.split("[")[0]


def _device_of(bench) -> str:
    params = bench.get("params") or {}
    device = params.get("device") or bench.get("extra_info", {}).get("shape", {}).get("device")
    if device:
        return str(device)
    group = bench.get("group") or ""
    return "cuda" if re.search(r"\bcuda\b", group) else "cpu"


def _numbers(value):
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _numbers(v)]
    return []


def _size_of(bench):
    """(label, value) of a case on its size axis; (None, None) where nothing numeric describes it."""
    info = bench.get("extra_info", {})
    axis = info.get("axis")
    if isinstance(axis, (list, tuple)) and len(axis) == 2 and _numbers(axis[1]):
        return str(axis[0]), float(axis[1])
    params = {k: v for k, v in (bench.get("params") or info.get("shape") or {}).items()
              if k not in ("impl", "device")}
    numbers = [(k, _numbers(v)) for k, v in params.items()]
    numbers = [(k, n) for k, n in numbers if n]
    if not numbers:
        return None, None
    return "·".join(k for k, _ in numbers), float(math.prod(x for _, n in numbers for x in n))


def _common_words(names):
    words = [n.split() for n in names]
    common = []
    for column in zip(*words):
        if all(w == column[0] for w in column):
            common.append(column[0])
        else:
            break
    return " ".join(common)


def families(data):
    """{op: {(function, device): [bench, ...]}} of a results JSON."""
    ops = defaultdict(lambda: defaultdict(list))
    for bench in data.get("benchmarks", []):
        ops[_op_of(bench)][(_function_of(bench), _device_of(bench))].append(bench)
    return ops


def _skipped_by_op(data):
    out = defaultdict(list)
    for s in data.get("skipped", []):
        out[str(s.get("op") or "")].append(s)
    return out


def _file_name(op: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", op).strip("_") or "benchmark"


def plot(data, path, out_dir) -> list:
    """Write one PNG per op/loss of ``data`` into ``out_dir``; return the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    kind = os.path.basename(path).split("-")[0].split(".")[0] or "results"
    skipped = _skipped_by_op(data)
    written = []
    for op, fams in sorted(families(data).items()):
        keys = list(fams)  # the order the run recorded them: the bench file's order
        fig, axes = plt.subplots(len(keys), 2, figsize=(11, 3.6 * len(keys)), squeeze=False)
        for row, key in enumerate(keys):
            _plot_family(axes[row], op, key, fams[key], skipped.get(op, []))
        fig.suptitle(f"{op}: time and peak memory against size ({kind}: {describe_run(data, path)})",
                     fontsize=9, wrap=True)
        fig.tight_layout(rect=(0, 0, 1, 0.96))
        target = os.path.join(out_dir, f"{kind}-{_file_name(op)}.png")
        fig.savefig(target, dpi=90)
        plt.close(fig)
        written.append(target)
    return written


def _plot_family(axes, op, key, benches, skipped):
    function, device = key
    time_ax, mem_ax = axes
    lines = defaultdict(list)
    label = None
    anchors = set()
    for bench in benches:
        axis_label, x = _size_of(bench)
        label = label or axis_label
        info = bench.get("extra_info", {})
        impl = info.get("impl", bench["name"])
        lines[impl].append((x, bench["stats"]["median"] * 1e3, info.get("peak_mib"), bench.get("group", "")))
    for impl, points in lines.items():
        if any(x is None for x, *_ in points):  # nothing numeric: place the cases in run order
            points[:] = [(i + 1.0,) + tuple(p[1:]) for i, p in enumerate(points)]
            label = label or "case"
        points.sort()
    groups = {g: {b.get("extra_info", {}).get("impl", b["name"]): b for b in benches if b.get("group") == g}
              for g in {b.get("group") for b in benches}}
    for impls in groups.values():
        anchor = _anchor(impls)
        if anchor:
            anchors.add(anchor)
    title = _common_words(sorted(groups)) or function
    if device not in title.split():
        title = f"{title} [{device}]"
    notes = [s for s in skipped if s.get("group") in groups]
    if notes:
        title += "\n" + "; ".join(f"{s.get('impl')} skipped at {_skip_where(s)} (memory)" for s in notes)
    any_memory = False
    xs_all = set()
    ours = [i for i in lines if _is_ours(i, anchors)]
    for impl in sorted(lines, key=lambda i: (i not in ours, i in anchors, i)):
        points = lines[impl]
        xs = [p[0] for p in points]
        xs_all.update(xs)
        style = {"marker": "o", "linewidth": 2.2} if impl in ours else {"marker": "s", "linestyle": "--",
                                                                          "linewidth": 1.4}
        name = impl + (" (anchor)" if impl in anchors else "")
        time_ax.plot(xs, [p[1] for p in points], label=name, **style)
        mem = [(p[0], p[2]) for p in points if p[2] is not None]
        if mem:
            any_memory = True
            mem_ax.plot([m[0] for m in mem], [max(m[1], 1e-2) for m in mem], label=name, **style)
    _annotate_ratios(time_ax, mem_ax, lines, anchors)
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for ax, what in ((time_ax, "median time (ms)"), (mem_ax, "peak memory (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sorted(xs_all))
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.yaxis.set_minor_formatter(plain)
        ax.set_xlabel(label or "size")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(title, fontsize=9)
    if not any_memory:
        mem_ax.text(0.5, 0.5, "peak memory not measured", ha="center", va="center", transform=mem_ax.transAxes)
    for ax in (time_ax, mem_ax):
        if ax.lines:
            ax.legend(fontsize=8)


def _is_ours(impl, anchors) -> bool:
    """Ours: "fused"/"ours", or any implementation that is neither an anchor nor a known peer."""
    return impl in OURS or (impl not in ANCHORS and impl not in anchors)


def _annotate_ratios(time_ax, mem_ax, lines, anchors):
    """Write ours' speed-up (anchor time / ours) and memory ratio beside each of our points."""
    ours = next((i for i in sorted(lines, key=lambda i: i not in OURS) if _is_ours(i, anchors)), None)
    anchor = next((i for i in lines if i in anchors and i != ours), None)
    if ours is None or anchor is None:
        return
    ref = {p[0]: p for p in lines[anchor]}
    for x, ms, peak, _ in lines[ours]:
        if x not in ref:
            continue
        _, ref_ms, ref_peak, _ = ref[x]
        time_ax.annotate(f"{ref_ms / ms:.1f}×", (x, ms), textcoords="offset points", xytext=(4, -11), fontsize=7)
        if peak and ref_peak and peak > 0:
            mem_ax.annotate(f"÷{ref_peak / peak:.0f}" if ref_peak >= peak else f"×{peak / ref_peak:.1f}", (x, peak),
                            textcoords="offset points", xytext=(4, -11), fontsize=7)


def _skip_where(skip) -> str:
    axis = skip.get("axis")
    if isinstance(axis, (list, tuple)) and len(axis) == 2:
        return f"{axis[0]} {axis[1]:g}"
    return skip.get("group", "?")


# command line -------------------------------------------------------------------------------

def gpu_results(results_dir: str = RESULTS_DIR):
    """The newest benchmarks/results/gpu-*.json, or None."""
    found = sorted(glob.glob(os.path.join(results_dir, "gpu-*.json")))
    return found[-1] if found else None


def main(argv=None, out=None) -> list:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="pytest-benchmark JSON files")
    parser.add_argument("--plots", metavar="DIR", help="write one PNG per op and per loss into DIR")
    parser.add_argument("--no-gpu", action="store_true", help="do not add benchmarks/results/gpu-*.json")
    parser.add_argument("--results-dir", default=RESULTS_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    paths = list(args.results)
    gpu = None if args.no_gpu else gpu_results(args.results_dir)
    if gpu and not any(os.path.abspath(p) == os.path.abspath(gpu) for p in paths):
        paths.append(gpu)
    written = []
    for i, path in enumerate(paths):
        data = load(path)
        if i:
            print(file=out)
        print_table(data, path, out)
        if args.plots:
            written += plot(data, path, args.plots)
    if written:
        print(f"\nPlots: {', '.join(written)}", file=out)
    return written


if __name__ == "__main__":
    main()
