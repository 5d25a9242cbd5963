"""Face swap: face regions of any picture (crop, mask) and pasting re-drawn crops back
(hyperlora_core/face/swap.py), and the Face Crop and Face Paste nodes over them (nodes/face_swap.py), on
the tiny face models (faces are markers the tests draw, so the tests decide where the faces are)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from hyperlora_core.errors import InputError, NoFaceError
from hyperlora_core.face import FaceAnalyzer, cut_faces, find_face_regions, landmark_box, paste_faces
from hyperlora_core.face.swap import place_square, resize
from pack import load_pack
from tiny_face_models import draw_face, make_tiny_antelopev2

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # scikit-image, inside insightface

BOXES = ((40, 120, 150, 260), (260, 90, 420, 290), (500, 150, 590, 270))  # left, large middle, right


@pytest.fixture(scope="module")
def antelopev2(tmp_path_factory):
    return make_tiny_antelopev2(tmp_path_factory.mktemp("insightface") / "models" / "antelopev2")


@pytest.fixture(scope="module")
def analyzer(antelopev2):
    return FaceAnalyzer(antelopev2, provider="CPU")


def picture(width=640, height=480, seed=0, boxes=BOXES) -> np.ndarray:
    """A float32 picture as LoadImage gives it (k / 255), with faces (slots 0, 1, 2) at ``boxes``."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(40, 190, (height, width, 3), dtype=np.uint8)
    for slot, box in enumerate(boxes):
        draw_face(rgb, box, slot=slot, ring=8)
        x0, y0, x1, y1 = box
        rgb[y0 + 12 : y1 - 12, x0 + 12 : x1 - 12] = rng.integers(0, 200, (y1 - y0 - 24, x1 - x0 - 24, 3))
    return rgb.astype(np.float32)[None] / 255.0


def changed(crops: np.ndarray, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).random(crops.shape).astype(np.float32)


# -- masks and crops ----------------------------------------------------------------------------


