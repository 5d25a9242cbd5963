"""CI tier of the nodes: no ComfyUI here. The pack is imported the way ComfyUI imports it (as a
package from its folder); where a node needs ComfyUI modules, small stand-ins for folder_paths and
comfy.* are put in sys.modules. The real-ComfyUI tier (tests/comfyui) checks the same paths against
the real modules."""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
from pack import PACK, load_pack, node_classes  # noqa: E402


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


@pytest.fixture(scope="module")
def tiny_release(tmp_path_factory):
    from checkpoints import make_release_folder
    return make_release_folder(tmp_path_factory.mktemp("hl") / "sdxl_hyper_id_lora_v1_tiny",
                               dim=64, depth=1, inner=64, hyper_dim=16, seed=7)


def _identity(pack, n=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    arc = torch.randn(n, 512, generator=gen)
    return pack.hyperlora_core.IdentityFeatures(arcface=arc / arc.norm(dim=-1, keepdim=True),
                                                clip_tokens=torch.randn(n, 257, 1024, generator=gen))


# -- model folders -----------------------------------------------------------------------------

def test_hyperlora_folders_listed_from_both_layouts_and_extra_paths(pack, fake_comfy, tiny_release):
    import shutil
    models = Path(fake_comfy.fp.models_dir)
    shutil.copytree(tiny_release, models / "hyperlora" / "mine")
    shutil.copytree(tiny_release, models / "hyper_lora" / "hyper_lora" / "sdxl_hyper_id_lora_v1_fidelity")
    extra = fake_comfy.root / "elsewhere"
    shutil.copytree(tiny_release, extra / "from_yaml")
    (models / "hyperlora" / "not_a_checkpoint").mkdir()
    fake_comfy.fp.folder_names_and_paths["hyperlora"] = ([str(extra)], set())  # as extra_model_paths.yaml does
    names = nodes(pack)["HLS_LoadHyperLoRA"].INPUT_TYPES()["required"]["hyperlora_name"][1]["options"]
    assert names == ["from_yaml", "mine", "sdxl_hyper_id_lora_v1_fidelity"]
    assert str(extra) in fake_comfy.fp.get_folder_paths("hyperlora")
    clip_paths = fake_comfy.fp.get_folder_paths("clip_vision")
    assert os.path.join(str(models), "hyper_lora", "clip_vit") in clip_paths


def test_face_model_folders_listed(pack, fake_comfy):
    folder = Path(fake_comfy.fp.models_dir) / "insightface" / "models"
    (folder / "antelopev2").mkdir(parents=True)
    (folder / "antelopev2" / "glintr100.onnx").write_bytes(b"x")
    (folder / "buffalo_l").mkdir()
    (folder / "buffalo_l" / "w600k_r50.onnx").write_bytes(b"x")
    (folder / "empty").mkdir()
    spec = nodes(pack)["HLS_LoadFaces"].INPUT_TYPES()["required"]["face_model"]
    assert spec[1]["options"] == ["antelopev2", "buffalo_l"]


def test_missing_hyperlora_folder_says_where_to_put_it(pack, fake_comfy):
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="bytedance-research/HyperLoRA"):
        nodes(pack)["HLS_LoadHyperLoRA"].execute("nowhere", "auto", "auto")


# -- load, generate, save ----------------------------------------------------------------------

@pytest.fixture
def loaded(pack, fake_comfy, tiny_release):
    import shutil
    shutil.copytree(tiny_release, Path(fake_comfy.fp.models_dir) / "hyperlora" / "tiny")
    (handle,) = nodes(pack)["HLS_LoadHyperLoRA"].execute("tiny", "float32", "auto")
    return handle


def test_loaded_network_is_wrapped_for_comfyui_model_management(pack, loaded, fake_comfy):
    assert isinstance(loaded.patcher, FakePatcher)
    assert loaded.patcher.model.network is loaded.network
    loaded.patcher.model.device = torch.device("cpu")  # ModelPatcher sets this on the module it manages
    assert loaded.network.dtype == torch.float32


