"""Command line: ``perceptual-ext <command> ...``.

Each command is a pair ``_add_<name>(subparsers)`` / ``_run_<name>(args)``. User errors
(bad paths, unreadable images, invalid options) print one line to stderr and exit with code 2.
"""
from __future__ import annotations

import argparse
import json
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


# ------------------------------------------------------------------ image optimization commands
# Shared by synthesize / stylize / gim: reading inputs, devices, output paths, error mapping.

_SAMPLE_PREFIX = "sample:"


def _read_image(spec: str, what: str = "image"):
    """A path to an image file, or ``sample:NAME`` for a bundled scikit-image sample."""
    from .data import SAMPLE_IMAGES, load_image, sample_image

    if spec.startswith(_SAMPLE_PREFIX):
        name = spec[len(_SAMPLE_PREFIX):]
        if name not in SAMPLE_IMAGES:
            raise UserError(f"unknown sample image {name!r} for {what}; choose from {', '.join(SAMPLE_IMAGES)}")
        return sample_image(name, channels=3)
    try:
        return load_image(spec, channels=3)
    except ValueError as exc:
        raise UserError(f"{what}: {exc}") from None


def _torch_device(name: str):
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"invalid --device {name!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device must be cpu or cuda[:N], got {name!r}")
    return device


def _check_outputs(paths, overwrite: bool) -> None:
    """Refuse, before any work, to replace files unless --overwrite."""
    import os

    for path in paths:
        if os.path.isdir(path):
            raise UserError(f"output {path} is a directory")
        if os.path.exists(path) and not overwrite:
            raise UserError(f"output {path} exists; pass --overwrite to replace it")


class _user_errors:
    """Turn the library's argument errors (and missing optional losses) into UserError."""

    def __init__(self, context: str) -> None:
        self.context = context

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is not None and issubclass(kind, (ValueError, ImportError, OSError, FloatingPointError)):
            raise UserError(f"{self.context}: {exc}") from exc
        return False


def _loss_names() -> tuple:
    from .train.synthesis import LOSS_NAMES

    return LOSS_NAMES


