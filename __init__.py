"""HyperLoRA Studio: HyperLoRA (arXiv 2503.16944) for ComfyUI — photos in, personalised SDXL model out.

ComfyUI imports this file as a package. Importing it does no work: no model, device or file is
touched until a node runs, and it succeeds without insightface (the 'Load Faces' node then explains
how to install it) and without ComfyUI (for the tests).
"""

# pytest imports this file as a lone module when it walks up from tests/ (in a clone whose folder
# name is not a valid package name); there is no package around it then, and nothing to register.
if __package__:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
    from .nodes.utils import register_model_folders

    # Only updates folder_paths' table of model folders (no disk access); a no-op outside ComfyUI.
    register_model_folders()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
