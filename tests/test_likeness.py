"""Likeness (ArcFace cosine similarity to the person) on the tiny face models: the core
(hyperlora_core/likeness/), the grid, the Likeness and Strength Sweep nodes (nodes/likeness.py, without
ComfyUI) and the trainer's sample report."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hyperlora_core import IdentityFeatures
from hyperlora_core.errors import InputError
from hyperlora_core.face import FaceAnalyzer
from hyperlora_core.likeness.grid import BACKGROUND, GAP, MISSING_TEXT, labelled_grid
from hyperlora_core.likeness.score import check_labels, mean_similarity, reference_embedding, score_images, summary
from node_fixtures import FakeClipVision, face_models, fake_comfy, pack, tiny_antelopev2  # noqa: F401
from pack import node_classes
from tiny_training import face_config, face_data  # noqa: F401
from tiny_face_models import make_tiny_antelopev2, marked_picture


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory) -> FaceAnalyzer:
    return FaceAnalyzer(make_tiny_antelopev2(tmp_path_factory.mktemp("faces") / "antelopev2"), provider="CPU")


def identity_of(analyzer, *photos, weights=None) -> IdentityFeatures:
    results = analyzer.analyze(list(photos))
    arcface = torch.stack([torch.from_numpy(r.arcface_embedding) for r in results])
    return IdentityFeatures(arcface=arcface, clip_tokens=torch.zeros(len(results), 257, 1024), weights=weights)


def cos(a, b) -> float:
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


# -- the core -----------------------------------------------------------------------------------

def test_a_face_scored_against_itself_is_one_and_another_face_lower(analyzer):
    me, other = marked_picture(1), marked_picture(2)
    same, different = score_images(analyzer, [me, other], identity_of(analyzer, me))
    assert same.similarity == pytest.approx(1.0, abs=1e-6)
    assert different.similarity < same.similarity - 1e-4
    (face,) = analyzer.analyze(other)
    assert different.similarity == pytest.approx(cos(face.arcface_embedding, analyzer.analyze(me)[0].arcface_embedding),
                                                 abs=1e-6)
    assert (same.n_faces, same.face_index, same.det_score) == (1, 0, pytest.approx(0.9))


def test_the_reference_is_the_weighted_mean_of_the_identitys_photos_normalised(analyzer):
    a, b, probe = marked_picture(3), marked_picture(4), marked_picture(5)
    embeddings = [r.arcface_embedding.astype(np.float64) for r in analyzer.analyze([a, b])]
    identity = identity_of(analyzer, a, b, weights=torch.tensor([3.0, 1.0]))
    expected = 0.75 * embeddings[0] / np.linalg.norm(embeddings[0]) + 0.25 * embeddings[1] / np.linalg.norm(embeddings[1])
    np.testing.assert_allclose(reference_embedding(identity), expected / np.linalg.norm(expected), atol=1e-6)
    (score,) = score_images(analyzer, [probe], identity)
    assert score.similarity == pytest.approx(cos(analyzer.analyze(probe)[0].arcface_embedding, expected), abs=1e-6)
    # Face results and plain arrays give the same reference.
    np.testing.assert_allclose(reference_embedding(analyzer.analyze([a])), reference_embedding(embeddings[0]), atol=1e-7)


def test_a_picture_without_a_face_is_missing_not_zero(analyzer):
    blank = np.full((300, 300, 3), 90, np.uint8)
    tiny = marked_picture(6, faces=(), size=(40, 40))  # too small for any face
    me = marked_picture(1)
    scores = score_images(analyzer, [me, blank, tiny], identity_of(analyzer, me), labels=["me", "wall", "thumb"])
    assert [s.missing for s in scores] == [False, True, True]
    assert scores[1].similarity is None and scores[1].n_faces == 0 and scores[1].face_index is None
    assert mean_similarity(scores) == pytest.approx(1.0)  # the missing ones do not pull the mean to 0.33
    text = summary(scores)
    assert "wall: no face" in text and "thumb: no face" in text
    assert "mean of 1 picture(s) with a face: 1.000 (2 without a face)" in text
    assert mean_similarity(scores[1:]) is None and "no face found in any of the 2" in summary(scores[1:])


def test_face_choice_picks_the_face_that_is_measured(analyzer):
    me = marked_picture(1)
    group = marked_picture(7, size=(320, 420), faces=(((20, 100, 120, 220), 1), ((200, 80, 390, 260), 0)))
    reference = identity_of(analyzer, me)
    by_choice = {c: score_images(analyzer, [group], reference, choice=c)[0] for c in ("largest", 0, 1, "most_confident")}
    assert by_choice["largest"].face_index == 1 and by_choice[0].face_index == 0
    assert by_choice["largest"].similarity == by_choice[1].similarity == by_choice["most_confident"].similarity
    assert by_choice[0].similarity != by_choice[1].similarity and by_choice[0].n_faces == 2


@pytest.mark.parametrize("reference, words", [
    (IdentityFeatures(arcface=torch.zeros(2, 512), clip_tokens=torch.zeros(2, 257, 1024)), "empty (all zero)"),
    ({"lora_unet_x.lora_down.weight": torch.zeros(8, 4)}, "has no ArcFace embeddings"),
    (torch.randn(3, 256), "expected N x 512"),
])
def test_an_identity_without_arcface_embeddings_is_named_with_the_fix(reference, words):
    with pytest.raises(InputError) as error:
        reference_embedding(reference, what="'identity' input")
    message = str(error.value)
    assert words in message and "'identity' input" in message and "Load Faces" in message


def test_labels_of_another_count_are_named_with_the_fix():
    assert check_labels([], 2) == ["picture 0", "picture 1"]
    with pytest.raises(InputError, match=r"labels: 3 label\(s\) for 2 picture\(s\).*one label per picture"):
        check_labels(["a", "b", "c"], 2)


def test_grid_holds_each_picture_unchanged_with_its_caption_below():
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 256, (100, 100, 3), dtype=np.uint8) for _ in range(3)]
    grid = labelled_grid(pictures, ["strength 0.50 \u00b7 similarity 0.71", "b", "strength 1.00 \u00b7 no face"],
                         columns=3, highlight=[False, False, True])
    strip = grid.shape[0] - 2 * GAP - 100
    assert grid.shape == (2 * GAP + 100 + strip, 4 * GAP + 300, 3) and strip > 10
    for n, pic in enumerate(pictures):
        x = GAP + n * (100 + GAP)
        np.testing.assert_array_equal(grid[GAP:GAP + 100, x:x + 100], pic)
        caption = grid[GAP + 100:GAP + 100 + strip, x:x + 100].reshape(-1, 3)
        assert (caption != BACKGROUND).any(axis=1).sum() > 10, "the caption is drawn"
    last = grid[GAP + 100:, GAP + 2 * 110:].reshape(-1, 3)
    assert (np.abs(last.astype(int) - MISSING_TEXT).sum(axis=1) < 30).any(), "no face is drawn in the warning colour"
    assert labelled_grid(pictures, ["a", "b", "c"]).shape[1] == 3 * GAP + 200  # 2 columns when not said


# -- the nodes, without ComfyUI -----------------------------------------------------------------

def _image(*rgbs) -> torch.Tensor:
    return torch.stack([torch.from_numpy(r).float() / 255 for r in rgbs])


@pytest.fixture
def likeness(pack, fake_comfy):  # noqa: F811
    """The Likeness and Strength Sweep nodes' module (fake_comfy's folder_paths has the temp folder
    the grid preview goes to)."""
    return importlib.import_module(pack.__name__ + ".nodes.likeness")


def _shown(out) -> dict:
    """What the node shows on itself (its ui, as ComfyUI sends it to the editor): Likeness gives
    text and images together, as one dict."""
    assert isinstance(out.ui, dict)
    return out.ui


def _identity_node(pack, rgb):
    classes = node_classes(pack)
    faces, _ = classes["HLS_LoadFaces"].execute(_image(rgb), "antelopev2", "CPU", "largest", True, False, "error")
    (identity,) = classes["HLS_IDEmbedding"].execute(faces, FakeClipVision())
    return faces, identity


def test_likeness_node_scores_a_sweep_and_labels_the_grid(pack, likeness, face_models):  # noqa: F811
    me, other, blank = marked_picture(1), marked_picture(2), np.full((320, 288, 3), 90, np.uint8)
    faces, identity = _identity_node(pack, me)
    strengths, labels = likeness.StrengthSweep.execute(0.5, 1.0, 3)
    assert strengths == [0.5, 0.75, 1.0] and labels == ["strength 0.50", "strength 0.75", "strength 1.00"]
    node = likeness.Likeness
    # INPUT_IS_LIST: each input arrives as a list; a sweep gives one image batch per strength.
    out = node.execute([_image(me), _image(other), _image(blank)], ["antelopev2"], ["CPU"], ["largest"], [3],
                       identity=[identity], labels=labels)
    similarities, text, grid, chart = out
    assert similarities[0] == pytest.approx(1.0, abs=1e-5) and similarities[1] < similarities[0]
    assert math.isnan(similarities[2])  # missing, not 0
    assert text.splitlines()[:3] == ["strength 0.50: 1.000", f"strength 0.75: {similarities[1]:.3f}",
                                     "strength 1.00: no face"]
    assert list(_shown(out)["text"]) == [text]
    # the set: two pictures with a face, the other one the worst, the blank one counted and listed
    assert f"worst: strength 0.75 ({similarities[1]:.3f})" in text
    assert "no face in 1 picture(s), not counted: strength 1.00" in text
    assert chart.shape == (1, 400, 960, 3) and len(_shown(out)["images"]) == 2  # the grid and the chart
    assert grid.shape[0] == 1 and grid.shape[-1] == 3 and grid.shape[2] > grid.shape[1]  # one row of three
    # The faces of Load Faces give the same numbers; typed labels are one per line.
    by_faces = node.execute([_image(me, other)], ["antelopev2"], ["CPU"], ["largest"], [0], faces=[faces],
                            labels=["mine\nsomeone else"])
    assert by_faces.result[0] == pytest.approx(similarities[:2], abs=1e-6)
    assert by_faces.result[1].startswith("mine: 1.000\nsomeone else: ")


def test_likeness_node_shows_the_summary_and_the_grid_file_in_the_temp_folder(likeness, fake_comfy, analyzer,
                                                                              monkeypatch):  # noqa: F811
    monkeypatch.setattr(likeness, "face_model_folder_path", lambda name: name)
    monkeypatch.setattr(likeness, "get_analyzer", lambda folder, provider: analyzer)
    me, other = marked_picture(1), marked_picture(2)
    out = likeness.Likeness.execute([_image(me, other)], ["antelopev2"], ["CPU"], ["largest"], [0],
                                    identity=[identity_of(analyzer, me)], labels=["me\nsomeone"])
    similarities, text, grid, chart = out
    shown = _shown(out)
    assert set(shown) >= {"text", "images"}
    assert list(shown["text"]) == [text] and text.startswith("me: 1.000\nsomeone: ")
    image, chart_image = shown["images"]  # the grid and the chart, as core 'Preview Image' lists them
    assert image["type"] == "temp" and image["filename"].endswith(".png")
    path = Path(fake_comfy.fp.get_temp_directory()) / image["subfolder"] / image["filename"]
    saved = np.asarray(Image.open(path).convert("RGB"))
    assert saved.shape == tuple(grid.shape[1:])
    np.testing.assert_array_equal(saved, (grid[0].numpy() * 255).round().astype(np.uint8))  # the grid's own 8 bits
    assert len(similarities) == 2 and likeness.Likeness.OUTPUT_NODE


def test_likeness_node_needs_one_person_and_a_label_per_picture(pack, likeness, face_models):  # noqa: F811
    me = marked_picture(1)
    faces, identity = _identity_node(pack, me)
    node = likeness.Likeness
    common = ([_image(me)], ["antelopev2"], ["CPU"], ["largest"], [0])
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="connect either 'identity'.*not neither"):
        node.execute(*common)
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="not both"):
        node.execute(*common, identity=[identity], faces=[faces])
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match=r"'labels' input: 2 label\(s\) for 1 picture"):
        node.execute(*common, identity=[identity], labels=["a", "b"])
    empty = IdentityFeatures(arcface=torch.zeros(1, 512), clip_tokens=torch.zeros(1, 257, 1024))
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="'identity' input holds ArcFace embeddings that are empty"):
        node.execute(*common, identity=[empty])


def test_strength_sweep_gives_evenly_spaced_values_and_refuses_a_bad_count(pack, likeness):
    sweep = likeness.StrengthSweep
    strengths, labels = sweep.execute(0.5, 1.0, 6)
    assert strengths == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0] and isinstance(labels, list) and len(labels) == 6
    assert tuple(sweep.execute(0.8, 1.0, 1)) == ([0.8], ["strength 0.80"])
    # Both outputs are lists (one run of the nodes downstream per value); Likeness gives a list of numbers.
    assert list(sweep.OUTPUT_IS_LIST) == [True, True]
    assert [o.is_output_list for o in sweep.GET_SCHEMA().outputs] == [True, True]
    assert list(likeness.Likeness.OUTPUT_IS_LIST) == [True, False, False, False] and likeness.Likeness.INPUT_IS_LIST
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="count must be between 1 and 64"):
        sweep.execute(0.5, 1.0, 0)


# -- the trainer's samples ----------------------------------------------------------------------

def test_trainer_samples_report_the_likeness_when_face_models_are_set(tmp_path, face_data, monkeypatch):  # noqa: F811
    from hyperlora_core.train import Trainer, sampling

    config = face_config(tmp_path, face_data)
    config.output.sample_every, config.output.sample_steps = 1, 1
    config.output.sample_prompts = ["a portrait", "another portrait"]
    trainer = Trainer(config)
    trainer.run()
    report = tmp_path / "out" / "samples" / "likeness.jsonl"

    def lines():
        return [json.loads(line) for line in report.read_text().splitlines()]

    # The number the score command and the Likeness node give for the saved sample pictures.
    reference = trainer.dataset[0]["arcface"]
    analyzer = FaceAnalyzer(face_data["faces"])
    saved = sorted((tmp_path / "out" / "samples").glob("*.png"))
    expected = [s.similarity for s in score_images(analyzer, [np.asarray(Image.open(p)) for p in saved], reference)]
    assert [(r["step"], r["image"]) for r in lines()] == [(1, "step_00000001_0.png"), (1, "step_00000001_1.png")]
    assert [r["similarity"] for r in lines()] == pytest.approx(expected, abs=1e-6)

    # A sample that is the training photo itself scores 1 against that photo's cached embedding ...
    photo = np.asarray(Image.open(trainer.dataset[0]["image"]).convert("RGB"))
    monkeypatch.setattr(sampling, "ddim_sample", lambda *args, **kwargs: photo.copy())
    assert len(trainer.sample()) == 2
    assert [r["similarity"] for r in lines()[2:]] == [pytest.approx(1.0, abs=1e-5)] * 2
    assert lines()[2]["reference"] == trainer.dataset[0]["image"]
    # ... and one without a face is reported as missing, not 0.
    monkeypatch.setattr(sampling, "ddim_sample", lambda *args, **kwargs: np.full((96, 96, 3), 90, np.uint8))
    trainer.sample()
    assert [(r["similarity"], r["faces"]) for r in lines()[4:]] == [(None, 0), (None, 0)]


def test_trainer_without_face_models_reports_nothing(tmp_path):
    from hyperlora_core.train import Trainer
    from tiny_training import make_cache, tiny_config

    config = tiny_config(tmp_path, make_cache(tmp_path / "cache", 2), output={"sample_every": 1, "sample_steps": 1})
    config.training.max_steps = 1
    trainer = Trainer(config)
    trainer.run()
    assert trainer.likeness is None
    assert list((tmp_path / "out" / "samples").glob("*.png"))
    assert not (tmp_path / "out" / "samples" / "likeness.jsonl").exists()
