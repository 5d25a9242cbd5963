"""What a file really is, before a library that would give a cryptic error reads it.

Where a `.safetensors` file is expected, users put pickles renamed (`.ckpt`, `.bin`, `.pt`), HTML
error pages saved by a browser, empty or truncated downloads, folders, devices, or files they may
not read. :func:`check_safetensors` opens only the first bytes (never unpickling anything) and
says which of these it is, that the file was not loaded, and where the right one comes from.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from pathlib import Path

# A safetensors header larger than this is not a real one (the 3 GB release has about 250 kB).
MAX_HEADER_BYTES = 100 * 2**20
SAFETENSORS_DTYPES = ("F16", "BF16", "F32")
DTYPE_NAMES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64", "I8": "int8",
               "U8": "uint8", "I16": "int16", "I32": "int32", "I64": "int64", "BOOL": "bool",
               "F8_E4M3": "float8_e4m3", "F8_E5M2": "float8_e5m2"}


def read_problem(path: Path, exc: OSError) -> str | None:
    """Why an existing path could not be opened, in words; None for other errors."""
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return ("exists but cannot be read: permission denied. Give your user read access to it "
                "(e.g. chmod a+r, or check the owner)")
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    return None


def describe_start(head: bytes, size: int) -> str | None:
    """What the first bytes of a file that should be safetensors say it is; None if it looks like safetensors."""
    if size == 0:
        return "is empty (0 bytes): an interrupted download or copy"
    if len(head) > 8:
        (header,) = struct.unpack("<Q", head[:8])
        if header <= MAX_HEADER_BYTES and 8 + header <= size and head[8:9] == b"{":
            return None  # shaped like safetensors; the library checks the rest
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return ("is a Python pickle (a PyTorch .ckpt/.bin/.pt file renamed), not a safetensors file; it was not "
                "opened, because loading a pickle can run code")
    if head[:4] == b"PK\x03\x04":
        return ("is a zip archive (PyTorch saves .pt/.bin/.ckpt files as zipped pickles), not a safetensors file; "
                "it was not opened, because loading a pickle can run code")
    text = head.lstrip()[:15].lower()
    if text.startswith((b"<!doctype", b"<html", b"<?xml", b"<")):
        return "is a web page (HTML), not a safetensors file: a browser saved an error or login page instead"
    if text.startswith((b"{", b"[")) or head[:2] in (b"\x1f\x8b", b"BZ"):
        return "is a JSON or compressed file, not a safetensors file"
    if size < 8:
        return f"is only {size} bytes long: too short for a safetensors file (truncated)"
    (header,) = struct.unpack("<Q", head[:8])
    if header > MAX_HEADER_BYTES:
        return "does not start with a safetensors header (it is some other kind of file, or damaged)"
    if 8 + header > size:
        return (f"is truncated: its header alone needs {8 + header} bytes but the file has {size} "
                "(an interrupted download or copy)")
    if len(head) > 8 and head[8:9] != b"{":
        return "does not start with a safetensors header (it is some other kind of file, or damaged)"
    return None


def path_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a file (missing, folder, device, no permission), or None."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        return "does not exist" if not path.is_symlink() else "is a link to a file that does not exist"
    except OSError as exc:
        return read_problem(path, exc) or f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(info.st_mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a device, pipe or socket); give the path of a real file"
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        return read_problem(path, exc) or f"cannot be read ({exc.strerror or exc})"
    return None


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be a safetensors file (missing, folder, device, unreadable, pickle, ...), or None."""
    problem = path_problem(path)
    if problem is not None:
        return problem
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
            size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        return read_problem(Path(path), exc) or f"cannot be read ({exc.strerror or exc})"
    return describe_start(head, size)


def unsupported_dtype(dtypes: dict[str, str]) -> tuple[str, str] | None:
    """The first (key, dtype name) whose dtype is not float16, bfloat16 or float32, or None."""
    for key, code in dtypes.items():
        if code not in SAFETENSORS_DTYPES:
            return key, DTYPE_NAMES.get(code, code)
    return None


def torch_dtype_problem(tensors: dict) -> tuple[str, str] | None:
    """Like :func:`unsupported_dtype`, for tensors already in memory."""
    import torch

    allowed = (torch.float16, torch.bfloat16, torch.float32)
    for key, tensor in tensors.items():
        if tensor.dtype not in allowed:
            return key, str(tensor.dtype).removeprefix("torch.")
    return None
