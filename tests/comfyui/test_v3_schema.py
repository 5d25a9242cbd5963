"""The nodes on ComfyUI's V3 schema, in the real server: loaded through `comfy_entrypoint`, every
node's /object_info equal to the V1 contract (tests/node_contract.json, the file the CI tier checks
the comfy_api stand-in against), and what V3 lets a node show: the saved file name on the Save
nodes, the face preview on Load Faces, the summary on Generate HyperLoRA.

The workflows saved with the V1 nodes (tests/workflows_v1) run in test_server.py and open in the
editor in test_editor.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from hls_comfy import PACK_DIR_NAME, ROOT, execution_error, save_chain
from node_contract import contract_of, load_contract

CONTRACT = load_contract()


def test_object_info_keeps_the_v1_contract_of_every_node(object_info):
    ours = sorted(k for k in object_info if k.startswith("HLS_"))
    assert ours == sorted(CONTRACT)
    assert contract_of(object_info, ours) == CONTRACT


def test_pack_is_loaded_through_comfy_entrypoint_with_its_editor_extension(server):
    log = server.log
    ours = [line for line in log.splitlines() if PACK_DIR_NAME in line]
    assert not [line for line in ours if "Skip" in line or "comfy_entrypoint" in line], ours
    assert f"/extensions/{PACK_DIR_NAME}/shown_text.js" in server.get("/extensions")


def test_nodes_report_the_saved_files_the_faces_preview_and_a_summary(server):
    entry = server.run(save_chain())
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    outputs = entry["outputs"]
    lora_name, identity_name = outputs["7"]["text"][0], outputs["8"]["text"][0]
    assert lora_name.startswith("loras/v3_ui_") and (server.base / "output" / lora_name).is_file()
    assert identity_name.startswith("v3_ui/person_") and (server.base / "output" / identity_name).is_file()
    previews = outputs["2"]["images"]
    assert len(previews) == 1 and previews[0]["type"] == "temp"
    assert list(server.base.rglob(previews[0]["filename"])), "the preview file is in ComfyUI's temp folder"
    summary = outputs["6"]["text"][0]
    assert "1 photo" in summary and f"{4 * 22} layers" in summary, summary


STANDIN_INFO = """
import json, sys
sys.path[:0] = [{tests!r}, {standin!r}]
from pack import load_pack, node_classes
print(json.dumps({{k: v.GET_NODE_INFO_V1() for k, v in node_classes(load_pack()).items()}}))
"""
# Combos whose choices are the files on disk: the server lists its tiny models, the stand-in (no
# ComfyUI) the defaults.
FOLDER_COMBOS = {"hyperlora_name", "face_model", "identity_name"}


def _without_folder_choices(info: dict) -> dict:
    info = json.loads(json.dumps(info))  # tuples -> lists, as the server sends them
    info.pop("python_module", None)
    for section in info["input"].values():
        for name, spec in section.items():
            if name in FOLDER_COMBOS and len(spec) > 1:
                spec[1].pop("options", None)
    return info


def test_comfy_api_stand_in_gives_what_the_real_api_gives(object_info):
    """The CI tier's comfy_api stand-in (tests/standin) declares every node exactly as the real API
    does: the whole /object_info entry (tooltips, defaults, hidden inputs, output lists...), apart from
    the module path and the choices read from the model folders."""
    code = STANDIN_INFO.format(tests=str(ROOT / "tests"), standin=str(ROOT / "tests" / "standin"))
    env = {k: v for k, v in os.environ.items() if k not in ("COMFYUI_DIR", "PYTHONPATH")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    standin = json.loads(out.stdout.splitlines()[-1])
    assert sorted(standin) == sorted(CONTRACT)
    for node_id, info in standin.items():
        real = _without_folder_choices(object_info[node_id])
        mine = _without_folder_choices(info)
        assert set(mine) <= set(real), (node_id, set(mine) - set(real))
        assert mine == {k: real[k] for k in mine}, node_id
