"""The command line: ``python -m hyperlora_core download|generate|batch|refine|score``, one module per command.

Exit codes: 0 done, 1 failed (the message says why and what to do), 2 bad usage.
Errors are one line on stderr; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from typing import Sequence

from ..errors import HyperLoRAError, UsageError
from . import batch, download, generate, refine, score
from .common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, PROG, Parser, add_common

# Subcommand name -> the function that adds its parser (which sets `run`). Register a new one here.
COMMANDS = {
    "download": download.add_parser,
    "generate": generate.add_parser,
    "batch": batch.add_parser,
    "refine": refine.add_parser,
    "score": score.add_parser,
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description=(
            "HyperLoRA Studio without ComfyUI: download the model files into a models folder (ComfyUI's or "
            "any other), and turn photos of a person into an SDXL LoRA file."
        ),
        epilog="Exit codes: 0 done, 1 failed, 2 bad usage. Run a command with --help for its options.",
    )
    add_common(parser)
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}", parser_class=Parser)
    for add_parser in COMMANDS.values():
        add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    face_log = logging.getLogger("hyperlora_core.face")
    face_level = face_log.level
    if not debug:
        # generate reports the photos left out itself, one line each.
        face_log.setLevel(logging.ERROR)
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "run", None) is None:
            raise UsageError(f"say which command to run: {' or '.join(COMMANDS)} (see {PROG} --help)")
        return args.run(args)
    except UsageError as exc:
        _error(exc, debug)
        return EXIT_USAGE
    except HyperLoRAError as exc:
        _error(exc, debug)
        return EXIT_FAILURE
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except KeyboardInterrupt:
        again = ("; the files already complete are kept, run the same command again for the rest (a file cut "
                 "off part-way resumes where it stopped)"
                 if "download" in argv else "")
        print(f"error: interrupted{again}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - the last resort keeps the one-line promise
        _error(exc, debug, unexpected=True)
        return EXIT_FAILURE
    finally:  # main() also runs inside other programs (and tests): leave logging as it was
        face_log.setLevel(face_level)


def _error(exc: BaseException, debug: bool, unexpected: bool = False) -> None:
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    text = " ".join(str(exc).split()) or type(exc).__name__
    if unexpected:
        text = f"unexpected {type(exc).__name__}: {text} (run with --debug for the traceback)"
    print(f"error: {text}", file=sys.stderr, flush=True)
