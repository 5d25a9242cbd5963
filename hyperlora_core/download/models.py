"""Fetch the model files HyperLoRA needs into the folders ComfyUI and the nodes read.

Three downloads, each from a Hugging Face repository, through ``huggingface_hub`` (see
:mod:`hyperlora_core.download.hub` for the settings it honours):

* the HyperLoRA release folder(s) from ``bytedance-research/HyperLoRA`` into
  ``models/hyperlora/<variant>/``;
* the weights of OpenAI's CLIP ViT-L/14 from ``openai/clip-vit-large-patch14`` as
  ``models/clip_vision/clip-vit-large-patch14.safetensors``: the name and file ComfyUI-Manager
  installs for "CLIPVision model (openai/clip-vit-large)", read by the core "Load CLIP Vision" node
  and by ``generate`` (which needs no config file beside it);
* the antelopev2 face models the face pipeline uses (detector, 106-point landmarks, recognition)
  from ``DIAMONIK7777/antelopev2`` (the mirror PuLID and InstantID users fetch) into
  ``models/insightface/models/antelopev2/``.

Files already in place (also in the reference pack's ``models/hyper_lora/...`` layout) are not
fetched again; a file of the wrong size in place is replaced once the new one is whole. A file
whose download stopped part-way (a dropped line, Ctrl-C, a killed process) is resumed by the next
run from the byte where it stopped.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..constants import ANTELOPEV2_FILES, HF_REPO_ID, MODULES_JSON, RELEASE_FILES, VARIANTS
from .hub import (DiskError, DownloadError, HubSettings, ListedFile, Report, describe, disk_error, hash_matches,
                  hub_session, is_hub_fault, list_repo)
from .transfer import clean_staging, fetch, human_size, received_so_far

__all__ = ["DownloadError", "DiskError", "run_download", "components_for", "default_models_dir"]

logger = logging.getLogger(__name__)

VARIANT_CHOICES = {
    "fidelity": ("sdxl_hyper_id_lora_v1_fidelity",),
    "edit": ("sdxl_hyper_id_lora_v1_edit",),
    "both": ("sdxl_hyper_id_lora_v1_fidelity", "sdxl_hyper_id_lora_v1_edit"),
}
PARTS = ("hyperlora", "clip", "face")

CLIP_REPO_ID = "openai/clip-vit-large-patch14"
CLIP_VISION_FILE = "clip-vit-large-patch14.safetensors"
CLIP_HF_FOLDER = ("hyper_lora", "clip_vit", "clip_vit_large_14")
ANTELOPEV2_REPO_ID = "DIAMONIK7777/antelopev2"

HYPERLORA_FOLDER = "hyperlora"
REFERENCE_HYPERLORA_FOLDER = ("hyper_lora", "hyper_lora")
ANTELOPEV2_FOLDER = ("insightface", "models", "antelopev2")

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


def default_models_dir() -> Path:
    """ComfyUI's models folder when this pack sits in ``ComfyUI/custom_nodes/``, else ``./models``."""
    pack = Path(__file__).resolve().parents[2]  # hyperlora_core/download/models.py -> the pack
    comfyui = pack.parent.parent
    if pack.parent.name == "custom_nodes" and (comfyui / "models").is_dir():
        return comfyui / "models"
    return Path.cwd() / "models"


@dataclass(frozen=True)
class FileSpec:
    """One file of a repository and where it must end up."""

    repo_path: str
    destination: Path
    # Complete copies elsewhere that count as present (the reference pack's layout).
    also_accepted: tuple[Path, ...] = ()


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
    """What will happen to one file: "present", "download" or "replace" (wrong size in place)."""

    component: Component
    spec: FileSpec
    listed: ListedFile | None = None
    present_at: Path | None = None
    action: str = "download"
    note: str = ""

    @property
    def needs_download(self) -> bool:
        return self.action in ("download", "replace")


