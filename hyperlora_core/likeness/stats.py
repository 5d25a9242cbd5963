"""Likeness over a set: the spread of the scores of a batch, a story or a video's frames.

:func:`summarise` takes the scores of :func:`~.score.score_images` (or plain numbers, with None or NaN
for a picture without a face) and gives min / median / max, the worst picture, and the share below a
threshold. Pictures without a face are counted, listed and left out of every number, never taken as 0.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..errors import InputError

# Below this, a generated picture is a weak likeness: with the real antelopev2 models different people
# score about 0-0.3 and a good likeness about 0.5-0.8 (rule of thumb from the HyperLoRA paper's tables
# and our runs; the numbers are for comparing pictures, not an absolute verdict).
LOW_LIKENESS = 0.5


@dataclass
class SetStats:
    """The likeness of a set of pictures, over those with a face."""

    count: int  # pictures in the set
    labels: list[str]
    scored: list[int] = field(default_factory=list)  # indices of the pictures with a face
    missing: list[int] = field(default_factory=list)  # indices without a face
    minimum: float | None = None
    median: float | None = None
    maximum: float | None = None
    mean: float | None = None
    worst: int | None = None  # index of the lowest score (the first of equals)
    best: int | None = None
    threshold: float = LOW_LIKENESS
    below: list[int] = field(default_factory=list)  # indices scoring below the threshold

    @property
    def share_below(self) -> float | None:
        return len(self.below) / len(self.scored) if self.scored else None

    def text(self) -> str:
        """Two or three lines: the numbers, the worst picture, and the pictures without a face."""
        if not self.scored:
            return f"no face found in any of the {self.count} picture(s): no statistics"
        n = len(self.scored)
        worst = self.labels[self.worst]
        if n == 1:
            lines = [f"1 picture with a face: {self.minimum:.3f} ({worst}); min, median and max need two or more "
                     "to differ"]
        else:
            lines = [f"{n} pictures with a face: min {self.minimum:.3f}, median {self.median:.3f}, "
                     f"max {self.maximum:.3f}, mean {self.mean:.3f}",
                     f"worst: {worst} ({self.minimum:.3f}); best: {self.labels[self.best]} ({self.maximum:.3f})"]
        lines.append(f"below {self.threshold:.2f}: {len(self.below)} of {n} ({100 * self.share_below:.0f}%)"
                     + (": " + ", ".join(self.labels[i] for i in self.below) if 0 < len(self.below) <= 8 else ""))
        if self.missing:
            lines.append(f"no face in {len(self.missing)} picture(s), not counted: "
                         + ", ".join(self.labels[i] for i in self.missing))
        return "\n".join(lines)

    def as_dict(self) -> dict:
        def r(v):
            return None if v is None else round(v, 4)
        return {"count": self.count, "with_face": len(self.scored), "min": r(self.minimum), "median": r(self.median),
                "max": r(self.maximum), "mean": r(self.mean), "worst_index": self.worst,
                "worst": None if self.worst is None else self.labels[self.worst], "best_index": self.best,
                "threshold": self.threshold, "below": list(self.below), "share_below": r(self.share_below),
                "no_face": [self.labels[i] for i in self.missing], "no_face_index": list(self.missing)}


def score_value(score: Any) -> float | None:
    """The similarity of a score (a number or a Likeness); None for no face (None or NaN)."""
    value = getattr(score, "similarity", score)
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"A likeness score must be a number or None (no face), got {value!r}.") from None
    return None if math.isnan(value) else value


def summarise(scores: Sequence[Any], threshold: float = LOW_LIKENESS,
              labels: Sequence[str] | None = None) -> SetStats:
    """The set statistics of ``scores``: :class:`~.score.Likeness` objects or numbers (None / NaN: no face).
    ``labels`` default to the scores' own labels, else ``picture 0``, ``picture 1``, ..."""
    scores = list(scores)
    if not scores:
        raise InputError("There are no likeness scores to summarise: the set is empty.")
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise InputError(f"The likeness threshold must be a number, got {threshold!r}.") from None
    if not -1.0 <= threshold <= 1.0:
        raise InputError(f"The likeness threshold is a cosine similarity, between -1 and 1; got {threshold}.")
    if labels is None:
        labels = [getattr(s, "label", None) or f"picture {i}" for i, s in enumerate(scores)]
    labels = [str(label) for label in labels]
    if len(labels) != len(scores):
        raise InputError(f"{len(labels)} label(s) for {len(scores)} likeness score(s): give one per picture.")
    values = [score_value(s) for s in scores]
    stats = SetStats(count=len(values), labels=labels, threshold=threshold)
    stats.scored = [i for i, v in enumerate(values) if v is not None]
    stats.missing = [i for i, v in enumerate(values) if v is None]
    if not stats.scored:
        return stats
    found = [values[i] for i in stats.scored]
    stats.minimum, stats.maximum = min(found), max(found)
    stats.median, stats.mean = float(statistics.median(found)), math.fsum(found) / len(found)
    stats.worst = min(stats.scored, key=lambda i: values[i])
    stats.best = max(stats.scored, key=lambda i: values[i])
    stats.below = [i for i in stats.scored if values[i] < threshold]
    return stats
