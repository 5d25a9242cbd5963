"""Likeness in a real ComfyUI: the node's numbers, text and on-node preview, and the strength sweep's
list output mapped over Apply, the sampler and the decoder and collected by the Likeness node."""

from __future__ import annotations

import json

from hls_comfy import ROOT, combo_options, execution_error, faces_and_identity, to_api

SWEEP = ROOT / "workflows" / "HyperLoRA - strength sweep with likeness scores.json"


def test_likeness_nodes_are_listed(object_info):
    likeness = object_info["HLS_Likeness"]
    assert likeness["output_node"] is True and likeness["output_is_list"] == [True, False, False, False]
    assert combo_options(likeness["input"]["required"]["face_model"]) == ["antelopev2"]
    assert object_info["HLS_StrengthSweep"]["output_is_list"] == [True, True]


def test_likeness_of_the_persons_photo_is_one_another_lower_and_no_face_missing(server):
    prompt = faces_and_identity()
    prompt.update({
        "5": {"class_type": "LoadImage", "inputs": {"image": "person_3.jpg"}},
        "6": {"class_type": "LoadImage", "inputs": {"image": "no_face.png"}},
        "7": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["5", 0]}},
        "8": {"class_type": "ImageBatch", "inputs": {"image1": ["7", 0], "image2": ["6", 0]}},
        "9": {"class_type": "HLS_Likeness", "inputs": {
            "images": ["8", 0], "face_model": "antelopev2", "provider": "CPU", "face_choice": "largest",
            "columns": 0, "identity": ["4", 0], "labels": "me\nsomeone\nwall"}},
        "10": {"class_type": "PreviewAny", "inputs": {"source": ["9", 1]}},
    })
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    shown = entry["outputs"]["9"]
    lines = shown["text"][0].splitlines()
    assert lines[0] == "me: 1.000"
    assert lines[1].startswith("someone: ") and float(lines[1].split()[-1]) < 1.0
    assert lines[2] == "wall: no face"
    assert lines[3].startswith("mean of 2 picture(s) with a face")
    # The node shows the grid (ui.PreviewImage) and the text (the pack's editor extension); core 'Preview Any' shows it too.
    image, chart = shown["images"]  # the grid, then the chart
    assert image["type"] == "temp" and (server.base / "temp" / image["subfolder"] / image["filename"]).is_file()
    assert entry["outputs"]["10"]["text"] == shown["text"]


def test_likeness_error_names_the_labels_input(server):
    prompt = faces_and_identity()
    prompt["9"] = {"class_type": "HLS_Likeness", "inputs": {
        "images": ["1", 0], "face_model": "antelopev2", "provider": "CPU", "face_choice": "largest",
        "columns": 0, "identity": ["4", 0], "labels": "one\ntwo"}}
    entry = server.run(prompt)
    error = execution_error(entry)
    assert error is not None and error["node_type"] == "HLS_Likeness"
    assert "'labels' input: 2 label(s) for 1 picture(s)" in error["exception_message"]


def test_sweep_runs_the_sampler_once_per_strength_and_labels_each_picture(server, object_info):
    workflow = json.loads(SWEEP.read_text())
    prompt = to_api(workflow, object_info)
    likeness = next(k for k, v in prompt.items() if v["class_type"] == "HLS_Likeness")
    apply = next(k for k, v in prompt.items() if v["class_type"] == "HLS_ApplyLoRA")
    assert prompt[apply]["inputs"]["strength"][0] == next(k for k, v in prompt.items()
                                                          if v["class_type"] == "HLS_StrengthSweep")
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    lines = entry["outputs"][likeness]["text"][0].splitlines()
    labels = [f"strength {v:.2f}" for v in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)]
    assert [line.split(":")[0] for line in lines[:6]] == labels  # six pictures, in sweep order
    for line in lines[:6]:
        value = line.split(": ")[1]
        assert value == "no face" or -1.0 <= float(value) <= 1.0
    grid = [i for out in entry["outputs"].values() for i in out.get("images", []) if i["type"] == "output"]
    assert grid and grid[0]["filename"].startswith("hyperlora_likeness_sweep")
