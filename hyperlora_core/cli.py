"""The command line: ``python -m hyperlora_core download|generate|score`` (generate_cli.py, score_cli.py).

Exit codes: 0 done, 1 failed (the message says why and what to do), 2 bad usage.
Errors are one line on stderr; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from pathlib import Path
from typing import Sequence

from .errors import HyperLoRAError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

# The console script `hyperlora-studio` (pip install ".[cli]") runs the same main().
PROG = "python -m hyperlora_core"
MODELS_DIR_DEFAULT = (
    "ComfyUI's models folder when this pack sits in ComfyUI/custom_nodes/, else ./models (in the current folder)"
)


class UsageError(HyperLoRAError):
    """The command line itself is wrong (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line instead of the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def _out(text: str) -> None:
    print(text, flush=True)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, show the full traceback instead of a one-line message, and log details",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=(
            "HyperLoRA Studio without ComfyUI: download the model files into a models folder (ComfyUI's or "
            "any other), and turn photos of a person into an SDXL LoRA file."
        ),
        epilog="Exit codes: 0 done, 1 failed, 2 bad usage. Run a command with --help for its options.",
    )
    _add_common(parser)
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}", parser_class=_Parser)
    for add_parser in COMMANDS.values():
        add_parser(sub)
    return parser


# --------------------------------------------------------------------------------------------
# download


def _add_download_parser(sub) -> None:
    from .download import PARTS, VARIANT_CHOICES

    p = sub.add_parser(
        "download",
        help="fetch the HyperLoRA, CLIP ViT-L/14 and antelopev2 face models into a ComfyUI models folder",
        description=(
            "Fetch the model files into the folders ComfyUI and the HyperLoRA nodes read: "
            "the HyperLoRA release into MODELS/hyperlora/<variant>/, OpenAI CLIP ViT-L/14 into "
            "MODELS/clip_vision/clip-vit-large-patch14.safetensors, and the antelopev2 face models into "
            "MODELS/insightface/models/antelopev2/. Files already there are skipped; each file arrives under "
            "its final name only once its size and hash match what the Hub lists. Uses huggingface_hub and "
            "its settings from the environment: HF_ENDPOINT (a mirror), HF_TOKEN, HF_HUB_OFFLINE=1 (no "
            "network: only checks what is there), HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT (seconds, "
            "default 10)."
        ),
        epilog=(
            "Licences: HyperLoRA weights CC BY-NC 4.0 (non-commercial); insightface antelopev2 models "
            "non-commercial research only; CLIP ViT-L/14 MIT. Example: "
            f"{PROG} download --models-dir ~/ComfyUI/models --variant both"
        ),
    )
    p.add_argument(
        "--models-dir",
        type=Path,
        metavar="MODELS",
        help=f"where the models go, created when missing: the models folder of your ComfyUI (the one holding "
        f"checkpoints/ and loras/) or any folder; default: {MODELS_DIR_DEFAULT}",
    )
    p.add_argument(
        "--variant",
        choices=sorted(VARIANT_CHOICES),
        default="fidelity",
        help=(
            "which HyperLoRA release to fetch (about 3.1 GB each): fidelity = better likeness, "
            "edit = follows the prompt more freely, both = the two (default: fidelity)"
        ),
    )
    p.add_argument(
        "--only",
        choices=PARTS,
        action="append",
        metavar="PART",
        help=(
            "fetch only this part, may be repeated: hyperlora (the release folder), clip (CLIP ViT-L/14, "
            "1.7 GB), face (antelopev2, 0.3 GB); default: all three"
        ),
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list what would be downloaded, how big it is and where it would go; download nothing",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="also re-check the hash of files already in place (slow for large files: reads them in full)",
    )
    _add_common(p)
    p.set_defaults(run=_run_download)


def _models_dir(args: argparse.Namespace) -> Path:
    from .download import default_models_dir

    return args.models_dir.expanduser() if args.models_dir else default_models_dir()


def _run_download(args: argparse.Namespace) -> int:
    from .download import VARIANT_CHOICES, run_download

    models_dir = _models_dir(args)
    parts = args.only or ("hyperlora", "clip", "face")
    _out(f"Models folder: {models_dir.absolute()}")
    run_download(models_dir, VARIANT_CHOICES[args.variant], parts=parts, dry_run=args.dry_run,
                 verify=args.verify, report=_out)
    if not args.dry_run and set(parts) == {"hyperlora", "clip", "face"}:
        where = f" --models-dir {models_dir}" if args.models_dir else ""
        _out(f"Next: {PROG} generate --photos PHOTO [PHOTO ...] --out my_face.safetensors{where}"
             + (" --variant edit" if args.variant == "edit" else ""))
        _out("In ComfyUI: pick clip-vit-large-patch14.safetensors in 'Load CLIP Vision' and the HyperLoRA "
             "folder in 'Load HyperLoRA' (refresh the page first).")
    return EXIT_OK


# --------------------------------------------------------------------------------------------

# Subcommand name -> the function that adds its parser (which sets `run`). Register a new one here.
# The subcommands' modules use this module's helpers, so they are imported when the parser is built.
def _add_generate_parser(sub) -> None:
    from .generate_cli import add_generate_parser

    add_generate_parser(sub)


def _add_score_parser(sub) -> None:
    from .score_cli import add_score_parser

    add_score_parser(sub)


COMMANDS = {
    "download": _add_download_parser,
    "generate": _add_generate_parser,
    "score": _add_score_parser,
}


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
        again = ("; the files already complete are kept, run the same command again for the rest"
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
