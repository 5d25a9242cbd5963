"""Fetch the model files HyperLoRA needs into the folders ComfyUI and the nodes read.

Three downloads, each from a Hugging Face repository, through ``huggingface_hub`` (so
``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and ``HF_TOKEN`` work as usual):

* the HyperLoRA release folder(s) from ``bytedance-research/HyperLoRA``
  into ``models/hyperlora/<variant>/``;
* OpenAI's CLIP ViT-L/14 from ``openai/clip-vit-large-patch14``: its ``model.safetensors`` goes to
  ``models/clip_vision/clip-vit-large-patch14.safetensors`` (the name and file ComfyUI-Manager
  installs for "CLIPVision model (openai/clip-vit-large)", read by the core "Load CLIP Vision"
  node), and the Hugging Face folder the command line and the reference nodes read,
  ``models/hyper_lora/clip_vit/clip_vit_large_14/`` (``config.json`` plus a hard link to the same
  weights, so the 1.7 GB are stored once);
* the antelopev2 face models the face pipeline uses (detector, 106-point landmarks, recognition)
  from ``DIAMONIK7777/antelopev2`` (the mirror PuLID and InstantID users fetch) into
  ``models/insightface/models/antelopev2/``.

A file is written as ``<name>.incomplete`` next to its final name and renamed only once its size
and hash match what the Hub lists, so a final name never holds half a file; an interrupted
download resumes from the ``.incomplete`` file on the next run. Files already in place (also in
the reference pack's ``models/hyper_lora/hyper_lora/`` layout) are not fetched again.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence
from urllib.parse import urlparse

from .constants import ANTELOPEV2_FILES, HF_REPO_ID, MODULES_JSON, RELEASE_FILES, VARIANTS
from .errors import HyperLoRAError

logger = logging.getLogger(__name__)

Report = Callable[[str], None]

VARIANT_CHOICES = {
    "fidelity": ("sdxl_hyper_id_lora_v1_fidelity",),
    "edit": ("sdxl_hyper_id_lora_v1_edit",),
    "both": ("sdxl_hyper_id_lora_v1_fidelity", "sdxl_hyper_id_lora_v1_edit"),
}
PARTS = ("hyperlora", "clip", "face")

CLIP_REPO_ID = "openai/clip-vit-large-patch14"
CLIP_VISION_FILE = "clip-vit-large-patch14.safetensors"
CLIP_HF_FOLDER = ("hyper_lora", "clip_vit", "clip_vit_large_14")
CLIP_PROCESSOR_FOLDER = ("hyper_lora", "clip_processor", "clip_vit_large_14_processor")
ANTELOPEV2_REPO_ID = "DIAMONIK7777/antelopev2"

HYPERLORA_FOLDER = "hyperlora"
REFERENCE_HYPERLORA_FOLDER = ("hyper_lora", "hyper_lora")
ANTELOPEV2_FOLDER = ("insightface", "models", "antelopev2")

INCOMPLETE_SUFFIX = ".incomplete"
# Dropped connections resumed within one run (huggingface_hub may retry as well).
TRANSFER_RETRIES = 3

LICENCE_HYPERLORA = (
    "HyperLoRA weights (ByteDance): CC BY-NC 4.0, non-commercial use only, credit the authors "
    "(https://creativecommons.org/licenses/by-nc/4.0/)."
)
LICENCE_CLIP = (
    "CLIP ViT-L/14 (OpenAI): released with github.com/openai/CLIP under the MIT licence; read the "
    "model card at https://huggingface.co/openai/clip-vit-large-patch14 for its intended uses."
)
LICENCE_ANTELOPEV2 = (
    "insightface antelopev2 face models: non-commercial research use only "
    "(https://github.com/deepinsight/insightface#license)."
)


class DownloadError(HyperLoRAError):
    """A model file could not be fetched or did not match what the Hub lists."""


@dataclass(frozen=True)
class FileSpec:
    """One file of a repository and where it must end up."""

    repo_path: str
    destination: Path
    # Complete copies elsewhere that count as present (the reference pack's layout).
    also_accepted: tuple[Path, ...] = ()
    # Further names that should point at the same bytes (hard links, best effort).
    links: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Component:
    """A group of files that come from one repository and are useful together."""

    key: str
    title: str
    repo_id: str
    licence: str
    manual: str
    files: tuple[FileSpec, ...]
    revision: str = "main"


@dataclass
class PlannedFile:
    """What will happen to one file."""

    component: Component
    spec: FileSpec
    size: int | None = None
    sha256: str | None = None
    git_sha1: str | None = None
    present_at: Path | None = None
    partial_bytes: int = 0
    # "present", "download", "resume", "replace" (a file of the wrong size is in place), "unknown".
    action: str = "download"
    note: str = ""

    @property
    def needs_download(self) -> bool:
        return self.action in ("download", "resume", "replace")


@dataclass
class DownloadResult:
    """What a run did, for the summary and the tests."""

    plan: list[PlannedFile]
    downloaded: list[Path] = field(default_factory=list)
    linked: list[Path] = field(default_factory=list)
    checked_online: bool = True


def components_for(models_dir: Path, variants: Sequence[str], parts: Iterable[str] = PARTS) -> list[Component]:
    """The downloads for ``variants`` (release folder names) and the chosen ``parts``."""
    models_dir = Path(models_dir)
    parts = set(parts)
    comps: list[Component] = []
    if "hyperlora" in parts:
        for variant in variants:
            if variant not in VARIANTS:
                raise DownloadError(f"unknown HyperLoRA variant {variant!r}; known: {', '.join(VARIANTS)}")
            target = models_dir / HYPERLORA_FOLDER / variant
            reference = models_dir.joinpath(*REFERENCE_HYPERLORA_FOLDER, variant)
            # The module list last: a folder that has it looks complete to a loader, so it comes
            # only after the weights are in.
            names = [n for n in RELEASE_FILES if n != MODULES_JSON] + [MODULES_JSON]
            comps.append(
                Component(
                    key=f"hyperlora-{variant.rsplit('_', 1)[-1]}",
                    title=f"HyperLoRA {variant}",
                    repo_id=HF_REPO_ID,
                    licence=LICENCE_HYPERLORA,
                    manual=(
                        f"download the folder {variant} of https://huggingface.co/{HF_REPO_ID}/tree/main "
                        f"into {target}"
                    ),
                    files=tuple(
                        FileSpec(f"{variant}/{n}", target / n, also_accepted=(reference / n,)) for n in names
                    ),
                )
            )
    if "clip" in parts:
        hf_folder = models_dir.joinpath(*CLIP_HF_FOLDER)
        vision_file = models_dir / "clip_vision" / CLIP_VISION_FILE
        processor = models_dir.joinpath(*CLIP_PROCESSOR_FOLDER)
        comps.append(
            Component(
                key="clip",
                title="CLIP ViT-L/14 (OpenAI)",
                repo_id=CLIP_REPO_ID,
                licence=LICENCE_CLIP,
                manual=(
                    f"download https://huggingface.co/{CLIP_REPO_ID}/resolve/main/model.safetensors as "
                    f"{vision_file} and config.json of the same repository into {hf_folder}"
                ),
                files=(
                    FileSpec("config.json", hf_folder / "config.json"),
                    FileSpec("preprocessor_config.json", processor / "preprocessor_config.json"),
                    FileSpec(
                        "model.safetensors",
                        vision_file,
                        also_accepted=(hf_folder / "model.safetensors",),
                        links=(hf_folder / "model.safetensors",),
                    ),
                ),
            )
        )
    if "face" in parts:
        folder = models_dir.joinpath(*ANTELOPEV2_FOLDER)
        comps.append(
            Component(
                key="antelopev2",
                title="insightface antelopev2 face models",
                repo_id=ANTELOPEV2_REPO_ID,
                licence=LICENCE_ANTELOPEV2,
                manual=(
                    f"download {', '.join(ANTELOPEV2_FILES.values())} from "
                    f"https://huggingface.co/{ANTELOPEV2_REPO_ID} (or unzip insightface's antelopev2.zip) "
                    f"into {folder}"
                ),
                files=tuple(FileSpec(name, folder / name) for name in ANTELOPEV2_FILES.values()),
            )
        )
    return comps


# --------------------------------------------------------------------------------------------
# Environment


def hub_endpoint() -> str:
    """The Hub address, read now (huggingface_hub reads ``HF_ENDPOINT`` once, at import)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def is_offline() -> bool:
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "")
    return bool(getattr(constants, "HF_HUB_OFFLINE", False)) or value.strip().upper() in ("1", "ON", "YES", "TRUE")


