"""Colorization (Zhang et al. 2016): ``train-colorize`` and ``colorize``."""
from __future__ import annotations


from ._common import (UserError, add_command, add_output_options, add_run_options, add_schedule_options, check_outputs,
                      check_training_options, device, existing_dir, io_pairs, report_checkpoint, user_errors)


def _add_train_colorize(sub) -> None:
    p = add_command(sub, "train-colorize", _run_train_colorize, help="train a colorization network (Zhang et al. 2016)")
    p.add_argument("--images", metavar="DIR", help="folder of colour training images (default: scikit-image samples)")
    add_schedule_options(p, steps=2000, batch_size=16, image_size=64, lr=1e-3, items="crops")
    p.add_argument("--widths", type=int, nargs=3, default=(32, 64, 128), metavar=("W1", "W2", "W3"),
                   help="channels of the 1/2, 1/4 and dilated stages (default 32 64 128)")
    p.add_argument("--dilated", type=int, default=2, help="dilated blocks (default %(default)s)")
    p.add_argument("--norm", choices=("batch", "none"), default="batch",
                   help="batch: BatchNorm after each block (default, the paper's); none")
    p.add_argument("--no-rebalance", action="store_true", help="no class rebalancing (v = 1)")
    p.add_argument("--rebalance", type=float, default=0.5, help="lambda, uniform share of the prior (default 0.5)")
    p.add_argument("--neighbors", type=int, default=5,
                   help="bins per soft-encoded target (paper 5; the authors' code 10; default %(default)s)")
    p.add_argument("--sigma", type=float, default=5.0, help="soft-encoding Gaussian sigma (default %(default)s)")
    add_run_options(p, "runs/colorize")


def _run_train_colorize(args) -> int:
    """Train a ColorizationNet (L in, 313 ab-bin logits at 1/4 resolution) on random crops with the
    class-rebalanced soft-encoded cross-entropy. The prior of the ab bins is estimated from the
    training images (--no-rebalance turns rebalancing off). Runs under torchrun for DDP.

    Examples:
        perceptual-ext train-colorize --images photos/ --steps 20000 --image-size 128
        perceptual-ext train-colorize --steps 300 --image-size 64   # scikit-image colour samples, offline
        torchrun --nproc_per_node=2 -m perceptual_ext.cli train-colorize --images photos/
        perceptual-ext train-colorize --images photos/ --resume runs/colorize/checkpoint.pt --steps 40000
    """
    from ..train import train_colorization

    existing_dir(args.images, "image")
    check_training_options(args)
    dev = device(args.device)
    with user_errors():
        result = train_colorization(
            args.images, out_dir=args.out_dir, steps=args.steps, batch_size=args.batch_size,
            image_size=args.image_size, lr=args.lr, optimizer=args.optimizer, widths=tuple(args.widths),
            dilated=args.dilated, norm=args.norm, prior=None if args.no_rebalance else "estimate",
            rebalance=args.rebalance, neighbors=args.neighbors, sigma=args.sigma, seed=args.seed, device=dev,
            num_workers=args.workers,
            sample_every=args.sample_every, checkpoint_every=args.checkpoint_every, resume=args.resume,
            overwrite=args.overwrite)
    h = result["history"]
    return report_checkpoint(result, f"last loss {h[-1]:.5g}" if h else "")


def _add_colorize(sub) -> None:
    p = add_command(sub, "colorize", _run_colorize, help="colour grey images with a trained colorization network")
    p.add_argument("--model", metavar="CKPT", required=True, help="a train-colorize checkpoint")
    p.add_argument("input", metavar="IMAGE_OR_DIR")
    p.add_argument("--temperature", type=float, default=0.38, help="annealed-mean temperature (default %(default)s)")
    add_output_options(p, batch_size=False)


def _run_colorize(args) -> int:
    """Colour an image, or every image of a folder, from its lightness with a network trained by
    `train-colorize`: the annealed mean of the predicted ab distribution (T = 0.38 as in the
    paper; T = 1 is the plain mean, T -> 0 the mode). Colour inputs are reduced to their L first.

    Examples:
        perceptual-ext colorize --model runs/colorize/checkpoint.pt grey.png --out colour.png
        perceptual-ext colorize --model runs/colorize/checkpoint.pt old_photos/ --out coloured/
        perceptual-ext colorize --model runs/colorize/checkpoint.pt grey.png --out vivid.png --temperature 0.2
    """
    from ..train import colorize_files, load_colorization_net

    dev = device(args.device)
    if not args.temperature >= 0 or args.temperature == float("inf"):
        raise UserError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    inputs, outputs = io_pairs(args.input, args.out)
    check_outputs(outputs, args.overwrite, images=True)
    with user_errors():
        model, _ = load_colorization_net(args.model, dev)
    with user_errors():
        count = colorize_files(model, inputs, outputs, temperature=args.temperature, device=dev,
                               overwrite=args.overwrite)
    print(f"wrote {count} image(s): {outputs[0]}" + (" ..." if count > 1 else ""))
    return 0


COMMANDS = [_add_train_colorize, _add_colorize]
