"""The face pipeline: loading antelopev2, detection, face choice, the spec section 8 crops, inputs.

The real antelopev2 weights are not available to CI, so the pipeline runs on the tiny stand-ins of
``tiny_face_models`` (real insightface ``model_zoo`` loading and real ONNX Runtime sessions, but
"faces" are coloured markers the tests draw). Crop geometry is checked on synthetic landmarks
against the spec's formulas.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter

from hyperlora_core.constants import CLIP_MEAN, CLIP_STD
from hyperlora_core.errors import FaceModelError, HyperLoRAError, InputError, NoFaceError
from hyperlora_core.features.clip_pixels import clip_pixel_values
from hyperlora_core.face import (
    DETECT_MAX_SIDE,
    DETECT_SIZES,
    FACE_POLYGON,
    FaceAnalyzer,
    base_crop,
    blur_face,
    clip_crop,
    landmark_box,
    remove_background,
)
from hyperlora_core.face.models import find_antelopev2, load_face_models, resolve_providers
from hyperlora_core.files.images import load_image, to_rgb_list
from tiny_face_models import (
    draw_face,
    landmarks_for_box,
    make_tiny_antelopev2,
)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
SPEC_POLYGON = [1, 9, 10, 11, 12, 13, 14, 15, 16, 2, 3, 4, 5, 6, 7, 8, 0,
                24, 23, 22, 21, 20, 19, 18, 32, 31, 30, 29, 28, 27, 26, 25, 17,
                101, 105, 104, 103, 102, 50, 51, 49, 48, 43]


@pytest.fixture(scope="module")
def antelopev2(tmp_path_factory) -> Path:
    return make_tiny_antelopev2(tmp_path_factory.mktemp("insightface") / "models" / "antelopev2")


@pytest.fixture(scope="module")
def analyzer(antelopev2) -> FaceAnalyzer:
    return FaceAnalyzer(antelopev2, provider="CPU")


def photo(width=640, height=480, seed=0) -> np.ndarray:
    """A textured background that holds no marker colour."""
    rng = np.random.default_rng(seed)
    return rng.integers(60, 180, size=(height, width, 3), dtype=np.uint8)


def close(a, b, tol):
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), atol=tol)


# -- loading the models ----------------------------------------------------------------------


def test_tiny_models_load_through_insightface_model_zoo_like_the_real_ones(antelopev2):
    models = load_face_models(antelopev2, "CPU")
    assert type(models.detector).__name__ == "SCRFD" and models.detector.use_kps
    assert models.detector.fmc == 3 and models.detector._num_anchors == 2
    assert models.landmarks.taskname == "landmark_2d_106"
    assert models.recognition.taskname == "recognition"
    assert models.providers == [CPU]
    # The decoy 1k3d68.onnx / genderage.onnx are not ONNX: loading them would have failed.
    assert (antelopev2 / "genderage.onnx").read_bytes().startswith(b"not an onnx")


def test_missing_folder_lists_the_files_and_where_to_get_them(tmp_path):
    with pytest.raises(FaceModelError) as error:
        FaceAnalyzer(tmp_path / "nowhere")
    message = str(error.value)
    for name in ("scrfd_10g_bnkps.onnx", "2d106det.onnx", "glintr100.onnx"):
        assert name in message
    assert "models/insightface/models/antelopev2" in message and "does not exist" in message


def test_incomplete_folder_names_the_missing_file(antelopev2, tmp_path):
    folder = tmp_path / "antelopev2"
    shutil.copytree(antelopev2, folder)
    (folder / "glintr100.onnx").unlink()
    with pytest.raises(FaceModelError, match=r"incomplete: glintr100\.onnx missing"):
        load_face_models(folder)


def test_damaged_model_file_is_a_face_model_error(antelopev2, tmp_path):
    folder = tmp_path / "antelopev2"
    shutil.copytree(antelopev2, folder)
    (folder / "2d106det.onnx").write_bytes(b"\x00" * 100)
    analyzer = FaceAnalyzer(folder, provider="CPU")  # models load lazily
    with pytest.raises(FaceModelError, match=r"2d106det\.onnx could not be loaded.*download"):
        analyzer.analyze(draw_face(photo(), (100, 100, 220, 240)))


def test_a_model_in_the_wrong_place_is_named(antelopev2, tmp_path):
    folder = tmp_path / "antelopev2"
    shutil.copytree(antelopev2, folder)
    shutil.copy(folder / "2d106det.onnx", folder / "glintr100.onnx")
    with pytest.raises(FaceModelError, match="should be the antelopev2 recognition model but looks like landmark_2d_106"):
        load_face_models(folder, "CPU")


def test_comfyui_insightface_folder_and_nested_zip_folder_are_accepted(antelopev2, tmp_path):
    insightface_root = antelopev2.parent.parent
    assert find_antelopev2(insightface_root) == antelopev2
    nested = tmp_path / "antelopev2" / "antelopev2"
    shutil.copytree(antelopev2, nested)
    assert find_antelopev2(tmp_path / "antelopev2") == nested


def test_insightface_is_never_asked_to_download(antelopev2, monkeypatch):
    import insightface.utils.storage as storage
    from insightface.model_zoo import model_zoo

    def forbidden(*args, **kwargs):
        raise AssertionError("insightface tried to download")

    monkeypatch.setattr(storage, "download", forbidden)
    monkeypatch.setattr(storage, "download_onnx", forbidden)
    monkeypatch.setattr(model_zoo, "download_onnx", forbidden)
    results = FaceAnalyzer(antelopev2, "CPU").analyze(draw_face(photo(), (100, 100, 220, 240)))
    assert len(results) == 1


# -- ONNX Runtime providers ------------------------------------------------------------------


def test_auto_provider_takes_cuda_when_there_and_the_cpu_otherwise():
    assert resolve_providers("auto", available=[CUDA, CPU]) == [CUDA, CPU]
    assert resolve_providers("auto", available=[CPU]) == [CPU]
    assert resolve_providers("cuda", available=[CUDA, CPU]) == [CUDA, CPU]
    assert resolve_providers("CPU", available=[CUDA, CPU]) == [CPU]
    assert resolve_providers("ROCMExecutionProvider", available=["ROCMExecutionProvider", CPU])[0] == "ROCMExecutionProvider"


def test_unavailable_provider_falls_back_to_cpu_with_a_warning(antelopev2, caplog):
    assert resolve_providers("CUDA", available=[CPU]) == [CPU]
    assert "CUDAExecutionProvider is not available" in caplog.text
    caplog.clear()
    import onnxruntime

    if CUDA not in onnxruntime.get_available_providers():
        with caplog.at_level(logging.WARNING):
            models = load_face_models(antelopev2, "CUDA")
        assert models.providers == [CPU]
        assert "runs on the CPU" in caplog.text


def test_provider_that_fails_to_start_is_retried_on_the_cpu(antelopev2, caplog):
    from hyperlora_core.face.models import _load_one
    from insightface.model_zoo import model_zoo

    class FailingOnGpu:
        calls = []

        def get_model(self, path, providers):
            self.calls.append(list(providers))
            if providers[0] != CPU:
                raise RuntimeError("CUDA failure 100: no CUDA-capable device")
            return model_zoo.get_model(path, providers=providers)

    fake = FailingOnGpu()
    model = _load_one(fake, antelopev2 / "glintr100.onnx", [CUDA, CPU])
    assert model.taskname == "recognition"
    assert fake.calls == [[CUDA, CPU], [CPU]]
    assert "trying the CPU" in caplog.text


def test_unknown_provider_is_an_input_error(antelopev2):
    with pytest.raises(InputError, match="Unknown ONNX Runtime provider 'Quantum'"):
        FaceAnalyzer(antelopev2, provider="Quantum")


# -- crop geometry on synthetic landmarks (spec section 8) -----------------------------------


def test_face_polygon_is_the_spec_landmark_order():
    assert list(FACE_POLYGON) == SPEC_POLYGON


def test_landmark_box_follows_the_spec_formula():
    rng = np.random.default_rng(1)
    points = rng.uniform([50, 80], [250, 200], size=(106, 2))
    cx, cy, half = landmark_box(points)
    width, height = np.ptp(points[:, 0]), np.ptp(points[:, 1])
    assert half == pytest.approx(0.75 * max(width, height))
    assert cx == pytest.approx((points[:, 0].min() + points[:, 0].max()) / 2)
    assert cy == pytest.approx((points[:, 1].min() + points[:, 1].max()) / 2 - 0.125 * half)


def coordinate_image(width, height) -> Image.Image:
    """Pixel (x, y) holds (x mod 256, y mod 256, 200): any crop says where it came from."""
    ys, xs = np.mgrid[0:height, 0:width]
    return Image.fromarray(np.stack([xs % 256, ys % 256, np.full_like(xs, 200)], axis=2).astype(np.uint8))


@pytest.mark.parametrize("box", [(100, 90, 220, 250), (3, 10, 150, 190), (200, 150, 318, 238)])
def test_clip_crop_is_the_landmark_square_with_black_outside_the_photo(box):
    image = coordinate_image(320, 240)
    landmarks = landmarks_for_box(box) + 0.37  # off the pixel grid
    crop = clip_crop(image, landmarks, remove_bg=False)
    cx, cy, half = landmark_box(landmarks)
    x0, y0, x1, y1 = (int(round(v)) for v in (cx - half, cy - half, cx + half, cy + half))
    assert crop.shape == (y1 - y0, x1 - x0, 3)
    assert abs(crop.shape[0] - 2 * half) <= 1 and abs(crop.shape[1] - 2 * half) <= 1
    source = np.asarray(image)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    inside = (xs >= 0) & (xs < 320) & (ys >= 0) & (ys < 240)
    expected = np.zeros_like(crop)
    expected[inside] = source[ys[inside], xs[inside]]
    np.testing.assert_array_equal(crop, expected)
    if box[0] < 20 or box[2] > 300:  # faces near the border: black where the photo ends
        assert (~inside).any() and (crop[~inside] == 0).all()


def test_grey_clip_crop_is_the_luminance_of_the_colour_crop():
    image = Image.fromarray(photo(320, 240, seed=4))
    landmarks = landmarks_for_box((90, 60, 210, 200))
    colour = clip_crop(image, landmarks, remove_bg=True)
    grey = clip_crop(image, landmarks, remove_bg=True, grey=True)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    np.testing.assert_array_equal(grey[..., 0], np.asarray(Image.fromarray(colour).convert("L")))


# The exact pixel rules of background removal and the Base-LoRA blur: tests/test_pixels.py.


def test_background_removal_keeps_the_face_and_greys_the_rest():
    rgb = photo(400, 300, seed=5)
    box = (120, 60, 260, 240)
    landmarks = landmarks_for_box(box)
    out = np.asarray(remove_background(Image.fromarray(rgb), landmarks))
    points = landmarks[SPEC_POLYGON]
    side = 1.6 * max(np.ptp(points[:, 0]), np.ptp(points[:, 1]))
    margin = 3 * 15 * side / 512 + 2  # the blur reaches about three radii at 512 px
    inside = Image.new("L", (400, 300), 0)
    ImageDraw.Draw(inside).polygon([tuple(p) for p in points], fill=255)
    inside = np.asarray(inside) > 0
    distance_in = np.asarray(Image.fromarray(inside.astype(np.uint8) * 255).filter(ImageFilter.MinFilter(2 * int(margin) + 1))) > 0
    distance_out = np.asarray(Image.fromarray(inside.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(2 * int(margin) + 1))) == 0
    assert distance_in.sum() > 1000 and distance_out.sum() > 10000
    np.testing.assert_array_equal(out[distance_in], rgb[distance_in])
    assert (out[distance_out] == 127).all()


def test_only_the_outline_landmarks_shape_the_background_mask():
    image = Image.fromarray(photo(320, 260, seed=6))
    landmarks = landmarks_for_box((80, 50, 230, 230))
    moved = landmarks.copy()
    others = [i for i in range(106) if i not in SPEC_POLYGON]
    moved[others] += np.random.default_rng(0).normal(0, 15, (len(others), 2))
    np.testing.assert_array_equal(np.asarray(remove_background(image, landmarks)), np.asarray(remove_background(image, moved)))


def test_base_crop_blurs_out_the_face_and_nothing_far_from_it():
    checker = ((np.indices((300, 400)).sum(axis=0) // 3) % 2 * 200 + 20).astype(np.uint8)
    rgb = np.repeat(checker[:, :, None], 3, axis=2)
    box = (140, 70, 260, 230)
    landmarks = landmarks_for_box(box)
    blurred = base_crop(Image.fromarray(rgb), landmarks, crop=False)
    assert blurred.shape == rgb.shape
    cx = (box[0] + box[2]) // 2
    centre = blurred[140:160, cx - 10 : cx + 10].astype(float)
    assert centre.std() < 0.1 * rgb[140:160, cx - 10 : cx + 10].std()  # the face is smooth now
    points = landmarks[SPEC_POLYGON]
    c = points.mean(axis=0)
    scaled = c + 1.4 * (points - c)
    reach = 1.6 * max(np.ptp(scaled[:, 0]), np.ptp(scaled[:, 1])) / 2 + 2
    far = np.ones(rgb.shape[:2], dtype=bool)
    far[max(0, int(c[1] - reach)) : int(c[1] + reach), max(0, int(c[0] - reach)) : int(c[0] + reach)] = False
    np.testing.assert_array_equal(blurred[far], rgb[far])
    cropped = base_crop(Image.fromarray(rgb), landmarks, crop=True)
    cx_, cy_, half = landmark_box(landmarks)
    expected = np.asarray(Image.fromarray(blurred).crop((cx_ - half, cy_ - half, cx_ + half, cy_ + half)))
    np.testing.assert_array_equal(cropped, expected)
    np.testing.assert_array_equal(np.asarray(blur_face(Image.fromarray(rgb), landmarks)), blurred)


def test_clip_pixel_values_is_the_openai_clip_preprocessing():
    rng = np.random.default_rng(7)
    crops = [rng.integers(0, 256, (300, 200, 3), dtype=np.uint8), rng.integers(0, 256, (180, 181, 3), dtype=np.uint8)]
    values = clip_pixel_values(crops)
    assert values.shape == (2, 3, 224, 224) and values.dtype == torch.float32
    # Written out: shortest side to 224 (bicubic), centre 224 crop, mean/std.
    resized = np.asarray(Image.fromarray(crops[0]).resize((224, 336), Image.Resampling.BICUBIC))
    centre = resized[56:280].astype(np.float32) / 255
    expected = (centre - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    close(values[0].numpy(), expected.transpose(2, 0, 1), 1e-5)
    transformers = pytest.importorskip("transformers")
    processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}, do_center_crop=True,
        image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD), resample=3,
    )
    reference = processor(images=[Image.fromarray(c) for c in crops], return_tensors="np")["pixel_values"]
    close(values.numpy(), reference, 1e-5)


# -- detection and the whole pipeline on the tiny models -------------------------------------


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


def three_faces() -> tuple[np.ndarray, dict]:
    rgb = photo(900, 420, seed=9)
    boxes = {"confident_small_right": (700, 150, 790, 250), "big_middle": (370, 80, 560, 320), "left": (60, 120, 200, 280)}
    for slot, box in enumerate(boxes.values()):
        draw_face(rgb, box, slot=slot, ring=5)
    rng = np.random.default_rng(11)
    for box in boxes.values():  # something different inside each face
        x0, y0, x1, y1 = box
        rgb[y0 + 5 : y1 - 5, x0 + 5 : x1 - 5] = rng.integers(0, 120, 3, dtype=np.uint8)
    return rgb, boxes


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


def test_face_index_beyond_the_faces_in_a_photo_is_an_input_error(analyzer):
    rgb, _ = three_faces()
    with pytest.raises(InputError, match="Photo 0 has 3 face.*face index 3 does not exist"):
        analyzer.analyze(rgb, choice=3)


@pytest.mark.parametrize("choice", ["biggest", -1, 1.5, True])
def test_unknown_face_choice_is_an_input_error(analyzer, choice):
    with pytest.raises(InputError, match="Unknown face choice"):
        analyzer.analyze(draw_face(photo(), (100, 100, 200, 220)), choice=choice)


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