# --------------------------------------------------------------------------------------------
# Planning


def _incomplete_path(path: Path) -> Path:
    return path.with_name(path.name + INCOMPLETE_SUFFIX)


def _existing(spec: FileSpec) -> Path | None:
    for candidate in (spec.destination, *spec.also_accepted):
        if candidate.is_file():
            return candidate
    return None


def _local_plan(components: Sequence[Component]) -> list[PlannedFile]:
    plan = []
    for comp in components:
        for spec in comp.files:
            item = PlannedFile(comp, spec)
            item.present_at = _existing(spec)
            partial = _incomplete_path(spec.destination)
            item.partial_bytes = partial.stat().st_size if partial.is_file() else 0
            if item.present_at is not None:
                item.action = "present"
            elif item.partial_bytes:
                item.action = "resume"
            plan.append(item)
    return plan


def _list_repo(repo_id: str, revision: str, endpoint: str) -> tuple[str | None, dict]:
    """The commit and the listed files (size, hashes) of a repository, in one API call."""
    from huggingface_hub import HfApi

    info = HfApi(endpoint=endpoint).model_info(repo_id, revision=revision, files_metadata=True)
    return info.sha, {s.rfilename: s for s in (info.siblings or [])}


def _fill_from_listing(plan: list[PlannedFile], endpoint: str, verify: bool, report: Report) -> dict[str, str]:
    """Add the listed sizes and hashes to the plan; returns repo -> commit to download from."""
    listings: dict[tuple[str, str], tuple[str | None, dict]] = {}
    commits: dict[str, str] = {}
    for item in plan:
        comp = item.component
        key = (comp.repo_id, comp.revision)
        if key not in listings:
            listings[key] = _list_repo(comp.repo_id, comp.revision, endpoint)
        commit, files = listings[key]
        commits[comp.repo_id] = commit or comp.revision
        sibling = files.get(item.spec.repo_path)
        if sibling is None:
            raise DownloadError(
                f"{comp.repo_id} has no file {item.spec.repo_path} at revision {comp.revision}; "
                f"{comp.manual}"
            )
        lfs = sibling.lfs
        if lfs is not None:
            # A dataclass, or a dict in huggingface_hub < 0.21.
            item.size = lfs["size"] if isinstance(lfs, dict) else lfs.size
            item.sha256 = lfs["sha256"] if isinstance(lfs, dict) else lfs.sha256
        else:
            item.size = sibling.size
            item.git_sha1 = sibling.blob_id
        if item.present_at is not None:
            actual = item.present_at.stat().st_size
            if item.size is not None and actual != item.size:
                item.note = f"{item.present_at} has {actual:,} bytes, expected {item.size:,}"
            elif verify and not _hash_matches(item.present_at, item):
                item.note = f"{item.present_at} does not match the hash the Hub lists"
            else:
                continue
            item.action = "replace"
            item.present_at = None
            continue
        usable_partial = item.partial_bytes and (item.size is None or item.partial_bytes <= item.size)
        item.action = "resume" if usable_partial else "download"
    return commits


