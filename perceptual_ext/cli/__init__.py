"""Command line: ``perceptual-ext <command> ...``.

One module per command group; each lists its commands in ``COMMANDS`` as functions that add a
subparser whose ``func`` runs the command. User errors (bad paths, unreadable images, invalid
options) print one line to stderr and exit with code 2 (see :mod:`._common`).
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from . import feedforward, match, optimize
from ._common import UserError

GROUPS = (match, feedforward, optimize)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perceptual-ext",
        description="Perceptual losses, image optimization and template matching with fused kernels.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for group in GROUPS:
        for add in group.COMMANDS:
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
    except KeyboardInterrupt:
        print(f"perceptual-ext {args.command}: interrupted", file=sys.stderr)
        return 130


__all__ = ["build_parser", "main", "UserError"]
