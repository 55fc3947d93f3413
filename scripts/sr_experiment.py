"""The ×4 super-resolution table of seeds 003 and 004 at CPU scale: pixel loss vs perceptual losses, over seeds.

For every seed and loss one ``SuperResolutionNet`` is trained on random crops of the bundled colour
photographs (``TRAIN_SAMPLES``), then it and bicubic upsampling are evaluated on held-out colour
photographs (``TEST_SAMPLES``: PSNR, SSIM, SWD). Runs go to ``--jobs`` worker processes (one torch
thread each). Writes

- benchmarks/results/sr_experiment.json — mean ± std over seeds per method, every run's numbers, the settings
  (top-level ``"steps"`` and ``"seeds"``);
- docs/sr.png — a held-out image: HR, bicubic, then one column per loss (the first seed's nets).

The nets are ``SuperResolutionNet(residual=True)`` by default: they output the bicubic upsampling
plus a learned correction and start exactly at bicubic, so a CPU-length run can improve on it.
``--no-residual`` trains Johnson et al.'s plain net instead.

Usage (the defaults: 5 losses × 3 seeds × 2000 steps, about 40 minutes with 2 jobs on 2 cores):
    python scripts/sr_experiment.py
    python scripts/sr_experiment.py --losses mse,vgg --seeds 0 --steps 200     # a quick look
An entry ``srcnn`` in --losses trains the SRCNN baseline with MSE (--residual does not apply to it).
"""
import argparse
import concurrent.futures
import multiprocessing
import os
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from perceptual_ext.data import COLOUR_SAMPLES, labelled_grid, sample_image, save_image  # noqa: E402
from perceptual_ext.data.datasets import downsample, upsample_bicubic  # noqa: E402
from perceptual_ext.train import evaluate_sr, load_transform_net, train_sr  # noqa: E402
from perceptual_ext.train import write_json  # noqa: E402

TEST_SAMPLES = ("astronaut", "coffee")
TRAIN_SAMPLES = tuple(n for n in COLOUR_SAMPLES if n not in TEST_SAMPLES)
METRICS = ("psnr", "ssim", "swd")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--losses", default="mse,vgg,scnn,mmd,mmdpp", help="comma-separated loss names (and/or srcnn)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (init, data order, loss features)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--image-size", type=int, default=48, help="HR training crop side")
    p.add_argument("--channels", type=int, default=32, help="SuperResolutionNet width (the paper: 64)")
    p.add_argument("--scnn-channels", type=int, default=128, help="S-CNN loss width (the paper: 1024)")
    p.add_argument("--eval-size", type=int, default=256, help="held-out images: centre square resized to this")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--residual", action=argparse.BooleanOptionalAction, default=True,
                   help="SuperResolutionNet(residual=True): bicubic + learned correction (default: on; "
                        "--no-residual for the paper's plain net)")
    p.add_argument("--vgg-weights", help="torchvision VGG16 weights for the vgg loss (random VGG otherwise)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes, one torch thread each")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results", "sr_experiment.json"))
    p.add_argument("--png", default=os.path.join(ROOT, "docs", "sr.png"))
    return p.parse_args(argv)


