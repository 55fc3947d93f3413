"""What every command does the same way: user errors, output paths, devices, input images.

A user error (a bad path, an unreadable image, an invalid option, a refused overwrite) prints one
line to stderr and exits with code 2, no traceback: commands raise :class:`UserError`, or run the
library inside :class:`user_errors`, which turns the library's argument errors into one.
"""
from __future__ import annotations

import argparse
import inspect
import os
import textwrap
from typing import Iterable, Optional

#: the library's exceptions that mean "the input or an option is wrong", not "the program is broken"
USER_EXCEPTIONS = (ValueError, TypeError, FileExistsError, FileNotFoundError, ImportError, OSError,
                   FloatingPointError)
SAMPLE_PREFIX = "sample:"


class UserError(Exception):
    """A mistake in the command line or its inputs: reported without a traceback, exit code 2."""


class user_errors:
    """Run library code; its argument errors (:data:`USER_EXCEPTIONS`) become a :class:`UserError`
    with ``context`` in front of the message (``with user_errors("loss mmd"): ...``)."""

    def __init__(self, context: Optional[str] = None) -> None:
        self.context = context

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is not None and issubclass(kind, USER_EXCEPTIONS):
            message = str(exc) or kind.__name__
            raise UserError(f"{self.context}: {message}" if self.context else message) from exc
        return False


def formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_command(sub, name: str, run, *, help: str, **fields):
    """A subcommand ``name`` that runs ``run(args)``, described by ``run``'s docstring: one text for
    the reader of the code and the user of ``--help``. The docstring's ``Examples:`` section ends the
    help; ``{key}`` fields of the rest are filled from ``fields`` (e.g. the loss names)."""
    doc = inspect.cleandoc(run.__doc__ or "")
    description, _, examples = doc.partition("\n\nExamples:\n")
    p = sub.add_parser(name, help=help, description=description.format(**fields) if fields else description,
                       formatter_class=formatter,
                       epilog="examples:\n" + textwrap.indent(textwrap.dedent(examples), "  ") if examples else None)
    p.set_defaults(func=run)
    return p


def positive(value: int, flag: str, minimum: int = 1) -> int:
    if value is not None and value < minimum:
        raise UserError(f"{flag} must be >= {minimum}, got {value}")
    return value


def existing_dir(path: Optional[str], what: str) -> Optional[str]:
    if path is not None and not os.path.isdir(path):
        raise UserError(f"{what} folder not found: {path}")
    return path


def image_suffix_ok(path: str) -> bool:
    """Whether Pillow can write an image named ``path`` (the format comes from its suffix)."""
    from PIL import Image

    fmt = Image.registered_extensions().get(os.path.splitext(path)[1].lower())
    return fmt is not None and fmt in Image.SAVE


def check_outputs(paths: Iterable[str], overwrite: bool, images: bool = False) -> None:
    """Refuse, before any work, outputs that are folders, exist (unless ``overwrite``) or, for
    ``images``, name a format that cannot be written."""
    for path in paths:
        if os.path.isdir(path):
            raise UserError(f"output {path} is a directory")
        if os.path.exists(path) and not overwrite:
            raise UserError(f"output {path} exists; pass --overwrite to replace it")
        if images and not image_suffix_ok(path):
            raise UserError(f"output {path}: unknown image format {os.path.splitext(path)[1] or '(no suffix)'!r}; "
                            "use .png or .jpg")


def device(name: Optional[str]):
    """``--device`` as a torch.device; None: CUDA when available, else the CPU (one rule everywhere)."""
    from .. import _checks

    with user_errors():
        return _checks.device(name, "--device")


def read_image(spec: str, what: str = "image", channels: int = 3):
    """A path to an image file, or ``sample:NAME`` for a bundled scikit-image sample: [C, H, W]."""
    from ..data import SAMPLE_IMAGES, load_image, sample_image

    if spec.startswith(SAMPLE_PREFIX):
        name = spec[len(SAMPLE_PREFIX):]
        if name not in SAMPLE_IMAGES:
            raise UserError(f"unknown sample image {name!r} for {what}; choose from {', '.join(SAMPLE_IMAGES)}")
        return sample_image(name, channels=channels)
    with user_errors(what):
        return load_image(spec, channels=channels)


def add_device_option(p) -> None:
    p.add_argument("--device", help="cpu or cuda[:N] (default: cuda if available, else cpu)")


