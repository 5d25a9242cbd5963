"""Face Crop / Face Paste in a real ComfyUI server: the face swap and face detailer workflows through
POST /prompt on the tiny models, where the picture changed (only inside the face mask), and the
errors a user meets. The test pack's PasteProbe counts changed pixels in the history."""

from __future__ import annotations

import json

from hls_comfy import PACK_DIR_NAME, ROOT, combo_options, execution_error, to_api

FACE_SWAP = ROOT / "workflows" / "HyperLoRA - face swap into a photo.json"
DETAILER = ROOT / "workflows" / "HyperLoRA - face detailer.json"
PROBE = "900"


def _load(path, object_info) -> dict:
    return to_api(json.loads(path.read_text()), object_info)


def _only(prompt: dict, class_type: str) -> str:
    (node_id,) = [k for k, v in prompt.items() if v["class_type"] == class_type]
    return node_id


def _report(entry: dict) -> dict:
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    (report,) = [r for out in entry["outputs"].values() for r in out.get("hls_probe", [])]
    return report


def _probe(prompt: dict, before, label: str) -> None:
    crop, paste = _only(prompt, "HLS_FaceCrop"), _only(prompt, "HLS_FacePaste")
    prompt[PROBE] = {"class_type": "HLSTest_PasteProbe",
                     "inputs": {"before": before, "after": [paste, 0], "mask": [crop, 2], "label": label}}


def test_face_nodes_are_listed(object_info):
    for node_id, name in (("HLS_FaceCrop", "Face Crop (HyperLoRA)"), ("HLS_FacePaste", "Face Paste (HyperLoRA)")):
        info = object_info[node_id]
        assert info["display_name"] == name and info["category"].startswith("HyperLoRA Studio")
        assert PACK_DIR_NAME in info["python_module"]
    assert object_info["HLS_FaceCrop"]["output"] == ["IMAGE", "MASK", "MASK", "HYPERLORA_FACE_CROP"]
    assert combo_options(object_info["HLS_FaceCrop"]["input"]["required"]["face_model"]) == ["antelopev2"]


def test_face_swap_changes_the_target_photo_only_inside_the_face_mask(server, object_info):
    prompt = _load(FACE_SWAP, object_info)
    crop = _only(prompt, "HLS_FaceCrop")
    target = prompt[crop]["inputs"]["image"]
    assert prompt[target[0]]["inputs"]["image"] == "target_photo.jpg"
    _probe(prompt, target, "swap")
    report = _report(server.run(prompt))
    assert report["before"] == report["after"] == [1, 448, 384, 3]  # the photo's own resolution
    assert report["mask_pixels"] > 5000
    assert report["changed_outside"] == 0
    assert report["changed_inside"] > 0.5 * report["mask_pixels"]


def test_detailer_redraws_the_face_of_the_picture_only_inside_the_mask(server, object_info):
    """The tiny UNet draws no face, so the generated picture is swapped for a photo with one."""
    prompt = _load(DETAILER, object_info)
    crop, paste = _only(prompt, "HLS_FaceCrop"), _only(prompt, "HLS_FacePaste")
    prompt["901"] = {"class_type": "LoadImage", "inputs": {"image": "person_2.jpg"}}
    prompt[crop]["inputs"]["image"] = ["901", 0]
    prompt[paste]["inputs"]["image"] = ["901", 0]
    _probe(prompt, ["901", 0], "detail")
    report = _report(server.run(prompt))
    assert report["mask_pixels"] > 5000 and report["changed_outside"] == 0
    assert report["changed_inside"] > 0.5 * report["mask_pixels"]


def test_detailer_as_shipped_changes_the_generated_picture_only_inside_the_mask(server, object_info):
    """Whatever the tiny UNet drew (its colours can pass for a marker face, or not), the paste
    changes nothing outside the face mask; the picture passes through if no face was found."""
    prompt = _load(DETAILER, object_info)
    crop = _only(prompt, "HLS_FaceCrop")
    assert prompt[crop]["inputs"]["if_no_face"] == "pass through"
    _probe(prompt, prompt[crop]["inputs"]["image"], "shipped")
    report = _report(server.run(prompt))
    assert report["before"] == report["after"] and report["changed_outside"] == 0
    if report["mask_pixels"] == 0:
        assert report["changed_inside"] == 0


def _crop_and_paste(crop_photo: str, paste_photo: str, if_no_face: str = "error") -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": crop_photo}},
        "2": {"class_type": "LoadImage", "inputs": {"image": paste_photo}},
        "3": {"class_type": "HLS_FaceCrop", "inputs": {
            "image": ["1", 0], "face_model": "antelopev2", "provider": "CPU", "face_choice": "largest", "size": 256,
            "crop_factor": 2.0, "grow": 16, "feather": 32, "if_no_face": if_no_face}},
        "4": {"class_type": "HLS_FacePaste", "inputs": {"image": ["2", 0], "crops": ["3", 0], "crop_info": ["3", 3]}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}},
    }


def test_a_target_without_a_face_is_named(server):
    entry = server.run(_crop_and_paste("no_face.png", "no_face.png"))
    error = execution_error(entry)
    assert error is not None and error["node_type"] == "HLS_FaceCrop"
    assert error["exception_type"].endswith("NoFaceError")
    assert "No face was found in 'image'" in error["exception_message"] and "pass through" in error["exception_message"]


def test_a_picture_without_a_face_passes_through_unchanged_when_chosen(server):
    prompt = _crop_and_paste("no_face.png", "no_face.png", if_no_face="pass through")
    prompt[PROBE] = {"class_type": "HLSTest_PasteProbe",
                     "inputs": {"before": ["2", 0], "after": ["4", 0], "mask": ["3", 2], "label": "none"}}
    report = _report(server.run(prompt))
    assert report["mask_pixels"] == 0 and report["changed_outside"] == 0 and report["changed_inside"] == 0


def test_pasting_into_another_picture_is_refused(server):
    entry = server.run(_crop_and_paste("target_photo.jpg", "person.jpg"))
    error = execution_error(entry)
    assert error is not None and error["node_type"] == "HLS_FacePaste"
    assert "not the one the face crops were cut from" in error["exception_message"]