def test_generate_runs_under_model_management_and_matches_the_core(pack, loaded, fake_comfy):
    identity = _identity(pack)
    id_lora, base_lora = nodes(pack)["HLS_GenerateLoRA"].execute(loaded, identity)
    assert fake_comfy.mm.loads and fake_comfy.mm.loads[-1][0] == [loaded.patcher]
    expected = loaded.network.generate_id_lora(identity.arcface, identity.clip_tokens, identity.weights)
    assert list(id_lora) == list(expected)
    for k in expected:
        torch.testing.assert_close(id_lora[k], expected[k])
    assert len(base_lora) == 0  # the checkpoint has no Base-LoRA weights, like the release
    assert isinstance(id_lora, dict)


def test_save_lora_writes_kohya_file_with_trigger_words_and_never_overwrites(pack, loaded, fake_comfy):
    id_lora, _ = nodes(pack)["HLS_GenerateLoRA"].execute(loaded, _identity(pack))
    saver = nodes(pack)["HLS_SaveLoRA"]
    first = saver.execute(id_lora, "loras/person")[0]
    second = saver.execute(id_lora, "loras/person")[0]
    assert first != second
    out = Path(fake_comfy.fp.output_dir)
    assert first == "loras/person_00001_.safetensors" and (out / second).is_file()
    tensors = load_file(str(out / first))
    assert set(tensors) == set(id_lora)
    with safe_open(str(out / first), "pt") as f:
        meta = f.metadata()
    assert meta["hyperlora.trigger_words"] == pack.hyperlora_core.TRIGGER_WORDS
    assert meta["hyperlora.source_checkpoint"] == "tiny"


def test_save_nodes_show_the_saved_file_on_themselves(pack, loaded, fake_comfy):
    id_lora, _ = nodes(pack)["HLS_GenerateLoRA"].execute(loaded, _identity(pack))
    out = nodes(pack)["HLS_SaveLoRA"].execute(id_lora, "loras/person")
    assert out.result == ("loras/person_00001_.safetensors",)
    assert out.ui.as_dict()["text"] == ("loras/person_00001_.safetensors",)
    out = nodes(pack)["HLS_SaveIdentity"].execute(_identity(pack), "hyperlora_identities/alice")
    assert out.result == ("hyperlora_identities/alice_00001_.safetensors",)
    assert out.ui.as_dict()["text"] == ("hyperlora_identities/alice_00001_.safetensors",)
    assert (Path(fake_comfy.fp.output_dir) / out.result[0]).is_file()


def test_generate_shows_the_photos_and_layers_it_used(pack, loaded, fake_comfy):
    out = nodes(pack)["HLS_GenerateLoRA"].execute(loaded, _identity(pack, n=3))
    id_lora, base = out
    layers = len(id_lora) // 3  # lora_down, lora_up and alpha per layer
    (text,) = out.ui.as_dict()["text"]
    assert f"ID-LoRA: {layers} layers from 3 photos" in text
    assert "Base-LoRA: none" in text and "network: tiny" in text


@pytest.mark.parametrize("prefix", ["../escape", "/tmp/abs", "loras/../../x", ""])
def test_save_refuses_prefix_outside_output_folder(pack, loaded, fake_comfy, prefix):
    id_lora, _ = nodes(pack)["HLS_GenerateLoRA"].execute(loaded, _identity(pack))
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="output folder|empty"):
        nodes(pack)["HLS_SaveLoRA"].execute(id_lora, prefix)
    assert not list(Path(fake_comfy.fp.output_dir).rglob("*.safetensors"))
    assert not (fake_comfy.root / "escape_00001_.safetensors").exists()


def test_save_refuses_empty_base_lora(pack, loaded, fake_comfy):
    _, base = nodes(pack)["HLS_GenerateLoRA"].execute(loaded, _identity(pack))
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="empty"):
        nodes(pack)["HLS_SaveLoRA"].execute(base, "loras/base")


def test_identity_save_load_round_trip_and_blend(pack, fake_comfy):
    a, b = _identity(pack, 1, seed=1), _identity(pack, 2, seed=2)
    saved = nodes(pack)["HLS_SaveIdentity"].execute(a, "hyperlora_identities/alice")[0]
    listed = nodes(pack)["HLS_LoadIdentity"].INPUT_TYPES()["required"]["identity_name"][1]["options"]
    assert "alice_00001_.safetensors" in [Path(n).name for n in listed]
    (back,) = nodes(pack)["HLS_LoadIdentity"].execute(Path(saved).name)
    torch.testing.assert_close(back.arcface, a.arcface)
    (mixed,) = nodes(pack)["HLS_BlendIdentities"].execute(a, 0.25, b, 0.75)
    assert mixed.num_photos == 3
    torch.testing.assert_close(mixed.weights, torch.tensor([0.25, 0.375, 0.375]))
    (three,) = nodes(pack)["HLS_BlendIdentities"].execute(a, 1.0, b, 1.0, identity_3=a, weight_3=2.0)
    assert three.num_photos == 4


