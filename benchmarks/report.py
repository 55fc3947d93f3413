"""Print the fused-vs-anchor ratio table of a pytest-benchmark JSON file (markdown).

Usage: python benchmarks/report.py benchmarks/results/cpu-YYYYMMDD.json [more.json ...]

Within each benchmark group, every implementation is compared with the group's anchor: the
benchmark whose extra_info["anchor"] is true, else the first of ANCHORS present: speed-up = anchor median / impl median,
memory ratio = impl peak / anchor peak.
"""
import json
import sys
from collections import defaultdict

ANCHORS = ("composition", "opencv", "opencv_loop", "torch", "optimization")


def _anchor(impls):
    """The implementation a group is compared with: an explicit extra_info["anchor"], else by ANCHORS order."""
    marked = [impl for impl, bench in impls.items() if bench.get("extra_info", {}).get("anchor")]
    if marked:
        return marked[0]
    return next((a for a in ANCHORS if a in impls), None)


def rows(path):
    with open(path) as f:
        data = json.load(f)
    groups = defaultdict(dict)
    for bench in data["benchmarks"]:
        impl = bench.get("extra_info", {}).get("impl", bench["name"])
        groups[bench["group"]][impl] = bench
    machine = data.get("machine_info", {}).get("cpu", {}).get("brand_raw", "")
    for group, impls in groups.items():
        anchor = _anchor(impls)
        for impl, bench in impls.items():
            if impl == anchor:
                continue
            median = bench["stats"]["median"]
            ref = impls[anchor]["stats"]["median"] if anchor else None
            peak = bench.get("extra_info", {}).get("peak_mib")
            ref_peak = impls[anchor].get("extra_info", {}).get("peak_mib") if anchor else None
            yield dict(group=group, impl=impl, anchor=anchor or "-", ms=median * 1e3,
                       anchor_ms=ref * 1e3 if ref else None,
                       speedup=(ref / median) if ref else None, peak=peak, anchor_peak=ref_peak,
                       machine=machine)


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def main(paths):
    print("| benchmark | ours | anchor | ours ms | anchor ms | speed-up | ours peak MiB | anchor peak MiB |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for path in paths:
        for r in rows(path):
            print(f"| {r['group']} | {r['impl']} | {r['anchor']} | {fmt(r['ms'], '.2f')} | {fmt(r['anchor_ms'], '.2f')} "
                  f"| {fmt(r['speedup'], '.2f')}× | {fmt(r['peak'], '.1f')} | {fmt(r['anchor_peak'], '.1f')} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
