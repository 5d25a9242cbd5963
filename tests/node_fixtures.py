"""Fixtures and stand-ins of the node tests (CI tier, no ComfyUI): the pack imported the way ComfyUI
imports it (as a package from its folder), small stand-ins for folder_paths and comfy.* put in
sys.modules where a node needs ComfyUI modules, tiny checkpoints and face models, and fakes of the
CLIP, CLIP vision and ModelPatcher objects the nodes are given. The real-ComfyUI tier (tests/comfyui)
checks the same paths against the real modules.

A test module takes a fixture by importing it by name (pytest finds fixtures in the module's
namespace), hence the `# noqa: F401` on those imports."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from pack import load_pack, node_classes


@pytest.fixture(scope="module")
def pack():
    return load_pack()


def nodes(pack):
    """Node id -> V3 node class, as ComfyUI registers them."""
    return node_classes(pack)


# -- stand-ins for the ComfyUI modules the nodes use ---------------------------------------------

class FakePatcher:
    """What the nodes use of comfy.model_patcher.ModelPatcher."""

    def __init__(self, model, load_device=None, offload_device=None):
        self.model, self.load_device, self.offload_device = model, load_device, offload_device
        self.patches: dict = {}

    def clone(self):
        n = FakePatcher(self.model, self.load_device, self.offload_device)
        n.patches = {k: list(v) for k, v in self.patches.items()}
        return n

    def add_patches(self, patches, strength_patch=1.0, strength_model=1.0):
        keys = set(self.model.state_dict())
        applied = []
        for k, v in patches.items():
            if k in keys:
                self.patches.setdefault(k, []).append((strength_patch, v))
                applied.append(k)
        return applied


def _fake_folder_paths(base: Path) -> types.ModuleType:
    fp = types.ModuleType("folder_paths")
    fp.models_dir = str(base / "models")
    fp.output_dir = str(base / "output")
    os.makedirs(fp.output_dir, exist_ok=True)
    fp.folder_names_and_paths = {"clip_vision": ([str(base / "models" / "clip_vision")], {".safetensors"})}
    fp.get_output_directory = lambda: fp.output_dir
    fp.temp_dir = str(base / "temp")  # ui.PreviewImage saves a node's previews there
    fp.get_temp_directory = lambda: fp.temp_dir
    fp.get_folder_paths = lambda key: list(fp.folder_names_and_paths[key][0])

    def add_model_folder_path(key, path, is_default=False):
        paths, exts = fp.folder_names_and_paths.setdefault(key, ([], set()))
        if path not in paths:
            paths.append(path)
    fp.add_model_folder_path = add_model_folder_path

    def get_filename_list(key):
        paths, exts = fp.folder_names_and_paths[key]
        out = []
        for root in paths:
            for dirpath, _, files in os.walk(root):
                for f in files:
                    if not exts or os.path.splitext(f)[1] in exts:
                        out.append(os.path.relpath(os.path.join(dirpath, f), root))
        return sorted(set(out))
    fp.get_filename_list = get_filename_list

    def get_full_path(key, name):
        for root in fp.folder_names_and_paths[key][0]:
            path = os.path.join(root, name)
            if os.path.isfile(path):
                return path
        return None
    fp.get_full_path = get_full_path

    def get_save_image_path(prefix, output_dir, w=0, h=0):
        sub = os.path.dirname(os.path.normpath(prefix))
        folder = os.path.join(output_dir, sub)
        if os.path.commonpath((output_dir, os.path.abspath(folder))) != output_dir:
            raise Exception("**** ERROR: Saving image outside the output folder is not allowed.")
        os.makedirs(folder, exist_ok=True)
        return folder, os.path.basename(os.path.normpath(prefix)), 1, sub, prefix
    fp.get_save_image_path = get_save_image_path
    return fp


@pytest.fixture
def fake_comfy(tmp_path, monkeypatch):
    """folder_paths over tmp_path/models and tmp_path/output, plus the comfy.* calls the nodes make."""
    fp = _fake_folder_paths(tmp_path)
    comfy = types.ModuleType("comfy")
    mm = types.ModuleType("comfy.model_management")
    mm.loads = []
    mm.get_torch_device = lambda: torch.device("cpu")
    mm.should_use_fp16 = lambda device=None: False
    mm.load_models_gpu = lambda models, **kw: mm.loads.append((models, kw))
    mp = types.ModuleType("comfy.model_patcher")
    mp.ModelPatcher = FakePatcher
    model_base = types.ModuleType("comfy.model_base")

    class BaseModel(torch.nn.Module):
        pass

    class SDXL(BaseModel):
        pass

    class SD15Config:
        pass
    model_base.BaseModel, model_base.SDXL, model_base.SD15Config = BaseModel, SDXL, SD15Config
    for name, module in {"folder_paths": fp, "comfy": comfy, "comfy.model_management": mm,
                         "comfy.model_patcher": mp, "comfy.model_base": model_base}.items():
        monkeypatch.setitem(sys.modules, name, module)
    comfy.model_management, comfy.model_patcher, comfy.model_base = mm, mp, model_base
    return types.SimpleNamespace(fp=fp, mm=mm, model_base=model_base, root=tmp_path)


# -- a tiny HyperLoRA checkpoint, loaded by the node, and what it makes -----------------------------

@pytest.fixture(scope="module")
def tiny_release(tmp_path_factory):
    from checkpoints import make_release_folder
    return make_release_folder(tmp_path_factory.mktemp("hl") / "sdxl_hyper_id_lora_v1_tiny",
                               dim=64, depth=1, inner=64, hyper_dim=16, seed=7)


@pytest.fixture
def loaded(pack, fake_comfy, tiny_release):
    import shutil
    shutil.copytree(tiny_release, Path(fake_comfy.fp.models_dir) / "hyperlora" / "tiny")
    (handle,) = nodes(pack)["HLS_LoadHyperLoRA"].execute("tiny", "float32", "auto")
    return handle


@pytest.fixture
def id_lora(pack, loaded):
    return _node(pack, "HLS_GenerateLoRA").execute(loaded, _identity(pack))[0]


def _identity(pack, n=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    arc = torch.randn(n, 512, generator=gen)
    return pack.hyperlora_core.IdentityFeatures(arcface=arc / arc.norm(dim=-1, keepdim=True),
                                                clip_tokens=torch.randn(n, 257, 1024, generator=gen))


# -- the tiny antelopev2 face models and photos they find a face in --------------------------------

@pytest.fixture(scope="module")
def tiny_antelopev2(tmp_path_factory):
    pytest.importorskip("insightface")
    pytest.importorskip("onnx")
    from tiny_face_models import make_tiny_antelopev2
    return make_tiny_antelopev2(tmp_path_factory.mktemp("faces") / "antelopev2")


@pytest.fixture
def face_models(fake_comfy, tiny_antelopev2):
    import shutil
    target = Path(fake_comfy.fp.models_dir) / "insightface" / "models" / "antelopev2"
    shutil.copytree(tiny_antelopev2, target)
    return target


def _photo(face: bool, seed: int = 0) -> torch.Tensor:
    from tiny_face_models import draw_face
    rng = np.random.default_rng(seed)
    img = (rng.random((320, 256, 3)) * 120).astype(np.uint8)
    if face:
        draw_face(img, (90, 110, 170, 210), slot=0, ring=6)
    return torch.from_numpy(img).float().div(255).unsqueeze(0)


# -- what other nodes give ours ----------------------------------------------------------------------

class FakeClip:
    def __init__(self):
        self.texts = []

    def tokenize(self, text):
        self.texts.append(text)
        return {"text": text}

    def encode_from_tokens_scheduled(self, tokens):
        return [[torch.zeros(1, 77, 2048), {"pooled_output": torch.zeros(1, 1280)}]]


class FakeClipVision:
    """encode_image as ComfyUI's ClipVisionModel gives it: penultimate_hidden_states (N, 257, 1024)."""

    def __init__(self, width=1024):
        self.width, self.seen = width, []

    def encode_image(self, image, crop=True):
        self.seen.append((tuple(image.shape), crop))
        g = torch.Generator().manual_seed(int(image.mul(255).sum().item()) % 1000)
        return {"penultimate_hidden_states": torch.randn(image.shape[0], 257, self.width, generator=g)}


# -- short forms of the hardening tests ------------------------------------------------------------

def _node(pack, node_id):
    return nodes(pack)[node_id]


def _error(pack):
    return pack.hyperlora_core.HyperLoRAError


def _all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]