def _hash_matches(path: Path, item: PlannedFile) -> bool:
    if item.sha256:
        return _sha256(path) == item.sha256.lower()
    if item.git_sha1:
        return _git_blob_sha1(path) == item.git_sha1.lower()
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _git_blob_sha1(path: Path) -> str:
    # Files outside LFS are listed by their git object id: sha1 of "blob <size>\0" + content.
    digest = hashlib.sha1()
    digest.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def human_size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


# --------------------------------------------------------------------------------------------
# Downloading


def _missing_message(plan: Sequence[PlannedFile], prefix: str) -> str:
    missing: dict[str, list[PlannedFile]] = {}
    for item in plan:
        if item.action != "present":
            missing.setdefault(item.component.key, []).append(item)
    parts = []
    for items in missing.values():
        comp = items[0].component
        names = ", ".join(Path(i.spec.repo_path).name for i in items)
        parts.append(f"{comp.title} (missing {names}): {comp.manual}")
    return f"{prefix}; " + "; ".join(parts)


def _hub_error(name: str) -> type[BaseException]:
    """An exception class of huggingface_hub, wherever this version keeps it (never matches if absent)."""
    import huggingface_hub.utils as hub_utils

    try:
        from huggingface_hub import errors as hub_errors
    except ImportError:  # huggingface_hub < 0.24
        hub_errors = None
    found = getattr(hub_errors, name, None) or getattr(hub_utils, name, None)
    return found if isinstance(found, type) else type(f"_Absent{name}", (Exception,), {})


