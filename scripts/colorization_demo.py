"""A short colorization run on the CPU (seed 002: Zhang, Isola, Efros 2016) and its picture.

Trains a small ColorizationNet with the class-rebalanced soft-encoded cross-entropy on random
crops of scikit-image's colour samples, then colours a training image and a held-out one, and writes

- docs/colorization.png — per image a row: grey input (L only), annealed mean at T = 0.38, at
  T = 1, ground truth;
- benchmarks/results/colorization_demo.json — settings, time, the loss at the start and the end.

Usage (about 5 minutes of 1 CPU thread with the defaults):
    OMP_NUM_THREADS=1 python scripts/colorization_demo.py --steps 600
"""
import argparse
import os
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from perceptual_ext.data import image_grid, sample_image, save_image  # noqa: E402
from perceptual_ext.train import load_colorization_net, train_colorization, write_json  # noqa: E402
from perceptual_ext.train.colorization import grey  # noqa: E402

TRAIN_SAMPLES = ("coffee", "chelsea", "rocket")
HELD_OUT = "astronaut"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--widths", type=int, nargs=3, default=(16, 32, 64))
    p.add_argument("--dilated", type=int, default=1)
    p.add_argument("--size", type=int, default=128, help="side of the pictures' centre squares")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "colorization.png"))
    p.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results", "colorization_demo.json"))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        # The samples as PNG files: decoding those per crop is far cheaper than scikit-image's loader.
        images = os.path.join(tmp, "images")
        for name in TRAIN_SAMPLES:
            save_image(sample_image(name, channels=3), os.path.join(images, f"{name}.png"))
        start, cpu_start = time.time(), time.process_time()
        result = train_colorization(images, out_dir=os.path.join(tmp, "run"), steps=args.steps,
                                    batch_size=args.batch_size, image_size=args.image_size, lr=args.lr,
                                    widths=tuple(args.widths), dilated=args.dilated, sample_every=0,
                                    checkpoint_every=0, device="cpu", seed=0)
        train_seconds, train_cpu = time.time() - start, time.process_time() - cpu_start
        model, _ = load_colorization_net(result["checkpoint"])
    rows = []
    for name in ("chelsea", HELD_OUT):
        image = sample_image(name, channels=3, size=args.size).unsqueeze(0)
        row = [grey(image), model.colorize(image, 0.38), model.colorize(image, 1.0), image]
        rows.append(image_grid([r[0] for r in row]))
    save_image(torch.cat([torch.nn.functional.pad(r, (0, 0, 0, 2), value=1.0) for r in rows], dim=1)[:, :-2],
               args.out)
    history = result["history"]
    tail = max(1, len(history) // 10)
    summary = {
        "train_samples": list(TRAIN_SAMPLES), "held_out": HELD_OUT, "steps": args.steps,
        "batch_size": args.batch_size, "image_size": args.image_size, "lr": args.lr,
        "model": dict(model.config), "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(train_cpu, 1),
        "torch_threads": torch.get_num_threads(),
        "loss_first_10pct": sum(history[:tail]) / tail, "loss_last_10pct": sum(history[-tail:]) / tail,
    }
    write_json(summary, args.json, overwrite=True)
    print(summary)
    print(f"wrote {args.out} and {args.json}")


if __name__ == "__main__":
    main()
