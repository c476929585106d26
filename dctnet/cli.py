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
import os
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
    "calibrate",
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


#: Exceptions that mean "the user asked for something that cannot be done" (a bad file, a
#: wrong option value, weights for another model...): reported as one line, exit code 2.
#: Set DCTNET_DEBUG=1 to see the traceback instead.
USER_ERRORS = (ValueError, KeyError, OSError, UnicodeError)


def _message(e: BaseException) -> str:
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    return str(e) or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    # File names that are not valid UTF-8 reach Python as surrogate escapes: print their
    # original bytes (as `ls` does) instead of failing on a strict UTF-8 stdout.
    if hasattr(sys.stdout, "reconfigure") and sys.stdout.errors == "strict":
        sys.stdout.reconfigure(errors="surrogateescape")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dctnet inspect ... | head`
        return 0
    except USER_ERRORS as e:
        if os.environ.get("DCTNET_DEBUG"):
            raise
        print(f"dctnet {args.command}: {_message(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
