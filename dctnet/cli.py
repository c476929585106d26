"""`dctnet <command>`: the one command-line entry point.

Each command lives in ``dctnet/commands/<name>.py`` and defines ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Building the parser imports every
command module, so command modules import torch, numba, onnxruntime and the modules that
load them (everything from ``dctnet.ops`` up) inside ``run`` and its helpers: ``dctnet
--help`` and ``dctnet inspect`` then start in about 0.2 s instead of 3 s. These are the
package's only deliberate function-local imports besides optional dependencies (Triton)
and the DDP worker entry points (``docs/architecture.md``).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# Order is the order shown by `dctnet --help`.
COMMANDS = [
    "demo",
    "predict",
    "inspect",
    "eval",
    "bench",
    "prepare",
    "train",
    "study",
    "convert",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dctnet",
        description="Image classification straight from JPEG DCT coefficients.")
    parser.add_argument("--version", action="version", version=f"dctnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"dctnet.commands.{name.replace('-', '_')}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dctnet inspect ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
