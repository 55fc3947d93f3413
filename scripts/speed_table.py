"""Johnson et al.'s speed table (seed 003, Table 1) on this machine: feed-forward vs optimization.

Feed-forward: one forward pass of :class:`~perceptual_ext.models.StyleTransformNet` (Johnson et al.'s
architecture; timing does not depend on its weights), median of several runs after a warm-up.
Optimization: the library's Gatys-style transfer, :func:`perceptual_ext.train.style_transfer`
(VGG16 losses, L-BFGS as in the paper), timed from the call to the end of iteration 100, 300 and 500.

Measured: 100, 300 and 500 iterations at 256² (one run, timed at each), 100 iterations at 512².
The 512² cells for 300 and 500 iterations are linear extrapolations (set-up time + iterations × the
time per iteration of the 512² run) and are marked ``"measured": false``. Writes
benchmarks/results/speed_table.json:

  {"rows": [{"size", "iterations", "feedforward_s", "optimization_s", "measured", "speedup",
             "loss_evaluations"}, ...], "paper": {...}, "setup": {...}}

Usage (about 20 minutes on 2 CPU cores):
  python scripts/speed_table.py
  python scripts/speed_table.py --sizes 64 --iterations 10,20 --measure-512 0   # a quick look
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import perceptual_ext as pe  # noqa: E402
from perceptual_ext.data import sample_image  # noqa: E402
from perceptual_ext.data.images import center_resize, save_text  # noqa: E402
from perceptual_ext.models import StyleTransformNet  # noqa: E402
from perceptual_ext.train import style_transfer  # noqa: E402
from perceptual_ext.train.synthesis import StyleTransferObjective  # noqa: E402

#: Johnson et al., Table 1 (GTX Titan X): seconds for optimization at 100/300/500 iterations, and ours (feed-forward).
PAPER = {256: {"feedforward_s": 0.015, "optimization_s": {100: 3.17, 300: 9.52, 500: 15.86}},
         512: {"feedforward_s": 0.05, "optimization_s": {100: 10.97, 300: 32.91, 500: 54.85}},
         1024: {"feedforward_s": 0.21, "optimization_s": {100: 42.89, 300: 128.66, 500: 214.44}}}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="256,512", help="image sides, comma-separated")
    p.add_argument("--iterations", default="100,300,500", help="the table's columns")
    p.add_argument("--measure-512", type=int, default=100,
                   help="iterations measured at every size after the first (the rest are extrapolated)")
    p.add_argument("--feedforward-runs", type=int, default=10)
    p.add_argument("--content", default="chelsea")
    p.add_argument("--style", default="rocket")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results", "speed_table.json"))
    return p.parse_args(argv)


def time_feedforward(size: int, runs: int, device: str) -> float:
    """Median seconds of one StyleTransformNet forward pass on a [1, 3, size, size] image."""
    net = StyleTransformNet().to(device).eval()
    x = torch.rand(1, 3, size, size, device=device)
    times = []
    with torch.no_grad():
        for i in range(runs + 2):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            net(x)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if i >= 2:  # two warm-up runs
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_optimization(size: int, checkpoints, args) -> dict:
    """Seconds from the call of style_transfer to the end of each iteration in ``checkpoints``,
    and the loss evaluations (forward + backward passes of the objective) up to each."""
    content = center_resize(sample_image(args.content, channels=3), size)
    style = sample_image(args.style, channels=3)
    evaluations = [0]

    def count(module, inputs, output):
        if isinstance(module, StyleTransferObjective):
            evaluations[0] += 1

    marks = {}

    def callback(step, loss, image):
        if step + 1 in checkpoints:
            marks[step + 1] = (time.perf_counter() - start, evaluations[0])

    hook = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        start = time.perf_counter()
        style_transfer(content, style, steps=max(checkpoints), optimizer="lbfgs", device=args.device,
                       callback=callback, progress=f"L-BFGS {size}²")
    finally:
        hook.remove()
    return marks


def main(argv=None):
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    columns = [int(n) for n in args.iterations.split(",")]
    load_before = os.getloadavg()
    rows, begin = [], time.perf_counter()
    for index, size in enumerate(sizes):
        feedforward = time_feedforward(size, args.feedforward_runs, args.device)
        measured_iters = columns if index == 0 else [n for n in columns if n <= args.measure_512]
        if index > 0 and args.measure_512 and args.measure_512 not in measured_iters:
            measured_iters.append(args.measure_512)
        if not measured_iters or max(measured_iters) < 2:
            raise SystemExit(f"at {size}² no run of two or more iterations is measured: raise --measure-512")
        marks = time_optimization(size, set(measured_iters + [1]), args)
        # time = set-up + iterations × per_iteration, fitted on the first and the last measured iteration
        last = max(measured_iters)
        per_iteration = (marks[last][0] - marks[1][0]) / (last - 1)
        setup = marks[last][0] - last * per_iteration
        for n in columns:
            measured = n in marks and n in measured_iters
            seconds = marks[n][0] if measured else setup + n * per_iteration
            rows.append({"size": size, "iterations": n, "feedforward_s": feedforward, "optimization_s": seconds,
                         "measured": measured, "speedup": seconds / feedforward,
                         "loss_evaluations": marks[n][1] if measured else None})
            print(f"{size}² {n:4d} iterations: optimization {seconds:8.2f} s{'' if measured else ' (extrapolated)'}"
                  f", feed-forward {feedforward * 1e3:7.1f} ms, {seconds / feedforward:7.0f}×", flush=True)
    info = pe.build_info()
    report = {"rows": rows,
              "paper": {str(k): {"feedforward_s": v["feedforward_s"],
                                 "optimization_s": {str(n): s for n, s in v["optimization_s"].items()}}
                        for k, v in PAPER.items()},
              "setup": {"optimization": "perceptual_ext.train.style_transfer (VGG16 relu2_2 content, "
                                        "relu1_2..relu4_3 Gram style, TV; L-BFGS, strong-Wolfe line search, "
                                        "random VGG16 weights: the weights do not change the time)",
                        "feedforward": "StyleTransformNet() forward, batch 1, no grad, median of runs",
                        "content": args.content, "style": args.style, "device": args.device,
                        "threads": torch.get_num_threads(), "torch": torch.__version__,
                        "perceptual_ext": info["version"], "machine": platform.processor() or platform.machine(),
                        "cpu_flags": info.get("cpu_flags"), "load_average_before": load_before,
                        "load_average_after": os.getloadavg(), "wall_seconds": round(time.perf_counter() - begin, 1)}}
    save_text(json.dumps(report, indent=2), args.json)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