def test_load_identity_reads_a_file_saved_again_under_its_name(pack, fake_comfy):
    node = nodes(pack)["HLS_LoadIdentity"]
    (saved,) = nodes(pack)["HLS_SaveIdentity"].execute(_identity(pack, 1), "hyperlora_identities/bob")
    name = Path(saved).name
    path = Path(fake_comfy.fp.output_dir) / saved
    first = node.fingerprint_inputs(identity_name=name)
    assert first == node.fingerprint_inputs(identity_name=name) == os.path.getmtime(path)
    os.utime(path, (first + 10, first + 10))
    assert node.fingerprint_inputs(identity_name=name) != first
    missing = node.fingerprint_inputs(identity_name="gone.safetensors")
    assert missing != missing  # NaN: never "unchanged", so the node runs and shows its error


def test_blend_refuses_all_zero_weights(pack):
    a = _identity(pack, 1)
    with pytest.raises(pack.hyperlora_core.HyperLoRAError):
        nodes(pack)["HLS_BlendIdentities"].execute(a, 0.0, a, 0.0)


# -- apply -------------------------------------------------------------------------------------

def test_apply_refuses_a_model_that_is_not_sdxl_naming_it(pack, fake_comfy):
    class SD15(torch.nn.Module):
        pass

    class BaseModel(fake_comfy.model_base.BaseModel):
        model_config = SD15()
    model = FakePatcher(BaseModel())
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="SD15"):
        nodes(pack)["HLS_ApplyLoRA"].execute(model, {"x.alpha": torch.tensor(1.0)}, 0.85)


def test_apply_refuses_lora_layers_missing_from_the_model(pack, fake_comfy, monkeypatch):
    lora_mod = types.ModuleType("comfy.lora")
    lora_mod.model_lora_keys_unet = lambda model, key_map: {"lora_unet_a": "diffusion_model.a.weight"}
    lora_mod.load_lora = lambda lora, to_load, log_missing=True: {v: ("lora", k) for k, v in to_load.items()}
    monkeypatch.setitem(sys.modules, "comfy.lora", lora_mod)

    class Unet(fake_comfy.model_base.SDXL):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(2, 2)

        def state_dict(self, *a, **k):
            return {"diffusion_model.a.weight": self.a.weight}
    model = FakePatcher(Unet())
    lora = {f"lora_unet_{n}.{s}": torch.zeros(1) for n in ("a", "b")
            for s in ("lora_down.weight", "lora_up.weight", "alpha")}
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="1 of the 2 layers"):
        nodes(pack)["HLS_ApplyLoRA"].execute(model, lora, 0.85)
    del lora["lora_unet_b.lora_down.weight"], lora["lora_unet_b.lora_up.weight"], lora["lora_unet_b.alpha"]
    (patched,) = nodes(pack)["HLS_ApplyLoRA"].execute(model, lora, -0.5)
    assert patched is not model and model.patches == {}
    assert patched.patches["diffusion_model.a.weight"][0][0] == -0.5


def test_apply_refuses_an_empty_lora(pack, fake_comfy):
    model = FakePatcher(fake_comfy.model_base.SDXL())
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="empty"):
        nodes(pack)["HLS_ApplyLoRA"].execute(model, {}, 0.85)


# -- prompt ------------------------------------------------------------------------------------

class FakeClip:
    def __init__(self):
        self.texts = []

    def tokenize(self, text):
        self.texts.append(text)
        return {"text": text}

    def encode_from_tokens_scheduled(self, tokens):
        return [[torch.zeros(1, 77, 2048), {"pooled_output": torch.zeros(1, 1280)}]]


