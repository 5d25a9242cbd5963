"""An identity's strength over the sampling steps: (start_percent, strength multiplier) pairs for
ComfyUI hook keyframes, from start / end fractions of the sampling and an optional linear ramp."""

from __future__ import annotations

from .errors import InputError

RAMP_KEYFRAMES = 4


def identity_keyframes(start: float, end: float, ramp: float = 0.0,
                       ramp_keyframes: int = RAMP_KEYFRAMES) -> list[tuple[float, float]]:
    """Keyframes (start_percent, strength multiplier) for an identity that acts from `start` to `end`
    (fractions of the sampling, 0 = first step) and, with `ramp` > 0, grows linearly from 0 at
    `start` to full strength at `start + ramp` in `ramp_keyframes` steps.

    An empty list means full strength all the way (no keyframes needed)."""
    for name, value in (("start_at", start), ("end_at", end)):
        if not 0.0 <= value <= 1.0:
            raise InputError(f"{name} is {value}; it is a fraction of the sampling, between 0 and 1.")
    if start >= end:
        raise InputError(
            f"start_at ({start}) must be smaller than end_at ({end}): the identity acts from start_at to "
            "end_at. Typical: start_at 0.2-0.3 (the prompt sets the composition first), end_at 1.0.")
    if ramp < 0:
        raise InputError(f"ramp is {ramp}; it must be 0 (no ramp) or a positive fraction of the sampling.")
    if ramp > end - start + 1e-9:
        raise InputError(
            f"ramp ({ramp}) is longer than the span start_at..end_at ({end - start:.3f}); shorten the ramp "
            "or widen the span.")
    keyframes: list[tuple[float, float]] = []
    if ramp > 0:
        keyframes.append((0.0, 0.0))
        for i in range(1, ramp_keyframes + 1):
            keyframes.append((start + ramp * i / ramp_keyframes, i / ramp_keyframes))
    elif start > 0:
        keyframes += [(0.0, 0.0), (start, 1.0)]
    elif end < 1.0:
        keyframes.append((0.0, 1.0))
    if end < 1.0:
        keyframes.append((end, 0.0))
    return keyframes
