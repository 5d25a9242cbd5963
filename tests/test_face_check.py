"""The photo check (hyperlora_core/face/check.py) on constructed faces: the stranger in a set, small,
unsure, blurred and turned faces flagged with plain reasons, and keep / drop / down-weight."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from face_check_data import face, person_embeddings, posed_landmarks, textured_photo

from hyperlora_core.errors import InputError
from hyperlora_core.face import check as fc
from hyperlora_core.features.identity import IdentityFeatures


def _set(n=5, outlier=None, changes=None):
    embeddings = person_embeddings(n, outlier)
    return [face(i, embeddings[i], **(changes or {}).get(i, {})) for i in range(n)]


def test_a_set_of_one_person_is_not_flagged():
    result = fc.check_faces(_set(5))
    assert not result.flagged and all(0.45 < p.agreement < 0.95 for p in result.photos)
    assert "no photo flagged" in result.table()


def test_the_stranger_is_flagged_with_its_agreement_against_the_others_median():
    faces = _set(5, outlier=3)
    result = fc.check_faces(faces)
    assert [p.index for p in result.flagged] == [3]
    (reason,) = result.photos[3].reasons
    others = [p.agreement for p in result.photos if p.index != 3]
    assert reason == f"photo 3 looks like a different person: {result.photos[3].agreement:.2f} against the " \
                     f"others' median {np.median(others):.2f}"
    assert result.photos[3].agreement < 0.2


def test_agreement_is_the_cosine_to_the_normalised_mean_of_the_others():
    e = person_embeddings(4)
    got = fc.agreements(e)
    mean = e[1:].astype(np.float64).sum(axis=0)
    assert got[0] == pytest.approx(float(e[0] @ mean / np.linalg.norm(mean)), abs=1e-6)
    assert fc.agreements(e[:1]) == [None]


def test_two_photos_that_disagree_are_both_flagged_and_all_kept():
    e = person_embeddings(2, outlier=1)
    result = fc.apply_check(fc.check_faces([face(0, e[0]), face(1, e[1])]), "drop")
    assert all("may be another person" in p.reasons[0] for p in result.photos)
    assert result.kept == [0, 1] and result.weights == [1.0, 1.0]
    assert "every photo is flagged, so all 2 are kept" in result.note


def test_one_photo_has_no_agreement_and_is_checked_for_the_rest():
    result = fc.check_faces([face(0, person_embeddings(1)[0], width=48)])
    assert result.photos[0].agreement is None
    assert result.photos[0].reasons == ["photo 0: the face is 48 px wide; 112 px or more works best"]


def test_small_unsure_blurred_and_turned_faces_are_flagged_with_plain_reasons():
    faces = _set(6, changes={1: {"width": 48}, 2: {"det_score": 0.55}, 3: {"sharpness": 12.0},
                       4: {"landmarks": posed_landmarks(yaw=55)}, 5: {"landmarks": posed_landmarks(pitch=-40)}})
    result = fc.check_faces(faces, labels=[f"photo {i}" for i in range(6)])
    reasons = {p.index: p.reasons for p in result.photos}
    assert reasons[0] == []
    assert reasons[1] == ["photo 1: the face is 48 px wide; 112 px or more works best"]
    assert "detector is unsure (score 0.55" in reasons[2][0]
    assert "blurred (sharpness 12" in reasons[3][0]
    assert reasons[4] == ["photo 4: head turned 55 degrees (up to 30 works best)"]
    assert reasons[5][0].startswith("photo 5: head tilted down")


@pytest.mark.parametrize("yaw,pitch,roll", [(0, 0, 0), (20, 0, 0), (-40, 0, 0), (0, 15, 0), (0, 0, 25), (25, 0, 15)])
def test_head_pose_estimate_recovers_the_pose_of_a_turned_template(yaw, pitch, roll):
    got = fc.head_pose(posed_landmarks(yaw, pitch, roll))
    assert got[0] == pytest.approx(yaw, abs=3) and got[1] == pytest.approx(pitch, abs=3)
    assert got[2] == pytest.approx(roll, abs=3)


def test_a_blurred_photo_is_less_sharp_than_the_threshold_and_a_sharp_one_above():
    import cv2
    photo = textured_photo()
    landmarks = posed_landmarks(scale=1.5)
    sharp = fc.face_sharpness(photo, landmarks)
    blurred = fc.face_sharpness(cv2.GaussianBlur(photo, (0, 0), 6), landmarks)
    assert sharp > fc.MIN_SHARPNESS > blurred


def test_sharpness_is_measured_from_the_photos_when_faces_do_not_carry_it():
    import cv2
    e = person_embeddings(2)
    faces = [face(0, e[0], sharpness=None), face(1, e[1], sharpness=None)]
    photos = [textured_photo(), cv2.GaussianBlur(textured_photo(), (0, 0), 6)]
    result = fc.check_faces(faces, photos=photos)
    assert not result.photos[0].flagged and "blurred" in result.photos[1].reasons[0]


def test_keep_is_flags_only():
    result = fc.apply_check(fc.check_faces(_set(4, outlier=2)), "keep")
    assert result.kept == [0, 1, 2, 3] and result.weights == [1.0] * 4
    assert "1 of 4 photo(s) flagged; all kept" in result.note


def _identity(faces, check):
    """What Load Faces and the pipeline make of a checked set: the kept photos with their weights."""
    kept = [faces[i] for i in check.kept]
    tokens = torch.randn(len(kept), 257, 1024, generator=torch.Generator().manual_seed(0))
    return IdentityFeatures.from_faces(kept, tokens, weights=check.weights)


def test_drop_leaves_the_flagged_photo_out_of_the_identity():
    faces = _set(4, outlier=1)
    result = fc.apply_check(fc.check_faces(faces), "drop")
    assert result.kept == [0, 2, 3] and "dropped 1 flagged photo(s): photo 1" in result.note
    identity = _identity(faces, result)
    expected = torch.tensor(np.stack([faces[i].arcface_embedding for i in (0, 2, 3)]))
    assert torch.allclose(identity.arcface, expected, atol=1e-6)
    assert torch.allclose(identity.weights, torch.full((3,), 1 / 3))


def test_downweight_gives_the_flagged_photo_its_weight_in_the_identity():
    faces = _set(4, outlier=1)
    result = fc.apply_check(fc.check_faces(faces), "downweight")
    assert result.kept == [0, 1, 2, 3] and result.weights == [1.0, fc.DOWNWEIGHT, 1.0, 1.0]
    identity = _identity(faces, result)
    total = 3 + fc.DOWNWEIGHT
    assert torch.allclose(identity.weights, torch.tensor([1, fc.DOWNWEIGHT, 1, 1]) / total)


def test_every_photo_flagged_keeps_them_all_and_says_so():
    faces = _set(3, changes={i: {"width": 40} for i in range(3)})
    result = fc.apply_check(fc.check_faces(faces), "downweight")
    assert result.kept == [0, 1, 2] and result.weights == [1.0, 1.0, 1.0]
    assert result.note.startswith("every photo is flagged, so all 3 are kept")
    assert result.note in result.table()


def test_an_unknown_action_is_named_with_the_choices():
    with pytest.raises(InputError, match="keep, drop, downweight"):
        fc.apply_check(fc.check_faces(_set(2)), "discard")


def test_the_table_has_a_row_per_photo_and_the_json_the_numbers():
    result = fc.apply_check(fc.check_faces(_set(3, outlier=0)), "drop")
    lines = result.table().splitlines()
    assert lines[0].split()[:3] == ["photo", "face", "px"] and len([x for x in lines if x.startswith("photo ")]) >= 3
    data = result.as_dict()
    assert data["action"] == "drop" and data["kept"] == [1, 2] and data["photos"][0]["flagged"]
