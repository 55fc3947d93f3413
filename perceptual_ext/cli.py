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
        boxed = torch.from_numpy(numpy.array(canvas)).permute(2, 0, 1).float() / 255.0
        try:
            save_image(boxed, args.out, overwrite=args.overwrite)
        except (FileExistsError, OSError) as exc:
            raise UserError(f"cannot write {args.out}: {exc}") from exc
    return 0


COMMANDS = [_add_info, _add_match]


# --------------------------------------------------------------------------- feed-forward networks

def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _add_training_options(p, *, steps: int, batch_size: int, image_size: int, out_dir: str) -> None:
    p.add_argument("--steps", type=int, default=steps, help="total optimizer steps (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=batch_size,
                   help="images per step and process (default %(default)s; global batch = processes x this)")
    p.add_argument("--image-size", type=int, default=image_size, help="training crop side (default %(default)s)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default %(default)s)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="Adam (default) or plain SGD")
    p.add_argument("--vgg-weights", metavar="FILE", help="torchvision VGG16 state dict for the vgg/gram losses")
    p.add_argument("--out-dir", default=out_dir, help="checkpoint.pt and samples/ go here (default %(default)s)")
    p.add_argument("--resume", metavar="CKPT", help="continue a run from its checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR/checkpoint.pt")
    p.add_argument("--upsample", choices=("deconv", "pixelshuffle", "nearest"), default="deconv",
                   help="upsampling stages: fractional-stride conv (paper), sub-pixel conv or resize-conv")
    p.add_argument("--workers", type=int, default=2, help="DataLoader processes decoding images (default %(default)s)")
    p.add_argument("--sample-every", type=int, default=500, help="write a sample PNG every N steps (0: never)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="write the checkpoint every N steps")
    p.add_argument("--seed", type=int, default=0, help="initialisation, data order and crops (default 0)")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")


def _training_kwargs(args) -> dict:
    """The keyword arguments of train_style / train_sr from _add_training_options' flags (and --norm)."""
    return dict(out_dir=args.out_dir, steps=args.steps, batch_size=args.batch_size, image_size=args.image_size,
                lr=args.lr, optimizer=args.optimizer, vgg_weights=args.vgg_weights, norm=args.norm, upsample=args.upsample, seed=args.seed,
                device=args.device, num_workers=args.workers, sample_every=args.sample_every,
                checkpoint_every=args.checkpoint_every, resume=args.resume, overwrite=args.overwrite)


def _existing_dir(path, what: str):
    if path is not None and not os.path.isdir(path):
        raise UserError(f"{what} folder not found: {path}")
    return path


def _train_call(fn, *args, **kwargs) -> int:
    try:
        result = fn(*args, **kwargs)
    except (ValueError, FileExistsError) as exc:
        raise UserError(str(exc)) from exc
    if result["checkpoint"]:
        h = result["history"]
        print(f"checkpoint: {result['checkpoint']}  (step {result['steps']}, last loss {h[-1]:.5g})" if h
              else f"checkpoint: {result['checkpoint']}")
        if result["skipped_files"] or result["failed_loads"]:
            print(f"skipped {result['skipped_files']} unreadable files, {result['failed_loads']} failed loads")
    return 0


def _add_train_style(sub) -> None:
    from .losses.factory import LOSSES

    p = sub.add_parser(
        "train-style", help="train a fast style-transfer network (Johnson et al.)", formatter_class=_formatter,
        description="Train a StyleTransformNet for one style image on random crops of content images.\n"
                    "Losses: " + ", ".join(LOSSES) + ". Runs under torchrun for DDP.",
        epilog="examples:\n"
               "  perceptual-ext train-style starry.jpg --content coco/ --vgg-weights vgg16.pth --steps 40000\n"
               "  perceptual-ext train-style brick --steps 200 --image-size 128   # sample images, offline\n"
               "  torchrun --nproc_per_node=2 -m perceptual_ext.cli train-style style.png --content imgs/\n"
               "  perceptual-ext train-style style.png --resume runs/style/checkpoint.pt --steps 4000")
    p.add_argument("style", help="style image file, or a scikit-image sample name (e.g. brick)")
    p.add_argument("--content", metavar="DIR", help="folder of content images (default: scikit-image samples)")
    p.add_argument("--style-loss", choices=tuple(LOSSES), default="gram", help="default %(default)s")
    p.add_argument("--content-loss", choices=tuple(LOSSES), default="vgg", help="default %(default)s")
    p.add_argument("--style-weight", type=float, default=5.0, help="default %(default)s")
    p.add_argument("--content-weight", type=float, default=1.0, help="default %(default)s")
    p.add_argument("--tv-weight", type=float, default=0.0, help="total variation weight (default 0: off)")
    p.add_argument("--norm", choices=("instance", "batch", "none"), default="instance", help="default %(default)s")
    _add_training_options(p, steps=2000, batch_size=4, image_size=256, out_dir="runs/style")
    p.set_defaults(func=_run_train_style)


def _run_train_style(args) -> int:
    from .train import train_style

    _existing_dir(args.content, "content")
    return _train_call(
        train_style, args.style, args.content, style_loss=args.style_loss, content_loss=args.content_loss,
        style_weight=args.style_weight, content_weight=args.content_weight, tv_weight=args.tv_weight,
        **_training_kwargs(args))


def _add_train_sr(sub) -> None:
    from .losses.factory import LOSSES

    p = sub.add_parser(
        "train-sr", help="train a x4/x8 super-resolution network", formatter_class=_formatter,
        description="Train a SuperResolutionNet (or SRCNN) on HR crops and their bicubic downsampling.\n"
                    "Losses: " + ", ".join(f"{k} ({v})" for k, v in LOSSES.items()) + ".",
        epilog="examples:\n"
               "  perceptual-ext train-sr --images photos/ --scale 4 --loss mse --steps 10000\n"
               "  perceptual-ext train-sr --scale 4 --loss mmd --steps 300 --image-size 64   # offline samples\n"
               "  perceptual-ext train-sr --residual --loss vgg --steps 500   # start at bicubic, learn the detail\n"
               "  torchrun --nproc_per_node=2 -m perceptual_ext.cli train-sr --images photos/ --loss vgg\n"
               "  perceptual-ext train-sr --resume runs/sr/checkpoint.pt --steps 20000")
    p.add_argument("--images", metavar="DIR", help="folder of training images (default: scikit-image samples)")
    p.add_argument("--scale", type=int, choices=(4, 8), default=4, help="default %(default)s")
    p.add_argument("--loss", choices=tuple(LOSSES), default="mse", help="default %(default)s")
    p.add_argument("--model", choices=("johnson", "srcnn"), default="johnson", help="default %(default)s")
    p.add_argument("--norm", choices=("instance", "batch", "none"), default="batch", help="default %(default)s")
    p.add_argument("--residual", action="store_true",
                   help="johnson net: output bicubic upsampling + a learned correction, starting exactly at "
                        "bicubic (global residual learning, VDSR/EDSR-style; default: the paper's plain net)")
    _add_training_options(p, steps=1000, batch_size=8, image_size=96, out_dir="runs/sr")
    p.set_defaults(func=_run_train_sr)


def _run_train_sr(args) -> int:
    from .train import train_sr

    _existing_dir(args.images, "image")
    return _train_call(
        train_sr, args.images, args.scale, args.loss, model=args.model, residual=args.residual,
        **_training_kwargs(args))


def _io_pairs(source: str, out: str):
    """(inputs, outputs): a file -> OUT (a file, or a file inside an existing folder); a folder -> OUT/<name>.png."""
    from .data import list_images

    if os.path.isdir(source):
        inputs = list_images(source)
        if not inputs:
            raise UserError(f"no images in {source}")
        if os.path.exists(out) and not os.path.isdir(out):
            raise UserError(f"--out must be a folder when the input is a folder: {out}")
        return inputs, [os.path.join(out, os.path.splitext(os.path.basename(p))[0] + ".png") for p in inputs]
    if not os.path.isfile(source):
        raise UserError(f"input not found: {source}")
    if os.path.isdir(out):
        out = os.path.join(out, os.path.splitext(os.path.basename(source))[0] + ".png")
    return [source], [out]


def _apply_model(args, task: str) -> int:
    from .train import load_transform_net, transform_files

    try:
        model, checkpoint = load_transform_net(args.model, args.device or "cpu")
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if checkpoint["task"] != task:
        raise UserError(f"{args.model} is a {checkpoint['task']!r} checkpoint; this command needs a {task!r} one")
    inputs, outputs = _io_pairs(args.input, args.out)
    try:
        count = transform_files(model, inputs, outputs, batch_size=args.batch_size, device=args.device or "cpu",
                                overwrite=args.overwrite)
    except (ValueError, FileExistsError) as exc:
        raise UserError(str(exc)) from exc
    print(f"wrote {count} image(s): {outputs[0]}" + (" ..." if count > 1 else ""))
    return 0


def _add_inference_options(p) -> None:
    p.add_argument("--out", required=True, help="output file, or folder when the input is a folder")
    p.add_argument("--batch-size", type=int, default=4, help="images per forward pass (default %(default)s)")
    p.add_argument("--device", help="cpu or cuda (default cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")


def _add_stylize(sub) -> None:
    p = sub.add_parser(
        "stylize", help="stylize images with a trained network (--model) or by optimization (--optimize)",
        formatter_class=_formatter,
        description="Stylize an image, or every image of a folder (batched, with a progress bar), with a\n"
                    "network trained by `train-style` (--model CKPT IMAGE_OR_DIR); or optimize the pixels of\n"
                    "CONTENT against Johnson et al.'s objective (--optimize CONTENT STYLE): content_weight *\n"
                    "l_feat(relu2_2) + style_weight * l_style(relu1_2, relu2_2, relu3_3, relu4_3) + tv_weight * TV\n"
                    "over VGG16 (random unless --vgg-weights). CONTENT/STYLE may be sample:NAME.",
        epilog="examples:\n"
               "  perceptual-ext stylize --model runs/style/checkpoint.pt photo.jpg --out photo_styled.png\n"
               "  perceptual-ext stylize --model runs/style/checkpoint.pt photos/ --out styled/ --batch-size 8\n"
               "  perceptual-ext stylize --optimize sample:chelsea sample:gravel --size 256 --out cat.png\n"
               "  perceptual-ext stylize --optimize photo.jpg painting.jpg --vgg-weights vgg16.pth \\\n"
               "      --style-weight 10 --steps 300 --out stylized.png")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--model", metavar="CKPT", help="a train-style checkpoint")
    mode.add_argument("--optimize", action="store_true", help="optimize the pixels of CONTENT towards STYLE")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="IMAGE_OR_DIR with --model; CONTENT STYLE with --optimize")
    _add_inference_options(p)
    _add_stylize_optimize_options(p.add_argument_group("with --optimize"))
    p.set_defaults(func=_run_stylize)


def _run_stylize(args) -> int:
    if args.optimize:
        return _run_stylize_optimize(args)
    if len(args.inputs) != 1:
        raise UserError(f"stylize --model takes one IMAGE_OR_DIR, got {len(args.inputs)} inputs")
    args.input = args.inputs[0]
    return _apply_model(args, "style")


def _add_superres(sub) -> None:
    p = sub.add_parser(
        "superres", help="upscale images x4/x8 with a trained network", formatter_class=_formatter,
        description="Upscale an image, or every image of a folder (batched, with a progress bar), with a\n"
                    "network trained by `train-sr`.",
        epilog="examples:\n"
               "  perceptual-ext superres --model runs/sr/checkpoint.pt small.png --out big.png\n"
               "  perceptual-ext superres --model runs/sr/checkpoint.pt thumbs/ --out upscaled/ --overwrite")
    p.add_argument("--model", metavar="CKPT", required=True, help="a train-sr checkpoint")
    p.add_argument("input", metavar="IMAGE_OR_DIR")
    _add_inference_options(p)
    p.set_defaults(func=_run_superres)


def _run_superres(args) -> int:
    return _apply_model(args, "sr")


def _add_eval_sr(sub) -> None:
    p = sub.add_parser(
        "eval-sr", help="PSNR/SSIM/SWD of an SR network vs bicubic upsampling", formatter_class=_formatter,
        description="Downsample each HR image (bicubic, antialiased), upscale it with the network and with\n"
                    "bicubic interpolation, and print PSNR, SSIM and SWD against the original.",
        epilog="examples:\n"
               "  perceptual-ext eval-sr --checkpoint runs/sr/checkpoint.pt --images Set5/ --json set5.json\n"
               "  perceptual-ext eval-sr --checkpoint runs/sr/checkpoint.pt   # scikit-image samples")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="a train-sr checkpoint")
    p.add_argument("--images", metavar="DIR", help="folder of HR images (default: scikit-image samples)")
    p.add_argument("--size", type=int, help="resize each image's centre square to SIZE first")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing JSON file")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.set_defaults(func=_run_eval_sr)


