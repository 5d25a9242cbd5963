"""What ComfyUI's editor shows about our nodes beyond /object_info: the Chinese translation that
ComfyUI serves at /i18n from locales/<lang>/ (main.json, nodeDefs.json) and the help page per node
that the node library reads from the web folder (web/docs/<node id>.md). Every node, input and
output of the contract has its entry and page, and nothing else is there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from node_contract import load_contract
from pack import load_pack, node_classes

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = load_contract()
NODE_IDS = sorted(CONTRACT)
ZH = ROOT / "locales" / "zh"


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def zh_nodes() -> dict:
    return _load(ZH / "nodeDefs.json")


@pytest.fixture(scope="module")
def infos() -> dict:
    """What ComfyUI serves for each node (with its English tooltips)."""
    return {node_id: cls.GET_NODE_INFO_V1() for node_id, cls in node_classes(load_pack()).items()}


def _input_names(node_id: str) -> list[str]:
    return [spec[0] for section in ("required", "optional") for spec in CONTRACT[node_id]["inputs"][section]]


def test_translation_covers_every_node_and_no_other(zh_nodes):
    assert sorted(zh_nodes) == NODE_IDS


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_node_has_a_chinese_name_description_inputs_and_outputs(zh_nodes, infos, node_id):
    entry = zh_nodes[node_id]
    assert set(entry) == {"display_name", "description", "inputs", "outputs"}
    assert entry["display_name"].strip() and entry["display_name"] != CONTRACT[node_id]["display_name"]
    assert entry["description"].strip()
    assert sorted(entry["inputs"]) == sorted(_input_names(node_id)), "an input is missing or stray"
    info = infos[node_id]
    for name, text in entry["inputs"].items():
        assert set(text) == {"name", "tooltip"}, (name, text)
        assert text["name"].strip() and text["tooltip"].strip(), name
    spec = {name: s for section in ("required", "optional") for name, s in info["input"].get(section, {}).items()}
    assert all(len(spec[name]) > 1 and spec[name][1].get("tooltip") for name in entry["inputs"]), \
        "an English tooltip is missing where the translation has one"
    # The editor looks outputs up by their index, as strings.
    assert sorted(entry["outputs"], key=int) == [str(i) for i in range(len(CONTRACT[node_id]["outputs"]))]
    for index, text in entry["outputs"].items():
        assert set(text) == {"name", "tooltip"}, (index, text)
        assert text["name"].strip() and text["tooltip"].strip(), index
        assert info["output_tooltips"][int(index)], (index, "has no English tooltip")


def test_main_json_names_our_category():
    main = _load(ZH / "main.json")
    assert set(main) == {"nodeCategories"}
    assert set(main["nodeCategories"]) == {info["category"] for info in CONTRACT.values()}
    assert all(name.strip() for name in main["nodeCategories"].values())


def test_only_the_files_comfyui_merges_are_in_the_locale_folder():
    for lang in (ROOT / "locales").iterdir():
        assert lang.is_dir(), lang
        assert {p.name for p in lang.iterdir()} <= {"main.json", "nodeDefs.json", "commands.json", "settings.json"}


def test_every_node_has_a_help_page_in_the_web_folder_and_no_other():
    docs = ROOT / load_pack().WEB_DIRECTORY / "docs"
    assert sorted(p.stem for p in docs.glob("*.md")) == NODE_IDS
    assert {p.suffix for p in docs.iterdir()} == {".md"}


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_help_page_is_short_titled_and_names_every_input_and_output(node_id):
    page = (ROOT / "web" / "docs" / f"{node_id}.md").read_text(encoding="utf-8")
    lines = page.splitlines()
    assert lines[0] == f"# {CONTRACT[node_id]['display_name']}"
    assert 15 <= len(lines) <= 50, len(lines)
    assert "## Inputs" in page and "## Outputs" in page and "## Tip" in page
    # Numbered inputs may be named as a range ("images_2 … images_4"): their stem is enough.
    for name in _input_names(node_id) + [out[1] for out in CONTRACT[node_id]["outputs"]]:
        assert f"**{name}**" in page or f"**{name.rstrip('0123456789')}" in page, name
    assert "http" not in page, "links rot: name the place instead"
