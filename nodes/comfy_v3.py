"""The node API the pack is written against: ComfyUI's V3 schema, pinned to the versioned module
`comfy_api.v0_0_2`, which ComfyUI has shipped since 0.3.47 (the pack declares 0.3.48 as its minimum)
and still ships unchanged.

Only the node modules import this, and only `nodes.extension` imports them, when ComfyUI asks the
pack for its nodes: importing the pack itself needs no ComfyUI.
"""

from __future__ import annotations

from .comfy_access import NEEDS_V3_API

try:
    from comfy_api.v0_0_2 import ComfyExtension, io, ui
except ImportError as exc:  # pragma: no cover - only in a ComfyUI older than 0.3.47, or outside ComfyUI
    raise ImportError(NEEDS_V3_API) from exc

__all__ = ["ComfyExtension", "io", "ui"]
