"""A small ×4 super-resolution experiment (seeds 003 and 004): pixel loss vs perceptual losses.

Trains one SuperResolutionNet per loss briefly on the CPU (random crops of scikit-image samples),
evaluates each and bicubic upsampling on held-out samples (PSNR, SSIM, SWD), and writes

- benchmarks/results/sr_experiment.json — the table, per-image numbers and the settings;
- docs/sr.png — a held-out crop: HR, bicubic, then one column per trained model.

The nets are ``SuperResolutionNet(residual=True)`` by default: they output the bicubic upsampling
plus a learned correction and start exactly at bicubic, so a short CPU run can improve on it.
``--no-residual`` trains Johnson et al.'s plain net instead, which in 200 steps stays far below
bicubic (it must first learn to reproduce the image at all).

Usage (a few minutes per loss on 2 CPU cores with the defaults):
    python scripts/sr_experiment.py --losses mse,vgg,mmd --steps 200
An entry ``srcnn`` in --losses trains the SRCNN baseline with MSE (--residual does not apply to it).
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from perceptual_ext.data import SAMPLE_IMAGES, sample_image, save_image  # noqa: E402
from perceptual_ext.data.datasets import downsample, upsample_bicubic  # noqa: E402
from perceptual_ext.train import evaluate_sr, load_transform_net, train_sr  # noqa: E402
from perceptual_ext.train import write_json  # noqa: E402

TEST_SAMPLES = ("astronaut", "coffee")
TRAIN_SAMPLES = tuple(n for n in SAMPLE_IMAGES if n not in TEST_SAMPLES)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--losses", default="mse,vgg,mmd", help="comma-separated loss names (and/or srcnn)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--image-size", type=int, default=64, help="HR training crop side")
    p.add_argument("--eval-size", type=int, default=256, help="held-out images: centre square resized to this")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--residual", action=argparse.BooleanOptionalAction, default=True,
                   help="SuperResolutionNet(residual=True): bicubic + learned correction (default: on; "
                        "--no-residual for the paper's plain net)")
    p.add_argument("--vgg-weights", help="torchvision VGG16 weights for the vgg loss (random VGG otherwise)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results", "sr_experiment.json"))
    p.add_argument("--png", default=os.path.join(ROOT, "docs", "sr.png"))
    return p.parse_args(argv)


def labelled_row(images, labels):
    """Images [3, H, W] side by side with a caption strip above each (PIL's default font)."""
    from PIL import Image, ImageDraw

    strip = 14
    h, w = images[0].shape[-2:]
    canvas = Image.new("RGB", (w * len(images), h + strip), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (image, label) in enumerate(zip(images, labels)):
        array = (image.clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).numpy()
        canvas.paste(Image.fromarray(array), (i * w, strip))
        draw.text((i * w + 3, 1), label, fill="black")
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 255


def main(argv=None):
    args = parse_args(argv)
    entries = [e.strip() for e in args.losses.split(",") if e.strip()]
    hr = sample_image(TEST_SAMPLES[0], channels=3, size=args.eval_size)[None].to(args.device)
    lr_image = downsample(hr, 4)
    pictures, labels = [hr[0].cpu(), upsample_bicubic(lr_image, 4)[0].cpu()], ["HR", "bicubic"]
    rows, per_image, seconds, histories = [], {}, {}, {}
    with tempfile.TemporaryDirectory() as work:
        for entry in entries:
            model, loss = ("srcnn", "mse") if entry == "srcnn" else ("johnson", entry)
            label = "SRCNN (mse)" if model == "srcnn" else f"ours ({loss})"
            start = time.perf_counter()
            result = train_sr(None, 4, loss, model=model, samples=TRAIN_SAMPLES, out_dir=os.path.join(work, entry),
                              steps=args.steps, batch_size=args.batch_size, image_size=args.image_size, lr=args.lr,
                              vgg_weights=args.vgg_weights, residual=args.residual and model == "johnson",
                              seed=args.seed, device=args.device,
                              sample_every=0, checkpoint_every=0)
            seconds[label] = time.perf_counter() - start
            histories[label] = result["history"]
            evaluation = evaluate_sr(result["checkpoint"], None, size=args.eval_size, samples=TEST_SAMPLES,
                                     device=args.device)
            if not rows:
                rows.append({"method": "bicubic", **evaluation["methods"]["bicubic"]})
            rows.append({"method": label, **evaluation["methods"]["model"]})
            per_image[label] = evaluation["per_image"]
            net, _ = load_transform_net(result["checkpoint"], args.device)
            with torch.no_grad():
                pictures.append(net(lr_image).clamp(0, 1)[0].cpu())
            labels.append(label)
    print("| method | PSNR dB | SSIM | SWD |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['swd']:.4g} |")
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "png")}
    settings["torch_threads"] = torch.get_num_threads()
    write_json({"settings": settings, "train_samples": TRAIN_SAMPLES, "test_samples": TEST_SAMPLES, "table": rows,
                "train_seconds": seconds, "train_loss": histories, "per_image": per_image}, args.json, overwrite=True)
    save_image(labelled_row(pictures, labels), args.png, overwrite=True)
    print(f"wrote {args.json} and {args.png}")


if __name__ == "__main__":
    main()