def _run_eval_sr(args) -> int:
    from .train.feedforward import evaluate_sr, format_sr_table, write_json

    _existing_dir(args.images, "image")
    if args.json and os.path.exists(args.json) and not args.overwrite:
        raise UserError(f"{args.json} exists (pass --overwrite to replace it)")
    try:
        result = evaluate_sr(args.checkpoint, args.images, size=args.size, device=args.device)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    print(format_sr_table(result))
    if args.json:
        write_json(result, args.json, overwrite=True)
        print(f"wrote {args.json}")
    return 0


COMMANDS += [_add_train_style, _add_stylize, _add_train_sr, _add_superres, _add_eval_sr]


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
        description="Synthesize a new texture from an example by optimizing pixels, from its mean colour plus "
                    "noise, against a loss: patch MMD (default), MMD++, S-CNN features or Gram matrices of VGG16 "
                    "features (Gatys et al.). Pooled losses (mmd, mmdpp, scnn) pool over the whole image "
                    "unless --window is given.",
        epilog="examples:\n"
               "  perceptual-ext synthesize sample:gravel --loss mmd --size 256 --steps 500 --out gravel.png\n"
               "  perceptual-ext synthesize my_texture.jpg --loss gram --vgg-weights vgg16.pth --out out.png\n"
               "  perceptual-ext synthesize sample:brick --loss scnn --size 128 --device cuda --out brick.png",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("texture", metavar="TEXTURE", help="texture image file, or sample:NAME (scikit-image samples)")
    p.add_argument("--loss", default="mmd", choices=_loss_names(),
                   help="loss to match (default mmd, with a kernel of sigma 0.15 per pixel)")
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


