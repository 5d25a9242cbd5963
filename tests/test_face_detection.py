"""face/detection.py on the tiny models: which face is chosen, close-ups found after padding, large
photos detected as the reference does or on a shrunk copy, and insightface 0.7's detector."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from face_photos import close, photo, three_faces
from hyperlora_core.errors import InputError
from hyperlora_core.face import DETECT_MAX_SIDE, DETECT_SIZES, FaceAnalyzer, clip_crop
from tiny_face_models import draw_face, landmarks_for_box


# -- which face ------------------------------------------------------------------------------


def test_face_choice_largest_most_confident_or_index_from_the_left(analyzer, caplog):
    rgb, boxes = three_faces()
    with caplog.at_level(logging.INFO, logger="hyperlora_core.face"):
        largest, = analyzer.analyze(rgb)
    assert "3 faces found; using face 1 from the left (choice: largest)" in caplog.text
    close(largest.box, boxes["big_middle"], 3.0)  # detected at 640/900 of the size
    assert (largest.n_faces, largest.face_index) == (3, 1)
    confident, = analyzer.analyze(rgb, choice="most_confident")
    close(confident.box, boxes["confident_small_right"], 3.0)
    assert confident.face_index == 2 and confident.det_score == pytest.approx(0.9)
    for index, name in enumerate(["left", "big_middle", "confident_small_right"]):
        result, = analyzer.analyze(rgb, choice=index)
        close(result.box, boxes[name], 3.0)
        assert result.face_index == index
    assert analyzer.analyze(rgb, choice="0")[0].face_index == 0


def test_face_index_beyond_the_faces_in_a_photo_is_an_input_error(analyzer):
    rgb, _ = three_faces()
    with pytest.raises(InputError, match="Photo 0 has 3 face.*face index 3 does not exist"):
        analyzer.analyze(rgb, choice=3)


@pytest.mark.parametrize("choice", ["biggest", -1, 1.5, True])
def test_unknown_face_choice_is_an_input_error(analyzer, choice):
    with pytest.raises(InputError, match="Unknown face choice"):
        analyzer.analyze(draw_face(photo(), (100, 100, 200, 220)), choice=choice)


# -- finding faces -----------------------------------------------------------------------------


def test_close_up_face_is_found_after_padding(analyzer):
    rgb = draw_face(photo(400, 480, seed=12), (20, 30, 380, 465))
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    detector = analyzer.models.detector
    # The reference: retries at 640, 512, 384 and 256 only; none finds the close-up.
    for size in DETECT_SIZES:
        boxes, _ = detector.detect(bgr, input_size=(size, size), det_thresh=0.5)
        assert len(boxes) == 0
    assert len(analyzer.detect(rgb, allow_padding=False)) == 0
    (result,) = analyzer.analyze(rgb)
    assert result.detection.padding > 0
    close(result.box, (20, 30, 380, 465), 2.0)
    close(result.landmarks, landmarks_for_box((20, 30, 380, 465)), 3.5)


def test_large_photo_is_detected_on_a_shrunk_copy_when_the_photo_itself_gives_no_face(analyzer, monkeypatch):
    rgb = photo(4000, 3000, seed=13)
    box = (2400, 1200, 2760, 1640)
    draw_face(rgb, box, ring=12)
    seen = []
    detect = analyzer.models.detector.detect

    def recording(image, *args, **kwargs):  # as if SCRFD's own 6x bilinear shrink lost the face
        seen.append(image.shape[:2])
        boxes, kps = detect(image, *args, **kwargs)
        return (boxes[:0], kps[:0]) if max(image.shape[:2]) > DETECT_MAX_SIDE else (boxes, kps)

    monkeypatch.setattr(analyzer.models.detector, "detect", recording)
    detection = analyzer.detect(rgb)
    # The reference's four sizes on the photo itself first, then the area-averaged copy.
    assert seen[: len(DETECT_SIZES)] == [(3000, 4000)] * len(DETECT_SIZES)
    assert max(seen[len(DETECT_SIZES)]) == DETECT_MAX_SIDE
    assert detection.scale == pytest.approx(DETECT_MAX_SIDE / 4000)
    (result,) = analyzer.analyze(rgb)
    close(result.box, box, 4.0)  # in the original photo's pixels
    close(result.landmarks, landmarks_for_box(box), 4.0)
    half = result.landmark_box[2]
    assert abs(result.clip_crop.shape[0] - 2 * half) <= 1  # cut from the full-size photo
    expected = clip_crop(Image.fromarray(rgb), result.landmarks)
    np.testing.assert_array_equal(result.clip_crop, expected)


def test_large_photo_whose_face_the_reference_finds_is_detected_as_the_reference_does(analyzer):
    from hyperlora_core.face import detection as detection_module

    rgb = photo(4000, 3000, seed=16)
    box = (1800, 900, 2500, 1800)
    draw_face(rgb, box)  # filled: found on the full photo at 640, as the reference finds it
    found = analyzer.detect(rgb)
    assert found.scale == 1.0 and found.size == DETECT_SIZES[0] and found.padding == 0
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    boxes, kps = detection_module.detect_once(analyzer.models.detector, bgr, 640, 0.5)
    np.testing.assert_array_equal(found.boxes, boxes[:, :4])
    np.testing.assert_array_equal(found.keypoints, kps)


def test_insightface_0_7_detector_signature_is_supported(antelopev2, monkeypatch):
    analyzer = FaceAnalyzer(antelopev2, "CPU", det_thresh=0.85)
    detector = analyzer.models.detector
    detect = detector.detect
    thresholds = []

    def detect_0_7(img, input_size=None, max_num=0, metric="default"):  # no det_thresh argument
        thresholds.append(detector.det_thresh)
        return detect(img, input_size=input_size, max_num=max_num, metric=metric, det_thresh=detector.det_thresh)

    monkeypatch.setattr(detector, "detect", detect_0_7)
    rgb = photo(900, 420, seed=9)
    draw_face(rgb, (60, 120, 200, 280), slot=0)  # score 0.9
    draw_face(rgb, (370, 80, 560, 320), slot=1)  # score 0.8: below the threshold
    (result,) = analyzer.analyze(rgb)
    assert result.n_faces == 1 and result.det_score == pytest.approx(0.9)
    assert thresholds and set(thresholds) == {0.85}
