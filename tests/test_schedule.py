"""The identity's schedule over the sampling steps (start_at, end_at, ramp -> hook keyframes):
hyperlora_core/schedule.py (plain Python, no ComfyUI)."""

from __future__ import annotations

import importlib

import pytest

from pack import load_pack

# Imported by name: the pack no longer imports its nodes (and with them this module) on import.
schedule = importlib.import_module(load_pack().__name__ + ".hyperlora_core.schedule")
InputError = load_pack().hyperlora_core.errors.InputError


def test_full_span_needs_no_keyframes():
    assert schedule.identity_keyframes(0.0, 1.0) == []


def test_start_and_end_switch_the_identity_on_and_off():
    assert schedule.identity_keyframes(0.3, 1.0) == [(0.0, 0.0), (0.3, 1.0)]
    assert schedule.identity_keyframes(0.0, 0.8) == [(0.0, 1.0), (0.8, 0.0)]
    assert schedule.identity_keyframes(0.2, 0.9) == [(0.0, 0.0), (0.2, 1.0), (0.9, 0.0)]


def test_ramp_rises_linearly_to_full_strength_at_start_plus_ramp():
    frames = schedule.identity_keyframes(0.2, 1.0, ramp=0.4)
    assert frames[0] == (0.0, 0.0)
    assert [round(p, 6) for p, _ in frames[1:]] == [0.3, 0.4, 0.5, 0.6]
    assert [s for _, s in frames[1:]] == [0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("start, end, ramp, words", [
    (0.5, 0.5, 0.0, "smaller than end_at"), (0.7, 0.3, 0.0, "smaller than end_at"),
    (-0.1, 1.0, 0.0, "between 0 and 1"), (0.0, 1.2, 0.0, "between 0 and 1"),
    (0.2, 0.5, 0.6, "longer than the span"), (0.0, 1.0, -0.1, "ramp")])
def test_bad_schedules_name_the_input(start, end, ramp, words):
    with pytest.raises(InputError, match=words):
        schedule.identity_keyframes(start, end, ramp)