def test_all_faces_give_one_crop_each_left_to_right_with_the_mask_on_each_face(analyzer):
    pictures = picture()
    regions = find_face_regions(analyzer, pictures, "all")
    assert [r.face_index for r in regions] == [0, 1, 2] and all(r.n_faces == 3 for r in regions)
    info = cut_faces(pictures, regions, size=256)
    assert info.crops.shape == (3, 256, 256, 3) and info.crop_masks.shape == (3, 256, 256)
    assert info.picture_masks().shape == (1, 480, 640)
    for region, box, crop_mask in zip(regions, BOXES, info.crop_masks):
        centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        assert region.x0 <= centre[0] <= region.x0 + region.side and region.y0 <= centre[1] <= region.y0 + region.side
        u = int((centre[0] - region.x0) * 256 / region.side)
        v = int((centre[1] - region.y0) * 256 / region.side)
        assert crop_mask[v, u] > 0.99  # the face's middle, in the crop
        assert crop_mask[0, 0] == 0 and crop_mask[-1, -1] == 0
    mask = info.picture_masks()[0]
    for box in BOXES:
        assert mask[(box[1] + box[3]) // 2, (box[0] + box[2]) // 2] > 0.99
    assert mask[5, 5] == 0 and mask[470, 320] == 0


@pytest.mark.parametrize("choice, expected", [("largest", 1), ("most_confident", 0), (0, 0), (2, 2)])
def test_face_choice_is_the_one_of_load_faces(analyzer, choice, expected):
    (region,) = find_face_regions(analyzer, picture(), choice)
    assert region.face_index == expected


def test_the_crop_is_the_square_around_the_face_resized_to_the_working_size(analyzer):
    pictures = picture(900, 800, seed=2, boxes=((380, 300, 520, 480),))
    (region,) = find_face_regions(analyzer, pictures, "largest", crop_factor=1.5)
    cx, cy, half = landmark_box(region.landmarks)
    assert region.side == round(2 * half * 1.5)
    assert abs(region.x0 + region.side / 2 - cx) <= 1 and abs(region.y0 + region.side / 2 - cy) <= 1
    for size in (128, 1024):  # shrunk and enlarged
        info = cut_faces(pictures, [region], size=size)
        window = pictures[0, region.y0 : region.y0 + region.side, region.x0 : region.x0 + region.side]
        np.testing.assert_array_equal(info.crops[0], resize(window, size))


def test_grow_widens_the_mask_and_feather_zero_gives_a_hard_edge(analyzer):
    pictures = picture(seed=3)
    regions = find_face_regions(analyzer, pictures, "largest")
    small = cut_faces(pictures, regions, 512, grow=0, feather=8).square_masks[0]
    large = cut_faces(pictures, regions, 512, grow=40, feather=8).square_masks[0]
    assert (large >= small).all() and (large > 0).sum() > (small > 0).sum() * 1.2
    hard = cut_faces(pictures, regions, 512, grow=0, feather=0).square_masks[0]
    assert set(np.unique(hard)) == {0.0, 1.0}
    soft = cut_faces(pictures, regions, 512, grow=0, feather=64).square_masks[0]
    assert ((soft > 0) & (soft < 1)).sum() > ((small > 0) & (small < 1)).sum()


def test_a_crop_larger_than_the_picture_is_made_to_fit_inside_it(analyzer):
    pictures = picture(320, 300, seed=4, boxes=((90, 70, 230, 240),))
    (region,) = find_face_regions(analyzer, pictures, "largest", crop_factor=4.0)
    assert region.side == 300 and 0 <= region.x0 <= 20 and region.y0 == 0
    info = cut_faces(pictures, [region], size=256)
    out = paste_faces(pictures, info, changed(info.crops))
    outside = info.picture_masks()[0] == 0
    np.testing.assert_array_equal(out[0][outside], pictures[0][outside])


def test_squares_near_the_border_stay_inside_and_mask_fades_before_inner_sides():
    landmarks = np.zeros((106, 2), np.float32) + [[10.0, 200.0]]
    landmarks[:53] += [[0.0, 0.0]]
    landmarks[53:] += [[60.0, 80.0]]
    x0, y0, side = place_square(landmarks, 400, 300, 2.0)
    assert x0 == 0 and 0 <= y0 and y0 + side <= 300 and side == round(2 * 0.75 * 80 * 2.0)


# -- paste --------------------------------------------------------------------------------------


def test_round_trip_with_unchanged_crops_returns_the_input_exactly(analyzer):
    pictures = np.concatenate([picture(seed=5), picture(seed=6)])
    info = cut_faces(pictures, find_face_regions(analyzer, pictures, "all"), size=512)
    assert len(info) == 6
    out = paste_faces(pictures, info, info.crops.copy())
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, pictures)


def test_a_changed_crop_changes_only_pixels_inside_the_mask(analyzer):
    pictures = picture(seed=7)
    info = cut_faces(pictures, find_face_regions(analyzer, pictures, "all"), size=384, grow=8, feather=24)
    redrawn = changed(info.crops)
    out = paste_faces(pictures, info, redrawn)
    mask = info.picture_masks()[0]
    np.testing.assert_array_equal(out[0][mask == 0], pictures[0][mask == 0])
    assert (np.abs(out[0] - pictures[0]).max(axis=-1)[mask > 0.5] > 0).mean() > 0.9
    # The blend at the picture's resolution: picture x (1 - mask) + crop resized back x mask.
    region, weight = info.regions[1], info.square_masks[1]
    window = (slice(region.y0, region.y0 + region.side), slice(region.x0, region.x0 + region.side))
    piece = resize(redrawn[1], region.side)
    inner = (weight > 0) & (info.picture_masks()[0][window] == weight)  # not under a neighbour's mask
    expected = pictures[0][window] * (1 - weight[..., None]) + piece * weight[..., None]
    np.testing.assert_allclose(out[0][window][inner], expected[inner], atol=1e-6)


