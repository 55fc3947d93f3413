"""``perceptual-ext info`` and ``perceptual-ext match``: build information, template matching."""
from __future__ import annotations

import json

from ._common import UserError, add_command, check_outputs, positive, read_image, user_errors

METHODS = ("corr", "zero_mean_corr", "ssd", "ncc", "ssd_normed", "corr_normed")


def add_info(sub) -> None:
    add_command(sub, "info", run_info, help="print how the extension was built (JSON)")


def run_info(args) -> int:
    """Print build information of the compiled kernels as JSON.

    Examples:
        perceptual-ext info
    """
    import perceptual_ext

    info = perceptual_ext.build_info()
    info.pop("parallel_backend", None)
    print(json.dumps(info, indent=2))
    return 0


def add_match(sub) -> None:
    p = add_command(sub, "match", run_match, help="find a template in an image (NCC family); boxes PNG + JSON")
    p.add_argument("image", help="image file to search in (or sample:NAME)")
    p.add_argument("template", help="image file of the template (not larger than IMAGE)")
    p.add_argument("--method", default="ncc", choices=METHODS,
                   help="score (default: ncc = OpenCV TM_CCOEFF_NORMED); ssd* are minimized")
    p.add_argument("--top-k", type=int, default=5, help="number of matches to report (default: 5)")
    p.add_argument("--min-distance", type=int, default=None,
                   help="minimum distance between matches in pixels (default: half the template size)")
    p.add_argument("--out", default=None, help="write the image with boxes drawn to this PNG")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def _draw_boxes(image, matches, h: int, w: int):
    """``image`` [3, H, W] with the matches boxed (the best in red, the others in yellow)."""
    import numpy
    import torch
    from PIL import Image, ImageDraw

    canvas = Image.fromarray((image.permute(1, 2, 0) * 255 + 0.5).to(torch.uint8).numpy())
    draw = ImageDraw.Draw(canvas)
    for rank, m in enumerate(matches):
        color = (255, 0, 0) if rank == 0 else (255, 200, 0)
        draw.rectangle([m["x"], m["y"], m["x"] + w - 1, m["y"] + h - 1], outline=color, width=2)
    return torch.from_numpy(numpy.array(canvas)).permute(2, 0, 1).float() / 255.0


def run_match(args) -> int:
    """Match TEMPLATE against IMAGE (grayscale), print the best locations and scores as JSON, and
    optionally write a PNG with the matches boxed.

    Examples:
        perceptual-ext match scene.png patch.png --top-k 3 --out boxes.png
    """
    from ..data import save_image
    from ..ops import find_peaks, match_template

    positive(args.top_k, "--top-k")
    positive(args.min_distance, "--min-distance")
    if args.out:
        check_outputs([args.out], args.overwrite, images=True)
    image = read_image(args.image, "IMAGE", channels=1)
    templ = read_image(args.template, "TEMPLATE", channels=1)
    h, w = templ.shape[1:]
    if h > image.shape[1] or w > image.shape[2]:
        raise UserError(f"the template ({h}x{w}) is larger than the image ({image.shape[1]}x{image.shape[2]})")
    score = match_template(image[0], templ[0], args.method)
    min_distance = args.min_distance or max(1, min(h, w) // 2)
    locations, values = find_peaks(score, k=args.top_k, min_distance=min_distance,
                                   maximize=args.method not in ("ssd", "ssd_normed"))
    matches = [{"x": int(x), "y": int(y), "width": int(w), "height": int(h), "score": float(v)}
               for (y, x), v in zip(locations.tolist(), values.tolist()) if y >= 0]
    print(json.dumps({"method": args.method, "matches": matches}, indent=2))
    if args.out:
        with user_errors(f"cannot write {args.out}"):
            save_image(_draw_boxes(read_image(args.image, "IMAGE"), matches, h, w), args.out,
                       overwrite=args.overwrite)
    return 0


COMMANDS = [add_info, add_match]
