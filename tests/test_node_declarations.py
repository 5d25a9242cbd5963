"""CI tier of the nodes' declarations: the pack imports without ComfyUI (and without comfy_api),
its entry point gives every node, and each node's V3 schema, through the comfy_api stand-in, is
valid as ComfyUI checks it and keeps the contract its V1 version made with saved workflows
(tests/node_contract.json: ids, input names and order, widget settings, outputs). The real-ComfyUI
tier checks ComfyUI's own /object_info against the same file (tests/comfyui/test_v3_schema.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from node_contract import canonical, load_contract
from pack import load_pack, node_classes

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / "tests" / "standin"
CONTRACT = load_contract()
NODE_IDS = sorted(CONTRACT)  # every node id a saved workflow may name
REFERENCE_IDS = {
    "HyperLoRAConfig", "HyperLoRALoader", "HyperLoRAFaceAttr", "HyperLoRAIDCond", "HyperLoRABaseCond",
    "HyperLoRAGenerateIDLoRA", "HyperLoRAGenerateBaseLoRA", "HyperLoRAApplyLoRA", "HyperLoRASaveLoRA",
    "HyperLoRAUniLoader", "HyperLoRAUniGenerateIDLoRA",
}
CORE_TYPES = {"IMAGE", "MODEL", "CLIP", "CLIP_VISION", "CONDITIONING", "STRING", "LORA_MODEL", "INT", "FLOAT",
              "BOOLEAN", "HOOKS", "MASK", "LATENT", "VAE"}


@pytest.fixture(scope="module")
def pack():
    return load_pack()


def nodes(pack):
    return node_classes(pack)


def _fresh_interpreter(body: str, blocked: tuple[str, ...], standin: bool) -> subprocess.CompletedProcess:
    """Run `body` in a new Python where the `blocked` top-level modules cannot be imported, after
    importing the pack as ComfyUI does (as `m`); with the comfy_api stand-in on sys.path or not."""
    code = textwrap.dedent(f"""
        import asyncio, importlib.abc, importlib.util, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in {blocked!r}:
                    raise ImportError('blocked ' + name)
        sys.meta_path.insert(0, Block())
        sys.path = [p for p in sys.path if p not in ('', {str(ROOT)!r}, {str(STANDIN)!r})]
        if {standin!r}:
            sys.path.insert(0, {str(STANDIN)!r})
        spec = importlib.util.spec_from_file_location('pack', {str(ROOT / '__init__.py')!r},
                                                      submodule_search_locations=[{str(ROOT)!r}])
        m = importlib.util.module_from_spec(spec); sys.modules['pack'] = m; spec.loader.exec_module(m)
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


NO_COMFYUI = ("comfy", "folder_paths", "insightface", "onnxruntime", "cv2")


