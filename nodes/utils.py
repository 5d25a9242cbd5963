"""Glue shared by the nodes: ComfyUI modules imported late, model folders, image conversions.

Nothing here runs at import time and nothing imports ComfyUI at module level, so the pack (and the
CI tests) can import every node class on a machine without ComfyUI.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from ..hyperlora_core.files.atomic import MAX_NAME_BYTES, write_error
from ..hyperlora_core.errors import HyperLoRAError
from ..hyperlora_core.files.images import float_to_uint8

log = logging.getLogger(__name__)

CATEGORY = "HyperLoRA Studio"

# folder_paths keys of this pack.
HYPERLORA_KEY = "hyperlora"
IDENTITY_KEY = "hyperlora_identities"
INSIGHTFACE_KEY = "insightface"
MODULES_JSON = "hyper_lora_modules.json"
IDENTITY_SUBFOLDER = "hyperlora_identities"

HF_URL = "https://huggingface.co/bytedance-research/HyperLoRA"
CLIP_URL = "https://huggingface.co/openai/clip-vit-large-patch14"
ANTELOPEV2_HELP = (
    "insightface's antelopev2 models (scrfd_10g_bnkps.onnx, 2d106det.onnx, glintr100.onnx) go in "
    "ComfyUI/models/insightface/models/antelopev2/; they are the models PuLID and InstantID use too "
    "(see https://github.com/deepinsight/insightface/tree/master/python-package#model-zoo)."
)


def comfy_module(name: str) -> ModuleType:
    """Import a ComfyUI module (folder_paths, comfy.lora, ...) when a node runs, not at import."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # pragma: no cover - only outside ComfyUI
        raise HyperLoRAError(f"This node needs ComfyUI's `{name}` module; run it inside ComfyUI.") from exc


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


MIN_COMFYUI = "0.3.48"
NEEDS_V3_API = (f"HyperLoRA Studio needs ComfyUI {MIN_COMFYUI} or newer (its V3 node API, comfy_api.v0_0_2, is "
                "missing): update ComfyUI (git pull, or ComfyUI Manager's 'Update ComfyUI') and restart it.")


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


def require_input(value, name: str, expected: str, connect: str, accept=None) -> None:
    """Refuse a node input that is missing or of the wrong kind, naming it and what to connect.

    `accept(value)` says whether the value is of the right kind (default: anything but None).
    """
    if value is not None and (accept is None or accept(value)):
        return
    found = "nothing (it is not connected or the node before it gave no value)" if value is None \
        else f"a {type(value).__name__}"
    raise HyperLoRAError(f"The input '{name}' needs {expected} but got {found}: connect {connect}.")


# "_00001_.safetensors" and a little room for counters beyond 99999.
_COUNTER_SUFFIX_BYTES = len("_000001_.safetensors")


def _check_prefix_text(filename_prefix, what: str) -> str:
    if not isinstance(filename_prefix, str):
        raise HyperLoRAError(f"filename_prefix must be text, got {type(filename_prefix).__name__}: type a name "
                             f"for the {what}, e.g. 'loras/my_person'.")
    prefix = filename_prefix.strip()
    if not prefix:
        raise HyperLoRAError(f"filename_prefix is empty: give a name for the {what}, e.g. 'loras/my_person'.")
    if "\x00" in prefix:
        raise HyperLoRAError(f"filename_prefix {filename_prefix!r} contains a NUL byte (\\x00), which no file "
                             "system allows; use letters, digits, spaces, '-', '_' and '/' for sub-folders.")
    parts = [p for p in prefix.replace("\\", "/").split("/") if p]
    limit = MAX_NAME_BYTES - _COUNTER_SUFFIX_BYTES
    for i, part in enumerate(parts):
        size = len(part.encode("utf-8", "surrogateescape"))
        allowed = limit if i == len(parts) - 1 else MAX_NAME_BYTES
        if size > allowed:
            raise HyperLoRAError(
                f"filename_prefix part {part[:30]!r}... is {size} bytes long; file systems allow {MAX_NAME_BYTES} "
                f"bytes per name, so a folder name may have at most {MAX_NAME_BYTES} and the file name at most "
                f"{limit} (the counter and '.safetensors' are added). Use a shorter name."
            )
    return prefix


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath((root, path)) == root and path != root


