"""Helpers of the real-ComfyUI tier shared by its test modules: paths, names, UI -> API conversion."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TEST_PACK = HERE / "test_pack"
COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
PACK_DIR_NAME = "hyperlora-studio"
CHECKPOINT_NAME = "sdxl_hyper_id_lora_v1_fidelity"
# The shipped workflows, and the same graphs as the editor saved them with the V1 nodes (before the
# move to the V3 schema; tests/workflows_v1): both must run and open unchanged.
GRAPHS = sorted((ROOT / "workflows").glob("*.json")) + sorted((ROOT / "tests" / "workflows_v1").glob("*.json"))


# Shipped workflows that the generic "runs as shipped" test leaves to their own tests: the video one needs
# the Wan 2.2 models (its node types and links are checked against /object_info instead), and keep-the-best
# needs generated pictures with faces, which the tiny SDXL does not draw (tests/comfyui/test_likeness_set_server.py).
OWN_TESTS = {"HyperLoRA - first frame for a video", "HyperLoRA - generate N, keep the best"}


def graph_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"

def stop_process(process: subprocess.Popen, timeout: float) -> None:
    """Ask a server process to end; kill it if it has not within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def faces_and_identity(photo: str = "person.jpg") -> dict:
    """photo -> faces -> identity in API format (ids 1..4), with the tiny CLIP vision model."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": photo}},
        "2": {"class_type": "HLS_LoadFaces", "inputs": {
            "images": ["1", 0], "face_model": "antelopev2", "provider": "CPU", "face_choice": "largest",
            "remove_background": True, "greyscale": False, "if_no_face": "error"}},
        "3": {"class_type": "HLSTest_TinyCLIPVision", "inputs": {"seed": 0}},
        "4": {"class_type": "HLS_IDEmbedding", "inputs": {"faces": ["2", 0], "clip_vision": ["3", 0]}},
    }


# -- UI workflow -> API prompt -------------------------------------------------------------------

WIDGET_KINDS = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# Loaders of full-size models, replaced by the test pack's tiny ones (same outputs, same order).
SUBSTITUTE = {"CheckpointLoaderSimple": ("HLSTest_TinySDXL", {"seed": 0}),
              "CLIPVisionLoader": ("HLSTest_TinyCLIPVision", {"seed": 0})}
# Smaller and quicker settings for the CPU: (node type, input) -> value.
OVERRIDE = {("EmptyLatentImage", "width"): 128, ("EmptyLatentImage", "height"): 128,
            ("KSampler", "steps"): 2, ("HLS_RefineLoRA", "steps"): 2, ("HLS_RefineLoRA", "resolution"): 256}
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}


def is_widget(spec) -> bool:
    forced = len(spec) > 1 and isinstance(spec[1], dict) and spec[1].get("forceInput")  # a socket, no widget
    return (isinstance(spec[0], list) or spec[0] in WIDGET_KINDS) and not forced


def combo_options(spec) -> list:
    """The choices of a combo input in /object_info: V1 nodes give the list itself, V3 nodes
    ("COMBO", {"options": [...]})."""
    return spec[0] if isinstance(spec[0], list) else spec[1]["options"]


def to_api(workflow: dict, object_info: dict) -> dict:
    """Convert a UI-format (0.4) workflow to an API prompt, as the editor's 'Queue' does."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY or node.get("mode", 0) in (2, 4):
            continue
        linked = {i["name"]: links[i["link"]] for i in node.get("inputs", []) if i.get("link") is not None}
        if node["type"] in SUBSTITUTE:
            class_type, inputs = SUBSTITUTE[node["type"]]
            prompt[str(node["id"])] = {"class_type": class_type, "inputs": dict(inputs)}
            continue
        info = object_info[node["type"]]["input"]
        values = list(node.get("widgets_values", []))
        inputs = {}
        for section in ("required", "optional"):
            for name, spec in info.get(section, {}).items():
                if name in linked:
                    link = linked[name]
                    inputs[name] = [str(link[1]), link[2]]
                    if is_widget(spec) and values:
                        values.pop(0)  # a widget turned into a socket keeps its value slot
                    continue
                if not is_widget(spec):
                    continue
                if values:
                    inputs[name] = values.pop(0)
                    opts = spec[1] if len(spec) > 1 else {}
                    if opts.get("control_after_generate") and values and values[0] in (
                            "fixed", "increment", "decrement", "randomize"):
                        values.pop(0)
                inputs[name] = OVERRIDE.get((node["type"], name), inputs.get(name))
                if inputs[name] is None:
                    del inputs[name]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def execution_error(entry: dict) -> dict | None:
    for kind, data in entry["status"].get("messages", []):
        if kind == "execution_error":
            return data
    return None


# -- prompts the server tests share -------------------------------------------------------------

def lora_chain(photo: str = "person.jpg") -> dict:
    """photo -> faces -> identity -> LoRA, in API format (ids 1..6)."""
    return {
        **faces_and_identity(photo),
        "5": {"class_type": "HLS_LoadHyperLoRA", "inputs": {"hyperlora_name": CHECKPOINT_NAME, "dtype": "auto",
                                                             "device": "auto"}},
        "6": {"class_type": "HLS_GenerateLoRA", "inputs": {"hyperlora": ["5", 0], "identity": ["4", 0]}},
        "10": {"class_type": "HLSTest_TinySDXL", "inputs": {"seed": 0}},
    }


def save_chain() -> dict:
    """photo -> faces -> identity -> LoRA, with Save HyperLoRA (id 7) and Save HyperLoRA Identity (id 8)."""
    prompt = faces_and_identity()
    prompt.update({
        "5": {"class_type": "HLS_LoadHyperLoRA", "inputs": {"hyperlora_name": CHECKPOINT_NAME, "dtype": "auto",
                                                             "device": "auto"}},
        "6": {"class_type": "HLS_GenerateLoRA", "inputs": {"hyperlora": ["5", 0], "identity": ["4", 0]}},
        "7": {"class_type": "HLS_SaveLoRA", "inputs": {"lora": ["6", 0], "filename_prefix": "loras/v3_ui"}},
        "8": {"class_type": "HLS_SaveIdentity", "inputs": {"identity": ["4", 0], "filename_prefix": "v3_ui/person"}},
    })
    return prompt
