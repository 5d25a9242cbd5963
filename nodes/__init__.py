"""The pack's ComfyUI nodes, on ComfyUI's V3 schema (`comfy_api.v0_0_2`). Each module only
translates between ComfyUI types and `hyperlora_core` calls.

Importing this package imports no node module: `nodes.extension`, which ComfyUI reaches through the
pack's `comfy_entrypoint`, does, so the pack (and `nodes.utils`) imports without ComfyUI.
"""
