"""`make demo`: the library's main jobs on bundled scikit-image samples, outputs in demo_out/.

Runs the Gram benchmark (fused op vs torch.bmm composition) and a style-loss texture synthesis
on the `brick` sample with random convolutional features.
"""
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import perceptual_ext as pe  # noqa: E402
from perceptual_ext.data import sample_image, save_image  # noqa: E402
from perceptual_ext.losses import StyleLoss  # noqa: E402

OUT = os.path.join(ROOT, "demo_out")


def gram_benchmark() -> list:
    from benchmarks.bench_gram import SHAPES, workload

    rows = []
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
        rows.append((shape, times["composition"], times["fused"]))
        print(f"  gram fwd+bwd B{shape[0]}·C{shape[1]}·HW{shape[2]}: torch.bmm {times['composition'] * 1e3:7.1f} ms,"
              f" fused {times['fused'] * 1e3:7.1f} ms  ({times['composition'] / times['fused']:.2f}x)")
    return rows


def style_texture(steps: int = 150, size: int = 96) -> str:
    """Texture synthesis by Gram matching of random-filter features (Gatys with random weights)."""
    torch.manual_seed(0)
    texture = sample_image("brick", channels=3, size=size)[None]
    convs = [torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.Conv2d(32, 64, 3, padding=1, stride=2)]
    for c in convs:
        c.requires_grad_(False)

    def features(x):
        f1 = torch.relu(convs[0](x))
        return [f1, torch.relu(convs[1](f1))]

    loss_fn = StyleLoss(features(texture))
    image = torch.rand_like(texture).requires_grad_(True)
    opt = torch.optim.Adam([image], lr=0.05)
    first = None
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(features(image)) * 1e3
        loss.backward()
        opt.step()
        with torch.no_grad():
            image.clamp_(0, 1)
        first = first if first is not None else loss.item()
    print(f"  style loss (x1e3) {first:.4f} -> {loss.item():.4f} after {steps} Adam steps")
    save_image(texture, os.path.join(OUT, "brick_target.png"))
    return save_image(image, os.path.join(OUT, "brick_synthesized.png"))


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    info = pe.build_info()
    print(f"perceptual_ext {info['version']} (torch {info['torch_version']}, CUDA compiled: {info['cuda_compiled']},"
          f" {info['num_threads']} threads, {info['cpu_flags']})")
    print("Gram matrix benchmark (CPU):")
    gram_benchmark()
    print("Texture synthesis with StyleLoss on random-filter features:")
    path = style_texture()
    print(f"  wrote {path}")


if __name__ == "__main__":
    main()
