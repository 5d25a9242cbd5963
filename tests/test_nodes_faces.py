"""Load Faces (HyperLoRA) on the tiny antelopev2 models: a preview per face found, a photo without a face
named, and how to install insightface when it is missing."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch
from node_fixtures import _photo, face_models, fake_comfy, nodes, pack, tiny_antelopev2  # noqa: F401
from pack import PACK


def test_load_faces_shows_one_preview_per_face_found_on_itself(pack, fake_comfy, face_models):
    out = nodes(pack)["HLS_LoadFaces"].execute(torch.cat([_photo(True, 0), _photo(False, 1)]), "antelopev2", "CPU",
                                               "largest", True, False, "skip photo", images_2=_photo(True, 2))
    faces, preview = out
    assert faces.sources == ["images[0]", "images_2"]
    shown = out.ui.as_dict()["images"]
    assert len(shown) == len(faces) == preview.shape[0] == 2
    temp = Path(fake_comfy.fp.get_temp_directory())
    for entry in shown:
        assert entry["type"] == "temp" and entry["subfolder"] == ""
        assert (temp / entry["filename"]).is_file()
    assert len({entry["filename"] for entry in shown}) == 2


def test_photo_without_face_names_the_photo(pack, fake_comfy, face_models):
    node = nodes(pack)["HLS_LoadFaces"]
    with pytest.raises(pack.hyperlora_core.NoFaceError, match="no face in images_2"):
        node.execute(_photo(True), "antelopev2", "CPU", "largest", True, False, "error", images_2=_photo(False))
    faces, _ = node.execute(_photo(True), "antelopev2", "CPU", "largest", True, False, "skip photo",
                               images_2=_photo(False))
    assert faces.sources == ["images"]
    with pytest.raises(pack.hyperlora_core.NoFaceError, match="no face"):
        node.execute(_photo(False), "antelopev2", "CPU", "largest", True, False, "skip photo")


def test_load_faces_without_insightface_explains_how_to_install(pack, fake_comfy, monkeypatch):
    monkeypatch.setitem(sys.modules, "insightface", None)  # `import insightface` now raises ImportError
    faces_mod = importlib.import_module(f"{PACK}.nodes.faces")
    monkeypatch.setattr(faces_mod, "_ANALYZERS", {})
    folder = Path(fake_comfy.fp.models_dir) / "insightface" / "models" / "antelopev2"
    folder.mkdir(parents=True)
    with pytest.raises(pack.hyperlora_core.FaceModelError, match="pip install insightface onnxruntime"):
        nodes(pack)["HLS_LoadFaces"].execute(_photo(True), "antelopev2", "CPU", "largest", True, False, "error")