def output_file_prefix(filename_prefix: str, what: str) -> tuple[str, str, int, str]:
    """Resolve a filename prefix inside ComfyUI's output folder, refusing any that escapes it.

    Links are followed: a prefix leading through a symlink (or a `..`) to a place outside the output
    folder is refused before any folder is made. Returns (folder, file name stem, first free counter,
    subfolder relative to the output folder).
    """
    fp = comfy_module("folder_paths")
    output_dir = os.path.abspath(fp.get_output_directory())
    real_output = os.path.realpath(output_dir)
    prefix = _check_prefix_text(filename_prefix, what)
    target = os.path.abspath(os.path.join(output_dir, prefix))
    outside = HyperLoRAError(
        f"filename_prefix {filename_prefix!r} points outside ComfyUI's output folder ({output_dir}); "
        f"use a relative name such as 'loras/my_person' to save the {what} inside it (links that lead "
        "out of the output folder are refused too)."
    )
    if os.path.isabs(prefix) or not _inside(target, output_dir):
        raise outside
    if os.path.commonpath((real_output, os.path.realpath(os.path.dirname(target)))) != real_output:
        raise outside
    folder_part = Path(os.path.dirname(target))
    for parent in (folder_part, *folder_part.parents):
        if parent == Path(output_dir):
            break
        if parent.exists() and not parent.is_dir():
            raise HyperLoRAError(f"Cannot save the {what} under {filename_prefix!r}: {parent} is a file, not a "
                                 "folder. Choose another filename_prefix or rename that file.")
    try:
        folder, name, counter, subfolder, _ = fp.get_save_image_path(prefix, output_dir)
    except OSError as exc:
        raise write_error(Path(target), exc) from exc
    if os.path.commonpath((real_output, os.path.realpath(folder))) != real_output:
        raise outside
    return folder, name, counter, subfolder


def save_in_output(filename_prefix: str, what: str, write) -> str:
    """Write a new `.safetensors` file under ComfyUI's output folder with its counter naming.

    `write(path)` writes the file (and refuses an existing one); returns the file name relative to
    the output folder (with "/" between folders on every system).
    """
    folder, name, counter, subfolder = output_file_prefix(filename_prefix, what)
    path, _ = next_free_path(folder, name, counter, ".safetensors")
    real_output = os.path.realpath(comfy_module("folder_paths").get_output_directory())
    if not _inside(os.path.realpath(path), real_output):
        raise HyperLoRAError(f"{path} leads outside ComfyUI's output folder ({real_output}) through a link; "
                             f"the {what} was not saved. Choose another filename_prefix.")
    write(path)
    rel = "/".join(p for p in (subfolder.replace("\\", "/"), os.path.basename(path)) if p)
    log.info("Saved HyperLoRA %s to %s", what, path)
    return rel


def next_free_path(folder: str, name: str, counter: int, suffix: str) -> tuple[str, int]:
    """The first `{name}_{counter:05}_{suffix}` that does not exist yet, not even as a broken link
    (files are never overwritten)."""
    while True:
        path = os.path.join(folder, f"{name}_{counter:05}_{suffix}")
        if not os.path.lexists(path):
            return path, counter
        counter += 1


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


def images_to_uint8(image: torch.Tensor) -> list[np.ndarray]:
    """ComfyUI IMAGE (B, H, W, C) floats in 0..1 -> list of RGB uint8 arrays, truncated as the
    reference converts them (x * 255 in float32, cast; spec section 8)."""
    if not isinstance(image, torch.Tensor) or image.dim() != 4:
        raise HyperLoRAError(f"Expected an IMAGE batch (B, H, W, C), got {getattr(image, 'shape', type(image))}.")
    arr = float_to_uint8(image[..., :3].detach().cpu().float().numpy())
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return [np.ascontiguousarray(a) for a in arr]


def uint8_to_image(photos: list[np.ndarray], size: int | None = None) -> torch.Tensor:
    """RGB uint8 arrays -> ComfyUI IMAGE batch; resized (bicubic) to size x size when given."""
    from PIL import Image

    out = []
    for photo in photos:
        if size is not None and photo.shape[:2] != (size, size):
            photo = np.asarray(Image.fromarray(photo).resize((size, size), Image.BICUBIC))
        out.append(torch.from_numpy(np.ascontiguousarray(photo)).float() / 255.0)
    return torch.stack(out)