def _common_options(p, steps: int, lr_help: str, lr_default) -> None:
    p.add_argument("--steps", type=int, default=steps, help=f"optimizer steps (default {steps})")
    p.add_argument("--lr", type=float, default=lr_default, help=lr_help)
    p.add_argument("--vgg-weights", metavar="PTH", help="torchvision-layout VGG16 state dict for vgg/gram "
                   "losses (default: a random VGG16 seeded by --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random filters, init and optimization (default 0)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _positive(value: int, flag: str) -> int:
    if value < 1:
        raise UserError(f"{flag} must be >= 1, got {value}")
    return value


def _add_synthesize(sub) -> None:
    p = sub.add_parser(
        "synthesize", help="texture synthesis by pixel optimization",
        description="Synthesize a new texture from an example by optimizing pixels against a loss: Gram "
                    "matrices of VGG16 features (Gatys et al.), patch MMD, MMD++ or S-CNN features. Pooled "
                    "losses (mmd, mmdpp, scnn) pool over the whole image unless --window is given.",
        epilog="examples:\n"
               "  perceptual-ext synthesize sample:brick --loss mmd --size 256 --steps 500 --out brick.png\n"
               "  perceptual-ext synthesize my_texture.jpg --loss gram --vgg-weights vgg16.pth --out out.png\n"
               "  perceptual-ext synthesize sample:gravel --loss scnn --size 128 --device cuda --out gravel.png",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("texture", metavar="TEXTURE", help="texture image file, or sample:NAME (scikit-image samples)")
    p.add_argument("--loss", default="mmd", choices=_loss_names(), help="loss to match (default mmd)")
    p.add_argument("--size", type=int, default=256, help="side of the square output (default 256)")
    p.add_argument("--window", type=int, help="local pooling window of mmd/mmdpp/scnn (default: whole image)")
    p.add_argument("--optimizer", default="adam", choices=("adam", "lbfgs"))
    p.add_argument("--out", required=True, help="output PNG")
    _common_options(p, steps=500, lr_help="learning rate (default 0.02 for adam, 1.0 for lbfgs)", lr_default=None)
    p.set_defaults(func=_run_synthesize)


def _run_synthesize(args) -> int:
    import time

    from .data import save_image
    from .train.synthesis import synthesize_texture, texture_loss

    _check_outputs([args.out], args.overwrite)
    _positive(args.size, "--size")
    _positive(args.steps, "--steps")
    device = _torch_device(args.device)
    texture = _read_image(args.texture, "TEXTURE")
    with _user_errors(f"loss {args.loss}"):
        loss = texture_loss(args.loss, args.size, args.window, vgg_weights=args.vgg_weights, seed=args.seed)
    lr = args.lr if args.lr is not None else (0.02 if args.optimizer == "adam" else 1.0)
    start = time.perf_counter()
    with _user_errors("synthesize"):
        result = synthesize_texture(texture.to(device), loss=loss, size=args.size, steps=args.steps, lr=lr,
                                    optimizer=args.optimizer, seed=args.seed, device=device,
                                    progress=False if args.quiet else f"synthesize ({args.loss})")
    save_image(result.image.cpu(), args.out, overwrite=args.overwrite)
    print(json.dumps({"out": args.out, "loss": args.loss, "steps": len(result.history),
                      "first_loss": result.history[0], "last_loss": result.history[-1],
                      "seconds": round(time.perf_counter() - start, 2)}))
    return 0


def _add_stylize(sub) -> None:
    p = sub.add_parser(
        "stylize", help="style transfer (by optimization)",
        description="Style transfer. --optimize CONTENT STYLE: optimize the pixels of the content image "
                    "against Johnson et al.'s objective, content_weight·l_feat(relu2_2) + "
                    "style_weight·l_style(relu1_2, relu2_2, relu3_3, relu4_3) + tv_weight·TV, over VGG16 "
                    "(random unless --vgg-weights).",
        epilog="examples:\n"
               "  perceptual-ext stylize --optimize sample:chelsea sample:gravel --size 256 --out cat.png\n"
               "  perceptual-ext stylize --optimize photo.jpg painting.jpg --vgg-weights vgg16.pth \\\n"
               "      --style-weight 10 --steps 300 --out stylized.png",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    # How to stylize: the alternatives of one required group (a trained network is another mode).
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--optimize", action="store_true",
                      help="optimize the image's pixels (Gatys et al.); inputs: CONTENT STYLE")
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="with --optimize: CONTENT STYLE (files or sample:NAME)")
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--size", type=int, default=256, help="short side of the content, resized (default 256; 0 keeps it)")
    p.add_argument("--content-weight", type=float, default=1.0, help="λ_c of l_feat (default 1)")
    p.add_argument("--style-weight", type=float, default=5.0, help="λ_s of l_style (default 5)")
    p.add_argument("--tv-weight", type=float, default=1e-6, help="λ_TV of the total variation (default 1e-6)")
    p.add_argument("--init", default="content", choices=("content", "noise"), help="starting image (default content)")
    p.add_argument("--optimizer", default="lbfgs", choices=("adam", "lbfgs"))
    _common_options(p, steps=300, lr_help="learning rate (default 1.0 for lbfgs, 0.02 for adam)", lr_default=None)
    p.set_defaults(func=_run_stylize)


def _run_stylize(args) -> int:
    if args.optimize:
        return _stylize_by_optimization(args)
    raise UserError("choose how to stylize: --optimize CONTENT STYLE")


def _stylize_by_optimization(args) -> int:
    import time

    from .data import save_image
    from .train.synthesis import style_transfer

    if len(args.inputs) != 2:
        raise UserError(f"--optimize takes two images, CONTENT STYLE; got {len(args.inputs)}")
    _check_outputs([args.out], args.overwrite)
    _positive(args.steps, "--steps")
    if args.size < 0:
        raise UserError(f"--size must be >= 0, got {args.size}")
    device = _torch_device(args.device)
    content = _read_image(args.inputs[0], "CONTENT")
    style = _read_image(args.inputs[1], "STYLE")
    lr = args.lr if args.lr is not None else (0.02 if args.optimizer == "adam" else 1.0)
    start = time.perf_counter()
    with _user_errors("stylize"):
        result = style_transfer(content.to(device), style.to(device), content_weight=args.content_weight,
                                style_weight=args.style_weight, tv_weight=args.tv_weight, steps=args.steps, lr=lr,
                                optimizer=args.optimizer, size=args.size or None, init=args.init,
                                vgg_weights=args.vgg_weights, seed=args.seed, device=device,
                                progress=False if args.quiet else "stylize")
    save_image(result.image.cpu(), args.out, overwrite=args.overwrite)
    print(json.dumps({"out": args.out, "steps": len(result.history), "first_loss": result.history[0],
                      "last_loss": result.history[-1], "seconds": round(time.perf_counter() - start, 2)}))
    return 0


def _add_gim(sub) -> None:
    p = sub.add_parser(
        "gim", help="the GIM experiment: optimize one image against K shifted crops per loss",
        description="Generalized image mean (Amir & Weiss): K crops of IMAGE shifted by up to ±SHIFT pixels are "
                    "the targets; for each loss one image is optimized from their mean against the mean loss "
                    "to all crops. Writes gim_<loss>.png per loss, gim_mean.png, gim_crops.png, gim_grid.png "
                    "(a target crop, the mean, then each result) and gim.json with SWD (×10³, lower is more "
                    "like the crops) and PSNR to the crops.",
        epilog="examples:\n"
               "  perceptual-ext gim sample:astronaut --losses mse,mmd,scnn --out-dir gim_out\n"
               "  perceptual-ext gim photo.png --losses mse,vgg,vgg_random,mmd,mmdpp --vgg-weights vgg16.pth \\\n"
               "      --crop-size 128 --steps 500 --device cuda --out-dir gim_out",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", metavar="IMAGE", help="image file, or sample:NAME (scikit-image samples)")
    p.add_argument("--losses", default="mse,vgg,scnn,mmd,mmdpp",
                   help="comma-separated loss names (default mse,vgg,scnn,mmd,mmdpp; also l1, gram, vgg_random)")
    p.add_argument("--out-dir", required=True, help="folder for the PNGs and gim.json")
    p.add_argument("--crop-size", type=int, default=64, help="side of the crops (default 64)")
    p.add_argument("--image-size", type=int, help="resize IMAGE's short side to this first (default 2*crop size)")
    p.add_argument("--num-crops", type=int, default=9, help="K (default 9)")
    p.add_argument("--shift", type=int, default=4, help="largest crop offset in pixels (default 4)")
    p.add_argument("--swd-nhoods", type=int, default=1024,
                   help="SWD neighbourhoods drawn per image and level (default 1024; Karras et al.: 128)")
    _common_options(p, steps=300, lr_help="Adam learning rate (default 0.01)", lr_default=0.01)
    p.set_defaults(func=_run_gim)


GIM_FILES = ("gim_mean.png", "gim_crops.png", "gim_grid.png", "gim.json")


def _run_gim(args) -> int:
    import os

    from .data import image_grid, save_image
    from .data.images import save_text
    from .train.synthesis import LOSS_NAMES, gim_experiment, make_loss

    names = [n.strip() for n in args.losses.split(",") if n.strip()]
    unknown = [n for n in names if n not in LOSS_NAMES]
    if not names or unknown:
        raise UserError(f"--losses must be a comma-separated subset of {', '.join(LOSS_NAMES)}; got {args.losses!r}")
    if len(set(names)) != len(names):
        raise UserError(f"--losses names a loss twice: {args.losses!r}")
    for value, flag in ((args.steps, "--steps"), (args.crop_size, "--crop-size"), (args.num_crops, "--num-crops"),
                        (args.swd_nhoods, "--swd-nhoods")):
        _positive(value, flag)
    if args.shift < 0:
        raise UserError(f"--shift must be >= 0, got {args.shift}")
    outputs = [os.path.join(args.out_dir, f) for f in GIM_FILES + tuple(f"gim_{n}.png" for n in names)]
    _check_outputs(outputs, args.overwrite)
    device = _torch_device(args.device)
    image = _read_image(args.image, "IMAGE")
    losses = {}
    for name in names:
        with _user_errors(f"loss {name}"):
            losses[name] = make_loss(name, vgg_weights=args.vgg_weights, seed=args.seed)
    with _user_errors("gim"):
        result = gim_experiment(image.to(device), losses=losses, num_crops=args.num_crops, shift=args.shift,
                                crop_size=args.crop_size, image_size=args.image_size, steps=args.steps, lr=args.lr,
                                seed=args.seed, device=device, swd_kwargs={"nhoods_per_image": args.swd_nhoods},
                                progress=not args.quiet)
    def save(img, name: str) -> None:
        save_image(img.cpu(), os.path.join(args.out_dir, name), overwrite=args.overwrite)

    save(result.mean, "gim_mean.png")
    save(image_grid(list(result.crops)), "gim_crops.png")
    for name, img in result.images.items():
        save(img, f"gim_{name}.png")
    save(image_grid([result.crops[0], result.mean[0]] + [img[0] for img in result.images.values()]), "gim_grid.png")
    report = {
        "image": args.image, "losses": names, "crop_size": args.crop_size, "num_crops": args.num_crops,
        "shift": args.shift, "steps": args.steps, "lr": args.lr, "seed": args.seed, "device": str(device),
        "vgg_weights": args.vgg_weights, "swd_nhoods_per_image": args.swd_nhoods, "offsets": result.offsets,
        "grid_order": ["target_crop", "init_mean"] + names, "metrics": result.metrics,
    }
    save_text(json.dumps(report, indent=2), os.path.join(args.out_dir, "gim.json"), overwrite=args.overwrite)
    print(f"{'':12s} {'SWD x1e3':>9s} {'PSNR dB':>8s}")
    for row, m in result.metrics.items():
        print(f"{row:12s} {m['swd']:9.2f} {m['psnr']:8.2f}")
    print(f"wrote {len(outputs)} files to {args.out_dir}")
    return 0


COMMANDS = [_add_info, _add_synthesize, _add_stylize, _add_gim]


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
