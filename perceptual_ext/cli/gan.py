"""Image-to-image GANs: ``train-pix2pix``, ``train-cyclegan``, ``translate``, ``sample-pairs``."""
from __future__ import annotations

import os

from ._common import (UserError, add_command, add_loss_weight_options, add_output_options, add_run_options,
                      add_schedule_options, check_outputs, check_training_options, device, existing_dir, loss_weights,
                      positive, report_checkpoint, user_errors)


def _add_gan_options(p, *, out_dir: str, gan_mode: str, norm: str) -> None:
    from ..losses.factory import LOSSES

    p.add_argument("--builtin", choices=("edges", "grey"), default="edges",
                   help="built-in paired set used without data folders: edges->photo or grey->colour "
                        "(scikit-image samples, offline; default %(default)s)")
    add_schedule_options(p, steps=2000, batch_size=1, lr=2e-4, lr_help="learning rate of G and D",
                         optimizer_help="Adam with betas (0.5, 0.999) (default) or plain SGD (for exact comparisons)")
    p.add_argument("--decay-steps", type=int,
                   help="the last steps over which the learning rate decays linearly to 0 (default: steps/2)")
    p.add_argument("--load-size", type=int, default=286,
                   help="resize to LOAD_SIZE^2 before the random crop (default %(default)s; 0: keep the size)")
    p.add_argument("--crop-size", type=int, default=256, help="random crop side (default %(default)s)")
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    p.add_argument("--gan-mode", choices=("vanilla", "lsgan", "hinge", "wgangp"), default=gan_mode,
                   help="adversarial loss (default %(default)s; wgangp adds the gradient penalty)")
    p.add_argument("--extra-loss", action="append", metavar="NAME:WEIGHT",
                   help="add a loss of the library to G's objective, e.g. vgg:1.0 (repeatable); names: "
                        + ", ".join(LOSSES))
    add_loss_weight_options(p, "torchvision VGG16 state dict for the vgg/gram losses (and lpips' backbone)")
    p.add_argument("--ngf", type=int, default=64, help="generator filters (default %(default)s)")
    p.add_argument("--ndf", type=int, default=64, help="discriminator filters (default %(default)s)")
    p.add_argument("--n-layers-d", type=int, default=3, help="PatchGAN stride-2 layers: 3 = 70x70 (default)")
    p.add_argument("--norm", choices=("batch", "instance", "none"), default=norm, help="default %(default)s")
    add_run_options(p, out_dir, "data order and jitter")


def _common_kwargs(args) -> dict:
    check_training_options(args)
    positive(args.crop_size, "--crop-size")
    positive(args.load_size, "--load-size", minimum=0)
    extra_names = [spec.partition(":")[0] for spec in args.extra_loss or []]
    return dict(builtin=args.builtin, out_dir=args.out_dir, steps=args.steps, decay_steps=args.decay_steps,
                batch_size=args.batch_size, load_size=args.load_size or None, crop_size=args.crop_size,
                flip=not args.no_flip, lr=args.lr, optimizer=args.optimizer, gan_mode=args.gan_mode,
                extra_loss=args.extra_loss, **loss_weights(args, extra_names),
                ngf=args.ngf, ndf=args.ndf, n_layers_d=args.n_layers_d, norm=args.norm,
                seed=args.seed, device=device(args.device), num_workers=args.workers, sample_every=args.sample_every,
                checkpoint_every=args.checkpoint_every, resume=args.resume, overwrite=args.overwrite)


def _report(result) -> int:
    last = {k: v[-1] for k, v in result["history"].items() if v}
    return report_checkpoint(result, f"D {last['loss_D']:.4g}, G {last['loss_G']:.4g}, D accuracy real "
                                     f"{last['D_real_acc']:.2f} fake {last['D_fake_acc']:.2f}" if last else "")