def _describe_hub_error(exc: BaseException, endpoint: str) -> str:
    if isinstance(exc, _hub_error("OfflineModeIsEnabled")):
        return "offline mode is on (HF_HUB_OFFLINE is set)"
    if isinstance(exc, _hub_error("GatedRepoError")):
        return "the repository needs a Hugging Face login (set HF_TOKEN)"
    if isinstance(exc, _hub_error("RepositoryNotFoundError")):
        return f"repository not found on {endpoint}"
    if isinstance(exc, _hub_error("RevisionNotFoundError")):
        return f"revision not found on {endpoint}"
    if isinstance(exc, _hub_error("HfHubHTTPError")):
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        return f"{endpoint} answered HTTP {status}"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"could not reach {endpoint} ({type(exc).__name__}: {text})"


def _hub_errors() -> tuple[type[BaseException], ...]:
    """Network and Hub errors: a run stopped by one of these can be resumed later. huggingface_hub
    talks through httpx2 (2.x), httpx (1.x) or requests (0.x)."""
    import importlib

    found: list[type[BaseException]] = [_hub_error("HfHubHTTPError"), _hub_error("OfflineModeIsEnabled")]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"),
                         ("requests.exceptions", "RequestException")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def _call(fn: Callable, *args, **kwargs):
    """Call a huggingface_hub function with the keyword arguments this version of it takes."""
    import inspect

    params = inspect.signature(fn).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return fn(*args, **kwargs)


def _progress_bar(**kwargs):
    """tqdm on stderr that hides itself when stderr is not a terminal (logs, tests)."""
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", None)
    kwargs.setdefault("mininterval", 0.5)
    return tqdm(**kwargs)


def _transfer(item: PlannedFile, url: str, partial: Path, endpoint: str, report: Report) -> int | None:
    """One attempt: append the rest of the file to ``partial``; returns the expected size."""
    from huggingface_hub import get_hf_file_metadata
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    spec, comp, dest = item.spec, item.component, item.spec.destination
    headers = build_hf_headers()
    expected = item.size
    meta = _call(get_hf_file_metadata, url, headers=headers, endpoint=endpoint)
    if expected is None:
        expected = meta.size
    elif meta.size is not None and meta.size != expected:
        raise DownloadError(
            f"{comp.repo_id}/{spec.repo_path}: the Hub lists {expected:,} bytes but serves {meta.size:,}; "
            f"try again later or {comp.manual}"
        )
    location = meta.location or url
    if urlparse(location).netloc != urlparse(url).netloc:
        headers.pop("authorization", None)  # a signed CDN address: the token stays home

    resume = partial.stat().st_size if partial.is_file() else 0
    if expected is not None and resume > expected:
        partial.unlink()
        resume = 0
    if expected is not None:
        _check_free_space(dest.parent, expected - resume, dest)
    verb = f"resuming after {resume:,} bytes" if resume else "downloading"
    report(f"  {verb}: {spec.repo_path} ({human_size(expected)}) -> {dest}")
    with open(partial, "ab") as f:
        _call(
            http_get,
            location,
            f,
            resume_size=resume,
            headers=headers,
            expected_size=expected,
            displayed_filename=Path(spec.repo_path).name,
            tqdm_class=_progress_bar,
        )
    return expected


