"""The bytes of one file, through huggingface_hub's own calls (``get_hf_file_metadata``, then
``http_get``, which reconnects a dropped transfer with a ``Range`` request).

Every file is downloaded into a staging folder beside its destination (:data:`~.hub.STAGING_FOLDER`);
it is moved under its final name only once its size and hash match the listing, so a final name
never holds a partial or wrong file. The partial file stays in the staging folder when a run stops
(``hf_hub_download`` would delete it, or leave it under a name no later call uses), and the next run
resumes it from the byte where it stopped.
"""

from __future__ import annotations

import glob
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import DownloadError
from .hub import (PARTIAL_SUFFIX, STAGING_FOLDER, HubSettings, ListedFile, Report, disk_error, hash_matches,
                  huggingface, is_hub_fault, transport_kind)


def human_size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def _progress_bar(*args, **kwargs):
    """tqdm on stderr that hides itself when stderr is not a terminal (logs, tests)."""
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", None)
    kwargs.setdefault("mininterval", 0.5)
    return tqdm(*args, **kwargs)


def _supported(function: Callable, **kwargs) -> dict:
    """The keyword arguments ``function`` takes (huggingface_hub >= 0.23 adds some over its versions)."""
    accepted = inspect.signature(function).parameters
    return {key: value for key, value in kwargs.items() if key in accepted}


def staging_folder(destination: Path) -> Path:
    return destination.parent / STAGING_FOLDER


def partial_files(destination: Path) -> list[Path]:
    """The partial files of ``destination`` in its staging folder (one per version of the file)."""
    staging = staging_folder(destination)
    if not staging.is_dir():
        return []
    return sorted(p for p in staging.glob(f"{glob.escape(destination.name)}.*{PARTIAL_SUFFIX}") if p.is_file())


@dataclass(frozen=True)
class _Source:
    """Where the bytes of one file come from, as the Hub's answer to a HEAD call says."""

    url: str
    headers: dict
    size: int | None
    etag: str | None


class FileInfoUnavailable(Exception):
    """The Hub did not say where a file is and how big (the call before its transfer failed)."""


def _source(repo_id: str, repo_path: str, commit: str, settings: HubSettings) -> _Source:
    from urllib.parse import urlsplit

    from huggingface_hub.file_download import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    url = hf_hub_url(repo_id, repo_path, revision=commit, endpoint=settings.endpoint)
    try:
        meta = get_hf_file_metadata(url, **_supported(get_hf_file_metadata, timeout=settings.etag_timeout,
                                                      endpoint=settings.endpoint, retry_on_errors=True))
    except Exception as exc:  # noqa: BLE001 - marked as asking, then worded by the caller
        if transport_kind(exc) is not None:
            raise FileInfoUnavailable(f"{repo_path}: {type(exc).__name__}") from exc
        raise
    location = meta.location or url
    headers = build_hf_headers()
    # The bytes as stored: a compressed answer would make a Range request and the sizes meaningless.
    headers["Accept-Encoding"] = "identity"
    if urlsplit(location).netloc != urlsplit(url).netloc:
        # Large files come from a CDN with a signed address: the token stays with the Hub.
        headers.pop("authorization", None)
        headers.pop("Authorization", None)
    return _Source(location, headers, meta.size, meta.etag)


def _version_key(listed: ListedFile | None, source: _Source) -> str:
    """A short name for the version of a file, so that a partial file is only resumed by the same version."""
    key = (listed.sha256 or listed.git_sha1) if listed is not None else None
    key = key or (source.etag or "").strip('"') or "unknown"
    return "".join(c for c in key if c.isalnum())[:16] or "unknown"


def _transfer(source: _Source, partial: Path, kept: int, size: int | None, name: str) -> None:
    """Append the bytes after ``kept`` to ``partial``; huggingface_hub reconnects a dropped transfer with
    a Range request (TRANSFER_RECONNECTS times) and checks the total against ``size``."""
    from huggingface_hub.file_download import http_get

    with open(partial, "r+b" if kept else "wb") as handle:
        handle.seek(kept)
        handle.truncate()
        http_get(source.url, handle, **_supported(
            http_get, resume_size=kept, headers=source.headers, expected_size=size, displayed_filename=name,
            tqdm_class=_progress_bar))


