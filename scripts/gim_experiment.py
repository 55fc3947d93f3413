"""The GIM experiment of Amir & Weiss (seed 004 §1 and §5) at small scale, for the README.

For each source image: K=9 crops shifted by up to ±4 pixels from the centre crop are the targets;
for each loss one image is optimized from the mean of the crops (Adam) against the mean loss to
all crops, then judged by SWD (×10³, Karras et al.'s Laplacian-pyramid patch metric; lower is
more like the crops) and PSNR to the crops. Writes

  benchmarks/results/gim.json   every number (per image, per loss, per pyramid level) + the set-up
  docs/gim.png                  one row per image: a target crop | the mean (MSE optimum) | each loss

and prints the markdown table for the README.

Usage (the defaults take about half an hour on 2 CPU cores, with the paper's 1024-channel S-CNN):
  python scripts/gim_experiment.py
  python scripts/gim_experiment.py --scnn-channels 64         # a narrowed S-CNN: minutes less on the CPU
  python scripts/gim_experiment.py --device cuda --crop-size 128 --steps 500
  python scripts/gim_experiment.py --vgg-weights vgg16.pth      # adds the trained VGG next to the random one
"""
import argparse
import json
import os
import platform
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import perceptual_ext as pe  # noqa: E402
from perceptual_ext.data import labelled_grid, sample_image, save_image  # noqa: E402
from perceptual_ext.data.images import save_text  # noqa: E402
from perceptual_ext.train import gim_experiment  # noqa: E402
from perceptual_ext.train.synthesis import make_loss  # noqa: E402

LABELS = {"target_crop": "a target crop", "init_mean": "mean (MSE optimum)", "mse": "MSE", "l1": "L1",
          "vgg": "VGG16 feat.", "vgg_random": "random VGG16", "gram": "VGG16 Gram", "scnn": "S-CNN (random)",
          "mmd": "patch MMD", "mmdpp": "MMD++"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", default="astronaut,chelsea", help="scikit-image samples, comma-separated")
    p.add_argument("--losses", default=None,
                   help="comma-separated (default mse,vgg,scnn,mmd,mmdpp; with --vgg-weights also vgg_random)")
    p.add_argument("--crop-size", type=int, default=64)
    p.add_argument("--num-crops", type=int, default=9)
    p.add_argument("--shift", type=int, default=4)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--scnn-channels", type=int, default=1024, help="S-CNN width C (the paper's: 1024)")
    p.add_argument("--swd-nhoods", type=int, default=1024, help="SWD neighbourhoods per image and level")
    p.add_argument("--vgg-weights", help="torchvision-layout VGG16 weights (trained VGG); random VGG otherwise")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results", "gim.json"))
    p.add_argument("--png", default=os.path.join(ROOT, "docs", "gim.png"))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    names = args.losses.split(",") if args.losses else (
        ["mse", "vgg", "vgg_random", "scnn", "mmd", "mmdpp"] if args.vgg_weights
        else ["mse", "vgg", "scnn", "mmd", "mmdpp"])
    scnn_channels = args.scnn_channels
    loss_kwargs = {"scnn": {"channels": scnn_channels}}
    images = args.images.split(",")
    torch.manual_seed(args.seed)

    per_image, rows = {}, []
    start = time.perf_counter()
    for name in images:
        print(f"[{name}]", flush=True)
        losses = {n: make_loss(n, vgg_weights=args.vgg_weights, seed=args.seed, **loss_kwargs.get(n, {}))
                  for n in names}
        result = gim_experiment(sample_image(name, channels=3), losses=losses, num_crops=args.num_crops,
                                shift=args.shift, crop_size=args.crop_size, steps=args.steps, lr=args.lr,
                                seed=args.seed, device=device, swd_kwargs={"nhoods_per_image": args.swd_nhoods})
        per_image[name] = result.record()
        for row, m in result.metrics.items():
            extra = f" ({m['seconds']:.1f} s)" if "seconds" in m else ""
            print(f"  {row:12s} SWD {m['swd']:7.2f}  levels {[round(v, 1) for v in m['swd_levels']]}"
                  f"  PSNR {m['psnr']:6.2f}{extra}", flush=True)
        rows.append(result.grid_row())
    seconds = time.perf_counter() - start

    if not args.vgg_weights:  # without weights "vgg" is the random VGG16 too
        LABELS["vgg"] = LABELS["vgg_random"]
    columns = ["target_crop", "init_mean"] + names
    summary = {}
    for column in columns:
        ms = [per_image[i]["metrics"][column] for i in images]
        levels = torch.tensor([m["swd_levels"] for m in ms]).mean(0).tolist()
        summary[column] = {"swd": sum(m["swd"] for m in ms) / len(ms), "swd_levels": levels,
                           "psnr": sum(m["psnr"] for m in ms) / len(ms)}
    info = pe.build_info()
    report = {
        "scnn_channels": scnn_channels,
        "setup": {"images": images, "losses": names, "crop_size": args.crop_size, "num_crops": args.num_crops,
                  "shift": args.shift, "image_size": 2 * args.crop_size, "steps": args.steps, "lr": args.lr,
                  "optimizer": "adam", "init": "mean of the crops", "seed": args.seed,
                  "swd": {"nhoods_per_image": args.swd_nhoods, "nhood_size": 7, "dir_repeats": 4,
                          "dirs_per_repeat": 128},
                  "loss_kwargs": loss_kwargs, "vgg_weights": args.vgg_weights, "device": str(device),
                  "torch": torch.__version__, "perceptual_ext": info["version"], "threads": torch.get_num_threads(),
                  "machine": platform.processor() or platform.machine(), "seconds": round(seconds, 1)},
        "mean_over_images": summary,
        "per_image": per_image,
    }
    save_text(json.dumps(report, indent=2), args.json)
    save_image(labelled_grid(rows, [LABELS.get(c, c) for c in columns], scale=2), args.png)

    level_names = "/".join(str(args.crop_size >> i) for i in range(len(summary["init_mean"]["swd_levels"])))
    print(f"\n| result | SWD ×10³ (mean) | SWD per level {level_names} | PSNR to crops (dB) |")
    print("|---|---:|---:|---:|")
    for column in columns:
        s = summary[column]
        print(f"| {LABELS.get(column, column)} | {s['swd']:.1f} | {' / '.join(f'{v:.1f}' for v in s['swd_levels'])} "
              f"| {s['psnr']:.2f} |")
    print(f"\nwrote {args.json} and {args.png} ({seconds:.0f} s on {device}, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