def _download_one(item: PlannedFile, commit: str, endpoint: str, report: Report) -> None:
    from huggingface_hub import hf_hub_url

    spec, comp = item.spec, item.component
    dest = spec.destination
    partial = _incomplete_path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    resumed = partial.is_file() and partial.stat().st_size > 0

    try:
        url = hf_hub_url(comp.repo_id, spec.repo_path, revision=commit, endpoint=endpoint)
        expected = item.size
        retries = TRANSFER_RETRIES
        while True:
            try:
                expected = _transfer(item, url, partial, endpoint, report)
                break
            except _hub_errors() as exc:
                if retries and not isinstance(exc, (_hub_error("HfHubHTTPError"), _hub_error("OfflineModeIsEnabled"))):
                    # A dropped connection: pick up where it stopped.
                    retries -= 1
                    resumed = True
                    report(f"  connection lost ({_describe_hub_error(exc, endpoint)}); resuming")
                    time.sleep(1)
                    continue
                raise
    except _hub_errors() as exc:
        # The partial file stays: the next run resumes from it.
        kept = partial.stat().st_size if partial.is_file() else 0
        keep_note = f"{kept:,} bytes kept in {partial}, " if kept else ""
        raise DownloadError(
            f"{spec.repo_path}: download stopped ({_describe_hub_error(exc, endpoint)}); {keep_note}"
            f"run the same command again to resume, or {comp.manual}"
        ) from exc
    except DownloadError:
        raise
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DownloadError(f"disk full while writing {partial}; free some space and run again") from exc
        # huggingface_hub's size check failed: the content is wrong, resuming would keep it wrong.
        got = partial.stat().st_size if partial.is_file() else 0
        partial.unlink(missing_ok=True)
        size_text = f"expected {expected:,}" if expected is not None else f"({exc})"
        raise DownloadError(
            f"{spec.repo_path}: received {got:,} bytes, {size_text}; the partial file was removed, "
            f"run again to retry or {comp.manual}"
        ) from exc

    got = partial.stat().st_size
    if expected is not None and got != expected:
        partial.unlink()
        raise DownloadError(
            f"{spec.repo_path}: received {got:,} bytes, expected {expected:,}; the partial file was removed, "
            f"run again to retry or {comp.manual}"
        )
    if not _hash_matches(partial, item):
        partial.unlink()
        if resumed:
            # The bytes kept from an earlier run were bad: fetch the whole file once more.
            report(f"  {spec.repo_path}: the resumed file did not match its hash; downloading it again in full")
            _download_one(item, commit, endpoint, report)
            return
        raise DownloadError(
            f"{spec.repo_path}: the downloaded file does not match the hash the Hub lists; it was removed, "
            f"run again to retry or {comp.manual}"
        )
    os.replace(partial, dest)


def _check_free_space(folder: Path, needed: int, dest: Path) -> None:
    import shutil

    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < needed:
        raise DownloadError(
            f"not enough disk space for {dest.name}: {human_size(needed)} needed, {human_size(free)} free in {folder}"
        )


def _make_links(item: PlannedFile, report: Report) -> list[Path]:
    """Give the file its other names (hard links: the bytes are stored once)."""
    made: list[Path] = []
    source = item.present_at or item.spec.destination
    if not item.spec.links or not source.is_file():
        return made
    for link in (item.spec.destination, *item.spec.links):
        if link == source or link.exists():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, link)
        except OSError as exc:
            reason = exc.strerror or exc
            report(f"  note: could not link {link} to {source} ({reason}); the command line reads {source}")
            continue
        made.append(link)
        report(f"  linked {link} -> {source} (the same file, no extra space)")
    return made


