"""Likeness before and after refining: the same prompts and seeds rendered with the generated and with
the refined LoRA, and the ArcFace similarity of each picture to the person's photos (likeness/)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..constants import TRIGGER_WORDS
from ..likeness.score import Likeness, mean_similarity, score_images

VALIDATION_PROMPTS = ("portrait photo of a person, natural light, detailed skin",
                      "photo of a person outdoors, upper body, smiling",
                      "close-up photo of a person, studio light, neutral background")


def validation_prompts(count: int) -> list[tuple[str, int]]:
    """``count`` fixed (prompt with the trigger words, seed) pairs."""
    return [(TRIGGER_WORDS + VALIDATION_PROMPTS[i % len(VALIDATION_PROMPTS)], 1000 + i) for i in range(count)]


@dataclass
class LikenessComparison:
    labels: list[str]
    before: list[Likeness]
    after: list[Likeness]

    def lines(self) -> list[str]:
        rows = [f"  {label}: {b.text()} -> {a.text()}" for label, b, a in zip(self.labels, self.before, self.after)]
        mb, ma = mean_similarity(self.before), mean_similarity(self.after)
        mean = f"{mb:.3f}" if mb is not None else "no face"
        mean_after = f"{ma:.3f}" if ma is not None else "no face"
        return rows + [f"  mean: {mean} -> {mean_after}"]


def compare_likeness(render: Callable[[dict, list[tuple[str, int]]], list[np.ndarray]], before: dict, after: dict,
                     analyzer: Any, reference: Any, count: int) -> LikenessComparison:
    """Render the fixed prompts with each LoRA (``render(lora, prompts) -> uint8 RGB pictures``) and score
    them against ``reference`` (the photos' ArcFace embeddings)."""
    prompts = validation_prompts(count)
    labels = [f"seed {seed}: {prompt.removeprefix(TRIGGER_WORDS)[:40]}" for prompt, seed in prompts]
    scores = [score_images(analyzer, render(lora, prompts), reference, labels=labels) for lora in (before, after)]
    return LikenessComparison(labels, *scores)
