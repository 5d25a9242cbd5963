"""The nodes' contract with saved workflows: node ids, input names and order, which inputs are
widgets and their settings, outputs. `node_contract.json` holds it as the V1 nodes declared it
(before the move to the V3 schema); the CI tier checks the nodes through the comfy_api stand-in
against it, and the real-ComfyUI tier checks ComfyUI's own /object_info against it, at each
ComfyUI version it runs.

`python tests/node_contract.py object_info.json` prints the contract of an /object_info dump.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CONTRACT_FILE = Path(__file__).with_name("node_contract.json")
# Widget settings that decide how a saved value is read back (tooltips and combo lists do not:
# a combo's value is saved as its text, and its list depends on the files on disk).
KEPT_OPTIONS = ("default", "min", "max", "step", "round", "multiline", "dynamicPrompts", "forceInput",
                "control_after_generate", "lazy")
# Flags that V3 writes out as false where V1 left them out; false and absent mean the same.
FLAGS = ("multiline", "dynamicPrompts", "forceInput", "control_after_generate", "lazy")


def canonical_input(spec) -> list:
    kind = spec[0]
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(kind, (list, tuple)):
        kind = "COMBO"  # V1 declares a combo by its list of choices, V3 as "COMBO" with "options"
    return [str(kind), {k: opts[k] for k in KEPT_OPTIONS
                        if opts.get(k) is not None and not (k in FLAGS and opts[k] is False)}]


def canonical(info: dict) -> dict:
    """The contract of one node's /object_info entry."""
    inputs = {}
    for section in ("required", "optional"):
        names = info.get("input_order", {}).get(section, list(info["input"].get(section, {})))
        inputs[section] = [[name, *canonical_input(info["input"][section][name])] for name in names]
    return {
        "display_name": info["display_name"],
        "category": info["category"],
        "output_node": bool(info["output_node"]),
        "inputs": inputs,
        "outputs": [[str(t), n, bool(lst)] for t, n, lst in zip(info["output"], info["output_name"],
                                                                info["output_is_list"])],
    }


def contract_of(object_info: dict, node_ids) -> dict:
    return {node_id: canonical(object_info[node_id]) for node_id in sorted(node_ids)}


def load_contract() -> dict:
    return json.loads(CONTRACT_FILE.read_text(encoding="utf-8"))


if __name__ == "__main__":
    dump = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    print(json.dumps(contract_of(dump, [k for k in dump if k.startswith("HLS_")]), indent=1))
