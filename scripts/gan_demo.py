"""pix2pix on the built-in edges->photo set, on the CPU: the README's picture, curves and step time.

Runs the commands a user would run, then draws what they wrote:

1. ``perceptual-ext sample-pairs --kind edges --size SIZE --layout folders --out OUT/pairs``
2. ``perceptual-ext train-pix2pix --builtin edges --crop-size SIZE ... --out-dir OUT/run``
3. ``perceptual-ext translate --model OUT/run/checkpoint.pt OUT/pairs/A --out OUT/translated``
4. docs/pix2pix.png (rows: edges, translate's output, photo), docs/pix2pix_losses.png (the recorded
   D/G losses and D's accuracy), and the time of one training step at 256² with the default
   networks (ngf = ndf = 64, batch 1), printed and written to docs/pix2pix_run.json.

Usage: python scripts/gan_demo.py [--steps 800] [--size 128] [--out demo_out/pix2pix]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from perceptual_ext import cli  # noqa: E402
from perceptual_ext.data import image_grid, list_images, load_image, save_image  # noqa: E402
from perceptual_ext.train import load_checkpoint  # noqa: E402


def step_time_256(steps: int = 4) -> dict:
    """Seconds of one pix2pix training step (D + G update, data already loaded) at 256², default
    networks (ngf = ndf = 64), batch 1: the median over steps 2..``steps`` (the first warms up), as
    wall time and as this process's CPU time."""
    import tempfile

    from perceptual_ext.train import pix2pix

    original, times = pix2pix._Pix2PixStep.__call__, []

    def timed(self, wrapped, batch):
        wall, cpu = time.perf_counter(), time.process_time()
        out = original(self, wrapped, batch)
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
        return out

    pix2pix._Pix2PixStep.__call__ = timed
    try:
        with tempfile.TemporaryDirectory() as tmp:
            pix2pix.train_pix2pix(out_dir=tmp, steps=steps, crop_size=256, load_size=256, builtin="edges",
                                  sample_every=0, checkpoint_every=0, progress=False, device="cpu")
    finally:
        pix2pix._Pix2PixStep.__call__ = original
    return {"wall_seconds": round(float(np.median([t[0] for t in times[1:]])), 3),
            "cpu_seconds": round(float(np.median([t[1] for t in times[1:]])), 3)}


def smooth(values, width: int = 25):
    values = np.asarray(values, dtype=float)
    if len(values) < width:
        return values
    kernel = np.ones(width) / width
    return np.convolve(values, kernel, mode="valid")


def plot_history(history: dict, path: str) -> None:
    """The curves, with matplotlib (not a dependency of the library: skipped with a note without it)."""
    try:
        import matplotlib
    except ImportError:
        print(f"matplotlib is not installed: {path} not drawn (pip install matplotlib)")
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for key, label in (("loss_D", "D loss"), ("loss_G_GAN", "G adversarial loss")):
        axes[0].plot(smooth(history[key]), label=label)
    axes[0].set_title("adversarial losses (vanilla GAN)")
    axes[1].plot(smooth(history["loss_G_L1"]), color="C2")
    axes[1].set_title("L1 of G(x) to the target ([0, 1] scale)")
    axes[2].plot(smooth(history["D_real_acc"]), label="real patches")
    axes[2].plot(smooth(history["D_fake_acc"]), label="generated patches")
    axes[2].set_ylim(0, 1)
    axes[2].set_title("D accuracy")
    for ax in axes:
        ax.set_xlabel("step (moving average of 25)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--ngf", type=int, default=32)
    parser.add_argument("--out", default=os.path.join(ROOT, "demo_out", "pix2pix"))
    parser.add_argument("--docs", default=os.path.join(ROOT, "docs"))
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--timing-only", action="store_true",
                        help="only measure the 256² step and update DOCS/pix2pix_run.json")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared 2-core machine two threads spin and run slower)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.timing_only:
        path = os.path.join(args.docs, "pix2pix_run.json")
        with open(path) as f:
            result = json.load(f)
        result["step_256_default_nets"] = step_time_256()
        print(json.dumps(result, indent=2))
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        return 0
    pairs, run, translated = (os.path.join(args.out, d) for d in ("pairs", "run", "translated"))
    size = str(args.size)
    assert cli.main(["sample-pairs", "--kind", "edges", "--size", size, "--layout", "folders", "--out", pairs,
                     "--overwrite"]) == 0
    start = time.perf_counter()
    assert cli.main(["train-pix2pix", "--builtin", "edges", "--crop-size", size, "--load-size", str(args.size * 9 // 8),
                     "--ngf", str(args.ngf), "--ndf", str(args.ngf), "--steps", str(args.steps), "--batch-size", "1",
                     "--sample-every", "0", "--checkpoint-every", "0", "--workers", "0", "--device", "cpu",
                     "--out-dir", run, "--overwrite"]) == 0
    train_seconds = time.perf_counter() - start
    ckpt = os.path.join(run, "checkpoint.pt")
    assert cli.main(["translate", "--model", ckpt, os.path.join(pairs, "A"), "--out", translated, "--overwrite"]) == 0

    names = [os.path.basename(p) for p in list_images(os.path.join(pairs, "A"))]
    shown = [n for n in names if n.split(".")[0] in ("astronaut", "camera", "coffee", "chelsea", "coins", "rocket")]
    rows = [image_grid([load_image(os.path.join(folder, n)) for n in shown])
            for folder in (os.path.join(pairs, "A"), translated, os.path.join(pairs, "B"))]
    os.makedirs(args.docs, exist_ok=True)
    save_image(torch.cat([rows[0], torch.ones(3, 2, rows[0].shape[-1]), rows[1], torch.ones(3, 2, rows[0].shape[-1]),
                          rows[2]], dim=1), os.path.join(args.docs, "pix2pix.png"))
    history = load_checkpoint(ckpt)["history"]
    plot_history(history, os.path.join(args.docs, "pix2pix_losses.png"))
    l1 = [float(np.mean((load_image(os.path.join(translated, n)) - load_image(os.path.join(pairs, "B", n)))
                        .abs().numpy())) for n in names]
    result = {"steps": args.steps, "size": args.size, "ngf": args.ngf, "train_seconds": round(train_seconds, 1),
              "torch_threads": torch.get_num_threads(), "translate_l1_mean": round(float(np.mean(l1)), 4),
              "first_50_steps_l1": round(float(np.mean(history["loss_G_L1"][:50])), 4),
              "last_50_steps_l1": round(float(np.mean(history["loss_G_L1"][-50:])), 4)}
    if not args.skip_timing:
        result["step_256_default_nets"] = step_time_256()
    print(json.dumps(result, indent=2))
    with open(os.path.join(args.docs, "pix2pix_run.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
