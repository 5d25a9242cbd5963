"""What every command of the command line shares: exit codes, the parser class, console output, the
models folder, and checks of the files a command reads and writes. Commands import this module; it
imports no command."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from ..constants import CLI, IMAGE_SUFFIXES
from ..errors import HyperLoRAError, InputError, UsageError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

# --dtype of the commands that run the network (generate, batch).
DTYPE_CHOICES = ("auto", "float16", "bfloat16", "float32")

# The console script `hyperlora-studio` (pip install ".[cli]") runs the same main().
PROG = CLI
MODELS_DIR_DEFAULT = (
    "ComfyUI's models folder when this pack sits in ComfyUI/custom_nodes/, else ./models (in the current folder)"
)


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line instead of the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def out(text: str) -> None:
    print(text, flush=True)


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, show the full traceback instead of a one-line message, and log details",
    )



def models_dir(args: argparse.Namespace) -> Path:
    """The models folder a command reads or fills: --models-dir, else the default every command shares."""
    from ..download.models import default_models_dir

    return args.models_dir.expanduser() if args.models_dir else default_models_dir()


def check_new_file(path: Path, option: str, suffixes: Sequence[str] = (".safetensors",)) -> Path:
    """A file to write: new, with one of ``suffixes``, in a folder that exists and takes files
    (checked before any work)."""
    import tempfile

    path = path.expanduser()
    if path.suffix.lower() not in suffixes:
        names = ", ".join(suffixes[:-1]) + " or " + suffixes[-1] if len(suffixes) > 1 else suffixes[0]
        raise UsageError(f"{option} {path} must end in {names}")
    if path.exists():
        raise HyperLoRAError(f"{path} already exists and will not be overwritten; choose another name for {option}")
    if path.parent.exists() and not path.parent.is_dir():
        raise HyperLoRAError(f"the folder of {option} {path} is a file, not a folder: {path.parent}; choose another "
                             f"folder for {option}")
    if not path.parent.is_dir():
        raise HyperLoRAError(f"the folder of {option} {path} does not exist: {path.parent}; create it or choose another")
    try:
        with tempfile.TemporaryFile(dir=path.parent, prefix=".hyperlora-probe-"):
            pass
    except OSError as exc:
        raise HyperLoRAError(
            f"cannot write into the folder of {option} {path} ({exc.strerror or exc}); choose a folder you can "
            "write to"
        ) from exc
    return path


def expand_photos(paths: Sequence[Path], option: str = "--photos") -> list[Path]:
    """The image files ``paths`` name, a folder standing for the images in it; the errors name ``option``."""
    photos: list[Path] = []
    for path in paths:
        path = path.expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise InputError(f"the folder {path} holds no photos ({', '.join(IMAGE_SUFFIXES)}); point {option} "
                                 "at a folder of photos, or name the photo files themselves")
            photos.extend(found)
        elif path.is_file():
            photos.append(path)
        elif path.exists():
            raise InputError(f"photo {path} is not a regular file (a device or a pipe?); pass an image file")
        else:
            raise InputError(f"photo not found: {path}; check the path (a typo, or a file moved?) given to {option}")
    return photos


def check_identity_file(path: Path) -> Path:
    """An identity file to read (--identity): it must exist."""
    path = path.expanduser()
    if not path.is_file():
        raise InputError(f"identity file not found: {path}; check the path given to --identity (identity files "
                         "are written by generate --save-identity or the 'Save HyperLoRA Identity' node)")
    return path
