"""Load Faces (HyperLoRA) on the tiny antelopev2 models: a preview per face found, a photo without a face
named, and how to install insightface when it is missing."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from node_fixtures import _photo, face_models, fake_comfy, nodes, pack, tiny_antelopev2  # noqa: F401
from pack import PACK


def test_load_faces_shows_one_preview_per_face_found_on_itself(pack, fake_comfy, face_models):
    out = nodes(pack)["HLS_LoadFaces"].execute(torch.cat([_photo(True, 0), _photo(False, 1)]), "antelopev2", "CPU",
                                               "largest", True, False, "skip photo", images_2=_photo(True, 2))
    faces, preview = out
    assert faces.sources == ["images[0]", "images_2"]
    shown = out.ui["images"]  # the previews and the photo check's table together
    assert "no photo of 2 flagged" in out.ui["text"][0] or "flagged" in out.ui["text"][0]
    assert "no face found (left out): images[1]" in out.ui["text"][0]
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


class _CheckedAnalyzer:
    """An analyzer whose faces are constructed (face_check_data): photo 2 of four is another person."""

    folder = "antelopev2"

    def __init__(self):
        from face_check_data import face, person_embeddings
        embeddings = person_embeddings(4, outlier=2)
        self.faces = [face(i, embeddings[i]) for i in range(4)]
        for f in self.faces:
            f.n_faces, f.face_index = 1, 0
            f.preview = np.zeros((8, 24, 3), np.uint8)
            f.clip_crop = np.full((64, 64, 3), 40 * f.index, np.uint8)

    def analyze_photo(self, rgb, index, *args, **kwargs):
        return self.faces[index]


@pytest.mark.parametrize("action,kept,weights", [
    ("keep", ["images[0]", "images[1]", "images[2]", "images[3]"], [0.25, 0.25, 0.25, 0.25]),
    ("drop", ["images[0]", "images[1]", "images[3]"], [1 / 3, 1 / 3, 1 / 3]),
    ("downweight", ["images[0]", "images[1]", "images[2]", "images[3]"], [1 / 3.25, 1 / 3.25, 0.25 / 3.25, 1 / 3.25]),
])
def test_photo_check_on_load_faces_reaches_the_identity(pack, fake_comfy, monkeypatch, action, kept, weights):
    from node_fixtures import FakeClipVision
    faces_mod = importlib.import_module(f"{PACK}.nodes.faces")
    monkeypatch.setattr(faces_mod, "get_analyzer", lambda folder, provider: _CheckedAnalyzer())
    monkeypatch.setattr(faces_mod, "face_model_folder_path", lambda name: name)
    photos = torch.zeros(4, 32, 32, 3)
    out = nodes(pack)["HLS_LoadFaces"].execute(photos, "antelopev2", "CPU", "largest", True, False, "error",
                                               photo_check=action)
    faces, preview = out
    assert faces.sources == kept and preview.shape[0] == 4  # every face found is previewed
    text = out.ui["text"][0]
    assert "images[2] looks like a different person" in text
    assert faces.check.action == action and faces.check.table() in text
    (identity,) = nodes(pack)["HLS_IDEmbedding"].execute(faces, FakeClipVision())
    assert identity.sources == kept
    assert torch.allclose(identity.weights, torch.tensor(weights), atol=1e-6)


def test_photo_check_refuses_an_unknown_choice(pack, fake_comfy):
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="keep, drop, downweight"):
        nodes(pack)["HLS_LoadFaces"].execute(_photo(True), "antelopev2", "CPU", "largest", True, False, "error",
                                             photo_check="discard")
