"""Files the nodes save: the filename_prefix a user types, resolved inside ComfyUI's output folder
(never outside it, not even through a link), and the counter naming that never overwrites a file."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..hyperlora_core.errors import HyperLoRAError
from ..hyperlora_core.files.atomic import MAX_NAME_BYTES, write_error
from .comfy_access import comfy_module

log = logging.getLogger(__name__)

# "_00001_.safetensors" and a little room for counters beyond 99999.
_COUNTER_SUFFIX_BYTES = len("_000001_.safetensors")


def _check_prefix_text(filename_prefix, what: str) -> str:
    if not isinstance(filename_prefix, str):
        raise HyperLoRAError(f"filename_prefix must be text, got {type(filename_prefix).__name__}: type a name "
                             f"for the {what}, e.g. 'loras/my_person'.")
    prefix = filename_prefix.strip()
    if not prefix:
        raise HyperLoRAError(f"filename_prefix is empty: give a name for the {what}, e.g. 'loras/my_person'.")
    if "\x00" in prefix:
        raise HyperLoRAError(f"filename_prefix {filename_prefix!r} contains a NUL byte (\\x00), which no file "
                             "system allows; use letters, digits, spaces, '-', '_' and '/' for sub-folders.")
    parts = [p for p in prefix.replace("\\", "/").split("/") if p]
    limit = MAX_NAME_BYTES - _COUNTER_SUFFIX_BYTES
    for i, part in enumerate(parts):
        size = len(part.encode("utf-8", "surrogateescape"))
        allowed = limit if i == len(parts) - 1 else MAX_NAME_BYTES
        if size > allowed:
            raise HyperLoRAError(
                f"filename_prefix part {part[:30]!r}... is {size} bytes long; file systems allow {MAX_NAME_BYTES} "
                f"bytes per name, so a folder name may have at most {MAX_NAME_BYTES} and the file name at most "
                f"{limit} (the counter and '.safetensors' are added). Use a shorter name."
            )
    return prefix


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath((root, path)) == root and path != root


def output_file_prefix(filename_prefix: str, what: str) -> tuple[str, str, int, str]:
    """Resolve a filename prefix inside ComfyUI's output folder, refusing any that escapes it.

    Links are followed: a prefix leading through a symlink (or a `..`) to a place outside the output
    folder is refused before any folder is made. Returns (folder, file name stem, first free counter,
    subfolder relative to the output folder).
    """
    fp = comfy_module("folder_paths")
    output_dir = os.path.abspath(fp.get_output_directory())
    real_output = os.path.realpath(output_dir)
    prefix = _check_prefix_text(filename_prefix, what)
    target = os.path.abspath(os.path.join(output_dir, prefix))
    outside = HyperLoRAError(
        f"filename_prefix {filename_prefix!r} points outside ComfyUI's output folder ({output_dir}); "
        f"use a relative name such as 'loras/my_person' to save the {what} inside it (links that lead "
        "out of the output folder are refused too)."
    )
    if os.path.isabs(prefix) or not _inside(target, output_dir):
        raise outside
    if os.path.commonpath((real_output, os.path.realpath(os.path.dirname(target)))) != real_output:
        raise outside
    folder_part = Path(os.path.dirname(target))
    for parent in (folder_part, *folder_part.parents):
        if parent == Path(output_dir):
            break
        if parent.exists() and not parent.is_dir():
            raise HyperLoRAError(f"Cannot save the {what} under {filename_prefix!r}: {parent} is a file, not a "
                                 "folder. Choose another filename_prefix or rename that file.")
    try:
        folder, name, counter, subfolder, _ = fp.get_save_image_path(prefix, output_dir)
    except OSError as exc:
        raise write_error(Path(target), exc) from exc
    if os.path.commonpath((real_output, os.path.realpath(folder))) != real_output:
        raise outside
    return folder, name, counter, subfolder


def save_in_output(filename_prefix: str, what: str, write) -> str:
    """Write a new `.safetensors` file under ComfyUI's output folder with its counter naming.

    `write(path)` writes the file (and refuses an existing one); returns the file name relative to
    the output folder (with "/" between folders on every system).
    """
    folder, name, counter, subfolder = output_file_prefix(filename_prefix, what)
    path, _ = next_free_path(folder, name, counter, ".safetensors")
    real_output = os.path.realpath(comfy_module("folder_paths").get_output_directory())
    if not _inside(os.path.realpath(path), real_output):
        raise HyperLoRAError(f"{path} leads outside ComfyUI's output folder ({real_output}) through a link; "
                             f"the {what} was not saved. Choose another filename_prefix.")
    write(path)
    rel = "/".join(p for p in (subfolder.replace("\\", "/"), os.path.basename(path)) if p)
    log.info("Saved HyperLoRA %s to %s", what, path)
    return rel


def next_free_path(folder: str, name: str, counter: int, suffix: str) -> tuple[str, int]:
    """The first `{name}_{counter:05}_{suffix}` that does not exist yet, not even as a broken link
    (files are never overwritten)."""
    while True:
        path = os.path.join(folder, f"{name}_{counter:05}_{suffix}")
        if not os.path.lexists(path):
            return path, counter
        counter += 1
