"""Every node, through the comfy_api stand-in, keeps the contract its V1 version made with saved
workflows (tests/node_contract.json: ids, input names and order, widget settings, outputs). The
real-ComfyUI tier checks ComfyUI's own /object_info against the same file."""

from __future__ import annotations

import pytest
from node_contract import canonical, load_contract
from pack import load_pack, node_classes

CONTRACT = load_contract()


@pytest.fixture(scope="module")
def classes():
    return node_classes(load_pack())


def test_every_node_of_the_contract_is_there_and_no_other(classes):
    assert sorted(classes) == sorted(CONTRACT)


@pytest.mark.parametrize("node_id", sorted(CONTRACT))
def test_node_keeps_its_ids_inputs_widget_order_and_outputs(classes, node_id):
    assert canonical(classes[node_id].GET_NODE_INFO_V1()) == CONTRACT[node_id]


@pytest.mark.parametrize("node_id", sorted(CONTRACT))
def test_schema_is_valid_as_comfyui_checks_it(classes, node_id):
    """GET_SCHEMA runs the real API's checks (ids unique across inputs and outputs); the V1 view
    ComfyUI builds from the schema has one name and one tooltip per output."""
    cls = classes[node_id]
    schema = cls.GET_SCHEMA()
    assert schema.node_id == node_id
    assert len(schema.description) > 80, "the description says what the node does and where its models go"
    assert all(o.tooltip for o in schema.outputs)
    assert all(i.tooltip for i in schema.inputs), [i.id for i in schema.inputs if not i.tooltip]
    assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES) == len(cls.OUTPUT_TOOLTIPS)
