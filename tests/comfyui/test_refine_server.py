"""Refine HyperLoRA inside a real ComfyUI on the tiny SDXL test pack, through POST /prompt: it trains,
its LoRA keeps the generated one's keys (plus the extra rank), applies with the stock
LoraLoaderModelOnly as with Apply HyperLoRA, and a cancel mid-run leaves no output."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import torch
from hls_comfy import execution_error, lora_chain


def _probe(entry: dict, label: str) -> dict:
    for out in entry["outputs"].values():
        for report in out.get("hls_probe", []):
            if report["label"] == label:
                return report
    raise AssertionError(f"no probe {label!r} in {list(entry['outputs'])}")


def _error_text(entry: dict) -> str:
    error = execution_error(entry) or {}
    return f"{error.get('exception_message')}\n{''.join(error.get('traceback', [])[-6:])}"


def _refine(steps: int, extra_rank: int = 2) -> dict:
    return {"class_type": "HLS_RefineLoRA", "inputs": {
        "lora": ["6", 0], "model": ["10", 0], "vae": ["10", 2], "clip": ["10", 1], "faces": ["2", 0],
        "steps": steps, "learning_rate": 1e-3, "extra_rank": extra_rank, "face_weight": 1.0, "seed": 0,
        "caption": "a photo of a person", "resolution": 256}}


def test_refine_runs_and_its_lora_applies_with_the_stock_loader(server):
    from safetensors.torch import load_file

    prompt = lora_chain()
    prompt.update({
        "11": {**_refine(steps=3), "inputs": {**_refine(steps=3)["inputs"], "likeness_pictures": 1}},
        "12": {"class_type": "HLS_SaveLoRA", "inputs": {"lora": ["11", 0], "filename_prefix": "loras/refined"}},
        "13": {"class_type": "HLS_SaveLoRA", "inputs": {"lora": ["6", 0], "filename_prefix": "loras/generated"}},
        "14": {"class_type": "HLS_ApplyLoRA", "inputs": {"model": ["10", 0], "lora": ["11", 0], "strength": 0.85}},
        "15": {"class_type": "HLSTest_UNetProbe", "inputs": {"model": ["14", 0], "label": "applied"}},
    })
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "success", _error_text(entry)
    assert entry["outputs"]["11"]["images"], entry["outputs"]["11"]  # the loss curve shows on the node
    out = server.base / "output"
    refined = load_file(str(out / entry["outputs"]["12"]["text"][0]))
    generated = load_file(str(out / entry["outputs"]["13"]["text"][0]))
    assert set(refined) == set(generated)
    changed = 0
    for key, tensor in generated.items():
        shape = list(tensor.shape)
        if key.endswith(".lora_down.weight"):
            shape[0] += 2
        elif key.endswith(".lora_up.weight"):
            shape[1] += 2
        assert list(refined[key].shape) == shape, key
        if key.endswith(".lora_down.weight"):
            changed += not torch.equal(refined[key][: tensor.shape[0]], tensor)
    assert changed > 0
    assert "refining the ID-LoRA" in server.log
    # the likeness before and after, of one fixed-prompt picture each (the tiny face models find no face in
    # the tiny UNet's pictures: reported as such, not as 0)
    assert "likeness to the photos (ArcFace), generated -> refined:" in server.log
    assert "seed 1000: portrait photo of a person" in server.log

    file_prompt = {
        "10": {"class_type": "HLSTest_TinySDXL", "inputs": {"seed": 0}},
        "20": {"class_type": "LoraLoaderModelOnly", "inputs": {
            "model": ["10", 0], "lora_name": Path(entry["outputs"]["12"]["text"][0]).name, "strength_model": 0.85}},
        "21": {"class_type": "HLSTest_UNetProbe", "inputs": {"model": ["20", 0], "label": "file"}},
    }
    from_file = server.run(file_prompt)
    assert from_file["status"]["status_str"] == "success", _error_text(from_file)
    applied, loaded = _probe(entry, "applied"), _probe(from_file, "file")
    assert loaded["patched"] == applied["patched"]
    torch.testing.assert_close(torch.tensor(loaded["output"]), torch.tensor(applied["output"]), rtol=0, atol=1e-5)


def test_cancel_mid_run_leaves_no_output(server):
    prompt = lora_chain()
    prompt.update({
        "11": _refine(steps=5000, extra_rank=0),
        "12": {"class_type": "HLS_SaveLoRA", "inputs": {"lora": ["11", 0], "filename_prefix": "loras/cancelled"}},
    })
    started = server.log.count("refining the ID-LoRA")
    prompt_id = server.post_prompt(prompt)
    deadline = time.time() + 300
    while server.log.count("refining the ID-LoRA") == started:
        assert time.time() < deadline, server.log[-3000:]
        time.sleep(0.5)
    time.sleep(3)  # a few steps in
    request = urllib.request.Request(server.url + "/interrupt", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).read()
    while True:
        history = server.get(f"/history/{prompt_id}")
        if prompt_id in history and history[prompt_id]["status"].get("status_str") in ("success", "error"):
            entry = history[prompt_id]
            break
        assert time.time() < deadline, server.log[-3000:]
        time.sleep(0.5)
    kinds = [kind for kind, _ in entry["status"]["messages"]]
    assert "execution_interrupted" in kinds, json.dumps(entry["status"])[:2000]
    assert "11" not in entry["outputs"] and "12" not in entry["outputs"]
    assert not list((server.base / "output" / "loras").glob("cancelled*"))


def test_an_sd15_model_is_refused_by_name_and_nothing_is_output(server):
    prompt = lora_chain()
    prompt.update({
        "20": {"class_type": "HLSTest_TinySD15", "inputs": {"seed": 0}},
        "11": {**_refine(steps=3), "inputs": {**_refine(steps=3)["inputs"], "model": ["20", 0]}},
        "12": {"class_type": "HLS_SaveLoRA", "inputs": {"lora": ["11", 0], "filename_prefix": "loras/sd15"}},
    })
    entry = server.run(prompt)
    error = execution_error(entry)
    assert error and error["node_id"] == "11", error
    assert "makes LoRAs for SDXL UNets" in error["exception_message"], error["exception_message"]
    assert not list((server.base / "output" / "loras").glob("sd15*"))