def _add_train_pix2pix(sub) -> None:
    p = add_command(sub, "train-pix2pix", _run_train_pix2pix,
                    help="train pix2pix (U-Net + 70x70 PatchGAN, cGAN + lambda*L1) on paired images")
    p.add_argument("data", nargs="?", metavar="DIR",
                   help="aligned A|B images, or the A folder with --b-dir (default: the built-in set)")
    p.add_argument("--b-dir", metavar="DIR", help="the B folder: DIR holds A, files pair up by name")
    p.add_argument("--direction", choices=("AtoB", "BtoA"), default="AtoB", help="default %(default)s")
    p.add_argument("--lambda-l1", type=float, default=100.0, help="weight of the L1 term (default %(default)s)")
    p.add_argument("--no-dropout", action="store_true", help="no dropout in the U-Net")
    _add_gan_options(p, out_dir="runs/pix2pix", gan_mode="vanilla", norm="batch")


def _run_train_pix2pix(args) -> int:
    """Train pix2pix (Isola et al. 2017) on paired images: an aligned folder (A|B side by side in
    each image, as pix2pix's data sets), two folders whose files pair up by name, or the
    built-in set. Adam 2e-4, betas (0.5, 0.999), lr constant then linear decay, lambda_L1 = 100,
    vanilla GAN, batch norm. Runs under torchrun for DDP.

    Examples:
        perceptual-ext train-pix2pix --steps 300 --crop-size 64 --load-size 72 --ngf 16   # offline
        perceptual-ext train-pix2pix facades/train --direction BtoA --steps 80000
        perceptual-ext train-pix2pix sketches/ --b-dir photos/ --extra-loss vgg:1.0 --vgg-weights vgg16.pth
        torchrun --nproc_per_node=2 -m perceptual_ext.cli train-pix2pix edges2shoes/train --batch-size 4
        perceptual-ext train-pix2pix --resume runs/pix2pix/checkpoint.pt --steps 2000
    """
    from ..train import train_pix2pix

    existing_dir(args.data, "data")
    existing_dir(args.b_dir, "--b-dir")
    if args.b_dir and not args.data:
        raise UserError("--b-dir needs DIR (the A folder)")
    kwargs = _common_kwargs(args)
    with user_errors():
        result = train_pix2pix(args.data, args.b_dir, direction=args.direction, lambda_l1=args.lambda_l1,
                               dropout=not args.no_dropout, **kwargs)
    return _report(result)


def _add_train_cyclegan(sub) -> None:
    p = add_command(sub, "train-cyclegan", _run_train_cyclegan,
                    help="train CycleGAN (two ResNet generators, two PatchGANs) on unpaired folders")
    p.add_argument("data_a", nargs="?", metavar="A_DIR", help="domain A images (default: the built-in set)")
    p.add_argument("data_b", nargs="?", metavar="B_DIR", help="domain B images")
    p.add_argument("--lambda-cycle", type=float, default=10.0, help="cycle-consistency weight (default %(default)s)")
    p.add_argument("--lambda-identity", type=float, default=0.5,
                   help="identity loss weight, relative to --lambda-cycle (default %(default)s; 0: off)")
    p.add_argument("--pool-size", type=int, default=50, help="generated images kept per D (default %(default)s)")
    p.add_argument("--n-blocks", type=int, default=9, help="residual blocks per generator (default %(default)s)")
    _add_gan_options(p, out_dir="runs/cyclegan", gan_mode="lsgan", norm="instance")


def _run_train_cyclegan(args) -> int:
    """Train CycleGAN (Zhu et al. 2017) on two folders of unpaired images (or the built-in set,
    its pairing ignored): LSGAN, lambda_cycle = 10, lambda_identity = 0.5, instance norm, an
    image pool of 50, Adam 2e-4 with betas (0.5, 0.999), lr constant then linear decay.

    Examples:
        perceptual-ext train-cyclegan --steps 200 --crop-size 64 --load-size 72 --ngf 16 --n-blocks 3
        perceptual-ext train-cyclegan horse2zebra/trainA horse2zebra/trainB --steps 100000
        perceptual-ext translate --model runs/cyclegan/checkpoint.pt --direction BtoA zebras/ --out h/
    """
    from ..train import train_cyclegan

    if (args.data_a is None) != (args.data_b is None):
        raise UserError("give both A_DIR and B_DIR, or neither (the built-in set)")
    existing_dir(args.data_a, "A_DIR")
    existing_dir(args.data_b, "B_DIR")
    kwargs = _common_kwargs(args)
    with user_errors():
        result = train_cyclegan(args.data_a, args.data_b, lambda_cycle=args.lambda_cycle,
                                lambda_identity=args.lambda_identity, pool_size=args.pool_size,
                                n_blocks=args.n_blocks, **kwargs)
    return _report(result)


