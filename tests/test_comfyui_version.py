"""A ComfyUI older than the V3 node API never calls the pack's entry point: the pack says so in
the log, naming the version to update to, instead of leaving the user with no nodes and no reason."""

from __future__ import annotations

import importlib.util
import logging
import sys
import types

from pack import load_pack


def _comfy_access():
    return sys.modules[load_pack().__name__ + ".nodes.comfy_access"]


def test_old_comfyui_without_v3_api_is_named_in_the_log(monkeypatch, caplog):
    comfy_access = _comfy_access()
    monkeypatch.setitem(sys.modules, "folder_paths", types.ModuleType("folder_paths"))
    monkeypatch.setitem(sys.modules, "comfy_api", types.ModuleType("comfy_api"))  # 0.3.4x without v0_0_2
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        if name == "folder_paths":
            return object()
        if name.startswith("comfy_api"):
            return None
        return real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with caplog.at_level(logging.ERROR):
        assert comfy_access.check_comfyui_version() is False
    assert "needs ComfyUI 0.3.48 or newer" in caplog.text and "update ComfyUI" in caplog.text


def test_no_message_outside_comfyui_or_with_the_v3_api(monkeypatch, caplog):
    comfy_access = _comfy_access()
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "folder_paths" else real_find_spec(name, *a))
    with caplog.at_level(logging.ERROR):
        assert comfy_access.check_comfyui_version() is True  # no ComfyUI: the command line or the tests
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "folder_paths" else real_find_spec(name, *a))
    with caplog.at_level(logging.ERROR):
        assert comfy_access.check_comfyui_version() is True  # the stand-in provides comfy_api.v0_0_2
    assert not caplog.text