def run_one(args, entry: str, seed: int) -> dict:
    """Train one net (loss ``entry``, ``seed``), evaluate it; the first seed also returns its picture."""
    torch.set_num_threads(1)
    model, loss = ("srcnn", "mse") if entry == "srcnn" else ("johnson", entry)
    loss_kwargs = {"channels": args.scnn_channels} if loss == "scnn" else None
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        result = train_sr(None, 4, loss, model=model, samples=TRAIN_SAMPLES, out_dir=work, steps=args.steps,
                          batch_size=args.batch_size, image_size=args.image_size, lr=args.lr,
                          channels=args.channels, loss_kwargs=loss_kwargs, vgg_weights=args.vgg_weights,
                          residual=args.residual and model == "johnson", seed=seed, device=args.device,
                          sample_every=0, checkpoint_every=0, progress=False)
        seconds = time.perf_counter() - start
        evaluation = evaluate_sr(result["checkpoint"], None, size=args.eval_size, samples=TEST_SAMPLES,
                                 device=args.device)
        picture = None
        if seed == args.seed_list[0]:
            net, _ = load_transform_net(result["checkpoint"], args.device)
            hr = sample_image(TEST_SAMPLES[0], channels=3, size=args.eval_size)[None].to(args.device)
            with torch.no_grad():
                picture = net(downsample(hr, 4)).clamp(0, 1)[0].cpu()
    history = result["history"]
    tail = history[-max(1, len(history) // 10):]
    return {"entry": entry, "seed": seed, "seconds": seconds, "final_train_loss": float(np.mean(tail)),
            "evaluation": evaluation, "picture": picture}


def summarize(values) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}


def label_of(entry: str) -> str:
    return "SRCNN (mse)" if entry == "srcnn" else f"ours ({entry})"


def main(argv=None):
    args = parse_args(argv)
    entries = [e.strip() for e in args.losses.split(",") if e.strip()]
    args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    # the slow losses first, so the pool's last jobs are short ones
    cost = {"vgg": 0, "scnn": 1, "mmd": 2, "mmdpp": 3}
    tasks = sorted(((e, s) for s in args.seed_list for e in entries), key=lambda t: (cost.get(t[0], 9), t[1]))
    runs, start = [], time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        futures = [pool.submit(run_one, args, e, s) for e, s in tasks]
        for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
            run = future.result()
            model = run["evaluation"]["methods"]["model"]
            elapsed = time.perf_counter() - start
            print(f"[{i}/{len(tasks)} {elapsed:6.0f} s] {label_of(run['entry'])} seed {run['seed']}:"
                  f" PSNR {model['psnr']:.2f} SSIM {model['ssim']:.4f} SWD {model['swd']:.4g}"
                  f" ({run['seconds']:.0f} s)", flush=True)
            runs.append(run)
    runs.sort(key=lambda r: (entries.index(r["entry"]), r["seed"]))

    bicubic = runs[0]["evaluation"]["methods"]["bicubic"]
    table = [{"method": "bicubic", **{k: {"mean": bicubic[k], "std": 0.0} for k in METRICS}}]
    for entry in entries:
        mine = [r for r in runs if r["entry"] == entry]
        table.append({"method": label_of(entry),
                      **{k: summarize([r["evaluation"]["methods"]["model"][k] for r in mine]) for k in METRICS}})
    print(f"\n| method | PSNR dB | SSIM | SWD |  (mean ± std over seeds {args.seeds})\n|---|---:|---:|---:|")
    for row in table:
        psnr, ssim, swd = (row[k] for k in METRICS)
        print(f"| {row['method']} | {psnr['mean']:.2f} ± {psnr['std']:.2f} | {ssim['mean']:.4f} ± {ssim['std']:.4f} "
              f"| {swd['mean']:.1f} ± {swd['std']:.1f} |")

    settings = {k: v for k, v in vars(args).items() if k not in ("json", "png", "seed_list")}
    settings["torch_threads_per_job"] = 1
    write_json({"steps": args.steps, "seeds": args.seed_list, "settings": settings, "train_samples": TRAIN_SAMPLES,
                "test_samples": TEST_SAMPLES, "table": table,
                "runs": [{"method": label_of(r["entry"]), "seed": r["seed"], "train_seconds": r["seconds"],
                          "final_train_loss": r["final_train_loss"], **r["evaluation"]["methods"]["model"],
                          "per_image": [{"name": p["name"], **p["model"]} for p in r["evaluation"]["per_image"]]}
                         for r in runs],
                "bicubic_per_image": [{"name": p["name"], **p["bicubic"]} for p in runs[0]["evaluation"]["per_image"]],
                "wall_seconds": time.perf_counter() - start}, args.json, overwrite=True)
    hr = sample_image(TEST_SAMPLES[0], channels=3, size=args.eval_size)[None]
    pictures = [hr[0], upsample_bicubic(downsample(hr, 4), 4)[0].clamp(0, 1)]
    labels = ["HR", "bicubic"]
    for run in runs:
        if run["picture"] is not None:
            pictures.append(run["picture"])
            labels.append(label_of(run["entry"]))
    save_image(labelled_grid([pictures], labels), args.png, overwrite=True)
    print(f"wrote {args.json} and {args.png}")


if __name__ == "__main__":
    main()
