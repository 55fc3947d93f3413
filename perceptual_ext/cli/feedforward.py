"""Feed-forward networks: ``train-style``, ``train-sr``, ``stylize``, ``superres``, ``eval-sr``."""
from __future__ import annotations


from ._common import (UserError, add_command, add_device_option, add_loss_weight_options, add_output_options,
                      add_run_options, add_schedule_options, check_outputs, check_training_options, device,
                      existing_dir, io_pairs, loss_weights, positive, report_checkpoint, user_errors)
from .optimize import add_stylize_optimize_options, run_stylize_optimize


def _add_training_options(p, *, steps: int, batch_size: int, image_size: int, out_dir: str) -> None:
    add_schedule_options(p, steps=steps, batch_size=batch_size, image_size=image_size, lr=1e-3)
    add_loss_weight_options(p, "torchvision VGG16 state dict for the vgg/gram losses (and lpips' backbone)")
    p.add_argument("--upsample", choices=("deconv", "pixelshuffle", "nearest"), default="deconv",
                   help="upsampling stages: fractional-stride conv (paper), sub-pixel conv or resize-conv")
    add_run_options(p, out_dir)


def _training_kwargs(args, losses) -> dict:
    """The keyword arguments of train_style / train_sr from _add_training_options' flags (and --norm),
    checked; ``losses``: the names of the losses the run uses."""
    check_training_options(args)
    return dict(out_dir=args.out_dir, steps=args.steps, batch_size=args.batch_size, image_size=args.image_size,
                lr=args.lr, optimizer=args.optimizer, **loss_weights(args, losses), norm=args.norm,
                upsample=args.upsample, seed=args.seed,
                device=args.device, num_workers=args.workers, sample_every=args.sample_every,
                checkpoint_every=args.checkpoint_every, resume=args.resume, overwrite=args.overwrite)


def _report_training(fn, *args, **kwargs) -> int:
    """Run a trainer with the command's options and print where its checkpoint went."""
    with user_errors():
        result = fn(*args, **kwargs)
    h = result["history"]
    return report_checkpoint(result, f"last loss {h[-1]:.5g}" if h else "")


def _add_train_style(sub) -> None:
    from ..losses.factory import LOSSES

    p = add_command(sub, "train-style", _run_train_style, help="train a fast style-transfer network (Johnson et al.)",
                    losses=", ".join(LOSSES))
    p.add_argument("style", help="style image file, or a scikit-image sample name (e.g. brick)")
    p.add_argument("--content", metavar="DIR", help="folder of content images (default: scikit-image samples)")
    p.add_argument("--style-loss", choices=tuple(LOSSES), default="gram", help="default %(default)s")
    p.add_argument("--content-loss", choices=tuple(LOSSES), default="vgg", help="default %(default)s")
    p.add_argument("--style-weight", type=float, default=5.0, help="default %(default)s")
    p.add_argument("--content-weight", type=float, default=1.0, help="default %(default)s")
    p.add_argument("--tv-weight", type=float, default=0.0, help="total variation weight (default 0: off)")
    p.add_argument("--norm", choices=("instance", "batch", "none"), default="instance", help="default %(default)s")
    _add_training_options(p, steps=2000, batch_size=4, image_size=256, out_dir="runs/style")


def _run_train_style(args) -> int:
    """Train a StyleTransformNet for one style image on random crops of content images.
    Losses: {losses}. Runs under torchrun for DDP.

    Examples:
        perceptual-ext train-style starry.jpg --content coco/ --vgg-weights vgg16.pth --steps 40000
        perceptual-ext train-style brick --steps 200 --image-size 128   # sample images, offline
        torchrun --nproc_per_node=2 -m perceptual_ext.cli train-style style.png --content imgs/
        perceptual-ext train-style style.png --resume runs/style/checkpoint.pt --steps 4000
    """
    from ..train import train_style

    existing_dir(args.content, "content")
    return _report_training(
        train_style, args.style, args.content, style_loss=args.style_loss, content_loss=args.content_loss,
        style_weight=args.style_weight, content_weight=args.content_weight, tv_weight=args.tv_weight,
        **_training_kwargs(args, (args.style_loss, args.content_loss)))


def _add_train_sr(sub) -> None:
    from ..losses.factory import LOSSES

    p = add_command(sub, "train-sr", _run_train_sr, help="train a x4/x8 super-resolution network",
                    losses=", ".join(f"{k} ({v})" for k, v in LOSSES.items()))
    p.add_argument("--images", metavar="DIR", help="folder of training images (default: scikit-image samples)")
    p.add_argument("--scale", type=int, choices=(4, 8), default=4, help="default %(default)s")
    p.add_argument("--loss", choices=tuple(LOSSES), default="mse", help="default %(default)s")
    p.add_argument("--model", choices=("johnson", "srcnn"), default="johnson", help="default %(default)s")
    p.add_argument("--norm", choices=("instance", "batch", "none"), default="batch", help="default %(default)s")
    p.add_argument("--residual", action="store_true",
                   help="johnson net: output bicubic upsampling + a learned correction, starting exactly at "
                        "bicubic (global residual learning, VDSR/EDSR-style; default: the paper's plain net)")
    _add_training_options(p, steps=1000, batch_size=8, image_size=96, out_dir="runs/sr")


