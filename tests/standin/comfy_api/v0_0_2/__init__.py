"""Stand-in for `comfy_api.v0_0_2`: the V3 node schema (`io`), node UI outputs (`ui`) and the
extension entry point (`ComfyExtension`). See the package docstring."""

from abc import ABC, abstractmethod

from . import _io as io
from . import _ui as ui


class ComfyExtension(ABC):
    async def on_load(self) -> None:
        """Called once when ComfyUI loads the extension."""

    @abstractmethod
    async def get_node_list(self) -> list:
        """The node classes (io.ComfyNode subclasses) of the extension."""


__all__ = ["ComfyExtension", "io", "ui"]
