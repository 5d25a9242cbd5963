"""`python -m hyperlora_core score` on the tiny face models: the table, the JSON, missing faces, the
grid, identity files as the reference, and its usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli_run import run
from hyperlora_core import IdentityFeatures, cli
from hyperlora_core.face import FaceAnalyzer
from tiny_face_models import make_tiny_antelopev2, marked_picture


def _picture(path: Path, seed: int, faces=(((70, 80, 180, 210), 0),), size=(300, 260)) -> Path:
    Image.fromarray(marked_picture(seed, faces, size, noise=200)).save(path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    models = root / "models"
    make_tiny_antelopev2(models / "insightface" / "models" / "antelopev2")
    me = root / "me"
    me.mkdir()
    _picture(me / "me.png", seed=1)
    images = root / "images"
    images.mkdir()
    same = _picture(images / "a_same.png", seed=1)  # the reference photo itself
    other = _picture(images / "b_other.png", seed=7)
    blank = images / "c_blank.png"
    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(blank)
    return {"root": root, "models": models, "me": me / "me.png", "images": images,
            "same": same, "other": other, "blank": blank}


def api_similarity(setup, picture: Path) -> float:
    analyzer = FaceAnalyzer(setup["models"] / "insightface" / "models" / "antelopev2")
    (ref,) = analyzer.analyze(str(setup["me"]))
    (face,) = analyzer.analyze(str(picture))
    return float(np.dot(ref.arcface_embedding, face.arcface_embedding)
                 / np.linalg.norm(ref.arcface_embedding) / np.linalg.norm(face.arcface_embedding))


def test_table_lists_each_image_with_its_similarity_and_no_face_as_missing(setup, capsys):
    code, out, err = run(capsys, "score", "--photos", setup["me"], "--images", setup["images"],
                         "--models-dir", setup["models"])
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("a_", "b_", "c_"))}
    assert set(rows) == {"a_same.png", "b_other.png", "c_blank.png"}
    assert rows["a_same.png"][1:] == ["1", "0", "1.000"]
    other = api_similarity(setup, setup["other"])
    assert other < 0.999
    assert rows["b_other.png"][-1] == f"{other:.3f}"
    assert rows["c_blank.png"][1:] == ["0", "-", "no", "face"]  # missing, not 0
    mean = (1.0 + other) / 2
    assert f"mean of 2 picture(s) with a face: {mean:.3f} (1 without a face)" in out


def test_json_gives_null_for_a_picture_without_a_face(setup, capsys):
    code, out, err = run(capsys, "score", "--photos", setup["me"], "--images", setup["same"], setup["other"],
                         setup["blank"], "--models-dir", setup["models"], "--json")
    assert code == 0, err
    data = json.loads(out)  # nothing but the JSON on stdout
    by_name = {Path(row["image"]).name: row for row in data["images"]}
    assert by_name["a_same.png"]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert by_name["b_other.png"]["similarity"] == pytest.approx(api_similarity(setup, setup["other"]), abs=1e-6)
    assert by_name["c_blank.png"]["similarity"] is None and by_name["c_blank.png"]["faces"] == 0
    assert data["missing"] == [str(setup["blank"])]
    assert data["mean"] == pytest.approx((1.0 + by_name["b_other.png"]["similarity"]) / 2)
    assert data["reference"]["photos"] == [str(setup["me"])] and data["face_choice"] == "largest"


def test_identity_file_scores_like_its_photos(setup, capsys, tmp_path):
    analyzer = FaceAnalyzer(setup["models"] / "insightface" / "models" / "antelopev2")
    (ref,) = analyzer.analyze(str(setup["me"]))
    path = tmp_path / "me.safetensors"
    IdentityFeatures(arcface=torch.from_numpy(ref.arcface_embedding)[None],
                     clip_tokens=torch.zeros(1, 257, 1024), sources=["me.png"]).save(path)
    _, from_photos, _ = run(capsys, "score", "--photos", setup["me"], "--images", setup["images"],
                            "--models-dir", setup["models"], "--json")
    code, from_identity, err = run(capsys, "score", "--identity", path, "--images", setup["images"],
                                   "--face-models", setup["models"] / "insightface" / "models" / "antelopev2",
                                   "--json")
    assert code == 0, err
    a, b = json.loads(from_photos), json.loads(from_identity)
    assert [r["similarity"] for r in a["images"]] == pytest.approx([r["similarity"] for r in b["images"]], abs=1e-6)
    assert b["reference"]["photos"] == ["me.png"]


def test_face_choice_picks_the_face_measured(setup, capsys, tmp_path):
    group = _picture(tmp_path / "group.png", seed=9, size=(300, 360),
                     faces=(((10, 80, 110, 200), 1), ((150, 60, 290, 230), 0)))
    code, out, err = run(capsys, "score", "--photos", setup["me"], "--images", group,
                         "--models-dir", setup["models"], "--json", "--face", "0")
    assert code == 0, err
    (row,) = json.loads(out)["images"]
    assert (row["faces"], row["face_index"]) == (2, 0)
    code, out, _ = run(capsys, "score", "--photos", setup["me"], "--images", group,
                       "--models-dir", setup["models"], "--json")
    assert json.loads(out)["images"][0]["face_index"] == 1  # the largest
    assert json.loads(out)["images"][0]["similarity"] != row["similarity"]


def test_grid_is_written_once_and_never_overwritten(setup, capsys, tmp_path):
    grid = tmp_path / "grid.png"
    args = ("score", "--photos", setup["me"], "--images", setup["same"], setup["blank"],
            "--models-dir", setup["models"], "--grid", grid)
    code, out, err = run(capsys, *args)
    assert code == 0, err and "Wrote the grid" in out
    with Image.open(grid) as image:
        assert image.width > image.height > 200  # two pictures side by side, captions below
    before = grid.read_bytes()
    code, _, err = run(capsys, *args)
    assert code == 1 and "will not be overwritten" in err and grid.read_bytes() == before


def test_reference_photo_without_a_face_is_left_out_and_all_without_is_an_error(setup, capsys):
    code, out, err = run(capsys, "score", "--photos", setup["me"], setup["blank"], "--images", setup["same"],
                         "--models-dir", setup["models"])
    assert code == 0, err
    assert "c_blank.png: no face found, left out of the reference" in out
    code, _, err = run(capsys, "score", "--photos", setup["blank"], "--images", setup["same"],
                       "--models-dir", setup["models"])
    assert code == 1 and "No face was found" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, words", [
    (["score", "--images", "x.png", "--face-models", "f"], "one of the arguments --photos --identity is required"),
])
def test_bad_usage_is_one_line_and_exit_code_2(capsys, args, words):
    code, _, err = run(capsys, *args)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_missing_image_and_missing_face_models_are_named(setup, capsys, tmp_path):
    code, _, err = run(capsys, "score", "--photos", setup["me"], "--images", tmp_path / "nope.png",
                       "--models-dir", setup["models"])
    assert code == 1 and "nope.png" in err
    empty = tmp_path / "models"
    empty.mkdir()
    code, _, err = run(capsys, "score", "--photos", setup["me"], "--images", setup["same"], "--models-dir", empty)
    assert code == 1 and "antelopev2" in err and "glintr100.onnx" in err


def test_help_explains_every_option(capsys):
    code, out, _ = run(capsys, "score", "--help")
    assert code == 0
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command").choices["score"]
    for action in sub._actions:
        for flag in action.option_strings:
            assert flag in out
        assert action.help and len(action.help) > 10