def test_a_mask_given_to_paste_is_used_instead_and_must_cover_the_picture(analyzer):
    pictures = picture(seed=8)
    info = cut_faces(pictures, find_face_regions(analyzer, pictures, "largest"), size=256)
    mask = np.zeros((1, 480, 640), np.float32)
    mask[0, 150:200, 300:360] = 1.0
    out = paste_faces(pictures, info, changed(info.crops), mask)
    diff = np.abs(out[0] - pictures[0]).max(axis=-1) > 0
    assert diff[150:200, 300:360].mean() > 0.9 and not diff[mask[0] == 0].any()
    with pytest.raises(InputError, match=r"'mask' is 1 x 240 x 320.*640x480"):
        paste_faces(pictures, info, changed(info.crops), np.zeros((1, 240, 320), np.float32))


def test_pasting_into_another_picture_is_detected(analyzer):
    pictures = picture(seed=9)
    info = cut_faces(pictures, find_face_regions(analyzer, pictures, "largest"), size=256)
    other = pictures.copy()
    other[0, 0, 0, 0] += 1 / 255
    with pytest.raises(InputError, match="not the one the face crops were cut from"):
        paste_faces(other, info, info.crops)
    with pytest.raises(InputError, match=r"'image' is 1 x 320x240.*cut from 1 x 640x480"):
        paste_faces(picture(320, 240, boxes=()), info, info.crops)
    with pytest.raises(InputError, match=r"'crops' holds 2 picture\(s\), but 'Face Crop' cut 1"):
        paste_faces(pictures, info, np.concatenate([info.crops, info.crops]))
    with pytest.raises(InputError, match="not square"):
        paste_faces(pictures, info, info.crops[:, :200])


def test_a_picture_without_a_face_is_named_or_passed_through_if_chosen(analyzer):
    pictures = np.concatenate([picture(seed=10), picture(seed=11, boxes=())])
    with pytest.raises(NoFaceError, match=r"No face was found in 'image\[1\]'.*'pass through'"):
        find_face_regions(analyzer, pictures, "largest")
    regions = find_face_regions(analyzer, pictures, "largest", if_no_face="pass through")
    assert [r.empty for r in regions] == [False, True]
    info = cut_faces(pictures, regions, size=256)
    assert (info.crop_masks[1] == 0).all() and (info.picture_masks()[1] == 0).all()
    out = paste_faces(pictures, info, changed(info.crops))
    np.testing.assert_array_equal(out[1], pictures[1])
    assert not np.array_equal(out[0], pictures[0])


# -- the nodes ----------------------------------------------------------------------------------


@pytest.fixture
def nodes(antelopev2, monkeypatch):
    module = importlib.import_module(load_pack().__name__ + ".nodes.face_swap")
    monkeypatch.setattr(module, "face_model_folder_path", lambda name: str(antelopev2))
    return module


def test_face_crop_and_paste_nodes_round_trip_and_redraw(nodes):
    image = torch.from_numpy(picture(seed=12))
    crops, crop_masks, mask, info = nodes.FaceCrop.execute(image, "antelopev2", "CPU", "all faces", 256, 2.0, 16, 32)
    assert crops.shape == (3, 256, 256, 3) and crop_masks.shape == (3, 256, 256) and mask.shape == (1, 480, 640)
    (same,) = nodes.FacePaste.execute(image, crops, info)
    assert torch.equal(same, image)
    (out,) = nodes.FacePaste.execute(image, 1.0 - crops, info)
    outside = mask[0] == 0
    assert torch.equal(out[0][outside], image[0][outside]) and not torch.equal(out, image)


def test_face_crop_node_names_the_input_without_a_face(nodes):
    image = torch.from_numpy(picture(seed=13, boxes=()))
    with pytest.raises(Exception, match="No face was found in 'image'") as error:
        nodes.FaceCrop.execute(image, "antelopev2", "CPU", "largest", 256)
    assert type(error.value).__name__ == "NoFaceError"
    crops, crop_masks, mask, info = nodes.FaceCrop.execute(image, "antelopev2", "CPU", "largest", 256,
                                                           if_no_face="pass through")
    (out,) = nodes.FacePaste.execute(image, torch.rand_like(crops), info)
    assert torch.equal(out, image) and not crop_masks.any()