def fetch(repo_id: str, repo_path: str, commit: str, destination: Path, listed: ListedFile | None,
          settings: HubSettings, report: Report = lambda text: None) -> None:
    """Download one file into its staging folder and move it to ``destination`` once it is whole.

    The bytes go to ``<staging>/<name>.<version>.incomplete``, which stays when the transfer stops
    (a dropped line, Ctrl-C, a killed process): the next call resumes it with a ``Range`` request
    and says so through ``report``. A resumed file that then fails its size or hash check is
    fetched again whole; a whole one that fails is removed and the error raised.

    Raises :class:`DiskError` for a disk problem, :class:`DownloadError` for a transfer that failed
    or a file that does not match the listing (nothing is left under ``destination``); other errors
    from huggingface_hub pass through for the caller to word.
    """
    huggingface()
    staging = staging_folder(destination)
    name = destination.name
    try:
        staging.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock, Timeout

        lock = FileLock(str(staging / f"{name}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            report(f"  waiting: another download is writing {name} into {staging}")
            lock.acquire()
        try:
            source = _source(repo_id, repo_path, commit, settings)
            size = listed.size if listed is not None and listed.size is not None else source.size
            partial = staging / f"{name}.{_version_key(listed, source)}{PARTIAL_SUFFIX}"
            for other in partial_files(destination):
                if other != partial:  # an earlier version of the file: of no use now
                    other.unlink()
            kept = partial.stat().st_size if partial.is_file() else 0
            if kept and size is not None and kept > size:
                report(f"  {name}: the partial file an earlier run left ({human_size(kept)}) is larger than the "
                       f"file ({human_size(size)}); downloading it whole again")
                kept = 0
            if kept:
                report(f"  resuming {name} from {human_size(kept)} of {human_size(size)} "
                       f"(kept by an earlier run in {staging})")
            _fetch_checked(source, partial, kept, size, listed, repo_path, report)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, destination)
        finally:
            lock.release()
    except DownloadError:
        raise
    except Exception as exc:  # noqa: BLE001 - disk faults first: a retry would not fix them
        problem = disk_error(exc, destination)
        if problem is not None:
            raise problem from exc
        if is_hub_fault(exc):
            raise  # the caller words it
        if isinstance(exc, OSError) and exc.errno is None:
            # huggingface_hub's check that the bytes received are as many as announced.
            first = str(exc).splitlines()[0].split(" (")[0] if str(exc) else type(exc).__name__
            for partial in partial_files(destination):
                partial.unlink()
            raise DownloadError(f"{repo_path}: the transfer ended with the wrong size ({first})") from exc
        raise


def _fetch_checked(source: _Source, partial: Path, kept: int, size: int | None, listed: ListedFile | None,
                   repo_path: str, report: Report) -> None:
    """Transfer into ``partial`` and check it; a resumed file that fails the check is fetched whole once."""
    name = Path(repo_path).name
    _transfer(source, partial, kept, size, name)
    problem = _check(partial, listed)
    if problem is not None and kept:
        report(f"  {name}: {problem} after resuming (the part kept from the earlier run was damaged); "
               "downloading it whole again")
        _transfer(source, partial, 0, size, name)
        problem = _check(partial, listed)
    if problem is not None:
        partial.unlink()
        raise DownloadError(f"{repo_path}: {problem}; the file was removed")


def _check(path: Path, listed: ListedFile | None) -> str | None:
    """What is wrong with a downloaded file compared with the listing, or None."""
    if listed is None:
        return None
    got = path.stat().st_size
    if listed.size is not None and got != listed.size:
        return f"received {got:,} bytes, the Hub lists {listed.size:,}"
    if not hash_matches(path, listed):
        return "the downloaded file does not match the hash the Hub lists"
    return None


def received_so_far(destination: Path) -> int:
    """Bytes of ``destination`` a stopped download left in its staging folder (resumed next time)."""
    return max((p.stat().st_size for p in partial_files(destination)), default=0)


def clean_staging(destination: Path) -> None:
    """Remove the staging folder beside ``destination`` (partial files, locks) once nothing in it is needed."""
    import shutil

    shutil.rmtree(staging_folder(destination), ignore_errors=True)