@pytest.mark.parametrize("text, expected", [
    ("a photo", "fcsks fxhks fhyks, a photo"),
    ("fcsks fxhks fhyks, a photo", "fcsks fxhks fhyks, a photo"),
    ("a photo, fcsks fxhks fhyks, outdoors", "fcsks fxhks fhyks, a photo, outdoors"),
    ("", "fcsks fxhks fhyks, "),
])
def test_prompt_gets_the_trigger_words_once_at_its_start(pack, text, expected):
    clip = FakeClip()
    cond, prompt = nodes(pack)["HLS_TriggerPrompt"].execute(clip, text, True)
    assert prompt == expected and clip.texts == [expected]


def test_prompt_without_trigger_words_warns(pack, caplog):
    clip = FakeClip()
    with caplog.at_level("WARNING"):
        _, prompt = nodes(pack)["HLS_TriggerPrompt"].execute(clip, "a photo", False)
    assert prompt == "a photo"
    assert "trigger words" in caplog.text


# -- faces and the ID embedding, with the tiny antelopev2 models ---------------------------------

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


class FakeClipVision:
    """encode_image as ComfyUI's ClipVisionModel gives it: penultimate_hidden_states (N, 257, 1024)."""

    def __init__(self, width=1024):
        self.width, self.seen = width, []

    def encode_image(self, image, crop=True):
        self.seen.append((tuple(image.shape), crop))
        g = torch.Generator().manual_seed(int(image.mul(255).sum().item()) % 1000)
        return {"penultimate_hidden_states": torch.randn(image.shape[0], 257, self.width, generator=g)}


def test_faces_to_identity_with_previews(pack, fake_comfy, face_models):
    photos = torch.cat([_photo(True, 0), _photo(True, 1)])
    faces, preview = nodes(pack)["HLS_LoadFaces"].execute(
        photos, "antelopev2", "CPU", "largest", True, False, "error", images_2=_photo(True, 2))
    assert len(faces) == 3 and faces.sources == ["images[0]", "images[1]", "images_2"]
    assert preview.shape[0] == 3 and preview.shape[-1] == 3 and preview.dtype == torch.float32
    clip = FakeClipVision()
    (identity,) = nodes(pack)["HLS_IDEmbedding"].execute(faces, clip)
    assert identity.num_photos == 3
    assert tuple(identity.clip_tokens.shape) == (3, 257, 1024)
    assert identity.base_clip_tokens is None  # base_lora_features is off by default
    torch.testing.assert_close(identity.arcface.norm(dim=-1), torch.ones(3))
    # crops reach CLIP already at 224 x 224, so ComfyUI's preprocessing only normalises
    assert all(shape == (3, 224, 224, 3) and crop is False for shape, crop in clip.seen)


def test_load_faces_shows_one_preview_per_face_found_on_itself(pack, fake_comfy, face_models):
    out = nodes(pack)["HLS_LoadFaces"].execute(torch.cat([_photo(True, 0), _photo(False, 1)]), "antelopev2", "CPU",
                                               "largest", True, False, "skip photo", images_2=_photo(True, 2))
    faces, preview = out
    assert faces.sources == ["images[0]", "images_2"]
    shown = out.ui.as_dict()["images"]
    assert len(shown) == len(faces) == preview.shape[0] == 2
    temp = Path(fake_comfy.fp.get_temp_directory())
    for entry in shown:
        assert entry["type"] == "temp" and entry["subfolder"] == ""
        assert (temp / entry["filename"]).is_file()
    assert len({entry["filename"] for entry in shown}) == 2


def test_photo_without_face_names_the_photo(pack, fake_comfy, face_models):
    node = nodes(pack)["HLS_LoadFaces"]
    with pytest.raises(pack.hyperlora_core.NoFaceError, match="no face in images_2"):
        node.execute(_photo(True), "antelopev2", "CPU", "largest", True, False, "error", images_2=_photo(False))
    faces, _ = node.execute(_photo(True), "antelopev2", "CPU", "largest", True, False, "skip photo",
                               images_2=_photo(False))
    assert faces.sources == ["images"]
    with pytest.raises(pack.hyperlora_core.NoFaceError, match="no face"):
        node.execute(_photo(False), "antelopev2", "CPU", "largest", True, False, "skip photo")


