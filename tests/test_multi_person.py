"""Region masks of several people in one picture: hyperlora_core/multi_person.py (plain torch, no ComfyUI)."""

from __future__ import annotations

import importlib

import pytest
import torch

from pack import load_pack

# Imported by name: the pack no longer imports its nodes (and with them this module) on import.
regions = importlib.import_module(load_pack().__name__ + ".hyperlora_core.multi_person")
InputError = load_pack().hyperlora_core.errors.InputError


@pytest.mark.parametrize("layout", list(regions.LAYOUTS))
def test_fixed_layouts_cover_the_picture_exactly_once(layout):
    for feather in (0, 24):
        masks = regions.layout_masks(layout, 96, 160, feather)
        total = torch.stack(masks).sum(0)
        torch.testing.assert_close(total, torch.ones(96, 160))
        assert regions.is_empty(regions.outside_mask(masks))


def test_left_right_halves_are_hard_without_feather():
    left, right = regions.layout_masks("left | right", 4, 8)
    assert left[:, :4].eq(1).all() and left[:, 4:].eq(0).all()
    assert right[:, 4:].eq(1).all() and right[:, :4].eq(0).all()


def test_thirds_split_at_a_third_and_two_thirds():
    masks = regions.layout_masks("left | middle | right", 3, 9)
    assert [m[0].nonzero().flatten().tolist() for m in masks] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_feather_ramps_across_the_seam_and_keeps_the_far_side():
    left, _ = regions.layout_masks("left | right", 8, 200, feather_pixels=20)
    row = left[0]
    # Full strength up to float rounding: the blur of the all-ones side sums the kernel's taps, 1 - 2e-7
    # at torch 2.13 on CPU.
    torch.testing.assert_close(row[:40], torch.ones(40))
    assert row[-40:].eq(0).all()
    assert 0.4 < float(row[99]) < 0.6 and 0.4 < float(row[100]) < 0.6
    assert bool((row[1:] <= row[:-1] + 1e-6).all())  # falls monotonically


def test_boxes_are_parsed_as_fractions_and_leave_the_rest_outside():
    a, b = regions.layout_masks("boxes", 10, 10, boxes="0 0 0.3 1; 0.7, 0, 1, 1")
    assert a[:, :3].eq(1).all() and a[:, 3:].eq(0).all()
    assert b[:, 7:].eq(1).all() and b[:, :7].eq(0).all()
    outside = regions.outside_mask([a, b])
    assert outside[:, 3:7].eq(1).all() and outside[:, :3].eq(0).all()


@pytest.mark.parametrize("text, words", [
    ("0 0 0.5", "four fractions"), ("0.5 0 0.2 1", "x0 < x1"), ("", "no box"),
    ("0 0 .2 1;0 0 .2 1;0 0 .2 1;0 0 .2 1;0 0 .2 1", "at most 4"), ("a b c d", "four fractions")])
def test_bad_boxes_say_how_to_write_them(text, words):
    with pytest.raises(InputError, match=words):
        regions.layout_masks("boxes", 8, 8, boxes=text)


def test_unknown_layout_and_tiny_box_are_refused():
    with pytest.raises(InputError, match="unknown"):
        regions.layout_masks("diagonal", 8, 8)
    with pytest.raises(InputError, match="covers no pixel"):
        regions.layout_masks("boxes", 8, 8, boxes="0 0 0.01 0.01")


def test_fit_mask_averages_blocks_when_shrinking_to_the_latent():
    mask = torch.zeros(64, 64)
    mask[:, :32] = 1
    mask[:4, 32:40] = 1  # half of one 8 x 8 block
    fitted, resized = regions.fit_mask(mask, 8, 8)
    assert resized
    assert fitted[:, :4].eq(1).all() and fitted[1:, 4:].eq(0).all()
    assert float(fitted[0, 4]) == pytest.approx(0.5)
    same, resized = regions.fit_mask(fitted, 8, 8)
    assert not resized and torch.equal(same, fitted)


def test_fit_mask_enlarges_smaller_masks():
    fitted, resized = regions.fit_mask(torch.ones(4, 4), 16, 32)
    assert resized and fitted.shape == (16, 32) and fitted.eq(1).all()


def test_single_mask_accepts_comfyui_shapes_and_refuses_a_batch():
    assert regions.as_single_mask(torch.ones(1, 5, 6), "region_1").shape == (5, 6)
    with pytest.raises(InputError, match="region_2 holds 2 masks"):
        regions.as_single_mask(torch.ones(2, 5, 6), "region_2")


def test_same_aspect():
    assert regions.same_aspect((1024, 768), (128, 96))
    assert not regions.same_aspect((1024, 1024), (128, 96))
