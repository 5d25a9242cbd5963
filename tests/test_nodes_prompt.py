"""HyperLoRA Prompt: the trigger words once, at the start of the prompt."""

from __future__ import annotations

import pytest
from node_fixtures import FakeClip, nodes, pack  # noqa: F401


@pytest.mark.parametrize("text, expected", [
    ("a photo", "fcsks fxhks fhyks, a photo"),
    ("fcsks fxhks fhyks, a photo", "fcsks fxhks fhyks, a photo"),
    ("a photo, fcsks fxhks fhyks, outdoors", "fcsks fxhks fhyks, a photo, outdoors"),
    ("", "fcsks fxhks fhyks, "),
])
def test_prompt_gets_the_trigger_words_once_at_its_start(pack, text, expected):
    clip = FakeClip()
    cond, prompt = nodes(pack)["HLS_TriggerPrompt"].execute(clip, text, True)
    assert prompt == expected and clip.texts == [expected]


def test_prompt_without_trigger_words_warns(pack, caplog):
    clip = FakeClip()
    with caplog.at_level("WARNING"):
        _, prompt = nodes(pack)["HLS_TriggerPrompt"].execute(clip, "a photo", False)
    assert prompt == "a photo"
    assert "trigger words" in caplog.text
