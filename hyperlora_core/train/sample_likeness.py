"""The likeness of the trainer's sample images: the same ArcFace similarity as the Likeness node and
``python -m hyperlora_core score``, to the photo whose features made the samples' LoRA.

Reported when ``data.face_models`` names the antelopev2 folder: one log line per sample and one
JSON line per sample in ``<output>/samples/likeness.jsonl`` (``similarity`` null: no face).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from ..likeness.score import Likeness, score_images

log = logging.getLogger(__name__)

REPORT = "likeness.jsonl"


class SampleLikeness:
    """Scores sample images against a reference ArcFace embedding; the face models load on first use."""

    def __init__(self, face_models: str, provider: str = "auto", choice: str | int = "largest") -> None:
        self.face_models, self.provider, self.choice = face_models, provider, choice
        self._analyzer = None

    @classmethod
    def from_config(cls, config) -> "SampleLikeness | None":
        d = config.data
        return cls(d.face_models, d.provider, d.face_choice) if d.face_models else None

    @property
    def analyzer(self):
        if self._analyzer is None:
            from ..face import FaceAnalyzer

            self._analyzer = FaceAnalyzer(self.face_models, provider=self.provider)
        return self._analyzer

    def report(self, step: int, paths: Sequence[Path], images: Sequence[np.ndarray], reference,
               source: str = "") -> list[Likeness]:
        """Score ``images`` (saved at ``paths``) against ``reference``; log and append to the report."""
        if not images:
            return []
        scores = score_images(self.analyzer, list(images), reference, self.choice,
                              labels=[Path(p).name for p in paths])
        folder = Path(paths[0]).parent
        with open(folder / REPORT, "a", encoding="utf-8") as out:
            for score in scores:
                out.write(json.dumps({"step": step, "image": score.label, "similarity": score.similarity,
                                      "faces": score.n_faces, "reference": source}) + "\n")
        for score in scores:
            log.info("Sample %s: likeness %s (ArcFace similarity to %s)", score.label,
                     score.text(), source or "the reference photo")
        return scores
