"""ComfyUI's own modules, reached only when a node runs: the late import, its progress bar, and the
check that this ComfyUI has the V3 node API the pack is written against.

Nothing here imports ComfyUI at module level, so the pack (and the CI tests) import every node
class on a machine without ComfyUI.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from types import ModuleType

from ..hyperlora_core.errors import HyperLoRAError

log = logging.getLogger(__name__)

MIN_COMFYUI = "0.3.48"
NEEDS_V3_API = (f"HyperLoRA Studio needs ComfyUI {MIN_COMFYUI} or newer (its V3 node API, comfy_api.v0_0_2, is "
                "missing): update ComfyUI (git pull, or ComfyUI Manager's 'Update ComfyUI') and restart it.")


def comfy_module(name: str) -> ModuleType:
    """Import a ComfyUI module (folder_paths, comfy.lora, ...) when a node runs, not at import."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # pragma: no cover - only outside ComfyUI
        raise HyperLoRAError(f"This node needs ComfyUI's `{name}` module; run it inside ComfyUI.") from exc


def _importable(name: str) -> bool:
    """Whether `name` can be imported, without importing it (its parent packages are imported)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a missing parent package, or an import hook that refuses the name
        return False


def check_comfyui_version() -> bool:
    """Inside ComfyUI (folder_paths importable), log an error when its V3 node API is missing: such a
    ComfyUI (older than 0.3.47) loads no node of this pack. True when the API is there or there is
    no ComfyUI at all."""
    if not _importable("folder_paths"):
        return True
    found = _importable("comfy_api.v0_0_2")
    if not found:
        log.error("%s None of its nodes is loaded.", NEEDS_V3_API)
    return found


def progress_bar(total: int):
    """ComfyUI's progress bar for the running node, or a no-op outside ComfyUI."""
    try:
        import comfy.utils
        return comfy.utils.ProgressBar(total)
    except ImportError:
        class _NoBar:
            def update(self, value: int) -> None:
                pass

            def update_absolute(self, value: int, total: int | None = None, preview=None) -> None:
                pass
        return _NoBar()
