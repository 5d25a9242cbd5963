"""Issue 15 in a real ComfyUI server: Save nodes never write outside the real output folder, links
included, and bad names get our message rather than a raw error from deep inside."""

from __future__ import annotations

from hls_comfy import execution_error, lora_chain


def _save(prompt: dict, node: str, inputs: dict) -> dict:
    prompt = dict(prompt)
    del prompt["10"]
    prompt["14"] = {"class_type": node, "inputs": inputs}
    return prompt


def test_save_through_a_symlink_inside_the_output_folder_is_refused(server):
    outside = server.base / "outside_output"
    outside.mkdir(exist_ok=True)
    link = server.base / "output" / "escape_link"
    if not link.is_symlink():
        link.symlink_to(outside, target_is_directory=True)
    entry = server.run(_save(lora_chain(), "HLS_SaveLoRA", {"lora": ["6", 0], "filename_prefix": "escape_link/person"}))
    error = execution_error(entry)
    assert error is not None and error["node_type"] == "HLS_SaveLoRA", error
    assert "points outside ComfyUI's output folder" in error["exception_message"]
    entry = server.run(_save(lora_chain(), "HLS_SaveIdentity",
                             {"identity": ["4", 0], "filename_prefix": "escape_link/sub/alice"}))
    error = execution_error(entry)
    assert error is not None and error["node_type"] == "HLS_SaveIdentity", error
    assert "points outside ComfyUI's output folder" in error["exception_message"]
    assert list(outside.iterdir()) == []


def test_nul_byte_and_over_long_prefix_get_our_message(server):
    for prefix, message in (("loras/bad\x00name", "NUL byte"), ("loras/" + "n" * 300, "bytes per name")):
        entry = server.run(_save(lora_chain(), "HLS_SaveLoRA", {"lora": ["6", 0], "filename_prefix": prefix}))
        error = execution_error(entry)
        assert error is not None and error["node_type"] == "HLS_SaveLoRA", error
        assert error["exception_type"].endswith("HyperLoRAError") and message in error["exception_message"]
