"""HyperLoRA Studio: HyperLoRA (arXiv 2503.16944) for ComfyUI — photos in, personalised SDXL model out.

ComfyUI imports this file as a package and asks `comfy_entrypoint` for the nodes (ComfyUI's V3 node
API, ComfyUI 0.3.48 or newer). Importing it does no work: no model, device or file is touched until a
node runs, and it succeeds without insightface (the 'Load Faces' node then explains how to install
it) and without ComfyUI (for the tests and the command line).
"""

# pytest imports this file as a lone module when it walks up from tests/ (in a clone whose folder
# name is not a valid package name); there is no package around it then, and nothing to register.
if __package__:
    from .nodes.comfy_access import check_comfyui_version
    from .nodes.model_folders import register_model_folders

    # Only updates folder_paths' table of model folders (no disk access); a no-op outside ComfyUI.
    register_model_folders()
    # Inside a ComfyUI too old for V3 nodes, says so in the log (that ComfyUI never calls the entry point).
    check_comfyui_version()

    async def comfy_entrypoint():
        """The pack's nodes, for ComfyUI's loader."""
        from .nodes.extension import HyperLoRAStudio

        return HyperLoRAStudio()

# The editor extension that shows a node's text (saved file name, summaries) on the node itself.
WEB_DIRECTORY = "./web"

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