def _add_stylize_optimize_options(g) -> None:
    g.add_argument("--size", type=int, default=256, help="short side of the content, resized (default 256; 0 keeps it)")
    g.add_argument("--steps", type=int, default=300, help="optimizer steps (default 300)")
    g.add_argument("--lr", type=float, help="learning rate (default 1.0 for lbfgs, 0.02 for adam)")
    g.add_argument("--optimizer", default="lbfgs", choices=("adam", "lbfgs"))
    g.add_argument("--content-weight", type=float, default=1.0, help="λ_c of l_feat (default 1)")
    g.add_argument("--style-weight", type=float, default=5.0, help="λ_s of l_style (default 5)")
    g.add_argument("--tv-weight", type=float, default=1e-6, help="λ_TV of the total variation (default 1e-6)")
    g.add_argument("--init", default="content", choices=("content", "noise"), help="starting image (default content)")
    g.add_argument("--vgg-weights", metavar="PTH", help="torchvision-layout VGG16 state dict (default: random VGG16)")
    g.add_argument("--seed", type=int, default=0, help="seed of the random VGG, init and optimization (default 0)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_stylize_optimize(args) -> int:
    import time

    from .data import save_image
    from .train.synthesis import style_transfer

    if len(args.inputs) != 2:
        raise UserError(f"--optimize takes two images, CONTENT STYLE; got {len(args.inputs)}")
    _check_outputs([args.out], args.overwrite)
    _positive(args.steps, "--steps")
    if args.size < 0:
        raise UserError(f"--size must be >= 0, got {args.size}")
    device = _torch_device(args.device or "cpu")
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


COMMANDS += [_add_synthesize, _add_gim]


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
