"""Image optimization: ``synthesize`` (texture synthesis), ``stylize --optimize`` (Gatys et al. /
Johnson et al.'s objective on pixels) and ``gim`` (the generalized-image-mean experiment)."""
from __future__ import annotations

import json
import os

from ._common import (UserError, add_command, add_device_option, add_loss_weight_options, check_outputs, device,
                      loss_weights, positive, read_image, user_errors)


def _loss_names() -> tuple:
    from ..train.synthesis import LOSS_NAMES

    return LOSS_NAMES


def _common_options(p, steps: int, lr_help: str, lr_default) -> None:
    p.add_argument("--steps", type=int, default=steps, help=f"optimizer steps (default {steps})")
    p.add_argument("--lr", type=float, default=lr_default, help=lr_help)
    add_loss_weight_options(p, "torchvision-layout VGG16 state dict for vgg/gram losses and lpips' backbone "
                               "(default: a random VGG16 seeded by --seed)", vgg_metavar="PTH")
    p.add_argument("--seed", type=int, default=0, help="seed of the random filters, init and optimization (default 0)")
    add_device_option(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_synthesize(sub) -> None:
    p = add_command(sub, "synthesize", _run_synthesize, help="texture synthesis by pixel optimization")
    p.add_argument("texture", metavar="TEXTURE", help="texture image file, or sample:NAME (scikit-image samples)")
    p.add_argument("--loss", default="mmd", choices=_loss_names(),
                   help="loss to match (default mmd, with a kernel of sigma 0.15 per pixel)")
    p.add_argument("--size", type=int, default=256, help="side of the square output (default 256)")
    p.add_argument("--window", type=int, help="local pooling window of mmd/mmdpp/scnn (default: whole image)")
    p.add_argument("--optimizer", default="adam", choices=("adam", "lbfgs"))
    p.add_argument("--out", required=True, help="output PNG")
    _common_options(p, steps=500, lr_help="learning rate (default 0.02 for adam, 1.0 for lbfgs)", lr_default=None)


def _run_synthesize(args) -> int:
    """Synthesize a new texture from an example by optimizing pixels, from its mean colour plus noise,
    against a loss: patch MMD (default), MMD++, S-CNN features or Gram matrices of VGG16 features (Gatys
    et al.). Pooled losses (mmd, mmdpp, scnn) pool over the whole image unless --window is given.

    Examples:
        perceptual-ext synthesize sample:gravel --loss mmd --size 256 --steps 500 --out gravel.png
        perceptual-ext synthesize my_texture.jpg --loss gram --vgg-weights vgg16.pth --out out.png
        perceptual-ext synthesize sample:brick --loss scnn --size 128 --device cuda --out brick.png
    """
    import time

    from ..data import save_image
    from ..train.synthesis import synthesize_texture, texture_loss

    check_outputs([args.out], args.overwrite, images=True)
    positive(args.size, "--size")
    positive(args.steps, "--steps")
    dev = device(args.device)
    texture = read_image(args.texture, "TEXTURE")
    with user_errors(f"loss {args.loss}"):
        weights = loss_weights(args, [args.loss])
        loss = texture_loss(args.loss, args.size, args.window, vgg_weights=weights.pop("vgg_weights"), seed=args.seed,
                            loss_kwargs=weights)
    lr = args.lr if args.lr is not None else (0.02 if args.optimizer == "adam" else 1.0)
    start = time.perf_counter()
    with user_errors("synthesize"):
        result = synthesize_texture(texture.to(dev), loss=loss, size=args.size, steps=args.steps, lr=lr,
                                    optimizer=args.optimizer, seed=args.seed, device=dev,
                                    progress=False if args.quiet else f"synthesize ({args.loss})")
    save_image(result.image.cpu(), args.out, overwrite=args.overwrite)
    print(json.dumps({"out": args.out, "loss": args.loss, "steps": len(result.history),
                      "first_loss": result.history[0], "last_loss": result.history[-1],
                      "seconds": round(time.perf_counter() - start, 2)}))
    return 0


def add_stylize_optimize_options(g) -> None:
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


def run_stylize_optimize(args) -> int:
    import time

    from ..data import save_image
    from ..train.synthesis import style_transfer

    if len(args.inputs) != 2:
        raise UserError(f"--optimize takes two images, CONTENT STYLE; got {len(args.inputs)}")
    check_outputs([args.out], args.overwrite, images=True)
    positive(args.steps, "--steps")
    if args.size < 0:
        raise UserError(f"--size must be >= 0, got {args.size}")
    dev = device(args.device)
    content = read_image(args.inputs[0], "CONTENT")
    style = read_image(args.inputs[1], "STYLE")
    lr = args.lr if args.lr is not None else (0.02 if args.optimizer == "adam" else 1.0)
    start = time.perf_counter()
    with user_errors("stylize"):
        result = style_transfer(content.to(dev), style.to(dev), content_weight=args.content_weight,
                                style_weight=args.style_weight, tv_weight=args.tv_weight, steps=args.steps, lr=lr,
                                optimizer=args.optimizer, size=args.size or None, init=args.init,
                                vgg_weights=args.vgg_weights, seed=args.seed, device=dev,
                                progress=False if args.quiet else "stylize")
    save_image(result.image.cpu(), args.out, overwrite=args.overwrite)
    print(json.dumps({"out": args.out, "steps": len(result.history), "first_loss": result.history[0],
                      "last_loss": result.history[-1], "seconds": round(time.perf_counter() - start, 2)}))
    return 0


def _add_gim(sub) -> None:
    p = add_command(sub, "gim", _run_gim,
                    help="the GIM experiment: optimize one image against K shifted crops per loss")
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


GIM_FILES = ("gim_mean.png", "gim_crops.png", "gim_grid.png", "gim.json")


def _gim_losses(spec: str):
    from ..train.synthesis import LOSS_NAMES

    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in LOSS_NAMES]
    if not names or unknown:
        raise UserError(f"--losses must be a comma-separated subset of {', '.join(LOSS_NAMES)}; got {spec!r}")
    if len(set(names)) != len(names):
        raise UserError(f"--losses names a loss twice: {spec!r}")
    return names


