"""`score` finds the face models where `download` puts them and `generate` reads them: the default
models folder (./models outside ComfyUI) without --models-dir, and says where it looked when they
are missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from hyperlora_core import cli
from hyperlora_core.pipeline import face_models_folder, find_models
from tiny_face_models import make_tiny_antelopev2, marked_picture


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A folder whose ./models holds the (tiny) face models where download puts them, and two pictures."""
    root = tmp_path_factory.mktemp("project")
    make_tiny_antelopev2(root / "models" / "insightface" / "models" / "antelopev2")
    for name, seed in (("me.png", 1), ("other.png", 7)):
        Image.fromarray(marked_picture(seed, (((70, 80, 180, 210), 0),), (300, 260), noise=200)).save(root / name)
    return root


def run(capsys, *args) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_score_without_models_dir_reads_the_face_models_in_models_of_the_current_folder(project, capsys,
                                                                                        monkeypatch):
    monkeypatch.chdir(project)
    code, out, err = run(capsys, "score", "--photos", "me.png", "--images", "me.png", "other.png", "--json")
    assert code == 0, err
    by_name = {row["image"]: row["similarity"] for row in json.loads(out)["images"]}
    assert by_name["me.png"] == pytest.approx(1.0, abs=1e-5)
    code, explicit, err = run(capsys, "score", "--photos", "me.png", "--images", "me.png", "other.png", "--json",
                              "--models-dir", project / "models")
    assert code == 0, err
    assert json.loads(explicit)["images"] == json.loads(out)["images"]


def test_score_and_generate_look_up_the_face_models_through_one_function(project, monkeypatch):
    monkeypatch.chdir(project)
    expected = project / "models" / "insightface" / "models" / "antelopev2"
    assert face_models_folder() == expected
    assert find_models(None, hyperlora="release", clip="clip.safetensors").faces == expected


def test_score_without_models_folder_says_where_it_looked_and_to_run_download(project, capsys, tmp_path,
                                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "score", "--photos", project / "me.png", "--images", project / "other.png")
    assert code == 1
    assert f"the models folder {tmp_path / 'models'} (the default" in err and "download' first" in err


@pytest.mark.parametrize("command", ["score", "generate"])
def test_missing_face_models_say_where_they_were_looked_for_and_to_run_download(project, capsys, tmp_path,
                                                                                monkeypatch, command):
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    photo = project / "me.png"
    rest = (("--images", photo) if command == "score" else
            ("--out", tmp_path / "x.safetensors", "--hyperlora", tmp_path, "--clip", tmp_path / "clip.safetensors"))
    code, _, err = run(capsys, command, "--photos", photo, *rest)
    assert code == 1 and err.count("\n") == 1, err
    where = tmp_path / "models" / "insightface" / "models" / "antelopev2"
    assert f"the antelopev2 face models are not in {where} (missing scrfd_10g_bnkps.onnx" in err
    assert "glintr100.onnx" in err and "download --only face' to fetch them" in err
