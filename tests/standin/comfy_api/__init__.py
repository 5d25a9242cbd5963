"""A stand-in for ComfyUI's `comfy_api` package, for the CI tier where ComfyUI is absent.

It implements only what this pack's nodes use of the versioned V3 API `comfy_api.v0_0_2` (`io`,
`ui`, `ComfyExtension`), with the real package's names, signatures and V1 view of a schema
(`INPUT_TYPES`, `RETURN_TYPES`, ...), written from its documented behaviour. The real-ComfyUI tier
checks that it matches: `tests/comfyui/test_v3_schema.py` compares ComfyUI's own /object_info for
every node of the pack with `tests/node_contract.json`, the same file the CI tier compares this
stand-in's view with.
"""