def test_pack_imports_without_comfyui_or_insightface_and_its_entry_point_gives_every_node():
    """A fresh interpreter where comfy, folder_paths and insightface cannot be imported (comfy_api is
    the stand-in): the entry point's extension lists every node, and each builds its schema."""
    out = _fresh_interpreter("""
        extension = asyncio.run(m.comfy_entrypoint())
        node_list = asyncio.run(extension.get_node_list())
        for cls in node_list:
            cls.INPUT_TYPES()
        print(' '.join(sorted(cls.GET_SCHEMA().node_id for cls in node_list)))
    """, NO_COMFYUI, standin=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == NODE_IDS  # every node, none lost, none twice


def test_pack_imports_without_comfy_api_at_all():
    """Without comfy_api (no ComfyUI, or one older than the V3 API) importing the pack still works;
    only asking it for its nodes fails, saying which ComfyUI is needed."""
    out = _fresh_interpreter("""
        assert callable(m.comfy_entrypoint)
        print(sorted(k for k in sys.modules if k.split('.')[0] in ('comfy_api', 'comfy', 'folder_paths')))
        try:
            asyncio.run(m.comfy_entrypoint())
        except ImportError as exc:
            print(exc)
    """, NO_COMFYUI + ("comfy_api",), standin=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "[]"
    assert "ComfyUI 0.3.48 or newer" in lines[1] and "comfy_api.v0_0_2" in lines[1]


def test_import_does_no_work():
    """Importing the pack loads no face library, no ComfyUI module (not even the V3 API, which only
    the entry point reaches) and no model."""
    out = _fresh_interpreter("""
        print(sorted(k for k in ('insightface', 'onnxruntime', 'cv2', 'comfy', 'comfy_api') if k in sys.modules))
    """, (), standin=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_node_ids_are_prefixed_and_do_not_clash_with_the_reference(pack):
    classes = nodes(pack)
    ids = set(classes)
    assert ids and not ids & REFERENCE_IDS
    assert all(i.startswith("HLS_") for i in ids)
    names = [cls.GET_SCHEMA().display_name for cls in classes.values()]
    assert all(names) and len(set(names)) == len(names)  # a menu entry of its own for each node


def _inputs(cls):
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional", "hidden"}
    for section in ("required", "optional"):
        for name, value in spec.get(section, {}).items():
            yield section, name, value


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_node_declaration_is_valid(pack, node_id):
    """The V1 view ComfyUI builds from the V3 schema (what /object_info serves)."""
    cls = nodes(pack)[node_id]
    assert isinstance(cls.RETURN_TYPES, list)
    assert callable(getattr(cls, cls.FUNCTION))
    assert cls.CATEGORY.startswith("HyperLoRA Studio")
    assert len(cls.DESCRIPTION) > 80, "the description says what the node does and where its models go"
    assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES) and all(cls.OUTPUT_TOOLTIPS)
    assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES)
    for type_ in cls.RETURN_TYPES:
        assert type_ in CORE_TYPES or type_.startswith("HYPERLORA_"), type_
    for _section, name, value in _inputs(cls):
        assert isinstance(value, tuple) and 1 <= len(value) <= 2, (name, value)
        kind = value[0]
        opts = value[1] if len(value) == 2 else {}
        assert opts.get("tooltip"), f"{node_id}.{name} has no tooltip"
        if kind == "COMBO":
            assert isinstance(opts["options"], list), (name, opts)
            if opts.get("default") is not None:
                assert opts["default"] in opts["options"], (name, opts)
        else:
            assert kind in CORE_TYPES or kind.startswith("HYPERLORA_"), kind
        if kind in ("INT", "FLOAT") and not opts.get("forceInput"):  # a number widget (a forced socket has none)
            assert opts["min"] <= opts["default"] <= opts["max"]
        if kind == "BOOLEAN":
            assert isinstance(opts["default"], bool)


def test_model_loaders_name_where_files_go_and_where_to_download(pack):
    n = nodes(pack)
    assert "models/hyperlora" in n["HLS_LoadHyperLoRA"].DESCRIPTION
    assert "huggingface.co/bytedance-research/HyperLoRA" in n["HLS_LoadHyperLoRA"].DESCRIPTION
    assert "models/insightface/models/antelopev2" in n["HLS_LoadFaces"].DESCRIPTION
    assert "clip-vit-large-patch14" in n["HLS_IDEmbedding"].DESCRIPTION


def test_apply_strength_can_be_negative(pack):
    spec = nodes(pack)["HLS_ApplyLoRA"].INPUT_TYPES()
    assert spec["required"]["strength"][1]["min"] < 0
    assert spec["optional"]["base_strength"][1]["min"] < 0


def test_lora_outputs_are_the_core_lora_model_type(pack):
    assert nodes(pack)["HLS_GenerateLoRA"].RETURN_TYPES == ["LORA_MODEL", "LORA_MODEL"]
    assert nodes(pack)["HLS_ApplyLoRA"].INPUT_TYPES()["required"]["lora"][0] == "LORA_MODEL"


def test_every_node_of_the_contract_is_there_and_no_other(pack):
    assert sorted(nodes(pack)) == NODE_IDS


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_node_keeps_its_ids_inputs_widget_order_and_outputs(pack, node_id):
    assert canonical(nodes(pack)[node_id].GET_NODE_INFO_V1()) == CONTRACT[node_id]