@dataclass
class DownloadResult:
    """What a run did, for the summary and the tests."""

    plan: list[PlannedFile]
    downloaded: list[Path] = field(default_factory=list)
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
            # The module list last: a folder that has it looks complete to a loader.
            names = [n for n in RELEASE_FILES if n != MODULES_JSON] + [MODULES_JSON]
            comps.append(Component(
                key=f"hyperlora-{variant.rsplit('_', 1)[-1]}",
                title=f"HyperLoRA {variant}",
                repo_id=HF_REPO_ID,
                licence=LICENCE_HYPERLORA,
                manual=f"download the folder {variant} of https://huggingface.co/{HF_REPO_ID}/tree/main into {target}",
                files=tuple(FileSpec(f"{variant}/{n}", target / n, (reference / n,)) for n in names),
            ))
    if "clip" in parts:
        vision_file = models_dir / "clip_vision" / CLIP_VISION_FILE
        comps.append(Component(
            key="clip",
            title="CLIP ViT-L/14 (OpenAI)",
            repo_id=CLIP_REPO_ID,
            licence=LICENCE_CLIP,
            manual=f"download https://huggingface.co/{CLIP_REPO_ID}/resolve/main/model.safetensors as {vision_file}",
            files=(FileSpec("model.safetensors", vision_file,
                            (models_dir.joinpath(*CLIP_HF_FOLDER, "model.safetensors"),)),),
        ))
    if "face" in parts:
        folder = models_dir.joinpath(*ANTELOPEV2_FOLDER)
        comps.append(Component(
            key="antelopev2",
            title="insightface antelopev2 face models",
            repo_id=ANTELOPEV2_REPO_ID,
            licence=LICENCE_ANTELOPEV2,
            manual=(f"download {', '.join(ANTELOPEV2_FILES.values())} from https://huggingface.co/{ANTELOPEV2_REPO_ID} "
                    f"(or unzip insightface's antelopev2.zip) into {folder}"),
            files=tuple(FileSpec(name, folder / name) for name in ANTELOPEV2_FILES.values()),
        ))
    return comps


# --------------------------------------------------------------------------------------------
# Planning


def _local_plan(components: Sequence[Component]) -> list[PlannedFile]:
    plan = []
    for comp in components:
        for spec in comp.files:
            item = PlannedFile(comp, spec)
            item.present_at = next((p for p in (spec.destination, *spec.also_accepted) if p.is_file()), None)
            if item.present_at is not None:
                item.action = "present"
            plan.append(item)
    return plan


def _fill_from_listing(plan: list[PlannedFile], settings: HubSettings, verify: bool, report: Report) -> dict[str, str]:
    """Add the listed sizes and hashes to the plan; returns repo -> commit to download from."""
    listings: dict[tuple[str, str], tuple[str, dict[str, ListedFile]]] = {}
    commits: dict[str, str] = {}
    for item in plan:
        comp = item.component
        key = (comp.repo_id, comp.revision)
        if key not in listings:
            listings[key] = list_repo(comp.repo_id, comp.revision, settings, report)
        commit, files = listings[key]
        commits[comp.repo_id] = commit
        item.listed = files.get(item.spec.repo_path)
        if item.listed is None:
            raise DownloadError(f"{comp.repo_id} has no file {item.spec.repo_path} at revision {comp.revision}; "
                                f"{comp.manual}")
        if item.present_at is None:
            continue
        actual = item.present_at.stat().st_size
        if item.listed.size is not None and actual != item.listed.size:
            item.note = f"{item.present_at} has {actual:,} bytes, expected {item.listed.size:,}"
        elif verify and not hash_matches(item.present_at, item.listed):
            item.note = f"{item.present_at} does not match the hash the Hub lists"
        else:
            continue
        item.action = "replace"
        item.present_at = None
    return commits


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


# --------------------------------------------------------------------------------------------
# Running


def ensure_models_dir(models_dir: Path, report: Report) -> None:
    """Create the models folder when it is missing; a disk problem is said as such."""
    if models_dir.is_dir():
        if not os.access(models_dir, os.W_OK | os.X_OK):
            raise DiskError(f"cannot write into the models folder {models_dir} (permission denied); pass "
                            "--models-dir a folder you can write to, or fix its permissions")
        return
    if models_dir.exists():
        raise DownloadError(f"the models folder {models_dir} is a file, not a folder; pass --models-dir a folder")
    try:
        models_dir.mkdir(parents=True)
    except OSError as exc:
        raise disk_error(exc, models_dir) or DownloadError(f"cannot create the models folder {models_dir}: {exc}")
    report(f"Created the models folder {models_dir}")


def _check_free_space(folder: Path, needed: int) -> None:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return
    if free < needed:
        raise DiskError(f"not enough disk space in {folder}: the download needs {human_size(needed)}, "
                        f"{human_size(free)} are free; free some space or pass --models-dir a folder on another drive")


