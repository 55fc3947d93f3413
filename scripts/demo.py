"""`make demo`: the library's main jobs on bundled scikit-image samples, outputs in demo_out/.

1. the Gram benchmark (fused op vs the torch.bmm composition, fwd+bwd);
2. texture synthesis of `gravel` with the patch-MMD loss (one window over the whole image);
3. style transfer by optimization: `chelsea` in the style of `grass` (random VGG16, Johnson's weights);
4. a short GIM comparison on `astronaut`: MSE vs patch MMD vs MMD++, judged by SWD and PSNR;
5. template matching (NCC) of three patches of a noisy `camera`, located with find_peaks.

Everything runs on the CPU in a few minutes (2 cores) and ends with a summary table. A part whose
module is missing from this build is reported as skipped and the demo exits with status 1.
"""
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import perceptual_ext as pe  # noqa: E402
from perceptual_ext.data import image_grid, sample_image, save_image  # noqa: E402

OUT = os.path.join(ROOT, "demo_out")
QUIET = not sys.stderr.isatty()  # progress bars only on a terminal


def _out(name: str) -> str:
    return os.path.join(OUT, name)


def gram_benchmark() -> str:
    from benchmarks.bench_gram import SHAPES, workload

    speedups = []
    for shape in SHAPES:
        times = {}
        for impl in ("composition", "fused"):
            run = workload(impl, *shape)
            run()
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                run()
                best = min(best, time.perf_counter() - start)
            times[impl] = best
        speedups.append(times["composition"] / times["fused"])
        print(f"  gram fwd+bwd B{shape[0]}·C{shape[1]}·HW{shape[2]}: torch.bmm {times['composition'] * 1e3:7.1f} ms,"
              f" fused {times['fused'] * 1e3:7.1f} ms  ({speedups[-1]:.2f}x)")
    return "speed-up vs torch.bmm " + ", ".join(f"{s:.2f}x" for s in speedups)


def texture_synthesis() -> str:
    from perceptual_ext.train import synthesize_texture
    from perceptual_ext.train.synthesis import texture_target

    texture = sample_image("gravel", channels=3)
    result = synthesize_texture(texture, loss="mmd", size=96, steps=150, lr=0.02, seed=0,
                                progress=False if QUIET else "texture (mmd)")
    save_image(image_grid([texture_target(texture, 96)[0], result.image[0]]), _out("texture_gravel.png"))
    return f"patch MMD {result.history[0]:.3g} -> {result.history[-1]:.3g} in {len(result.history)} Adam steps"


def style_transfer() -> str:
    from perceptual_ext.train import style_transfer as stylize
    from perceptual_ext.train.synthesis import fit_to

    content = sample_image("chelsea", channels=3)
    style = sample_image("grass", channels=3)
    result = stylize(content, style, size=96, steps=25, optimizer="lbfgs", lr=1.0, seed=0,
                     progress=False if QUIET else "style transfer")
    image = result.image
    save_image(image, _out("style_chelsea_grass.png"))
    style_fitted = fit_to(style[None], *image.shape[-2:])
    content_small = torch.nn.functional.interpolate(content[None], size=image.shape[-2:], mode="bicubic",
                                                    antialias=True, align_corners=False).clamp(0, 1)
    save_image(image_grid([content_small[0], style_fitted[0], image[0]]), _out("style_grid.png"))
    return f"objective {result.history[0]:.3g} -> {result.history[-1]:.3g} in {len(result.history)} L-BFGS steps"


def gim() -> str:
    from perceptual_ext.train import gim_experiment
    from perceptual_ext.train.synthesis import make_loss

    losses = {name: make_loss(name) for name in ("mse", "mmd", "mmdpp")}
    result = gim_experiment(sample_image("astronaut", channels=3), losses=losses, crop_size=64, steps=80, lr=0.01,
                            seed=0, swd_kwargs={"nhoods_per_image": 512}, progress=not QUIET)
    save_image(image_grid([result.crops[0], result.mean[0]] + [result.images[n][0] for n in losses]),
               _out("gim_grid.png"))
    for row, m in result.metrics.items():
        print(f"  {row:12s} SWD x1e3 {m['swd']:7.2f}   PSNR {m['psnr']:6.2f} dB")
    return "SWD " + ", ".join(f"{row} {m['swd']:.1f}" for row, m in result.metrics.items() if row != "init_mean")


def template_match() -> str:
    from perceptual_ext.ops import find_peaks, match_template

    image = sample_image("camera", channels=1, size=256)
    truth = [(40, 60), (60, 120), (190, 60)]  # textured spots (flat ones match many places)
    templates = torch.stack([image[:, y:y + 24, x:x + 24] for y, x in truth])
    noisy = (image + 0.05 * torch.randn(image.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    start = time.perf_counter()
    score = match_template(noisy[None], templates, method="ncc")  # [1, 3, 233, 233]
    seconds = time.perf_counter() - start
    locations, scores = find_peaks(score, k=1)
    found = [tuple(loc) for loc in locations[0, :, 0].tolist()]
    hits = sum(f == t for f, t in zip(found, truth))
    boxes = noisy.expand(3, -1, -1).clone()
    for y, x in found:  # red boxes where the templates were found
        boxes[:, y:y + 24, [x, x + 23]] = torch.tensor([1.0, 0, 0]).view(3, 1, 1)
        boxes[:, [y, y + 23], x:x + 24] = torch.tensor([1.0, 0, 0]).view(3, 1, 1)
    save_image(boxes, _out("match_camera.png"))
    return (f"{hits}/3 templates found at their true positions (NCC {', '.join(f'{s:.3f}' for s in scores[0, :, 0])},"
            f" {seconds * 1e3:.0f} ms for 256² x 3 templates)")


PARTS = [
    ("Gram benchmark", gram_benchmark),
    ("texture synthesis", texture_synthesis),
    ("style transfer", style_transfer),
    ("GIM comparison", gim),
    ("template matching", template_match),
]


def main() -> int:
    os.makedirs(OUT, exist_ok=True)
    info = pe.build_info()
    print(f"perceptual_ext {info['version']} (torch {info['torch_version']}, CUDA compiled: {info['cuda_compiled']},"
          f" {info['num_threads']} threads, {info['cpu_flags']})")
    torch.manual_seed(0)
    rows, skipped, begin = [], 0, time.perf_counter()
    for title, part in PARTS:
        print(f"{title}:", flush=True)
        start = time.perf_counter()
        try:
            summary = part()
        except ImportError as exc:  # a part of the library this build does not have yet
            summary, skipped = f"SKIPPED ({exc})", skipped + 1
        rows.append((title, time.perf_counter() - start, summary))
        print(f"  -> {summary}", flush=True)
    total = time.perf_counter() - begin
    print(f"\n| part | seconds | result |\n|---|---:|---|")
    for title, seconds, summary in rows:
        print(f"| {title} | {seconds:.1f} | {summary} |")
    print(f"\ntotal {total:.0f} s; pictures in {OUT}/")
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