def add_schedule_options(p, *, steps: int, batch_size: int, lr: float, image_size: Optional[int] = None,
                         items: str = "images", lr_help: str = "learning rate",
                         optimizer_help: str = "Adam (default) or plain SGD") -> None:
    """The trainers' step count, batch size (per process), crop side (where ``image_size`` is given),
    learning rate and optimizer (checked by :func:`check_training_options`)."""
    p.add_argument("--steps", type=int, default=steps, help="total training steps (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=batch_size,
                   help=f"{items} per step and process (default %(default)s; global batch = processes x this)")
    if image_size is not None:
        p.add_argument("--image-size", type=int, default=image_size, help="training crop side (default %(default)s)")
    p.add_argument("--lr", type=float, default=lr, help=f"{lr_help} (default %(default)s)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help=optimizer_help)


def check_training_options(args) -> None:
    """Before any work: the counts of :func:`add_schedule_options` at least 1, --workers at least 0,
    and the device."""
    device(args.device)
    for flag in ("steps", "batch_size", "image_size"):
        if hasattr(args, flag):
            positive(getattr(args, flag), "--" + flag.replace("_", "-"))
    positive(args.workers, "--workers", minimum=0)


def report_checkpoint(result: dict, last: str = "") -> int:
    """Print where a trainer wrote its checkpoint (``last``: the losses of the last step) and what
    it skipped; exit code 0."""
    if result["checkpoint"]:
        print(f"checkpoint: {result['checkpoint']}  (step {result['steps']}{', ' + last if last else ''})")
        if result["skipped_files"] or result["failed_loads"]:
            print(f"skipped {result['skipped_files']} unreadable files, {result['failed_loads']} failed loads")
    return 0


def add_output_options(p, out_help: str = "output file, or folder when the input is a folder",
                       out_metavar: Optional[str] = None, batch_size: bool = True) -> None:
    """--out, --batch-size (where ``batch_size``), --device and --overwrite of the commands that
    apply a trained network to image files."""
    p.add_argument("--out", required=True, metavar=out_metavar, help=out_help)
    if batch_size:
        p.add_argument("--batch-size", type=int, default=4, help="images per forward pass (default %(default)s)")
    add_device_option(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")


def add_loss_weight_options(p, vgg_help: str, vgg_metavar: str = "FILE") -> None:
    """``--vgg-weights`` and ``--lpips-weights``: the weight files of the factory's losses (see
    :func:`loss_weights`), for the commands whose ``--loss`` (or loss list) accepts lpips."""
    p.add_argument("--vgg-weights", metavar=vgg_metavar, help=vgg_help)
    p.add_argument("--lpips-weights", metavar="FILE",
                   help="the lpips package's lin file (lpips/weights/v0.1/vgg.pth) for the lpips loss, whose "
                        "VGG16 backbone comes from --vgg-weights (default: unit lin weights)")


def loss_weights(args, losses: Iterable[str]) -> dict:
    """``vgg_weights`` and ``lpips_weights`` for the loss factory from :func:`add_loss_weight_options`'
    flags; ``losses``: the loss names the run uses. ``--lpips-weights`` without the lpips loss, or
    naming no file, is a user error."""
    losses = list(losses)
    if args.lpips_weights is not None:
        if "lpips" not in losses:
            uses = ", ".join(losses) or "no loss of the library"
            raise UserError(f"--lpips-weights is for the lpips loss; this run uses {uses}")
        if not os.path.isfile(args.lpips_weights):
            raise UserError(f"--lpips-weights: no such file {args.lpips_weights}")
    return {"vgg_weights": args.vgg_weights, "lpips_weights": args.lpips_weights}


def add_run_options(p, out_dir: str, seed_covers: str = "data order and crops") -> None:
    """The options every trainer command shares: where the run goes, resume/overwrite, data loader
    processes, sample and checkpoint periods, the seed and the device."""
    p.add_argument("--out-dir", default=out_dir, help="checkpoint.pt and samples/ go here (default %(default)s)")
    p.add_argument("--resume", metavar="CKPT", help="continue a run from its checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR/checkpoint.pt")
    p.add_argument("--workers", type=int, default=2, help="DataLoader processes decoding images (default %(default)s)")
    p.add_argument("--sample-every", type=int, default=500, help="write a sample PNG every N steps (0: never)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="write the checkpoint every N steps")
    p.add_argument("--seed", type=int, default=0, help=f"initialisation, {seed_covers} (default 0)")
    add_device_option(p)


def io_pairs(source: str, out: str):
    """(inputs, outputs): a file -> OUT (a file, or a file inside an existing folder); a folder -> OUT/<name>.png."""
    from ..data import list_images  # the data layer on demand: `--help` stays fast

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