def _fetch_one(item: PlannedFile, commit: str, settings: HubSettings, report: Report) -> None:
    spec, comp = item.spec, item.component
    report(f"  downloading: {spec.repo_path} ({human_size(item.listed.size if item.listed else None)}) "
           f"-> {spec.destination}")
    try:
        fetch(comp.repo_id, spec.repo_path, commit, spec.destination, item.listed, settings, report)
    except DiskError:
        raise
    except DownloadError as exc:
        raise DownloadError(f"{exc}; run the same command again to retry, or {comp.manual}") from exc
    except Exception as exc:  # noqa: BLE001 - network and Hub faults get one clear line
        problem = disk_error(exc, spec.destination)
        if problem is not None:
            raise problem from exc
        if not is_hub_fault(exc):
            raise
        kept = received_so_far(spec.destination)
        part = f" and the {human_size(kept)} received of this one" if kept else ""
        raise DownloadError(
            f"{spec.repo_path}: download stopped ({describe(exc, settings, transfer=True)}); nothing was written under "
            f"{spec.destination.name}, the files already complete{part} are kept: run the same command again to "
            f"continue from there, or {comp.manual}"
        ) from exc


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
    settings = HubSettings.from_environment()
    if not dry_run:
        ensure_models_dir(models_dir, report)
    elif not models_dir.is_dir():
        report(f"Would create the models folder {models_dir}")
    plan = _local_plan(components_for(models_dir, variants, parts))
    result = DownloadResult(plan)

    with hub_session(settings, report):
        commits: dict[str, str] = {}
        if settings.offline:
            result.checked_online = False
            if any(item.action != "present" for item in plan) and not dry_run:
                raise DownloadError(_missing_message(plan, "cannot download: offline mode is on (HF_HUB_OFFLINE is set)"))
            report("note: offline mode is on (HF_HUB_OFFLINE is set): sizes and hashes not checked")
        else:
            report(settings.describe())
            try:
                commits = _fill_from_listing(plan, settings, verify, report)
            except DownloadError:
                raise
            except Exception as exc:  # noqa: BLE001 - network and Hub faults get one clear line
                if not is_hub_fault(exc):
                    raise
                reason = describe(exc, settings)
                result.checked_online = False
                if all(item.action == "present" for item in plan):
                    report(f"note: {reason}; the files are all in place but their sizes were not checked")
                elif not dry_run:
                    raise DownloadError(_missing_message(plan, f"cannot download: {reason}")) from exc
                else:
                    report(f"note: {reason}; sizes unknown")

        _report_plan(plan, report, online=result.checked_online)
        to_fetch = [item for item in plan if item.needs_download]
        if to_fetch:
            total = sum(item.listed.size or 0 for item in to_fetch if item.listed)
            verb = "Would download" if dry_run else "Downloading"
            sized = f", {human_size(total)}" if result.checked_online else ""
            report(f"{verb} {len(to_fetch)} file(s){sized}.")
            _report_licences(to_fetch, report)
            if not dry_run:  # the part of a file an earlier run received is on the disk already
                _check_free_space(models_dir, total - sum(received_so_far(item.spec.destination) for item in to_fetch))
        if dry_run:
            report("Dry run: nothing was downloaded.")
            return result
        for item in to_fetch:
            _fetch_one(item, commits.get(item.component.repo_id, item.component.revision), settings, report)
            result.downloaded.append(item.spec.destination)
            item.present_at = item.spec.destination
    for folder in {item.spec.destination for item in to_fetch}:
        clean_staging(folder)
    report("Nothing to download: every file is already in place." if not to_fetch
           else f"Done: {len(to_fetch)} file(s) downloaded.")
    return result


def _report_plan(plan: Sequence[PlannedFile], report: Report, *, online: bool) -> None:
    current = None
    for item in plan:
        if item.component is not current:
            current = item.component
            report(f"{current.title}  (https://huggingface.co/{current.repo_id})")
        if item.action == "present":
            report(f"  {'already there':<16} {'':>9}  {item.present_at}")
            continue
        size = human_size(item.listed.size) if item.listed else ("?" if not online else "")
        what = "will replace" if item.action == "replace" else "will download"
        report(f"  {what:<16} {size:>9}  {item.spec.destination}")
        if item.note:
            report(f"  {'':<16} {'':>9}  ({item.note})")


def _report_licences(items: Sequence[PlannedFile], report: Report) -> None:
    seen: list[str] = []
    for item in items:
        if item.component.licence not in seen:
            seen.append(item.component.licence)
    report("Licences of the files to download (by downloading you accept them):")
    for text in seen:
        report(f"  - {text}")
