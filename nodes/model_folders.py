"""The pack's model folders in ComfyUI's folder_paths: registering them, listing what they hold for
the loader nodes' choices, and finding a chosen checkpoint, face model or identity file."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from ..hyperlora_core.constants import ANTELOPEV2_FILES, HF_URL, MODULES_JSON
from ..hyperlora_core.errors import HyperLoRAError
from .comfy_access import comfy_module

# folder_paths keys of this pack.
HYPERLORA_KEY = "hyperlora"
IDENTITY_KEY = "hyperlora_identities"
INSIGHTFACE_KEY = "insightface"
IDENTITY_SUBFOLDER = "hyperlora_identities"

ANTELOPEV2_HELP = (
    f"insightface's antelopev2 models ({', '.join(ANTELOPEV2_FILES.values())}) go in "
    "ComfyUI/models/insightface/models/antelopev2/; they are the models PuLID and InstantID use too "
    "(see https://github.com/deepinsight/insightface/tree/master/python-package#model-zoo)."
)


def _extend_folder(fp: ModuleType, key: str, defaults: list[str], extensions: set[str] | None) -> None:
    """Register a folder_paths key, keeping paths that extra_model_paths.yaml already gave it."""
    if key in fp.folder_names_and_paths:
        paths, exts = fp.folder_names_and_paths[key]
    else:
        paths, exts = [], set()
    for path in defaults:
        if path not in paths:
            paths.append(path)
    if extensions is not None:
        exts = set(exts) | extensions
    fp.folder_names_and_paths[key] = (paths, exts)


def register_model_folders() -> None:
    """Tell folder_paths where this pack's models are; cheap and idempotent.

    - HyperLoRA checkpoints (folders holding hyper_lora_modules.json): models/hyperlora and the
      reference pack's models/hyper_lora/hyper_lora, so one download serves both packs;
    - the reference's CLIP folder models/hyper_lora/clip_vit becomes a "clip_vision" path, so the
      core "Load CLIP Vision" node lists its model.safetensors;
    - identity files: models/hyperlora_identities and output/hyperlora_identities;
    - insightface: models/insightface (face models live in its models/ subfolder).
    """
    try:
        fp = importlib.import_module("folder_paths")
    except ImportError:
        return
    models = fp.models_dir
    _extend_folder(fp, HYPERLORA_KEY, [os.path.join(models, "hyperlora"),
                                       os.path.join(models, "hyper_lora", "hyper_lora")], {".json"})
    _extend_folder(fp, IDENTITY_KEY, [os.path.join(models, "hyperlora_identities"),
                                      os.path.join(fp.get_output_directory(), IDENTITY_SUBFOLDER)],
                   {".safetensors"})
    _extend_folder(fp, INSIGHTFACE_KEY, [os.path.join(models, "insightface")], None)
    clip_vit = os.path.join(models, "hyper_lora", "clip_vit")
    if "clip_vision" in fp.folder_names_and_paths and clip_vit not in fp.get_folder_paths("clip_vision"):
        fp.add_model_folder_path("clip_vision", clip_vit)


def list_hyperlora_folders() -> list[str]:
    """Names (relative paths) of the checkpoint folders under every registered HyperLoRA root."""
    register_model_folders()
    try:
        fp = importlib.import_module("folder_paths")
    except ImportError:
        return []
    names = set()
    for file in fp.get_filename_list(HYPERLORA_KEY):
        if os.path.basename(file) == MODULES_JSON:
            folder = os.path.dirname(file)
            if folder:
                names.add(folder.replace(os.sep, "/"))
    return sorted(names)


def hyperlora_folder_path(name: str) -> str:
    fp = comfy_module("folder_paths")
    register_model_folders()
    full = fp.get_full_path(HYPERLORA_KEY, name.replace("/", os.sep) + os.sep + MODULES_JSON)
    if full is None:
        roots = ", ".join(fp.get_folder_paths(HYPERLORA_KEY))
        raise HyperLoRAError(
            f"HyperLoRA checkpoint folder {name!r} not found in {roots}. Put a variant folder "
            f"(e.g. sdxl_hyper_id_lora_v1_fidelity with its 4 files) there, downloaded from {HF_URL}."
        )
    return os.path.dirname(full)


def list_face_model_folders() -> list[str]:
    """Sub-folders of <insightface root>/models that hold .onnx files (antelopev2 first)."""
    register_model_folders()
    try:
        fp = importlib.import_module("folder_paths")
    except ImportError:
        return ["antelopev2"]
    names = set()
    for root in fp.get_folder_paths(INSIGHTFACE_KEY):
        base = os.path.join(root, "models")
        if not os.path.isdir(base):
            continue
        for name in os.listdir(base):
            folder = os.path.join(base, name)
            if os.path.isdir(folder) and any(f.endswith(".onnx") for f in os.listdir(folder)):
                names.add(name)
    if not names:
        return ["antelopev2"]
    return sorted(names, key=lambda n: (n != "antelopev2", n))


def face_model_folder_path(name: str) -> str:
    fp = comfy_module("folder_paths")
    register_model_folders()
    roots = fp.get_folder_paths(INSIGHTFACE_KEY)
    for root in roots:
        folder = os.path.join(root, "models", name)
        if os.path.isdir(folder):
            return folder
    raise HyperLoRAError(
        f"Face model folder {name!r} not found under "
        f"{', '.join(os.path.join(r, 'models') for r in roots)}. {ANTELOPEV2_HELP}"
    )


def list_identity_files() -> list[str]:
    register_model_folders()
    try:
        fp = importlib.import_module("folder_paths")
    except ImportError:
        return []
    return sorted(f.replace(os.sep, "/") for f in fp.get_filename_list(IDENTITY_KEY))


def identity_file_path(name: str) -> str:
    fp = comfy_module("folder_paths")
    register_model_folders()
    full = fp.get_full_path(IDENTITY_KEY, name.replace("/", os.sep))
    if full is None:
        raise HyperLoRAError(
            f"Identity file {name!r} not found in {', '.join(fp.get_folder_paths(IDENTITY_KEY))}; "
            "save one with the 'Save HyperLoRA Identity' node first."
        )
    return full
