"""CI tier of workflows/: every file is a well-formed UI-format workflow that uses only ComfyUI core
nodes and ours, with links of matching types and widget values that our nodes accept.

The widget layout of the core nodes used is written down below (from ComfyUI 0.3.64's nodes.py);
the real-ComfyUI tier checks the same files against a running server's /object_info.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pack import load_pack, node_classes

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
# The same graphs as ComfyUI's editor saved them with the V1 nodes (before the V3 schema): users'
# files of that time, which must stay valid for the nodes as they are now.
V1_SAVED = sorted((ROOT / "tests" / "workflows_v1").glob("*.json"))
# Workflows made after the move to the V3 schema (with nodes that never had a V1 version): no V1-saved copy.
AFTER_V3 = {"HyperLoRA - generate N, keep the best", "HyperLoRA - first frame for a video",
            "HyperLoRA - refine the LoRA on your photos"}
GRAPHS = WORKFLOWS + V1_SAVED


def graph_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"

# Core node types the workflows may use: their widgets in order (a seed has an extra
# "control_after_generate" value, LoadImage an extra upload-button value) and their socket types.
CORE = {
    "CheckpointLoaderSimple": {"widgets": ["ckpt_name"], "inputs": {}, "outputs": ["MODEL", "CLIP", "VAE"]},
    "CLIPSetLastLayer": {"widgets": ["stop_at_clip_layer"], "inputs": {"clip": "CLIP"}, "outputs": ["CLIP"]},
    "CLIPTextEncode": {"widgets": ["text"], "inputs": {"clip": "CLIP"}, "outputs": ["CONDITIONING"]},
    "CLIPVisionLoader": {"widgets": ["clip_name"], "inputs": {}, "outputs": ["CLIP_VISION"]},
    "EmptyLatentImage": {"widgets": ["width", "height", "batch_size"], "inputs": {}, "outputs": ["LATENT"]},
    "KSampler": {"widgets": ["seed", "control_after_generate", "steps", "cfg", "sampler_name", "scheduler", "denoise"],
                 "inputs": {"model": "MODEL", "positive": "CONDITIONING", "negative": "CONDITIONING",
                            "latent_image": "LATENT"}, "outputs": ["LATENT"]},
    "VAEDecode": {"widgets": [], "inputs": {"samples": "LATENT", "vae": "VAE"}, "outputs": ["IMAGE"]},
    "VAEEncode": {"widgets": [], "inputs": {"pixels": "IMAGE", "vae": "VAE"}, "outputs": ["LATENT"]},
    "SetLatentNoiseMask": {"widgets": [], "inputs": {"samples": "LATENT", "mask": "MASK"}, "outputs": ["LATENT"]},
    "SaveImage": {"widgets": ["filename_prefix"], "inputs": {"images": "IMAGE"}, "outputs": []},
    "PreviewImage": {"widgets": [], "inputs": {"images": "IMAGE"}, "outputs": []},
    "LoadImage": {"widgets": ["image", "upload"], "inputs": {}, "outputs": ["IMAGE", "MASK"]},
    "LoraLoaderModelOnly": {"widgets": ["lora_name", "strength_model"], "inputs": {"model": "MODEL"}, "outputs": ["MODEL"]},
    "Note": {"widgets": ["text"], "inputs": {}, "outputs": []},
    # comfy_extras/nodes_preview_any.py: shows any value as text on the node; its input takes any type.
    "PreviewAny": {"widgets": [], "inputs": {"source": "*"}, "outputs": []},
    # Wan 2.2 image to video (nodes.py; comfy_extras/nodes_model_advanced.py, nodes_wan.py, nodes_video.py; the same
    # at 0.3.48): the "first frame for a video" workflow, checked here and against /object_info, never run.
    "UNETLoader": {"widgets": ["unet_name", "weight_dtype"], "inputs": {}, "outputs": ["MODEL"]},
    "CLIPLoader": {"widgets": ["clip_name", "type", "device"], "inputs": {}, "outputs": ["CLIP"]},
    "VAELoader": {"widgets": ["vae_name"], "inputs": {}, "outputs": ["VAE"]},
    "ModelSamplingSD3": {"widgets": ["shift"], "inputs": {"model": "MODEL"}, "outputs": ["MODEL"]},
    "Wan22ImageToVideoLatent": {"widgets": ["width", "height", "length", "batch_size"],
                                "inputs": {"vae": "VAE", "start_image": "IMAGE"}, "outputs": ["LATENT"]},
    "CreateVideo": {"widgets": ["fps"], "inputs": {"images": "IMAGE", "audio": "AUDIO"}, "outputs": ["VIDEO"]},
    "SaveVideo": {"widgets": ["filename_prefix", "format", "codec"], "inputs": {"video": "VIDEO"}, "outputs": []},
    # comfy_extras/nodes_hooks.py (the same at 0.3.48)
    "PairConditioningSetProperties": {
        "widgets": ["strength", "set_cond_area"],
        "inputs": {"positive_NEW": "CONDITIONING", "negative_NEW": "CONDITIONING", "mask": "MASK", "hooks": "HOOKS",
                   "timesteps": "TIMESTEPS_RANGE"},
        "outputs": ["CONDITIONING", "CONDITIONING"]},
}
WIDGET_KINDS = {"INT", "FLOAT", "STRING", "BOOLEAN"}
CONTROL_CHOICES = ["fixed", "increment", "decrement", "randomize"]
# Combos whose choices come from the user's model folders: any file name is fine in a shared workflow.
FOLDER_COMBOS = {("HLS_LoadHyperLoRA", "hyperlora_name"), ("HLS_LoadFaces", "face_model"),
                 ("HLS_LoadIdentity", "identity_name"), ("HLS_Likeness", "face_model"),
                 ("HLS_FaceCrop", "face_model")}


def our_layout(cls) -> dict:
    """Widgets in order and socket inputs of one of our nodes, from its INPUT_TYPES."""
    spec = cls.INPUT_TYPES()
    widgets, sockets, optional = [], {}, 0
    for section in ("required", "optional"):
        for name, value in spec.get(section, {}).items():
            kind = value[0]
            forced = len(value) > 1 and value[1].get("forceInput")  # a socket only (no widget, no saved value)
            if (kind == "COMBO" or kind in WIDGET_KINDS) and not forced:
                widgets.append((name, value))
                optional += section == "optional"
                if len(value) > 1 and value[1].get("control_after_generate"):  # the editor's extra widget
                    widgets.append(("control_after_generate", ("COMBO", {"options": CONTROL_CHOICES})))
            else:
                sockets[name] = kind
    return {"widgets": widgets, "inputs": sockets, "outputs": list(cls.RETURN_TYPES), "optional_widgets": optional}


def check_widget(node_type: str, name: str, spec: tuple, value) -> None:
    kind = spec[0]
    opts = spec[1] if len(spec) > 1 else {}
    where = f"{node_type}.{name} = {value!r}"
    if kind == "COMBO":
        if (node_type, name) not in FOLDER_COMBOS:
            assert value in opts["options"], f"{where} is not one of {opts['options']}"
        else:
            assert isinstance(value, str) and value, where
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), where
    elif kind == "STRING":
        assert isinstance(value, str), where
    else:
        assert isinstance(value, (int, float)) and not isinstance(value, bool), where
        assert opts.get("min", float("-inf")) <= value <= opts.get("max", float("inf")), where


@pytest.fixture(scope="module")
def layouts():
    pack = load_pack()
    return {k: our_layout(v) for k, v in node_classes(pack).items()}


def test_there_are_the_promised_workflows():
    names = {p.stem for p in WORKFLOWS}
    assert names == {
        "HyperLoRA - one photo to a portrait", "HyperLoRA - several photos of one person",
        "HyperLoRA - save the LoRA and the identity", "HyperLoRA - blend two identities",
        "HyperLoRA - strength sweep with likeness scores", "HyperLoRA - face swap into a photo",
        "HyperLoRA - face detailer", "HyperLoRA - two people side by side",
        "HyperLoRA - identity after the composition", "HyperLoRA - generate N, keep the best",
        "HyperLoRA - first frame for a video",
        "HyperLoRA - refine the LoRA on your photos",
    }


@pytest.mark.parametrize("path", GRAPHS, ids=graph_id)
def test_workflow_is_well_formed_ui_format(path):
    data = json.loads(path.read_text())
    assert data["version"] == 0.4
    for key in ("last_node_id", "last_link_id", "nodes", "links"):
        assert key in data
    ids = [n["id"] for n in data["nodes"]]
    assert len(ids) == len(set(ids)) and max(ids) <= data["last_node_id"]
    assert max(link[0] for link in data["links"]) <= data["last_link_id"]
    for node in data["nodes"]:
        for key in ("id", "type", "pos", "size", "mode", "properties"):
            assert key in node, (node.get("type"), key)


@pytest.mark.parametrize("path", GRAPHS, ids=graph_id)
def test_workflow_uses_only_core_nodes_and_ours(path, layouts):
    data = json.loads(path.read_text())
    types_ = {n["type"] for n in data["nodes"]}
    unknown = types_ - set(CORE) - set(layouts)
    assert not unknown, f"{path.name} uses node types that are neither core nor ours: {unknown}"
    assert types_ & set(layouts), "a workflow of this pack uses its nodes"


@pytest.mark.parametrize("path", GRAPHS, ids=graph_id)
def test_links_connect_matching_types(path, layouts):
    data = json.loads(path.read_text())
    by_id = {n["id"]: n for n in data["nodes"]}
    for link_id, src, src_slot, dst, dst_slot, type_ in data["links"]:
        s, d = by_id[src], by_id[dst]
        out_types = (CORE.get(s["type"]) or layouts[s["type"]])["outputs"]
        assert out_types[src_slot] == type_, (path.name, link_id)
        assert s["outputs"][src_slot]["type"] == type_ and link_id in s["outputs"][src_slot]["links"]
        target = d["inputs"][dst_slot]
        assert target["link"] == link_id and target["type"] in (type_, "*")
        if "widget" in target:  # a widget of ours fed by a link (e.g. a swept strength): same kind
            kinds = {name: spec[0] for name, spec in layouts[d["type"]]["widgets"]}
            assert kinds[target["widget"]["name"]] == type_, (path.name, d["type"], target["name"])
            continue
        in_types = (CORE.get(d["type"]) or layouts[d["type"]])["inputs"]
        assert in_types[target["name"]] in (type_, "*"), (path.name, d["type"], target["name"])


@pytest.mark.parametrize("path", GRAPHS, ids=graph_id)
def test_required_inputs_of_our_nodes_are_connected(path, layouts):
    data = json.loads(path.read_text())
    pack = load_pack()
    for node in data["nodes"]:
        if node["type"] not in layouts:
            continue
        required = node_classes(pack)[node["type"]].INPUT_TYPES()["required"]
        connected = {i["name"] for i in node.get("inputs", []) if i["link"] is not None}
        for name in layouts[node["type"]]["inputs"]:
            if name in required:
                assert name in connected, f"{path.name}: {node['type']}.{name} is not connected"


@pytest.mark.parametrize("path", GRAPHS, ids=graph_id)
def test_widget_values_are_valid(path, layouts):
    data = json.loads(path.read_text())
    for node in data["nodes"]:
        values = node.get("widgets_values", [])
        if node["type"] in layouts:
            widgets = layouts[node["type"]]["widgets"]
            # A workflow saved before an optional widget was added lacks its value: the editor gives it the default.
            least = len(widgets) - layouts[node["type"]]["optional_widgets"]
            assert least <= len(values) <= len(widgets), f"{path.name}: {node['type']} has {values}, widgets {widgets}"
            for (name, spec), value in zip(widgets, values):
                check_widget(node["type"], name, spec, value)
        else:
            assert len(values) == len(CORE[node["type"]]["widgets"]), (path.name, node["type"], values)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_notes_list_the_models_it_needs(path):
    data = json.loads(path.read_text())
    notes = " ".join(n["widgets_values"][0] for n in data["nodes"] if n["type"] == "Note")
    for needed in ("models/hyperlora", "clip_vision", "antelopev2", "insightface"):
        assert needed in notes, f"{path.name}: the note does not mention {needed}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_positive_prompt_gets_the_trigger_words(path):
    data = json.loads(path.read_text())
    types_ = [n["type"] for n in data["nodes"]]
    if "KSampler" in types_:
        assert "HLS_TriggerPrompt" in types_
        assert "HLS_ApplyLoRA" in types_ or "HLS_LoRAHooks" in types_
        prompt = next(n for n in data["nodes"] if n["type"] == "HLS_TriggerPrompt")
        assert prompt["widgets_values"][1] is True


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_names_the_pack_and_links_its_models(path):
    """Our nodes carry the registry id (a workflow opened without the pack names it under missing
    nodes), loaders carry download links, and CLIP has the name README recommends. Stamping the file
    again (scripts/stamp_workflows.py) changes nothing."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from stamp_workflows import CLIP_VISION_NAME, pack_id_and_version, render, stamp

    text = path.read_text(encoding="utf-8")
    assert render(stamp(json.loads(text))) == text, f"run scripts/stamp_workflows.py: {path.name} is not stamped"
    pack, version = pack_id_and_version()
    data = json.loads(text)
    for node in data["nodes"]:
        props = node["properties"]
        if node["type"].startswith("HLS_"):
            assert (props["cnr_id"], props["ver"]) == (pack, version)
        if node["type"] in ("CLIPVisionLoader", "HLS_LoadHyperLoRA", "HLS_LoadFaces"):
            assert props["models"], node["type"]
            for link in props["models"]:
                assert link["url"].startswith("https://huggingface.co/") and link["directory"], link
        if node["type"] == "CLIPVisionLoader":
            assert node["widgets_values"] == [CLIP_VISION_NAME]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_has_a_thumbnail_for_the_template_browser(path):
    """The editor's template browser shows `<name>.jpg` beside `<name>.json` (a grey box without it) and
    the file name as the title (scripts/workflow_thumbnails.py makes the pictures from the editor tier's
    screenshots)."""
    from PIL import Image

    thumb = path.with_suffix(".jpg")
    assert thumb.is_file(), f"{thumb.name} is missing: run scripts/workflow_thumbnails.py"
    with Image.open(thumb) as image:
        assert (image.format, image.size) == ("JPEG", (768, 576))
        low, high = image.convert("L").getextrema()
        assert high - low > 60, "the thumbnail is blank"
    assert path.stem.startswith("HyperLoRA - "), "the file name is the title the browser shows"


def test_v1_saved_graphs_are_the_shipped_graphs_as_the_editor_saved_them():
    """tests/workflows_v1 holds one file per shipped workflow, with its nodes and links: what a user
    who opened and saved it with the V1 nodes has (the editor writes every widget's value out, e.g.
    the ID Embedding's optional base_lora_features, which the shipped files leave to its default)."""
    before_v3 = [p for p in WORKFLOWS if p.stem not in AFTER_V3]
    assert [p.name for p in V1_SAVED] == [p.name for p in before_v3]
    for saved_path, shipped_path in zip(V1_SAVED, before_v3):
        saved, shipped = json.loads(saved_path.read_text()), json.loads(shipped_path.read_text())
        assert sorted((n["id"], n["type"]) for n in saved["nodes"]) == sorted((n["id"], n["type"]) for n in shipped["nodes"])
        # (the editor may renumber the target slot of a link into a widget input: it lists widget inputs as slots)
        ends = lambda data: sorted((l[0], l[1], l[2], l[3], l[5]) for l in data["links"])  # noqa: E731, E741
        assert ends(saved) == ends(shipped)
