"""Files that appear whole or not at all.

Every file the pack writes goes through :func:`write_atomic`: the bytes go to a hidden temporary
file in the destination folder, are flushed to the disk, and only then get the final name, by a
rename (which replaces a file the caller allows to be replaced) or by a hard link (which, like an
exclusive create, fails when the name is taken, so a user's file is never overwritten). A writer
killed at any moment leaves at most a hidden ``.<name>.<random>.partial`` file, never a damaged
file under the final name.

Errors of the file system (no permission, disk full, a parent that is a file, ...) become a
:class:`HyperLoRAError` that says what went wrong and what to do.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable, Union

from ..errors import HyperLoRAError

Content = Union[bytes, bytearray, memoryview, Callable[[BinaryIO], object]]
PARTIAL_SUFFIX = ".partial"
# Most file systems (ext4, NTFS, APFS, XFS) allow 255 bytes per name.
MAX_NAME_BYTES = 255


def write_atomic(path: str | os.PathLike, content: Content, overwrite: bool = False) -> Path:
    """Write ``content`` (bytes, or a function that writes into a binary file) to ``path``.

    With ``overwrite=False`` an existing file is refused (HyperLoRAError) and never touched, also
    when another process creates it while this one writes.
    """
    path = Path(path)
    folder = path.parent
    check_writable_folder(folder, path)
    check_file_name(path.name, path)
    if not overwrite and os.path.lexists(path):
        raise _exists(path)
    fd, temp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        _publish(temp, path, overwrite)
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from exc
        raise
    _sync_folder(folder)
    return path


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new hidden file beside ``path``, with the permissions a plain open() would give (umask applies;
    tempfile.mkstemp would make it private to the user)."""
    for _ in range(100):
        temp = path.with_name(f".{path.name[:200]}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")
        try:
            return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), temp
        except FileExistsError:
            continue
        except OSError as exc:
            raise write_error(path, exc) from exc
    raise HyperLoRAError(f"Cannot write {path}: no free temporary name in {path.parent}; remove its .partial files.")


def _publish(temp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(temp, path)
        return
    try:
        os.link(temp, path)  # fails with FileExistsError if the name was taken meanwhile
    except FileExistsError:
        raise _exists(path) from None
    except OSError as exc:
        # File systems without hard links (FAT, some network shares): check, then rename.
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
        if os.path.lexists(path):
            raise _exists(path) from None
        os.replace(temp, path)
        return
    temp.unlink()


def _sync_folder(folder: Path) -> None:
    """Make the new name itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _exists(path: Path) -> HyperLoRAError:
    return HyperLoRAError(f"{path} already exists and will not be overwritten; choose another name or move the old file.")


def check_file_name(name: str, path: str | os.PathLike | None = None) -> None:
    """Refuse a file name the file system cannot hold, saying what is allowed."""
    shown = path if path is not None else name
    if "\x00" in str(shown):
        raise HyperLoRAError(f"The file name {str(shown)!r} contains a NUL byte (\\x00); use letters, digits, "
                             "spaces, '-', '_' and '/' for sub-folders.")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise HyperLoRAError(
            f"The file name {name[:40]!r}... is {len(name.encode('utf-8', 'surrogateescape'))} bytes long; file "
            f"systems allow at most {MAX_NAME_BYTES} bytes per name (counter and extension included). Use a shorter name."
        )


def check_writable_folder(folder: str | os.PathLike, target: str | os.PathLike | None = None) -> Path:
    """The folder must exist, be a folder and be writable; the message says which is wrong and the fix."""
    folder = Path(folder)
    what = f"Cannot write {target}: " if target is not None else f"Cannot write into {folder}: "
    if "\x00" in str(folder):
        raise HyperLoRAError(f"{what}the folder name contains a NUL byte (\\x00); remove it.")
    for parent in (folder, *folder.parents):
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise HyperLoRAError(f"{what}{parent} is a file, not a folder; choose another folder or "
                                     "rename that file.")
            break
    if not folder.is_dir():
        raise HyperLoRAError(f"{what}the folder {folder} does not exist; create it first or choose another one.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise HyperLoRAError(f"{what}no permission to write in the folder {folder}; choose a folder you may "
                             "write to or change its permissions.")
    return folder


def write_error(path: Path, exc: OSError) -> HyperLoRAError:
    """An OSError from writing ``path`` as a message that says what to do."""
    code = exc.errno
    if code == errno.ENOSPC or code == getattr(errno, "EDQUOT", -1):
        why = "the disk (or your quota) is full; free some space or write to another disk"
    elif code == errno.EFBIG:
        why = ("the file is larger than this file system or the process's file-size limit (ulimit -f) allows; "
               "raise the limit (ulimit -f unlimited) or write to another disk")
    elif code in (errno.EACCES, errno.EPERM):
        why = f"no permission to write in {path.parent}; choose a folder you may write to"
    elif code == errno.EROFS:
        why = f"{path.parent} is on a read-only file system; choose another folder"
    elif code == errno.ENAMETOOLONG:
        why = f"the name is too long (at most {MAX_NAME_BYTES} bytes per name); use a shorter name"
    elif code == errno.ENOTDIR:
        why = "a part of the path is a file, not a folder"
    elif code == errno.ENOENT:
        why = f"the folder {path.parent} does not exist (any more)"
    else:
        why = f"{exc.strerror or exc}"
    return HyperLoRAError(f"Cannot write {path}: {why}. Nothing was written under that name.")


__all__ = ["check_file_name", "check_writable_folder", "write_atomic", "write_error"]
