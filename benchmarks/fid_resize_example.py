"""How much the resize convention moves FID: pytorch-fid's bilinear F.interpolate vs clean-fid's
PIL bicubic, on the ten bundled scikit-image samples (no download).

Set A: the samples centre-cropped and resized to 400x400 (so the network's 299x299 input is a
downscale, where bilinear without antialiasing aliases); set B: A degraded (down to 100x100 and
back up, bicubic), saved as PNG. FID(A, B) under each convention, and FID between the two
conventions' statistics of A alone. The Inception weights are a file the user names; without one
(``--random-weights``) the network has random weights in pytorch-fid's layout, which exercises the
same pipeline but gives FID in arbitrary units.

    python benchmarks/fid_resize_example.py --inception-weights pt_inception-2015-12-05-6726825d.pth
    python benchmarks/fid_resize_example.py --random-weights --out benchmarks/results/fid_resize.json
"""
import argparse
import json
import os
import sys
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from perceptual_ext.data import SAMPLE_IMAGES, sample_image, save_image  # noqa: E402
from perceptual_ext.features import FIDInceptionV3  # noqa: E402
from perceptual_ext.metrics import FeatureStatistics, compute_features  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inception-weights")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.random_weights:
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        from _fid_reference import random_state_dict

        weights = random_state_dict(seed=0)
    else:
        weights = args.inception_weights
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("a", "b"):
            os.makedirs(os.path.join(tmp, name))
        for s in SAMPLE_IMAGES:
            image = sample_image(s, channels=3, size=400)
            low = torch.nn.functional.interpolate(image[None], size=(100, 100), mode="bicubic", antialias=True)
            degraded = torch.nn.functional.interpolate(low, size=(400, 400), mode="bicubic").clamp(0, 1)[0]
            save_image(image, os.path.join(tmp, "a", f"{s}.png"))
            save_image(degraded, os.path.join(tmp, "b", f"{s}.png"))
        stats = {}
        for resize in ("bilinear", "clean"):
            net = FIDInceptionV3(weights, resize=resize)
            for name in ("a", "b"):
                feats, _ = compute_features(os.path.join(tmp, name), net, batch_size=5, device="cpu",
                                            desc=f"{name} {resize}")
                stats[name, resize] = FeatureStatistics().update(feats.double())
    result = {
        "weights": "random (pytorch-fid layout)" if args.random_weights else os.path.basename(weights),
        "images_per_set": len(SAMPLE_IMAGES),
        "fid_bilinear": stats["a", "bilinear"].frechet_distance(stats["b", "bilinear"]),
        "fid_clean": stats["a", "clean"].frechet_distance(stats["b", "clean"]),
        "fid_A_bilinear_vs_A_clean": stats["a", "bilinear"].frechet_distance(stats["a", "clean"]),
    }
    result["relative_change"] = result["fid_clean"] / result["fid_bilinear"] - 1
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