def test_wrong_clip_vision_model_is_explained(pack, fake_comfy, face_models):
    faces, _ = nodes(pack)["HLS_LoadFaces"].execute(_photo(True), "antelopev2", "CPU", "largest",
                                                         True, False, "error")
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="ViT-L/14"):
        nodes(pack)["HLS_IDEmbedding"].execute(faces, FakeClipVision(width=1280))


def test_missing_face_models_folder_explains_where_they_go(pack, fake_comfy):
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="models/insightface/models/antelopev2"):
        nodes(pack)["HLS_LoadFaces"].execute(_photo(True), "antelopev2", "CPU", "largest", True, False, "error")


def test_clip_input_equals_core_clip_pixel_values(pack):
    pixels = importlib.import_module(f"{PACK}.hyperlora_core.features.clip_pixels")
    identity_mod = importlib.import_module(f"{PACK}.nodes.identity")
    rng = np.random.default_rng(3)
    crops = [rng.integers(0, 256, (300, 300, 3), dtype=np.uint8), rng.integers(0, 256, (180, 240, 3), dtype=np.uint8)]
    ours = identity_mod.clip_input(crops)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])
    # ComfyUI's clip_preprocess on a 224 x 224 input: round to 8 bits, then normalise
    normalised = ((ours * 255).round() / 255 - mean) / std
    torch.testing.assert_close(normalised.permute(0, 3, 1, 2), pixels.clip_pixel_values(crops), atol=1e-5, rtol=0)


def test_load_faces_without_insightface_explains_how_to_install(pack, fake_comfy, monkeypatch):
    monkeypatch.setitem(sys.modules, "insightface", None)  # `import insightface` now raises ImportError
    faces_mod = importlib.import_module(f"{PACK}.nodes.faces")
    monkeypatch.setattr(faces_mod, "_ANALYZERS", {})
    folder = Path(fake_comfy.fp.models_dir) / "insightface" / "models" / "antelopev2"
    folder.mkdir(parents=True)
    with pytest.raises(pack.hyperlora_core.FaceModelError, match="pip install insightface onnxruntime"):
        nodes(pack)["HLS_LoadFaces"].execute(_photo(True), "antelopev2", "CPU", "largest", True, False, "error")


def test_base_lora_is_generated_and_applied_when_the_checkpoint_has_it(pack, fake_comfy, monkeypatch):
    from checkpoints import make_release_folder
    make_release_folder(Path(fake_comfy.fp.models_dir) / "hyperlora" / "with_base", with_base=True,
                        dim=64, depth=1, inner=64, hyper_dim=16, seed=9)
    (handle,) = nodes(pack)["HLS_LoadHyperLoRA"].execute("with_base", "float32", "cpu")
    identity = _identity(pack, 2)
    (id_lora, empty) = nodes(pack)["HLS_GenerateLoRA"].execute(handle, identity)
    assert len(empty) == 0  # the identity has no Base-LoRA crops
    identity.base_clip_tokens = identity.clip_tokens.flip(0)
    (id_lora, base) = nodes(pack)["HLS_GenerateLoRA"].execute(handle, identity)
    assert set(base) == set(id_lora) and base.kind == "base"
    assert base[next(k for k in base if k.endswith("lora_down.weight"))].shape[0] == id_lora[
        next(k for k in id_lora if k.endswith("lora_down.weight"))].shape[0] // 2

    layers = sorted({k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in id_lora})
    lora_mod = types.ModuleType("comfy.lora")
    lora_mod.model_lora_keys_unet = lambda model, key_map: {n: f"diffusion_model.{n}.weight" for n in layers}
    lora_mod.load_lora = lambda lora, to_load, log_missing=True: {v: ("lora", k) for k, v in to_load.items()}
    monkeypatch.setitem(sys.modules, "comfy.lora", lora_mod)

    class Unet(fake_comfy.model_base.SDXL):
        def state_dict(self, *a, **k):
            return {f"diffusion_model.{n}.weight": None for n in layers}
    model = FakePatcher(Unet())
    (patched,) = nodes(pack)["HLS_ApplyLoRA"].execute(model, id_lora, 0.8, base_lora=base, base_strength=0.5)
    assert all([s for s, _ in v] == [0.8, 0.5] for v in patched.patches.values())
    assert len(patched.patches) == len(layers)