def _save_gim(result, args, dev) -> int:
    """The pictures and gim.json of one GIM run in --out-dir; returns how many files were written."""
    from ..data import image_grid, save_image
    from ..train import write_json

    pictures = {"gim_mean.png": result.mean[0], "gim_crops.png": image_grid(list(result.crops)),
                "gim_grid.png": image_grid(result.grid_row()),
                **{f"gim_{name}.png": img[0] for name, img in result.images.items()}}
    for name, img in pictures.items():
        save_image(img.cpu(), os.path.join(args.out_dir, name), overwrite=args.overwrite)
    settings = {"image": args.image, "losses": list(result.images), "crop_size": args.crop_size,
                "num_crops": args.num_crops, "shift": args.shift, "steps": args.steps, "lr": args.lr,
                "seed": args.seed, "device": str(dev), "vgg_weights": args.vgg_weights,
                "lpips_weights": args.lpips_weights,
                "swd_nhoods_per_image": args.swd_nhoods}
    write_json({**settings, **result.record()}, os.path.join(args.out_dir, "gim.json"), overwrite=args.overwrite)
    return len(pictures) + 1


def _run_gim(args) -> int:
    r"""Generalized image mean (Amir & Weiss): K crops of IMAGE shifted by up to ±SHIFT pixels are the
    targets; for each loss one image is optimized from their mean against the mean loss to all crops.
    Writes gim_<loss>.png per loss, gim_mean.png, gim_crops.png, gim_grid.png (a target crop, the mean,
    then each result) and gim.json with SWD (×10³, lower is more like the crops) and PSNR to the crops.

    Examples:
        perceptual-ext gim sample:astronaut --losses mse,mmd,scnn --out-dir gim_out
        perceptual-ext gim photo.png --losses mse,vgg,vgg_random,mmd,mmdpp --vgg-weights vgg16.pth \
            --crop-size 128 --steps 500 --device cuda --out-dir gim_out
    """
    from ..train import gim_experiment
    from ..train.synthesis import make_loss

    names = _gim_losses(args.losses)
    for value, flag in ((args.steps, "--steps"), (args.crop_size, "--crop-size"), (args.num_crops, "--num-crops"),
                        (args.swd_nhoods, "--swd-nhoods"), (args.image_size, "--image-size")):
        positive(value, flag)
    positive(args.shift, "--shift", minimum=0)
    outputs = [os.path.join(args.out_dir, f) for f in GIM_FILES + tuple(f"gim_{n}.png" for n in names)]
    check_outputs(outputs, args.overwrite)
    dev = device(args.device)
    image = read_image(args.image, "IMAGE")
    losses, weights = {}, loss_weights(args, names)
    for name in names:
        with user_errors(f"loss {name}"):
            losses[name] = make_loss(name, seed=args.seed, **weights)
    with user_errors("gim"):
        result = gim_experiment(image.to(dev), losses=losses, num_crops=args.num_crops, shift=args.shift,
                                crop_size=args.crop_size, image_size=args.image_size, steps=args.steps, lr=args.lr,
                                seed=args.seed, device=dev, swd_kwargs={"nhoods_per_image": args.swd_nhoods},
                                progress=not args.quiet)
    written = _save_gim(result, args, dev)
    print(f"{'':12s} {'SWD x1e3':>9s} {'PSNR dB':>8s}")
    for row, m in result.metrics.items():
        print(f"{row:12s} {m['swd']:9.2f} {m['psnr']:8.2f}")
    print(f"wrote {written} files to {args.out_dir}")
    return 0


COMMANDS = [_add_synthesize, _add_gim]
