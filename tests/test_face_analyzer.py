"""face/analyzer.py: the whole face pipeline on the tiny models (detection, crops, ArcFace embedding,
preview), the photos it accepts, and real photos.

The real antelopev2 weights are not available to CI, so the pipeline runs on the tiny stand-ins of
``tiny_face_models`` (real insightface ``model_zoo`` loading and real ONNX Runtime sessions, but
"faces" are coloured markers the tests draw).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from face_photos import close, photo, three_faces
from hyperlora_core.errors import HyperLoRAError, InputError, NoFaceError
from hyperlora_core.features.clip_pixels import clip_pixel_values
from hyperlora_core.face import FaceAnalyzer, base_crop, clip_crop, landmark_box
from hyperlora_core.files.images import load_image, to_rgb_list
from tiny_face_models import draw_face, landmarks_for_box


# -- the whole pipeline ------------------------------------------------------------------------


def test_the_face_is_found_where_it_is_and_cropped_as_the_spec_says(analyzer):
    rgb = draw_face(photo(), (200, 120, 330, 290))
    (result,) = analyzer.analyze(rgb)
    close(result.box, (200, 120, 330, 290), 1.0)
    close(result.landmarks, landmarks_for_box((200, 120, 330, 290)), 1.5)
    assert result.landmarks.shape == (106, 2) and result.landmarks.dtype == np.float32
    assert (result.index, result.face_index, result.n_faces) == (0, 0, 1)
    assert result.det_score == pytest.approx(0.9)
    assert result.landmark_box == pytest.approx(landmark_box(result.landmarks))
    np.testing.assert_array_equal(result.clip_crop, clip_crop(Image.fromarray(rgb), result.landmarks))
    np.testing.assert_array_equal(result.base_crop, base_crop(Image.fromarray(rgb), result.landmarks))
    embedding = result.arcface_embedding
    assert embedding.shape == (512,) and embedding.dtype == np.float32
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)
    assert result.preview.shape == (512, 1536, 3) and result.preview.dtype == np.uint8
    assert result.arcface_redetected and result.detection.size == 640 and result.detection.padding == 0


def test_crop_options_change_only_their_crop(analyzer):
    rgb = draw_face(photo(seed=3), (250, 100, 390, 280), ring=6)
    plain, = analyzer.analyze(rgb, remove_background=False)
    removed, = analyzer.analyze(rgb)
    grey, = analyzer.analyze(rgb, grey=True)
    whole, = analyzer.analyze(rgb, crop_base=False)
    np.testing.assert_array_equal(plain.clip_crop, clip_crop(Image.fromarray(rgb), plain.landmarks, remove_bg=False))
    assert (removed.clip_crop != plain.clip_crop).any()
    assert (grey.clip_crop[..., 0] == grey.clip_crop[..., 2]).all()
    assert whole.base_crop.shape == rgb.shape
    np.testing.assert_array_equal(plain.base_crop, removed.base_crop)  # the Base-LoRA crop keeps the background


def test_embedding_of_a_face_in_a_group_is_that_face_alone(analyzer):
    rgb, boxes = three_faces()
    background = photo(900, 420, seed=9)
    embeddings = []
    for index, name in enumerate(["left", "big_middle", "confident_small_right"]):
        in_group, = analyzer.analyze(rgb, choice=index)
        x0, y0, x1, y1 = boxes[name]
        alone = background.copy()
        alone[y0 - 40 : y1 + 40, x0 - 40 : x1 + 40] = rgb[y0 - 40 : y1 + 40, x0 - 40 : x1 + 40]
        single, = analyzer.analyze(alone)
        assert float(in_group.arcface_embedding @ single.arcface_embedding) > 0.999
        embeddings.append(in_group.arcface_embedding)
    assert float(embeddings[0] @ embeddings[1]) < 0.99  # different faces, different embeddings


@pytest.mark.filterwarnings("ignore::FutureWarning")  # scikit-image, inside insightface
def test_arcface_embedding_comes_from_the_original_photo_redetected_at_640(analyzer):
    from insightface.app.common import Face

    rgb = draw_face(photo(seed=14), (220, 110, 360, 300), ring=6)
    rgb[130:280, 240:340] = (30, 90, 150)
    with_bg, = analyzer.analyze(rgb, remove_background=True)
    without_bg, = analyzer.analyze(rgb, remove_background=False)
    np.testing.assert_array_equal(with_bg.arcface_embedding, without_bg.arcface_embedding)
    # Spec: square of half-side 2l of the original photo, detected again at 640, normed_embedding.
    cx, cy, half = with_bg.landmark_box
    crop = np.asarray(Image.fromarray(rgb).crop((cx - 2 * half, cy - 2 * half, cx + 2 * half, cy + 2 * half)))
    bgr = np.ascontiguousarray(crop[:, :, ::-1])
    boxes, kps = analyzer.models.detector.detect(bgr, input_size=(640, 640), det_thresh=0.5)
    face = Face(bbox=boxes[0, :4], kps=kps[0], det_score=boxes[0, 4])
    analyzer.models.recognition.get(bgr, face)
    close(with_bg.arcface_embedding, face.normed_embedding, 1e-6)
    other = rgb.copy()
    other[130:280, 240:340] = (150, 40, 20)
    assert float(analyzer.analyze(other)[0].arcface_embedding @ with_bg.arcface_embedding) < 0.99


def test_arcface_uses_the_first_detection_when_the_crop_gives_no_face(analyzer, monkeypatch):
    rgb = draw_face(photo(seed=15), (220, 110, 360, 300), ring=6)
    normal, = analyzer.analyze(rgb)
    detect = analyzer.models.detector.detect
    calls = []

    def only_first(image, *args, **kwargs):
        calls.append(1)
        boxes, kps = detect(image, *args, **kwargs)
        return (boxes, kps) if len(calls) == 1 else (boxes[:0], kps[:0])

    monkeypatch.setattr(analyzer.models.detector, "detect", only_first)
    fallback, = analyzer.analyze(rgb)
    assert not fallback.arcface_redetected
    assert float(fallback.arcface_embedding @ normal.arcface_embedding) > 0.999


def test_photo_without_face_is_left_out_with_a_warning_naming_it(analyzer, caplog):
    photos = [draw_face(photo(seed=1), (100, 100, 220, 240)), photo(seed=2), draw_face(photo(seed=3), (300, 150, 420, 300), slot=1)]
    with caplog.at_level(logging.WARNING):
        results = analyzer.analyze(photos)
    assert [r.index for r in results] == [0, 2]
    assert "No face found in photo 1" in caplog.text and "left out: 1" in caplog.text


def test_no_face_in_any_photo_says_so_and_what_to_try(analyzer):
    with pytest.raises(NoFaceError) as error:
        analyzer.analyze([photo(seed=1), photo(seed=2)])
    message = str(error.value)
    assert "any of the 2 photos" in message and "frontal" in message and "antelopev2" in message
    assert isinstance(error.value, HyperLoRAError)
    with pytest.raises(NoFaceError, match="in the photo"):
        analyzer.analyze(photo(seed=4))


def test_comfyui_image_batch_gives_the_same_results_as_arrays(analyzer):
    arrays = [draw_face(photo(seed=1), (100, 100, 220, 240)), draw_face(photo(seed=2), (300, 150, 420, 300))]
    tensor = torch.from_numpy(np.stack(arrays)).float() / 255.0
    from_tensor = analyzer.analyze(tensor)
    from_arrays = analyzer.analyze(arrays)
    assert [r.index for r in from_tensor] == [0, 1]
    for a, b in zip(from_tensor, from_arrays):
        np.testing.assert_array_equal(a.clip_crop, b.clip_crop)
        np.testing.assert_array_equal(a.arcface_embedding, b.arcface_embedding)


# -- inputs ----------------------------------------------------------------------------------


def test_exif_rotated_jpeg_is_turned_upright(analyzer, tmp_path):
    upright = draw_face(photo(300, 400, seed=16), (40, 30, 160, 170))  # face at the top left
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # as the camera wrote it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    stored.save(path, quality=95, exif=exif)
    loaded = load_image(path)
    assert loaded.shape == (400, 300, 3)
    close(loaded.astype(float).mean(axis=2), upright.astype(float).mean(axis=2), 60)
    (result,) = analyzer.analyze(str(path))
    close(result.box, (40, 30, 160, 170), 3.0)


def test_rgba_photo_is_composited_on_white(analyzer, tmp_path):
    rgba = np.dstack([draw_face(photo(seed=17), (200, 100, 330, 260)), np.full((480, 640), 255, np.uint8)])
    rgba[:, :100, 3] = 0  # transparent strip
    path = tmp_path / "cutout.png"
    Image.fromarray(rgba, "RGBA").save(path)
    loaded = load_image(path)
    assert (loaded[:, :100] == 255).all()
    np.testing.assert_array_equal(loaded[:, 100:], rgba[:, 100:, :3])
    np.testing.assert_array_equal(to_rgb_list(rgba)[0], loaded)
    close(analyzer.analyze(path)[0].box, (200, 100, 330, 260), 1.0)


def grey_photo_with_face(seed=18) -> np.ndarray:
    grey = np.random.default_rng(seed).integers(40, 200, (300, 360), dtype=np.uint8)
    grey[60:220, 120:250] = 255  # the white marker: a face in a greyscale photo
    return grey


def test_greyscale_photo(analyzer, tmp_path):
    grey = grey_photo_with_face()
    path = tmp_path / "grey.png"
    Image.fromarray(grey, "L").save(path)
    loaded = load_image(path)
    np.testing.assert_array_equal(loaded, np.repeat(grey[:, :, None], 3, axis=2))
    close(analyzer.analyze(path)[0].box, (120, 60, 250, 220), 1.0)


def test_16_bit_png_is_scaled_to_8_bit(analyzer, tmp_path):
    grey16 = grey_photo_with_face().astype(np.uint16) * 257
    grey16[0, 0] = 1000
    path = tmp_path / "scan16.png"
    Image.fromarray(grey16).save(path)
    assert Image.open(path).mode.startswith("I")
    loaded = load_image(path)
    assert loaded[0, 0, 0] == round(1000 / 257)
    np.testing.assert_array_equal(loaded[1:, 1:, 0], (grey16[1:, 1:] // 257).astype(np.uint8))
    np.testing.assert_array_equal(to_rgb_list(grey16[:, :, None])[0], loaded)
    close(analyzer.analyze(path)[0].box, (120, 60, 250, 220), 1.0)


def test_palette_photo(analyzer, tmp_path):
    rgb = draw_face(np.full((300, 400, 3), (40, 120, 60), np.uint8), (150, 60, 270, 220), slot=1)
    path = tmp_path / "palette.png"
    Image.fromarray(rgb).quantize(colors=4).save(path)
    assert Image.open(path).mode == "P"
    np.testing.assert_array_equal(load_image(path), rgb)
    close(analyzer.analyze(path)[0].box, (150, 60, 270, 220), 1.0)


def test_photo_too_small_for_a_face_is_an_input_error(analyzer):
    with pytest.raises(InputError, match=r"63x200 pixels: too small .*64x64"):
        analyzer.analyze(np.zeros((200, 63, 3), np.uint8))
    with pytest.raises(InputError, match="Photo 1 is 80x40"):
        analyzer.analyze([photo(), np.zeros((40, 80, 3), np.uint8)])


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"not": "an image"}, "is a dict, not an image"),
        (np.zeros((100, 100, 5), np.uint8), "expected height x width x channels"),
        (np.full((100, 100, 3), 2.0, np.float32), "float images must be in 0..1"),
        (np.full((100, 100, 3), np.nan, np.float32), "NaN"),
        (np.zeros((100, 100, 3), np.int64), "pixel type int64"),
        ([], "No photos were given"),
        (torch.zeros(0, 100, 100, 3), "No photos were given"),
    ],
)
def test_what_is_not_a_photo_is_an_input_error(analyzer, bad, message):
    with pytest.raises(InputError, match=message):
        analyzer.analyze(bad)


def test_files_that_are_missing_or_not_images_are_input_errors(analyzer, tmp_path):
    with pytest.raises(InputError, match="Image file not found"):
        analyzer.analyze(tmp_path / "missing.jpg")
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(InputError, match="is not an image that can be read"):
        analyzer.analyze(str(text))


# -- real photos -----------------------------------------------------------------------------

INSIGHTFACE_IMAGES = Path(__import__("insightface").__file__).parent / "data" / "images"
REAL_PHOTOS = sorted(INSIGHTFACE_IMAGES.glob("*.*"))


@pytest.mark.parametrize("path", REAL_PHOTOS, ids=[p.name for p in REAL_PHOTOS])
def test_real_photos_from_the_insightface_wheel_run_through_the_whole_pipeline(analyzer, path):
    """Real photos (colour, greyscale, JPEG, PNG, 112 px to 1280 px) through every step.

    The real antelopev2 weights are not available here, so the models are the tiny stand-ins: a
    magenta ring drawn around the middle of each photo is the "face"; everything inside it, and
    all the cropping, blurring and alignment around it, works on the real pixels.
    """
    rgb = load_image(path)
    height, width = rgb.shape[:2]
    side = int(0.4 * min(height, width))
    box = ((width - side) // 2, (height - side) // 2, (width + side) // 2, (height + side) // 2)
    draw_face(rgb, box, ring=3)
    (result,) = analyzer.analyze(rgb)
    close(result.box, box, 2.0)
    assert result.clip_crop.ndim == 3 and min(result.clip_crop.shape[:2]) > 0.9 * 1.5 * side
    assert result.base_crop.shape[:2] == result.clip_crop.shape[:2]
    assert np.linalg.norm(result.arcface_embedding) == pytest.approx(1.0, abs=1e-5)
    assert clip_pixel_values([result.clip_crop, result.base_crop]).shape == (2, 3, 224, 224)


def test_real_group_photo_without_a_marker_has_no_tiny_face(analyzer):
    with pytest.raises(NoFaceError):
        analyzer.analyze(INSIGHTFACE_IMAGES / "t1.jpg")


@pytest.mark.skipif(not os.environ.get("HYPERLORA_ANTELOPEV2"), reason="set HYPERLORA_ANTELOPEV2 to the real antelopev2 folder")
def test_real_antelopev2_finds_the_faces_in_real_photos():
    analyzer = FaceAnalyzer(os.environ["HYPERLORA_ANTELOPEV2"])
    group = analyzer.analyze(INSIGHTFACE_IMAGES / "t1.jpg", choice="most_confident")[0]
    assert group.n_faces >= 5
    for choice in range(group.n_faces):
        assert analyzer.analyze(INSIGHTFACE_IMAGES / "t1.jpg", choice=choice)[0].face_index == choice
