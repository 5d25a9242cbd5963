"""Names a package exports without importing their modules until first use, so that importing the
package stays cheap (no torch for ``python -m hyperlora_core download``) and subpackages that use
each other's modules do not import each other's ``__init__`` in a circle."""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable


def lazy_exports(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``table[name]`` (a module relative to
    the package) on first use of ``name`` and keeps the value in the package."""
    import sys

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(table[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