def run_download(
    models_dir: Path,
    variants: Sequence[str],
    *,
    parts: Iterable[str] = PARTS,
    dry_run: bool = False,
    verify: bool = False,
    report: Report = logger.info,
) -> DownloadResult:
    """Bring every file of the chosen downloads into ``models_dir``; see the module docstring."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise DownloadError(
            f"models folder {models_dir} does not exist; pass the models folder of your ComfyUI "
            f"(the one holding checkpoints/ and loras/)"
        )
    components = components_for(models_dir, variants, parts)
    plan = _local_plan(components)
    endpoint = hub_endpoint()
    result = DownloadResult(plan)

    commits: dict[str, str] = {}
    if is_offline():
        result.checked_online = False
        if any(item.action != "present" for item in plan) and not dry_run:
            raise DownloadError(
                _missing_message(plan, "cannot download: offline mode is on (HF_HUB_OFFLINE is set)")
            )
        report("note: offline mode is on (HF_HUB_OFFLINE is set): sizes and hashes not checked")
    else:
        try:
            commits = _fill_from_listing(plan, endpoint, verify, report)
        except _hub_errors() as exc:
            reason = _describe_hub_error(exc, endpoint)
            if all(item.action == "present" for item in plan):
                result.checked_online = False
                report(f"note: {reason}; the files are all in place but their sizes were not checked")
            elif not dry_run:
                raise DownloadError(_missing_message(plan, f"cannot download: {reason}")) from exc
            else:
                result.checked_online = False
                report(f"note: {reason}; sizes unknown")

    _report_plan(plan, report, online=result.checked_online)
    to_fetch = [item for item in plan if item.needs_download]
    if to_fetch:
        total = sum(item.size or 0 for item in to_fetch) - sum(
            item.partial_bytes for item in to_fetch if item.action == "resume"
        )
        verb = "Would download" if dry_run else "Downloading"
        sized = f", {human_size(total)}" if result.checked_online else ""
        report(f"{verb} {len(to_fetch)} file(s){sized}.")
        _report_licences(to_fetch, report)
    if dry_run:
        report("Dry run: nothing was downloaded.")
        return result
    for item in plan:
        if item.needs_download:
            _download_one(item, commits.get(item.component.repo_id, item.component.revision), endpoint, report)
            result.downloaded.append(item.spec.destination)
            item.present_at = item.spec.destination
        result.linked.extend(_make_links(item, report))
    if not to_fetch:
        report("Nothing to download: every file is already in place.")
    else:
        report(f"Done: {len(to_fetch)} file(s) downloaded.")
    return result


def _report_plan(plan: Sequence[PlannedFile], report: Report, *, online: bool) -> None:
    current = None
    for item in plan:
        if item.component is not current:
            current = item.component
            report(f"{current.title}  (https://huggingface.co/{current.repo_id})")
        if item.action == "present":
            where = item.present_at or item.spec.destination
            report(f"  {'already there':<30} {'':>9}  {where}")
            continue
        size = human_size(item.size) if item.size is not None else ("?" if not online else "")
        what = {
            "download": "will download",
            "resume": f"will resume at {item.partial_bytes:,} B",
            "replace": "will replace",
        }.get(item.action, item.action)
        report(f"  {what:<30} {size:>9}  {item.spec.destination}")
        if item.note:
            report(f"  {'':<30} {'':>9}  ({item.note})")
        for link in item.spec.links:
            report(f"  {'and link it as':<30} {'':>9}  {link}")


def _report_licences(items: Sequence[PlannedFile], report: Report) -> None:
    seen: list[str] = []
    for item in items:
        if item.component.licence not in seen:
            seen.append(item.component.licence)
    report("Licences of the files to download (by downloading you accept them):")
    for text in seen:
        report(f"  - {text}")
