"""Keep the best: the pictures of a set that look most like the person, best first.

Either the top K by likeness or every picture at or above a threshold. A picture without a face
(score None or NaN) is never kept. Asking for more pictures than there are keeps them all and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..errors import InputError
from .stats import score_value

MODES = ("top K", "above threshold")


@dataclass
class Kept:
    """The pictures kept (indices into the set, best first) and what was done, in words."""

    indices: list[int]
    scores: list[float]
    count: int  # pictures in the set
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        kept = ", ".join(f"{i} ({s:.3f})" for i, s in zip(self.indices, self.scores))
        return "\n".join([f"kept {len(self.indices)} of {self.count}, best first: {kept}", *self.notes])


def keep_best(scores: Sequence[Any], count: int | None = None, threshold: float | None = None,
              pictures: int | None = None) -> Kept:
    """Indices of the best pictures, best first (equal scores: the earlier picture first).

    ``scores``: one per picture (numbers or ``Likeness``; None / NaN: no face). ``count``: keep the top
    ``count``; ``threshold``: keep every picture scoring at least this (give one of the two).
    ``pictures``: the number of pictures the scores are for, checked against the number of scores."""
    scores = list(scores)
    if (count is None) == (threshold is None):
        raise InputError("Keep the best needs either a count (the top K) or a threshold, not "
                         + ("both." if count is not None else "neither."))
    if pictures is not None and pictures != len(scores):
        raise InputError(
            f"{pictures} picture(s) but {len(scores)} score(s): connect the 'similarity' output of the Likeness node "
            "that measured these same pictures (the same batch, in the same order).")
    if not scores:
        raise InputError("There are no pictures to choose from: the set is empty.")
    values = [score_value(s) for s in scores]
    found = [i for i, v in enumerate(values) if v is not None]
    notes = []
    missing = len(values) - len(found)
    if missing:
        notes.append(f"{missing} picture(s) without a face never kept: "
                     + ", ".join(str(i) for i, v in enumerate(values) if v is None))
    if not found:
        raise InputError(f"None of the {len(values)} picture(s) has a face, so none can be kept; check the pictures "
                         "(a face that is too small or turned away is not found).")
    order = sorted(found, key=lambda i: (-values[i], i))
    if count is not None:
        if isinstance(count, bool) or int(count) != count or count < 1:
            raise InputError(f"The count of pictures to keep must be 1 or more, got {count!r}.")
        count = int(count)
        if count > len(values):
            notes.append(f"asked for the best {count} but the set has {len(values)} picture(s): all "
                         f"{len(found)} with a face kept")
        elif count > len(found):
            notes.append(f"asked for the best {count} but only {len(found)} picture(s) have a face: those kept")
        chosen = order[:count]
    else:
        threshold = float(threshold)
        if math.isnan(threshold) or not -1.0 <= threshold <= 1.0:
            raise InputError(f"The threshold is a cosine similarity, between -1 and 1; got {threshold}.")
        chosen = [i for i in order if values[i] >= threshold]
        if not chosen:
            best = order[0]
            raise InputError(f"No picture scores {threshold:.2f} or more (the best, picture {best}, scores "
                             f"{values[best]:.3f}); lower the threshold or keep the top K instead.")
    return Kept(indices=chosen, scores=[values[i] for i in chosen], count=len(values), notes=notes)