def _inputs(specs):
    """The image files named by INPUT... (files, or every image of a folder), in order."""
    from ..data import list_images

    files = []
    for spec in specs:
        if os.path.isdir(spec):
            found = list_images(spec)
            if not found:
                raise UserError(f"no images in {spec}")
            files.extend(found)
        elif os.path.isfile(spec):
            files.append(spec)
        else:
            raise UserError(f"input not found: {spec}")
    return files


def _add_translate(sub) -> None:
    p = add_command(sub, "translate", _run_translate,
                    help="translate images with a trained pix2pix or CycleGAN generator")
    p.add_argument("--model", metavar="CKPT", required=True, help="a train-pix2pix or train-cyclegan checkpoint")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    add_output_options(p, "output folder (created)", out_metavar="DIR")
    p.add_argument("--direction", choices=("AtoB", "BtoA"), default="AtoB",
                   help="CycleGAN: G_A (AtoB, default) or G_B (BtoA)")
    p.add_argument("--aligned", choices=("A", "B"), help="inputs are aligned A|B images: translate this half")


def _run_translate(args) -> int:
    """Run the generator of a train-pix2pix or train-cyclegan checkpoint on image files (batched,
    with a progress bar) and write OUT/<name>.png for each. Any image size works (padded to
    the network's multiple and cropped back); batch norm uses each image's own statistics, as
    pix2pix does at test time. Existing outputs are refused unless --overwrite.

    Examples:
        perceptual-ext sample-pairs --out pairs/ --layout folders
        perceptual-ext translate --model runs/pix2pix/checkpoint.pt pairs/A --out translated/
        perceptual-ext translate --model runs/pix2pix/checkpoint.pt facades/val --aligned A --out out/
        perceptual-ext translate --model runs/cyclegan/checkpoint.pt --direction BtoA b.jpg --out out/
    """
    from ..train import load_gan_generator, translate_files

    dev = device(args.device)
    positive(args.batch_size, "--batch-size")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out must be a folder: {args.out}")
    inputs = _inputs(args.inputs)
    outputs, seen = [], {}
    for path in inputs:
        name = os.path.splitext(os.path.basename(path))[0] + ".png"
        if name in seen:
            raise UserError(f"two inputs would both be written to {name}: {seen[name]} and {path}")
        seen[name] = path
        outputs.append(os.path.join(args.out, name))
    check_outputs(outputs, args.overwrite, images=True)
    with user_errors():
        model, _ = load_gan_generator(args.model, args.direction, dev)
        count = translate_files(model, inputs, outputs, aligned=args.aligned, batch_size=args.batch_size, device=dev,
                                overwrite=args.overwrite)
    print(f"wrote {count} image(s) to {args.out}")
    return 0


def _add_sample_pairs(sub) -> None:
    p = add_command(sub, "sample-pairs", _run_sample_pairs,
                    help="write the built-in paired set (edges->photo or grey->colour) as PNGs")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--kind", choices=("edges", "grey"), default="edges", help="default %(default)s")
    p.add_argument("--size", type=int, default=256, help="image side (default %(default)s)")
    p.add_argument("--layout", choices=("aligned", "folders"), default="aligned", help="default %(default)s")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")


def _run_sample_pairs(args) -> int:
    """Write the paired set built from scikit-image's bundled samples (offline): aligned A|B
    images, or A/ and B/ folders whose files pair up by name.

    Examples:
        perceptual-ext sample-pairs --out pairs/                      # pairs/NAME.png, A|B
        perceptual-ext sample-pairs --kind grey --layout folders --out grey/   # grey/A, grey/B
    """
    from ..data import write_sample_pairs

    positive(args.size, "--size", minimum=8)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out must be a folder: {args.out}")
    with user_errors():
        paths = write_sample_pairs(args.out, args.kind, args.size, args.layout, overwrite=args.overwrite)
    print(f"wrote {len(paths)} image(s) to {args.out}")
    return 0


COMMANDS = [_add_train_pix2pix, _add_train_cyclegan, _add_translate, _add_sample_pairs]
