"""HyperLoRA Prompt: a text encoder that puts the trigger words at the start of the prompt."""

from __future__ import annotations

import logging

from ..hyperlora_core import TRIGGER_WORDS
from ..hyperlora_core.errors import HyperLoRAError
from . import CATEGORY
from .comfy_v3 import io
from .inputs import require_input

log = logging.getLogger(__name__)

TRIGGER = TRIGGER_WORDS.strip().rstrip(",").strip()  # "fcsks fxhks fhyks"


def with_trigger_words(text: str) -> str:
    """The prompt with the trigger words at its start, exactly once."""
    body = text.strip()
    if body.lower().startswith(TRIGGER.lower()):
        body = body[len(TRIGGER):].lstrip().lstrip(",").lstrip()
    elif TRIGGER.lower() in body.lower():
        log.warning("The HyperLoRA trigger words were in the middle of the prompt; they were moved to its start.")
        start = body.lower().index(TRIGGER.lower())
        head = body[:start].rstrip().rstrip(",").rstrip()
        tail = body[start + len(TRIGGER):].lstrip().lstrip(",").lstrip()
        body = ", ".join(part for part in (head, tail) if part)
    return TRIGGER_WORDS + body


def has_trigger_words(text: str) -> bool:
    return text.strip().lower().startswith(TRIGGER.lower())


class TriggerPrompt(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HLS_TriggerPrompt",
            display_name="HyperLoRA Prompt (trigger words)",
            category=CATEGORY,
            description=(
                f"Encodes the positive prompt with the HyperLoRA trigger words '{TRIGGER_WORDS}' at its start: "
                "without them the generated LoRA has little effect. Use it in place of 'CLIP Text Encode' for "
                "the positive prompt of a model patched by 'Apply HyperLoRA'."
            ),
            inputs=[
                io.Clip.Input("clip", tooltip="The SDXL text encoders (after 'CLIP Set Last Layer' -2 as the "
                                              "release recommends)."),
                io.String.Input("text", multiline=True, dynamic_prompts=True,
                                default="portrait photo of a person, natural light, detailed skin",
                                tooltip="What to draw; the trigger words are added in front of it."),
                io.Boolean.Input("add_trigger_words", default=True,
                                 tooltip="Put the trigger words at the start of the prompt (recommended). When "
                                         "off, the prompt is used as written and a warning is logged if they "
                                         "are missing."),
            ],
            outputs=[
                io.Conditioning.Output("conditioning", display_name="conditioning",
                                       tooltip="The encoded positive prompt."),
                io.String.Output("prompt", display_name="prompt",
                                 tooltip="The prompt as encoded, trigger words included."),
            ],
        )

    @classmethod
    def execute(cls, clip, text: str, add_trigger_words: bool = True) -> io.NodeOutput:
        if clip is None:
            raise HyperLoRAError("clip is empty: connect the CLIP output of the SDXL checkpoint loader.")
        require_input(clip, "clip", "a CLIP (the text encoders)",
                      "the CLIP output of 'Load Checkpoint' (or of 'CLIP Set Last Layer')",
                      accept=lambda c: hasattr(c, "tokenize") and hasattr(c, "encode_from_tokens_scheduled"))
        require_input(text, "text", "text", "a STRING (or type the prompt into the widget)",
                      accept=lambda t: isinstance(t, str))
        prompt = with_trigger_words(text) if add_trigger_words else text
        if not has_trigger_words(prompt):
            log.warning("HyperLoRA: the prompt does not start with the trigger words '%s'; the LoRA will have "
                        "little effect.", TRIGGER_WORDS)
        tokens = clip.tokenize(prompt)
        return io.NodeOutput(clip.encode_from_tokens_scheduled(tokens), prompt)
