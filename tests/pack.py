"""Import the repository folder as ComfyUI imports a custom node pack (a folder as a package)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACK = "hyperlora_studio_under_test"


def load_pack(name: str = PACK, root: Path = ROOT):
    """The pack in ``root`` (this repository, or another pack folder such as the ComfyUI tier's test
    pack) imported as the package ``name``; once per name."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, root / "__init__.py", submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def node_classes(pack) -> dict:
    """Node id -> V3 node class of an imported pack, as ComfyUI registers them."""
    return importlib.import_module(pack.__name__ + ".nodes.extension").node_classes()