def _run_train_sr(args) -> int:
    """Train a SuperResolutionNet (or SRCNN) on HR crops and their bicubic downsampling.
    Losses: {losses}.

    Examples:
        perceptual-ext train-sr --images photos/ --scale 4 --loss mse --steps 10000
        perceptual-ext train-sr --scale 4 --loss mmd --steps 300 --image-size 64   # offline samples
        perceptual-ext train-sr --residual --loss vgg --steps 500   # start at bicubic, learn the detail
        torchrun --nproc_per_node=2 -m perceptual_ext.cli train-sr --images photos/ --loss vgg
        perceptual-ext train-sr --resume runs/sr/checkpoint.pt --steps 20000
    """
    from ..train import train_sr

    existing_dir(args.images, "image")
    return _report_training(train_sr, args.images, args.scale, args.loss, model=args.model, residual=args.residual,
        **_training_kwargs(args, (args.loss,)))


def _apply_model(args, task: str) -> int:
    from ..train import load_transform_net, transform_files

    dev = device(args.device)
    positive(args.batch_size, "--batch-size")
    inputs, outputs = io_pairs(args.input, args.out)
    check_outputs(outputs, args.overwrite, images=True)
    with user_errors():
        model, checkpoint = load_transform_net(args.model, dev)
    if checkpoint["task"] != task:
        raise UserError(f"{args.model} is a {checkpoint['task']!r} checkpoint; this command needs a {task!r} one")
    with user_errors():
        count = transform_files(model, inputs, outputs, batch_size=args.batch_size, device=dev,
                                overwrite=args.overwrite)
    print(f"wrote {count} image(s): {outputs[0]}" + (" ..." if count > 1 else ""))
    return 0


def _add_stylize(sub) -> None:
    p = add_command(sub, "stylize", _run_stylize,
                    help="stylize images with a trained network (--model) or by optimization (--optimize)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--model", metavar="CKPT", help="a train-style checkpoint")
    mode.add_argument("--optimize", action="store_true", help="optimize the pixels of CONTENT towards STYLE")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="IMAGE_OR_DIR with --model; CONTENT STYLE with --optimize")
    add_output_options(p)
    add_stylize_optimize_options(p.add_argument_group("with --optimize"))


def _run_stylize(args) -> int:
    r"""Stylize an image, or every image of a folder (batched, with a progress bar), with a
    network trained by `train-style` (--model CKPT IMAGE_OR_DIR); or optimize the pixels of
    CONTENT against Johnson et al.'s objective (--optimize CONTENT STYLE): content_weight *
    l_feat(relu2_2) + style_weight * l_style(relu1_2, relu2_2, relu3_3, relu4_3) + tv_weight * TV
    over VGG16 (random unless --vgg-weights). CONTENT/STYLE may be sample:NAME.

    Examples:
        perceptual-ext stylize --model runs/style/checkpoint.pt photo.jpg --out photo_styled.png
        perceptual-ext stylize --model runs/style/checkpoint.pt photos/ --out styled/ --batch-size 8
        perceptual-ext stylize --optimize sample:chelsea sample:gravel --size 256 --out cat.png
        perceptual-ext stylize --optimize photo.jpg painting.jpg --vgg-weights vgg16.pth \
            --style-weight 10 --steps 300 --out stylized.png
    """
    if args.optimize:
        return run_stylize_optimize(args)
    if len(args.inputs) != 1:
        raise UserError(f"stylize --model takes one IMAGE_OR_DIR, got {len(args.inputs)} inputs")
    args.input = args.inputs[0]
    return _apply_model(args, "style")


def _add_superres(sub) -> None:
    p = add_command(sub, "superres", _run_superres, help="upscale images x4/x8 with a trained network")
    p.add_argument("--model", metavar="CKPT", required=True, help="a train-sr checkpoint")
    p.add_argument("input", metavar="IMAGE_OR_DIR")
    add_output_options(p)


def _run_superres(args) -> int:
    """Upscale an image, or every image of a folder (batched, with a progress bar), with a
    network trained by `train-sr`.

    Examples:
        perceptual-ext superres --model runs/sr/checkpoint.pt small.png --out big.png
        perceptual-ext superres --model runs/sr/checkpoint.pt thumbs/ --out upscaled/ --overwrite
    """
    return _apply_model(args, "sr")


def _add_eval_sr(sub) -> None:
    p = add_command(sub, "eval-sr", _run_eval_sr, help="PSNR/SSIM/SWD of an SR network vs bicubic upsampling")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="a train-sr checkpoint")
    p.add_argument("--images", metavar="DIR", help="folder of HR images (default: scikit-image samples)")
    p.add_argument("--size", type=int, help="resize each image's centre square to SIZE first")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing JSON file")
    add_device_option(p)


def _run_eval_sr(args) -> int:
    """Downsample each HR image (bicubic, antialiased), upscale it with the network and with
    bicubic interpolation, and print PSNR, SSIM and SWD against the original.

    Examples:
        perceptual-ext eval-sr --checkpoint runs/sr/checkpoint.pt --images Set5/ --json set5.json
        perceptual-ext eval-sr --checkpoint runs/sr/checkpoint.pt   # scikit-image samples
    """
    from ..train import evaluate_sr, format_sr_table, write_json

    existing_dir(args.images, "image")
    positive(args.size, "--size")
    if args.json:
        check_outputs([args.json], args.overwrite)
    dev = device(args.device)
    with user_errors():
        result = evaluate_sr(args.checkpoint, args.images, size=args.size, device=dev)
    print(format_sr_table(result))
    if args.json:
        write_json(result, args.json, overwrite=True)
        print(f"wrote {args.json}")
    return 0


COMMANDS = [_add_train_style, _add_stylize, _add_train_sr, _add_superres, _add_eval_sr]
