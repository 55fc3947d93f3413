"""Command line: ``perceptual-ext <command> ...``.

Each command is a pair ``_add_<name>(subparsers)`` / ``_run_<name>(args)``. User errors
(bad paths, unreadable images, invalid options) print one line to stderr and exit with code 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence


class UserError(Exception):
    """A mistake in the command line or its inputs: reported without a traceback, exit code 2."""


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="print how the extension was built (JSON)",
                       description="Print build information of the compiled kernels as JSON.",
                       epilog="example:\n  perceptual-ext info", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=_run_info)


def _run_info(args) -> int:
    import perceptual_ext

    info = perceptual_ext.build_info()
    info.pop("parallel_backend", None)
    print(json.dumps(info, indent=2))
    return 0


def _add_match(sub) -> None:
    p = sub.add_parser(
        "match", help="find a template in an image (NCC family); boxes PNG + JSON",
        description="Match TEMPLATE against IMAGE (grayscale), print the best locations and scores as JSON, "
                    "and optionally write a PNG with the matches boxed.",
        epilog="example:\n  perceptual-ext match scene.png patch.png --top-k 3 --out boxes.png",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", help="image file to search in")
    p.add_argument("template", help="image file of the template (not larger than IMAGE)")
    p.add_argument("--method", default="ncc",
                   choices=("corr", "zero_mean_corr", "ssd", "ncc", "ssd_normed", "corr_normed"),
                   help="score (default: ncc = OpenCV TM_CCOEFF_NORMED); ssd* are minimized")
    p.add_argument("--top-k", type=int, default=5, help="number of matches to report (default: 5)")
    p.add_argument("--min-distance", type=int, default=None,
                   help="minimum distance between matches in pixels (default: half the template size)")
    p.add_argument("--out", default=None, help="write the image with boxes drawn to this PNG")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_run_match)


def _run_match(args) -> int:
    import numpy
    import torch
    from PIL import Image, ImageDraw

    from .data import load_image, save_image
    from .ops import find_peaks, match_template

    if args.top_k < 1:
        raise UserError(f"--top-k must be >= 1, got {args.top_k}")
    if args.min_distance is not None and args.min_distance < 1:
        raise UserError(f"--min-distance must be >= 1, got {args.min_distance}")
    if args.out and os.path.exists(args.out) and not args.overwrite:
        raise UserError(f"{args.out} exists (pass --overwrite to replace it)")
    try:
        image = load_image(args.image, channels=1)
        templ = load_image(args.template, channels=1)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
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
        canvas = Image.fromarray((load_image(args.image, channels=3).permute(1, 2, 0) * 255 + 0.5)
                                 .to(torch.uint8).numpy())
        draw = ImageDraw.Draw(canvas)
        for rank, m in enumerate(matches):
            color = (255, 0, 0) if rank == 0 else (255, 200, 0)
            draw.rectangle([m["x"], m["y"], m["x"] + w - 1, m["y"] + h - 1], outline=color, width=2)
        boxed = torch.from_numpy(numpy.asarray(canvas)).permute(2, 0, 1).float() / 255.0
        try:
            save_image(boxed, args.out, overwrite=args.overwrite)
        except (FileExistsError, OSError) as exc:
            raise UserError(f"cannot write {args.out}: {exc}") from exc
    return 0


COMMANDS = [_add_info, _add_match]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perceptual-ext",
        description="Perceptual losses, image optimization and template matching with fused kernels.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"perceptual-ext {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
