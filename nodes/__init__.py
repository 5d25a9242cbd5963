"""The pack's ComfyUI nodes, on ComfyUI's V3 schema (`comfy_api.v0_0_2`). Each module only
translates between ComfyUI types and `hyperlora_core` calls.

Node modules, one per family as users know them: loaders, faces, identity, lora, prompt, hooks,
several_people, face_swap, likeness; `extension` lists them all. Shared by the nodes, one job each:
comfy_access (ComfyUI's modules imported when a node runs, the V3 API check), model_folders
(folder_paths registration and lookup), inputs (input checks), images (IMAGE <-> numpy), outputs
(where saved files go).

Importing this package imports no node module: `nodes.extension`, which ComfyUI reaches through the
pack's `comfy_entrypoint`, does, so the pack (and `nodes.comfy_access`, `nodes.model_folders`) imports
without ComfyUI.
"""

# The Add Node menu's folder of every node of the pack.
CATEGORY = "HyperLoRA Studio"
