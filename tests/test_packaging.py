"""pyproject.toml as ComfyUI Manager and the Comfy Registry read it: static dependencies equal to the
requirement files, a square icon of at most 400x400 kept in the repository, the console script; and
training stays an optional part (importing the core loads neither it nor diffusers)."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def requirements(name: str) -> set[str]:
    """The requirements a file lists, with the files it includes (-r) expanded."""
    found: set[str] = set()
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found |= requirements(line[3:].strip())
        elif line:
            found.add(line)
    return found


def test_dependencies_are_static_and_equal_to_requirements_txt():
    project = PYPROJECT["project"]
    assert "dependencies" not in project.get("dynamic", [])
    assert set(project["dependencies"]) == requirements("requirements.txt")
    assert len(project["dependencies"]) == len(set(project["dependencies"]))


def test_torch_is_never_a_requirement():
    for name in ("requirements.txt", "requirements-cli.txt", "requirements-test.txt"):
        assert not any(re.match(r"torch\b", r) for r in requirements(name)), name
    assert not any(re.match(r"torch\b", r) for r in PYPROJECT["project"]["dependencies"])


def test_extras_equal_the_requirement_files_setup_installs():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert set(extras["cli"]) == requirements("requirements-cli.txt")
    assert set(extras["test"]) == requirements("requirements-test.txt")


def test_icon_is_a_square_png_of_at_most_400_px_under_the_repository_url():
    comfy = PYPROJECT["tool"]["comfy"]
    repository = PYPROJECT["project"]["urls"]["Repository"]
    owner_repo = repository.removeprefix("https://github.com/")
    prefix = f"https://raw.githubusercontent.com/{owner_repo}/main/"
    assert comfy["Icon"].startswith(prefix)
    with Image.open(ROOT / comfy["Icon"][len(prefix):]) as icon:
        assert icon.format == "PNG"
        assert icon.width == icon.height <= 400


def test_console_script_runs_the_command_line(capsys):
    module, attr = PYPROJECT["project"]["scripts"]["hyperlora-studio"].split(":")
    main = getattr(importlib.import_module(module), attr)
    assert main(["download", "--help"]) == 0
    assert "--models-dir" in capsys.readouterr().out


def test_training_stays_optional():
    code = ("import sys, hyperlora_core; "
            "print('hyperlora_core.train' in sys.modules, sys.modules.get('diffusers') is not None)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    code = "import sys, hyperlora_core.train; print(sys.modules.get('diffusers') is not None)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]
