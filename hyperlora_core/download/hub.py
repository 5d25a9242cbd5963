"""Talking to the Hugging Face Hub for the download command, all through ``huggingface_hub``.

Settings come from the environment, read when a download starts (``huggingface_hub`` reads most of
them once, at import): ``HF_ENDPOINT`` (a mirror), ``HF_TOKEN``, ``HF_HUB_OFFLINE``,
``HF_HUB_ETAG_TIMEOUT`` (seconds to wait for a listing or a file's metadata) and
``HF_HUB_DOWNLOAD_TIMEOUT`` (seconds without data before a transfer counts as stalled).

This module: the settings, the wording of errors, and the listing of a repository. The bytes of
each file: :mod:`.transfer`.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..errors import DiskError, DownloadError

Report = Callable[[str], None]

STAGING_FOLDER = ".hyperlora-download"
# A partial file: <name>.<version>.incomplete in the staging folder, resumed by the next run.
PARTIAL_SUFFIX = ".incomplete"
DEFAULT_TIMEOUT = 10.0
LISTING_TRIES = 3
# huggingface_hub reconnects a stalled or dropped transfer this many times before it gives up.
TRANSFER_RECONNECTS = 5

DISK_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


def huggingface():
    try:
        import huggingface_hub
        # Submodules the lazy package loads late; file_download also sets up the library's log handler,
        # which hub_session() replaces.
        from huggingface_hub import constants, file_download  # noqa: F401
    except ImportError as exc:
        raise DownloadError(
            "the download command needs huggingface_hub: pip install huggingface_hub "
            "(scripts/setup.sh installs it)"
        ) from exc
    return huggingface_hub


# --------------------------------------------------------------------------------------------
# Settings


def _seconds(name: str) -> float:
    value = os.environ.get(name, "").strip()
    try:
        seconds = float(value) if value else DEFAULT_TIMEOUT
    except ValueError:
        raise DownloadError(f"{name}={value!r} is not a number of seconds; unset it or set e.g. {name}=30") from None
    if seconds <= 0:
        raise DownloadError(f"{name}={value!r} must be more than 0 seconds")
    return seconds


@dataclass(frozen=True)
class HubSettings:
    endpoint: str
    offline: bool
    etag_timeout: float
    download_timeout: float

    @classmethod
    def from_environment(cls) -> "HubSettings":
        constants = huggingface().constants
        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")
        return cls(
            endpoint=(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/"),
            offline=offline or bool(getattr(constants, "HF_HUB_OFFLINE", False)),
            etag_timeout=_seconds("HF_HUB_ETAG_TIMEOUT"),
            download_timeout=_seconds("HF_HUB_DOWNLOAD_TIMEOUT"),
        )

    def describe(self) -> str:
        return (
            f"Hub {self.endpoint}: waits {self.etag_timeout:g} s for an answer (HF_HUB_ETAG_TIMEOUT) and "
            f"{self.download_timeout:g} s for data during a transfer (HF_HUB_DOWNLOAD_TIMEOUT); a stalled or "
            f"dropped transfer is resumed up to {TRANSFER_RECONNECTS} times."
        )


@contextmanager
def hub_session(settings: HubSettings, report: Report) -> Iterator[None]:
    """Apply ``settings`` to huggingface_hub for the duration of a download, and show its warnings
    (reconnects, retries) as report lines instead of multi-line log records."""
    constants = huggingface().constants
    saved_timeout = constants.HF_HUB_DOWNLOAD_TIMEOUT
    # huggingface_hub reads HF_HUB_DOWNLOAD_TIMEOUT from the environment once, at import, and its
    # transfers read this module constant: set it from the environment as it is now.
    constants.HF_HUB_DOWNLOAD_TIMEOUT = settings.download_timeout
    hub_logger = logging.getLogger("huggingface_hub")
    saved = (hub_logger.handlers[:], hub_logger.propagate)
    forward = _ForwardHandler(report)
    hub_logger.handlers = [forward]
    hub_logger.propagate = False
    try:
        yield
    finally:
        constants.HF_HUB_DOWNLOAD_TIMEOUT = saved_timeout
        hub_logger.handlers, hub_logger.propagate = saved


class _ForwardHandler(logging.Handler):
    def __init__(self, report: Report) -> None:
        super().__init__(logging.WARNING)
        self.report = report

    def emit(self, record: logging.LogRecord) -> None:
        text = " ".join(record.getMessage().split())
        self.report(f"  huggingface_hub: {text}")


# --------------------------------------------------------------------------------------------
# Errors


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _named(exc: BaseException, *names: str) -> bool:
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def transport_kind(exc: BaseException) -> str | None:
    """"timeout", "connect" or "dropped" for a network fault anywhere in the chain (httpx2, httpx
    or requests, whichever this huggingface_hub uses); None otherwise."""
    for item in _chain(exc):
        if _named(item, "TimeoutException", "Timeout", "ReadTimeout", "ConnectTimeout", "TimeoutError"):
            return "timeout"
        if _named(item, "ConnectError", "ConnectionError", "ConnectionRefusedError", "ProxyError"):
            return "connect"
        if _named(item, "RemoteProtocolError", "ReadError", "ChunkedEncodingError", "NetworkError",
                  "TransportError", "ConnectionResetError"):
            return "dropped"
    return None


def disk_error(exc: BaseException, path: Path) -> DiskError | None:
    """A clear error when ``exc`` comes from the disk (full, size limit, not writable), else None."""
    for item in _chain(exc):
        if isinstance(item, OSError) and item.errno in DISK_FULL:
            limit = (", or raise the file-size limit (ulimit -f) or pass --models-dir a folder on another drive,"
                     if item.errno == errno.EFBIG else "")
            return DiskError(
                f"the disk is full (or a file-size limit was hit) while writing {path} ({item.strerror}); "
                f"free some space on the drive of {path.parent}{limit} and run the same command again"
            )
        if isinstance(item, OSError) and item.errno == errno.ENOTDIR:
            return DiskError(
                f"cannot write {path}: a part of that path is a file, not a folder ({item.filename or path}); "
                "pass --models-dir a folder"
            )
        if isinstance(item, OSError) and item.errno in NOT_WRITABLE:
            return DiskError(
                f"cannot write {path}: {item.strerror} (at {item.filename or path.parent}); pass --models-dir a "
                "folder you can write to, or fix its permissions"
            )
    return None


def describe(exc: BaseException, settings: HubSettings, transfer: bool = False) -> str:
    """What went wrong between us and the Hub, in a few words. ``transfer``: the error ended a file's
    download (else a listing or a file's metadata was asked for)."""
    kind = transport_kind(exc)
    where = settings.endpoint
    asking = not transfer or any(_named(item, "LocalEntryNotFoundError", "FileInfoUnavailable") for item in _chain(exc))
    if kind == "timeout" and asking:
        return (f"no answer from {where} within {settings.etag_timeout:g} s (HF_HUB_ETAG_TIMEOUT): a proxy or "
                "firewall may hold the connection; check the network or HF_ENDPOINT")
    if kind == "timeout":
        return (f"no data for {settings.download_timeout:g} s (HF_HUB_DOWNLOAD_TIMEOUT), {TRANSFER_RECONNECTS} "
                "reconnects tried: the connection stalls; check the network, a proxy, or set "
                "HF_HUB_DOWNLOAD_TIMEOUT higher for a slow line")
    if kind == "connect":
        return f"could not reach {where} (no connection; check the network, a proxy or HF_ENDPOINT)"
    if kind == "dropped":
        return f"the connection to {where} kept dropping"
    for item in _chain(exc):
        if _named(item, "OfflineModeIsEnabled"):
            return "offline mode is on (HF_HUB_OFFLINE is set)"
        if _named(item, "GatedRepoError"):
            return "the repository needs a Hugging Face login (set HF_TOKEN)"
        if _named(item, "RepositoryNotFoundError"):
            return f"repository not found on {where}"
        if _named(item, "RevisionNotFoundError"):
            return f"revision not found on {where}"
        if _named(item, "EntryNotFoundError", "RemoteEntryNotFoundError"):
            return f"file not found on {where}"
        if _named(item, "HfHubHTTPError"):
            status = getattr(getattr(item, "response", None), "status_code", "?")
            hint = " (set HF_TOKEN)" if status in (401, 403) else ""
            return f"{where} answered HTTP {status}{hint}"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def is_hub_fault(exc: BaseException) -> bool:
    """A network or Hub error (as opposed to a bug or a disk problem)."""
    if transport_kind(exc) is not None:
        return True
    return any(_named(item, "HfHubHTTPError", "OfflineModeIsEnabled", "LocalEntryNotFoundError",
                      "EntryNotFoundError") for item in _chain(exc))


# --------------------------------------------------------------------------------------------
# Listing


@dataclass(frozen=True)
class ListedFile:
    size: int | None
    sha256: str | None
    git_sha1: str | None


def list_repo(repo_id: str, revision: str, settings: HubSettings, report: Report) -> tuple[str, dict[str, ListedFile]]:
    """(commit, path -> size and hashes) of a repository in one API call, retried on network faults."""
    api = huggingface().HfApi(endpoint=settings.endpoint)
    for attempt in range(1, LISTING_TRIES + 1):
        try:
            info = api.model_info(repo_id, revision=revision, files_metadata=True, timeout=settings.etag_timeout)
            break
        except ValueError as exc:  # JSON that is not the Hub's (an HTML page from a proxy, a wrong HF_ENDPOINT)
            if is_hub_fault(exc):
                raise
            raise DownloadError(
                f"{settings.endpoint} did not answer the listing of {repo_id} as the Hugging Face Hub does "
                f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]}); check HF_ENDPOINT and any proxy"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - sorted below: only network faults are retried
            status = getattr(getattr(exc, "response", None), "status_code", None)
            retryable = transport_kind(exc) is not None or status in (429, 500, 502, 503, 504)
            if not retryable or attempt == LISTING_TRIES:
                raise
            wait = 2 ** (attempt - 1)
            what = {"timeout": f"no answer within {settings.etag_timeout:g} s", "connect": "no connection",
                    "dropped": "connection dropped"}.get(transport_kind(exc), f"HTTP {status}")
            report(f"  {repo_id} at {settings.endpoint}: {what}; trying again in {wait} s "
                   f"(try {attempt + 1} of {LISTING_TRIES})")
            time.sleep(wait)
    files = {}
    for sibling in info.siblings or []:
        lfs = sibling.lfs
        if lfs is not None:  # a dataclass, or a dict in huggingface_hub < 0.21
            size = lfs["size"] if isinstance(lfs, dict) else lfs.size
            sha = lfs["sha256"] if isinstance(lfs, dict) else lfs.sha256
            files[sibling.rfilename] = ListedFile(size, sha, None)
        else:
            files[sibling.rfilename] = ListedFile(sibling.size, None, sibling.blob_id)
    return info.sha or revision, files


def hash_matches(path: Path, listed: ListedFile) -> bool:
    if listed.sha256:
        digest = hashlib.sha256()
    elif listed.git_sha1:
        # Files outside LFS are listed by their git object id: sha1 of "blob <size>\0" + content.
        digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    else:
        return True
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest() == (listed.sha256 or listed.git_sha1).lower()
