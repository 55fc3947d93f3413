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


COMMANDS = [_add_info]


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
