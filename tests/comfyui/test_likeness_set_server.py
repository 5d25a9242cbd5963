"""The photo check, likeness over a set and Keep the Best in a real ComfyUI: the new inputs and outputs
in /object_info, the check table and the chart shown on the nodes, the "generate N, keep the best"
workflow through POST /prompt, and the "first frame for a video" workflow's node types and links
against /object_info (its Wan 2.2 models are not here: POST /prompt may refuse only their file names)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

from hls_comfy import ROOT, execution_error, faces_and_identity, to_api

KEEP_BEST = ROOT / "workflows" / "HyperLoRA - generate N, keep the best.json"
VIDEO = ROOT / "workflows" / "HyperLoRA - first frame for a video.json"
WAN_FILES = {"UNETLoader", "CLIPLoader", "VAELoader"}


def test_new_inputs_outputs_and_node_are_listed(object_info):
    faces = object_info["HLS_LoadFaces"]
    assert faces["input_order"]["optional"][-1] == "photo_check"
    assert faces["input"]["optional"]["photo_check"][1]["default"] == "keep"
    likeness = object_info["HLS_Likeness"]
    assert likeness["output_name"] == ["similarity", "summary", "grid", "chart"]  # chart appended: old slots stay
    assert likeness["output_is_list"] == [True, False, False, False]
    assert likeness["input_order"]["optional"][-1] == "threshold"
    keep = object_info["HLS_KeepBest"]
    assert keep["display_name"] == "HyperLoRA Keep the Best" and keep["output_is_list"] == [False, True, False]


def test_load_faces_shows_the_check_table_and_drop_reaches_the_identity(server):
    prompt = faces_and_identity()
    prompt["2"]["inputs"]["photo_check"] = "drop"
    prompt["5"] = {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}}  # an output, so the nodes run
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    shown = entry["outputs"]["2"]
    assert shown["images"] and shown["text"]
    assert shown["text"][0].splitlines()[0].split()[:3] == ["photo", "face", "px"]


def _with_face_pictures(prompt: dict) -> dict:
    """The keep-best prompt with the pictures Likeness and Keep the Best get replaced by photos with faces
    (the tiny SDXL draws none): the person's photo, another person's, a wall (resized to the first)."""
    likeness = next(k for k, v in prompt.items() if v["class_type"] == "HLS_Likeness")
    keep = next(k for k, v in prompt.items() if v["class_type"] == "HLS_KeepBest")
    prompt.update({
        "100": {"class_type": "LoadImage", "inputs": {"image": "person.jpg"}},
        "101": {"class_type": "LoadImage", "inputs": {"image": "person_3.jpg"}},
        "102": {"class_type": "LoadImage", "inputs": {"image": "no_face.png"}},
        "103": {"class_type": "ImageBatch", "inputs": {"image1": ["100", 0], "image2": ["101", 0]}},
        "104": {"class_type": "ImageBatch", "inputs": {"image1": ["103", 0], "image2": ["102", 0]}},
    })
    prompt[likeness]["inputs"]["images"] = ["104", 0]
    prompt[keep]["inputs"]["images"] = ["104", 0]
    return prompt


def test_keep_the_best_workflow_runs_and_keeps_the_persons_photo_first(server, object_info):
    prompt = to_api(json.loads(KEEP_BEST.read_text()), object_info)
    likeness = next(k for k, v in prompt.items() if v["class_type"] == "HLS_Likeness")
    keep = next(k for k, v in prompt.items() if v["class_type"] == "HLS_KeepBest")
    sampler = next(k for k, v in prompt.items() if v["class_type"] == "EmptyLatentImage")
    prompt[sampler]["inputs"]["batch_size"] = 2  # the CPU: two pictures are enough to run the sampler path
    entry = server.run(_with_face_pictures(prompt))
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    text = entry["outputs"][likeness]["text"][0]
    assert "worst: picture 1" in text and "no face in 1 picture(s), not counted: picture 2" in text
    assert len(entry["outputs"][likeness]["images"]) == 2  # the grid and the chart shown on the node
    kept = entry["outputs"][keep]["text"][0]
    assert kept.startswith("kept 2 of 3, best first: 0 (1.000), 1 (")
    saved = [i for out in entry["outputs"].values() for i in out.get("images", []) if i["type"] == "output"]
    assert saved, "the kept pictures are saved"


def test_keep_the_best_as_shipped_runs_to_the_end(server, object_info):
    """The shipped graph through POST /prompt. What the tiny SDXL draws is noise in which the tiny face
    models may or may not find a face: Keep the Best either keeps pictures or says that none has a face."""
    prompt = to_api(json.loads(KEEP_BEST.read_text()), object_info)
    keep = next(k for k, v in prompt.items() if v["class_type"] == "HLS_KeepBest")
    sampler = next(k for k, v in prompt.items() if v["class_type"] == "EmptyLatentImage")
    prompt[sampler]["inputs"]["batch_size"] = 2
    entry = server.run(prompt)
    error = execution_error(entry)
    if error is None:
        assert entry["status"]["status_str"] == "success"
        assert entry["outputs"][keep]["text"][0].startswith("kept ")
    else:
        assert error["node_type"] == "HLS_KeepBest", error
        assert "None of the 2 picture(s) has a face" in error["exception_message"]


def _input_type(info: dict, name: str):
    for section in ("required", "optional"):
        if name in info["input"].get(section, {}):
            return info["input"][section][name][0]
    raise AssertionError(f"no input {name}")


def test_video_workflow_nodes_exist_and_every_link_fits(object_info):
    workflow = json.loads(VIDEO.read_text())
    by_id = {n["id"]: n for n in workflow["nodes"]}
    types_ = {n["type"] for n in workflow["nodes"]} - {"Note"}
    assert not types_ - set(object_info), f"not in this ComfyUI: {types_ - set(object_info)}"
    assert {"Wan22ImageToVideoLatent", "CreateVideo", "SaveVideo", "HLS_Likeness"} <= types_
    for link_id, src, src_slot, dst, dst_slot, type_ in workflow["links"]:
        source, target = object_info[by_id[src]["type"]], by_id[dst]
        assert source["output"][src_slot] == type_, (link_id, by_id[src]["type"], source["output"])
        wanted = _input_type(object_info[target["type"]], target["inputs"][dst_slot]["name"])
        assert wanted in (type_, "*"), (link_id, target["type"], wanted, type_)


def test_video_workflow_is_refused_only_for_the_wan_model_files_it_lacks(server, object_info):
    """POST /prompt validates every node: only the three Wan loaders' file names are refused (ComfyUI
    queues the outputs that do not depend on them, the portrait, or refuses the whole prompt)."""
    prompt = to_api(json.loads(VIDEO.read_text()), object_info)
    body = json.dumps({"prompt": prompt, "client_id": str(uuid.uuid4())}).encode()
    request = urllib.request.Request(server.url + "/prompt", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        answer = json.loads(exc.read())
    errors = answer["node_errors"]
    assert {node["class_type"] for node in errors.values()} == WAN_FILES, answer
    for node_id, node in errors.items():
        assert all(e["type"] == "value_not_in_list" for e in node["errors"]), node
    if "prompt_id" in answer:  # the portrait part was queued: let it finish before the next test
        entry = server.wait(answer["prompt_id"])
        assert entry["status"]["status_str"] == "success", execution_error(entry)
