"""Write into the shipped workflows what the ComfyUI editor reads from a node's properties.

- `cnr_id` (and `ver` on ours): the Comfy Registry id of the pack a node comes from, so a user who
  opens a workflow without this pack sees "HyperLoRA Studio" named under missing nodes, not bare
  `HLS_*` ids, and Manager can offer to install it.
- `models`: name, download URL and models folder of each file a loader node names, so the editor can
  offer to download what is missing.

Run `python scripts/stamp_workflows.py` after editing a workflow; `tests/test_workflows.py` checks
that every shipped workflow is stamped (running this again changes nothing).
"""

from __future__ import annotations

import json
import sys
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hyperlora_core.constants import ANTELOPEV2_FILES, HF_REPO_ID, RELEASE_FILES  # noqa: E402

CORE_ID = "comfy-core"
CLIP_VISION_NAME = "clip-vit-large-patch14.safetensors"  # the name ComfyUI Manager uses
CLIP_URL = "https://huggingface.co/openai/clip-vit-large-patch14/resolve/main/model.safetensors"
ANTELOPEV2_URL = "https://huggingface.co/DIAMONIK7777/antelopev2/resolve/main/{}"
CHECKPOINT_URLS = {
    "RealVisXL_V4.0.safetensors":
        "https://huggingface.co/SG161222/RealVisXL_V4.0/resolve/main/RealVisXL_V4.0.safetensors",
}


def pack_id_and_version() -> tuple[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["name"], project["version"]


def model_links(node: dict) -> list[dict] | None:
    """The files a loader node of a shipped workflow names, with where to get them."""
    kind, values = node["type"], node.get("widgets_values") or []
    if kind == "CheckpointLoaderSimple" and values and values[0] in CHECKPOINT_URLS:
        return [{"name": values[0], "url": CHECKPOINT_URLS[values[0]], "directory": "checkpoints"}]
    if kind == "CLIPVisionLoader":
        return [{"name": CLIP_VISION_NAME, "url": CLIP_URL, "directory": "clip_vision"}]
    if kind == "HLS_LoadHyperLoRA" and values:
        variant = values[0]
        return [{"name": f"{variant}/{name}",
                 "url": f"https://huggingface.co/{HF_REPO_ID}/resolve/main/{variant}/{name}",
                 "directory": "hyperlora"} for name in RELEASE_FILES]
    if kind == "HLS_LoadFaces" and values and values[0] == "antelopev2":
        return [{"name": f"models/antelopev2/{name}", "url": ANTELOPEV2_URL.format(name), "directory": "insightface"}
                for name in ANTELOPEV2_FILES.values()]
    return None


def stamp(workflow: dict) -> dict:
    """The workflow with registry ids and model links on its nodes (a new dict; the input is unchanged)."""
    pack, version = pack_id_and_version()
    out = json.loads(json.dumps(workflow))
    for node in out["nodes"]:
        props = node.setdefault("properties", {})
        if node["type"] == "CLIPVisionLoader":
            node["widgets_values"] = [CLIP_VISION_NAME]
        if node["type"].startswith("HLS_"):
            props["cnr_id"], props["ver"] = pack, version
        elif node["type"] not in ("Note", "MarkdownNote"):
            props["cnr_id"] = CORE_ID
        links = model_links(node)
        if links:
            props["models"] = links
    return out


def render(workflow: dict) -> str:
    return json.dumps(workflow, indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    for path in sorted((ROOT / "workflows").glob("*.json")):
        text = path.read_text(encoding="utf-8")
        new = render(stamp(json.loads(text)))
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"stamped {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
