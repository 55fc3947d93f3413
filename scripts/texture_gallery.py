"""Texture gallery (seeds 001 and 004): one bundled texture per row, synthesized with each loss.

Columns: the exemplar (the 256² target crop), then one synthesis per loss, each from the exemplar's
mean colour plus noise, coarse to fine (each phase starts from the previous result upscaled):

- Gram matrices of a random VGG16 at relu1_1, relu2_1, relu3_1 weighted 100 : 10 : 1 (Gatys et al.'s
  loss; seed 004 §6 recalls that random filters' second-order statistics do about as well as
  trained ones) — with ``--vgg-weights`` a second column with the trained VGG16 joins it;
- the S-CNN feature loss (seed 004 §1.2), pooled over the whole image;
- patch MMD (seed 004 §3), its kernel narrowing from σ = 0.15 to the paper's 0.06.

Each result is scored by SWD ×10³ (Karras et al.'s Laplacian-pyramid patch metric) to the exemplar;
two reference rows bound it: the start image (mean colour + noise, the worst) and another 256² crop
of the same texture (what a perfect synthesis would score). Writes

  benchmarks/results/textures.json   every number and the settings
  docs/textures.png                  the gallery

Usage (about 15 minutes on 2 CPU cores):
  python scripts/texture_gallery.py
  python scripts/texture_gallery.py --vgg-weights vgg16-397923af.pth   # adds the trained-VGG16 column
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
from perceptual_ext.metrics import swd  # noqa: E402
from perceptual_ext.train import synthesize_texture_in_phases  # noqa: E402
from perceptual_ext.train.synthesis import GRAM_TEXTURE_LAYERS, GRAM_TEXTURE_WEIGHTS  # noqa: E402
from perceptual_ext.train.synthesis import texture_init, texture_loss, texture_target  # noqa: E402

#: (size, Adam steps, loss options) per phase; "lr" per method.
SCHEDULES = {
    # texture_loss's Gram: Gatys et al.'s layers up to relu3_1, the shallow ones weighted up (with a
    # random VGG16, Johnson's style layers relu1_2..relu4_3 leave gravel as noise)
    "gram": {"phases": [(64, 150, {}), (128, 100, {}), (256, 30, {})], "lr": 0.05,
             "options": {"layers": GRAM_TEXTURE_LAYERS, "layer_weights": GRAM_TEXTURE_WEIGHTS}},
    "scnn": {"phases": [(64, 200, {}), (128, 100, {}), (256, 40, {})], "lr": 0.05,
             "options": {"channels": 256, "depth": 2}},
    "mmd": {"phases": [(256, 120, {"sigma": 0.15}), (256, 120, {"sigma": 0.06})], "lr": 0.05},
}
LABELS = {"exemplar": "exemplar (target)", "gram": "Gram, random VGG16", "gram_trained": "Gram, trained VGG16",
          "scnn": "S-CNN (C=256, D=2)", "mmd": "patch MMD"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--textures", default="gravel,brick,grass", help="bundled samples, comma-separated")
    p.add_argument("--size", type=int, default=256, help="side of the exemplar crop and of the results")
    p.add_argument("--steps-scale", type=float, default=1.0, help="multiply every phase's steps (0.1: a quick look)")
    p.add_argument("--vgg-weights", help="torchvision-layout VGG16 weights: adds a trained-VGG16 Gram column")
    p.add_argument("--swd-nhoods", type=int, default=1024, help="SWD neighbourhoods per image and level")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results", "textures.json"))
    p.add_argument("--png", default=os.path.join(ROOT, "docs", "textures.png"))
    return p.parse_args(argv)


def synthesize(exemplar, method, schedule, args, vgg_weights):
    """Run the phases of ``schedule`` against ``exemplar`` [1, C, S, S] (downscaled for the coarse
    phases, so every phase sees the same texture); return the final [1, C, S, S] image."""
    phases = [(size * args.size // 256, max(1, round(steps * args.steps_scale)), options)
              for size, steps, options in schedule["phases"]]

    def loss_at(size, options):
        return texture_loss(method, size, vgg_weights=vgg_weights, seed=args.seed,
                            loss_kwargs={**schedule.get("options", {}), **options})

    return synthesize_texture_in_phases(exemplar, phases, loss_at, schedule["lr"], seed=args.seed, device=args.device,
                                        progress=method).image


def main(argv=None):
    args = parse_args(argv)
    textures = args.textures.split(",")
    methods = ["gram", "gram_trained", "scnn", "mmd"] if args.vgg_weights else ["gram", "scnn", "mmd"]
    scores, seconds, rows = {}, {}, []
    begin = time.perf_counter()
    for name in textures:
        full = sample_image(name, channels=3)
        target = texture_target(full, args.size).to(args.device)
        other = full[None, :, :args.size, :args.size].to(args.device)  # another crop: the floor of the score
        start = texture_init(target, args.seed)

        def score(image):
            return float(swd(image, target, nhoods_per_image=args.swd_nhoods, seed=args.seed))

        scores[name] = {"init": score(start), "other_crop": score(other)}
        row = [target[0].cpu()]
        for method in methods:
            loss = "gram" if method == "gram_trained" else method
            weights = args.vgg_weights if method == "gram_trained" else None
            tick = time.perf_counter()
            image = synthesize(target, loss, SCHEDULES[loss], args, weights)
            seconds.setdefault(name, {})[method] = round(time.perf_counter() - tick, 1)
            scores[name][method] = score(image)
            row.append(image[0].cpu())
            print(f"  {name:8s} {LABELS[method]:22s} SWD {scores[name][method]:7.1f} "
                  f"({seconds[name][method]:.0f} s)", flush=True)
        print(f"  {name:8s} {'start (mean + noise)':22s} SWD {scores[name]['init']:7.1f}; "
              f"another crop {scores[name]['other_crop']:.1f}", flush=True)
        rows.append(row)

    columns = ["init", "other_crop"] + methods
    mean = {c: sum(scores[t][c] for t in textures) / len(textures) for c in columns}
    info = pe.build_info()
    report = {"textures": textures, "size": args.size, "methods": methods, "swd": scores, "mean_swd": mean,
              "seconds": seconds,
              "setup": {"schedules": {m: SCHEDULES[m] for m in ("gram", "scnn", "mmd")}, "optimizer": "adam",
                        "steps_scale": args.steps_scale, "init": "exemplar mean colour + N(0, 0.1²) noise",
                        "vgg_weights": args.vgg_weights, "seed": args.seed, "device": args.device,
                        "swd": {"nhoods_per_image": args.swd_nhoods, "nhood_size": 7},
                        "torch": torch.__version__, "perceptual_ext": info["version"],
                        "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
                        "wall_seconds": round(time.perf_counter() - begin, 1)}}
    save_text(json.dumps(report, indent=2), args.json)
    save_image(labelled_grid(rows, [LABELS["exemplar"]] + [LABELS[m] for m in methods]), args.png)

    print(f"\n| texture | {' | '.join(['start', 'another crop'] + [LABELS[m] for m in methods])} |")
    print("|---|" + "---:|" * len(columns))
    for name in textures + ["mean"]:
        values = mean if name == "mean" else scores[name]
        print(f"| {name} | " + " | ".join(f"{values[c]:.1f}" for c in columns) + " |")
    print(f"\nwrote {args.json} and {args.png} ({time.perf_counter() - begin:.0f} s)")


if __name__ == "__main__":
    main()
