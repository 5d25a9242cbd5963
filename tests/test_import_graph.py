"""No module of the pack imports another in a circle, not even through an import inside a function.

Every .py file under hyperlora_core/ and nodes/ is parsed with ``ast``; each import anywhere in it
(module level, functions, ``if TYPE_CHECKING:``) that lands in the pack is an edge. Modules are
named from the repository root, which ComfyUI imports as a package of its own: ``nodes/lora.py``
is ``nodes.lora``, ``hyperlora_core/face/__init__.py`` is the package ``hyperlora_core.face``.
The root ``__init__.py`` is outside the graph, and so is an absolute ``import nodes`` (inside
ComfyUI that is ComfyUI's own ``nodes.py``); absolute imports of ``hyperlora_core`` are in the pack.

Edges, for an import in module M:
- ``import a.b`` -> ``a.b``;
- ``from .pkg import name`` -> ``.pkg``, and ``.pkg.name`` too if that is a module;
- ``from . import name`` -> ``.name`` if that is a module, else the package itself (``name`` is
  defined by its ``__init__``).
Every strongly connected component of more than one module is a circle, as is a module that
imports itself.

What hyperlora_core may reach is checked here too: never ComfyUI's packages or nodes/, never an
unpickler.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACK_DIRS = ("hyperlora_core", "nodes")
IN_PACK_ABSOLUTE = ("hyperlora_core",)  # the top-level names an absolute import may reach the pack by


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: str  # of the importing file, relative to the root
    line: int
    in_function: bool

    def describe(self) -> str:
        where = "inside a function" if self.in_function else "at module level"
        return f"{self.source} -> {self.target} ({self.path}:{self.line}, {where})"


def pack_modules(root: Path) -> dict[str, Path]:
    """Module name -> file, for every .py file under the pack's folders (walked, so new subpackages count)."""
    modules: dict[str, Path] = {}
    for top in PACK_DIRS:
        for path in sorted((root / top).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if any(part.startswith(".") or part == "__pycache__" for part in parts):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _package_of(module: str, path: Path) -> str:
    """The package a module's relative imports start from ('' is the root package)."""
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _resolve(package: str, level: int, name: str | None) -> str | None:
    """``from <level dots><name>`` seen from ``package``; None above the root."""
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    base = parts[:len(parts) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _in_pack(name: str) -> bool:
    return name.split(".")[0] in IN_PACK_ABSOLUTE


class _ImportCollector(ast.NodeVisitor):
    """The (line, target, in_function) of every import of one module into the pack, and the
    relative imports that reach none of its modules."""

    def __init__(self, module: str, path: Path, modules: dict[str, Path]) -> None:
        self.module = module
        self.package = _package_of(module, path)
        self.modules = modules
        self.depth = 0
        self.found: list[tuple[int, str, bool]] = []
        self.dangling: list[tuple[int, str]] = []  # relative imports that reach no module of the pack

    def _add(self, node: ast.stmt, target: str) -> None:
        self.found.append((node.lineno, target, self.depth > 0))

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if _in_pack(alias.name) and alias.name in self.modules:
                self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = _resolve(self.package, node.level, node.module)
        else:
            base = node.module if node.module and _in_pack(node.module) else None
        if base is None:
            return
        targets: dict[str, None] = {}  # ordered, each target once per statement
        for alias in node.names:
            submodule = f"{base}.{alias.name}" if base else alias.name
            if submodule in self.modules:
                targets[submodule] = None
            if (node.module or submodule not in self.modules) and base in self.modules:
                targets[base] = None  # the names come from base (a package's __init__ or a module)
        if node.level and base and not targets:
            self.dangling.append((node.lineno, base))
        for target in targets:
            self._add(node, target)


def _collectors(root: Path) -> list[tuple[str, _ImportCollector]]:
    """(the file relative to the root, its imports), for every module of the pack."""
    modules = pack_modules(root)
    collected: list[tuple[str, _ImportCollector]] = []
    for module, path in modules.items():
        collector = _ImportCollector(module, path, modules)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        collected.append((path.relative_to(root).as_posix(), collector))
    return collected


def import_edges(root: Path) -> list[Edge]:
    return [Edge(collector.module, target, rel, line, in_function)
            for rel, collector in _collectors(root) for line, target, in_function in collector.found]


def strongly_connected(nodes: list[str], edges: list[Edge]) -> list[list[str]]:
    """Tarjan's strongly connected components, each sorted, in a stable order."""
    successors: dict[str, list[str]] = {node: [] for node in nodes}
    for edge in edges:
        successors[edge.source].append(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(set(successors[node])):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return sorted(components)


def import_circles(root: Path) -> list[str]:
    """One paragraph per circle: its modules and the imports that close it."""
    modules = pack_modules(root)
    edges = import_edges(root)
    circles: list[str] = []
    for component in strongly_connected(list(modules), edges):
        members = set(component)
        if len(component) > 1:
            inner = [e for e in edges if e.source in members and e.target in members and e.source != e.target]
            title = f"circle of {len(component)} modules: {', '.join(component)}"
        else:
            inner = [e for e in edges if e.source == component[0] and e.target == component[0]]
            title = f"{component[0]} imports itself"
        if inner:
            circles.append("\n".join([title] + [f"  {e.describe()}" for e in inner]))
    return circles


# -- the pack -------------------------------------------------------------------------------------

def test_no_module_imports_another_in_a_circle():
    circles = import_circles(ROOT)
    assert not circles, (
        "Modules of the pack import each other in a circle (helpers must not import the modules that "
        "use them; move what both need into a module of its own):\n" + "\n".join(circles))


def test_every_relative_import_lands_on_a_module_of_the_pack():
    """A resolver that loses imports would hide circles: each relative import must become an edge."""
    dangling = [f"{rel}:{line}: nothing of the pack at {base!r}"
                for rel, collector in _collectors(ROOT) for line, base in collector.dangling]
    assert not dangling, "Relative imports that resolve to no module of the pack:\n" + "\n".join(dangling)
    edges = import_edges(ROOT)
    assert any(e.source.startswith("nodes.") and e.target.startswith("hyperlora_core") for e in edges), (
        "No import from nodes/ into hyperlora_core/ found; the import graph is broken.")


def test_core_never_imports_the_nodes():
    """hyperlora_core knows nothing of ComfyUI, so it never reaches into nodes/ (relatively) either;
    test_core_never_imports_comfyui below checks ComfyUI's own packages."""
    wrong = [e.describe() for e in import_edges(ROOT)
             if e.source.startswith("hyperlora_core") and e.target.split(".")[0] == "nodes"]
    assert not wrong, "hyperlora_core imports the ComfyUI nodes:\n" + "\n".join(wrong)


# -- what hyperlora_core may import and call ---------------------------------------------------

def test_core_never_unpickles():
    root = Path(__file__).resolve().parent.parent / "hyperlora_core"
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "import pickle" not in text, path
        if path.parent.name == "train":
            # the trainer reads back its own optimizer state, with the safe tensors-only unpickler
            assert text.count("torch.load(") == text.count("weights_only=True"), path
        else:
            assert "torch.load(" not in text, path


def test_core_never_imports_comfyui():
    """hyperlora_core is usable without ComfyUI: no module of it imports ComfyUI's packages."""
    import ast

    comfy_roots = {"comfy", "comfy_extras", "comfy_api", "folder_paths", "nodes", "server", "execution"}
    root = Path(__file__).resolve().parent.parent / "hyperlora_core"
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            assert not any(name.split(".")[0] in comfy_roots for name in names), f"{path}: imports {names}"


# -- the graph on a small tree --------------------------------------------------------------------

def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_relative_imports_resolve_to_modules_and_packages(tmp_path: Path):
    root = _tree(tmp_path, {
        "__init__.py": "from .nodes import x\n",
        "hyperlora_core/__init__.py": "from .errors import E\n",
        "hyperlora_core/errors.py": "import os\n",
        "hyperlora_core/face/__init__.py": "from .crops import crop\n",
        "hyperlora_core/face/crops.py": "from .. import errors\nfrom . import NAME\n",
        "hyperlora_core/face/paste.py": "from ..face import crops\nimport hyperlora_core.errors\n",
        "nodes/__init__.py": "",
        "nodes/utils.py": "import nodes\nfrom ..hyperlora_core import HyperLoRA\nfrom ... import outside\n",
        "nodes/lora.py": "def run():\n    from .utils import f\n",
    })
    edges = {(e.source, e.target, e.in_function) for e in import_edges(root)}
    assert edges == {
        ("hyperlora_core", "hyperlora_core.errors", False),
        ("hyperlora_core.face", "hyperlora_core.face.crops", False),
        ("hyperlora_core.face.crops", "hyperlora_core.errors", False),  # from .. import <submodule>
        ("hyperlora_core.face.crops", "hyperlora_core.face", False),  # from . import <name of __init__>
        ("hyperlora_core.face.paste", "hyperlora_core.face", False),  # from .pkg import <module>: both
        ("hyperlora_core.face.paste", "hyperlora_core.face.crops", False),
        ("hyperlora_core.face.paste", "hyperlora_core.errors", False),
        ("nodes.utils", "hyperlora_core", False),  # not ComfyUI's `nodes`, not above the root
        ("nodes.lora", "nodes.utils", True),
    }


def test_a_relative_import_of_a_missing_module_is_dangling(tmp_path: Path):
    root = _tree(tmp_path, {
        "hyperlora_core/__init__.py": "",
        "hyperlora_core/face/__init__.py": "",
        "hyperlora_core/face/paste.py": "import os\n\nfrom ..gone import x\nfrom ... import comfy_root_name\n",
    })
    assert [(rel, c.dangling) for rel, c in _collectors(root) if c.dangling] == [
        ("hyperlora_core/face/paste.py", [(3, "hyperlora_core.gone")])]


def test_circles_through_functions_and_self_imports_are_reported(tmp_path: Path):
    root = _tree(tmp_path, {
        "hyperlora_core/__init__.py": "",
        "hyperlora_core/cli.py": "def main():\n    from .generate_cli import add\n",
        "hyperlora_core/generate_cli.py": "from .cli import PROG\n",
        "hyperlora_core/helpers.py": "from .cli import PROG\n",
        "hyperlora_core/loop.py": "from . import loop\n",
        "nodes/a.py": "from .b import x\n",
        "nodes/b.py": "from . import c\n",
        "nodes/c.py": "from .a import y\n",
    })
    assert import_circles(root) == [
        "circle of 2 modules: hyperlora_core.cli, hyperlora_core.generate_cli\n"
        "  hyperlora_core.cli -> hyperlora_core.generate_cli (hyperlora_core/cli.py:2, inside a function)\n"
        "  hyperlora_core.generate_cli -> hyperlora_core.cli (hyperlora_core/generate_cli.py:1, at module level)",
        "hyperlora_core.loop imports itself\n"
        "  hyperlora_core.loop -> hyperlora_core.loop (hyperlora_core/loop.py:1, at module level)",
        "circle of 3 modules: nodes.a, nodes.b, nodes.c\n"
        "  nodes.a -> nodes.b (nodes/a.py:1, at module level)\n"
        "  nodes.b -> nodes.c (nodes/b.py:1, at module level)\n"
        "  nodes.c -> nodes.a (nodes/c.py:1, at module level)",
    ]
