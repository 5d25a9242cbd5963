"""Likeness (ArcFace similarity of generated pictures to the person) and the strength sweep that feeds it."""

from __future__ import annotations

import logging
import math

import numpy as np

from ..hyperlora_core.errors import HyperLoRAError
from ..hyperlora_core.likeness.chart import likeness_chart
from ..hyperlora_core.likeness.grid import labelled_grid
from ..hyperlora_core.likeness.keep import MODES, keep_best
from ..hyperlora_core.likeness.score import check_labels, reference_embedding, score_images, summary
from ..hyperlora_core.likeness.stats import LOW_LIKENESS, summarise
from . import CATEGORY
from .comfy_v3 import io, ui
from .faces import FACE_CHOICES, PROVIDERS, Faces, get_analyzer
from .identity import Identity
from .images import images_to_uint8, uint8_to_image
from .model_folders import ANTELOPEV2_HELP, face_model_folder_path, list_face_model_folders

log = logging.getLogger(__name__)

MAX_SWEEP = 64


def _one(value, name: str):
    """The single value of an input that arrives as a list (INPUT_IS_LIST nodes get every input so)."""
    if not isinstance(value, list):
        return value
    values = [v for v in value if v is not None]
    if len(values) > 1 and any(v is not values[0] for v in values[1:]):
        raise HyperLoRAError(f"'{name}' got {len(values)} different values; connect one {name} to 'Likeness'.")
    return values[0] if values else None


def _labels(labels) -> list[str]:
    """A list of labels from the socket (one per picture), or the widget's text (one per line)."""
    labels = [] if labels is None else labels if isinstance(labels, list) else [labels]
    if len(labels) == 1:
        return [line.strip() for line in str(labels[0]).splitlines() if line.strip()]
    return [str(label) for label in labels]


class Likeness(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HLS_Likeness",
            display_name="HyperLoRA Likeness (ArcFace similarity)",
            category=CATEGORY,
            description=(
                "Measures how much each picture looks like the person, as the HyperLoRA paper does: the cosine "
                "similarity of the ArcFace embedding of the face in the picture to the person's (the mean of the "
                "identity's photos). 1 is the same face; with the real antelopev2 models different people "
                "typically score about 0-0.3 and a good likeness of a generated picture about 0.5-0.8. A picture "
                "without a face is reported as 'no face' (NaN in the similarity list), never as 0. Shows the "
                "numbers on a labelled grid of the pictures, and for the set min / median / max, the worst picture "
                "and the share below the threshold, with a chart of the likeness per picture (or per frame). "
                f"Connect either an identity or faces. {ANTELOPEV2_HELP}"
            ),
            is_output_node=True,
            is_input_list=True,  # collects the pictures of a sweep (one image per strength) into one grid
            inputs=[
                io.Image.Input("images", tooltip="The pictures to measure (a batch, or the pictures of a sweep)."),
                io.Combo.Input("face_model", options=list_face_model_folders(),
                               tooltip="The insightface model folder under models/insightface/models (antelopev2), "
                                       "the same models 'Load Faces' uses."),
                io.Combo.Input("provider", options=PROVIDERS, default="auto",
                               tooltip="Where ONNX Runtime runs the face models (auto: CUDA if onnxruntime-gpu is "
                                       "installed, else the CPU)."),
                io.Combo.Input("face_choice", options=list(FACE_CHOICES), default="largest",
                               tooltip="Which face of a picture with several people is measured: the largest, the "
                                       "one the detector is surest of, or by position counted from the left."),
                io.Int.Input("columns", default=0, min=0, max=MAX_SWEEP,
                             tooltip="Pictures per row of the grid; 0 makes it about square."),
                Identity.Input("identity", optional=True,
                               tooltip="The person: an identity from 'HyperLoRA ID Embedding' or 'Load HyperLoRA "
                                       "Identity'."),
                Faces.Input("faces", optional=True, tooltip="Or the person's faces from 'Load Faces (HyperLoRA)'."),
                io.String.Input("labels", optional=True, default="", multiline=True,
                                tooltip="A label per picture, one per line (or connect the labels of 'HyperLoRA "
                                        "Strength Sweep'); empty: the pictures are numbered."),
                io.Float.Input("threshold", optional=True, default=LOW_LIKENESS, min=-1.0, max=1.0, step=0.01,
                               tooltip="The set's summary counts the pictures below this similarity (0.5: below it a "
                                       "generated picture is a weak likeness with the real models; a rule of thumb, "
                                       "for comparing)."),
            ],
            outputs=[
                io.Float.Output("similarity", display_name="similarity", is_output_list=True,
                                tooltip="One similarity per picture, in the order of the pictures; NaN where a "
                                        "picture has no face."),
                io.String.Output("summary", display_name="summary",
                                 tooltip="A line per picture ('label: 0.712' or 'label: no face') and the mean of "
                                         "those with a face."),
                io.Image.Output("grid", display_name="grid",
                                tooltip="The pictures side by side, each labelled with its label and similarity."),
                io.Image.Output("chart", display_name="chart",
                                tooltip="The similarity per picture (or frame) as a chart: the threshold dashed, the "
                                        "worst picture in red, a picture without a face a grey cross."),
            ],
        )

    @classmethod
    def execute(cls, images, face_model, provider, face_choice, columns, identity=None, faces=None,
                labels=None, threshold=None) -> io.NodeOutput:
        face_model, provider = _one(face_model, "face_model"), _one(provider, "provider")
        face_choice, columns = _one(face_choice, "face_choice"), int(_one(columns, "columns") or 0)
        identity, faces = _one(identity, "identity"), _one(faces, "faces")
        threshold = _one(threshold, "threshold")
        threshold = LOW_LIKENESS if threshold is None else float(threshold)
        if face_choice not in FACE_CHOICES:
            raise HyperLoRAError(f"Unknown face_choice {face_choice!r}: use one of {', '.join(FACE_CHOICES)}.")
        if (identity is None) == (faces is None):
            raise HyperLoRAError(
                "Likeness needs the person to compare with: connect either 'identity' (from 'HyperLoRA ID "
                "Embedding' or 'Load HyperLoRA Identity') or 'faces' (from 'Load Faces'), not "
                + ("both." if identity is not None else "neither.")
            )
        what = "identity" if identity is not None else "faces"
        target = reference_embedding(identity if identity is not None else faces, what=f"'{what}' input")
        batches = images if isinstance(images, list) else [images]
        pictures = [p for batch in batches for p in images_to_uint8(batch)]
        names = check_labels(_labels(labels), len(pictures), what="'labels' input")

        analyzer = get_analyzer(face_model_folder_path(face_model), provider)
        scores = score_images(analyzer, pictures, target, FACE_CHOICES[face_choice], names)
        stats = summarise(scores, threshold)
        text = summary(scores) + "\n" + stats.text()
        log.info("HyperLoRA likeness:\n%s", text)
        captions = [f"{s.label} \u00b7 " + ("no face" if s.missing else f"similarity {s.similarity:.2f}")
                    for s in scores]
        grid = uint8_to_image([labelled_grid(pictures, captions, columns, highlight=[s.missing for s in scores])])
        chart = uint8_to_image([likeness_chart(scores, threshold=threshold)])
        similarities = [math.nan if s.missing else float(s.similarity) for s in scores]
        # The summary, the grid and the chart on the node together (the pictures saved in ComfyUI's temp folder).
        shown = {**ui.PreviewText(text).as_dict(),
                 "images": ui.PreviewImage(grid, cls=cls).as_dict()["images"]
                 + ui.PreviewImage(chart, cls=cls).as_dict()["images"]}
        return io.NodeOutput(similarities, text, grid, chart, ui=shown)


class StrengthSweep(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HLS_StrengthSweep",
            display_name="HyperLoRA Strength Sweep",
            category=CATEGORY,
            description=(
                "A list of evenly spaced strengths (e.g. 0.5, 0.6, ... 1.0) and a label for each. Connect 'strength' "
                "to the strength of 'Apply HyperLoRA': ComfyUI then runs Apply, the sampler and everything after "
                "once per value, and 'Likeness' collects the pictures into one labelled grid (connect 'labels' to "
                "it)."
            ),
            inputs=[
                io.Float.Input("start", default=0.5, min=-10.0, max=10.0, step=0.05, tooltip="The first strength."),
                io.Float.Input("end", default=1.0, min=-10.0, max=10.0, step=0.05,
                               tooltip="The last strength (included)."),
                io.Int.Input("count", default=6, min=1, max=MAX_SWEEP,
                             tooltip="How many strengths: each one is a full sampler run."),
            ],
            outputs=[
                io.Float.Output("strength", display_name="strength", is_output_list=True,
                                tooltip="The strengths, one run of the nodes downstream per value."),
                io.String.Output("labels", display_name="labels", is_output_list=True,
                                 tooltip="'strength 0.50', ... one per value, for the labels of 'Likeness'."),
            ],
        )

    @classmethod
    def execute(cls, start: float, end: float, count: int) -> io.NodeOutput:
        count = int(count)
        if not 1 <= count <= MAX_SWEEP:
            raise HyperLoRAError(f"count must be between 1 and {MAX_SWEEP}, got {count}.")
        values = [float(start)] if count == 1 else np.linspace(float(start), float(end), count).tolist()
        values = [round(v, 6) for v in values]
        return io.NodeOutput(values, [f"strength {v:.2f}" for v in values])


class KeepBest(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HLS_KeepBest",
            display_name="HyperLoRA Keep the Best",
            category=CATEGORY,
            description=(
                "Keeps the pictures that look most like the person: connect the pictures and the 'similarity' "
                "output of 'HyperLoRA Likeness' that measured them. Gives the top K (or every picture at or above "
                "the threshold), best first, with their indices in the batch, so a workflow can generate many and "
                "keep the best. A picture without a face is never kept; asking for more than the batch holds keeps "
                "them all and says so on the node."
            ),
            is_input_list=True,  # the similarity list of Likeness arrives whole, not one run per value
            inputs=[
                io.Image.Input("images", tooltip="The pictures that Likeness measured (the same batch, in order)."),
                io.Float.Input("similarity", force_input=True,
                               tooltip="The 'similarity' output of 'HyperLoRA Likeness' for these pictures."),
                io.Combo.Input("mode", options=list(MODES), default=MODES[0],
                               tooltip="top K: the K best. above threshold: every picture scoring the threshold or "
                                       "more."),
                io.Int.Input("count", default=4, min=1, max=4096,
                             tooltip="How many pictures to keep (top K)."),
                io.Float.Input("threshold", default=LOW_LIKENESS, min=-1.0, max=1.0, step=0.01,
                               tooltip="The least similarity kept (above threshold). 0.5 is a rule of thumb for "
                                       "the real models; compare within a set."),
            ],
            outputs=[
                io.Image.Output("kept", display_name="kept", tooltip="The pictures kept, best first."),
                io.Int.Output("indices", display_name="indices", is_output_list=True,
                              tooltip="The position of each kept picture in the batch (0 = first), best first."),
                io.String.Output("summary", display_name="summary",
                                 tooltip="What was kept, with the scores, and any note (pictures without a face, "
                                         "a count larger than the batch)."),
            ],
        )

    @classmethod
    def execute(cls, images, similarity, mode, count, threshold) -> io.NodeOutput:
        import torch

        mode, count, threshold = _one(mode, "mode"), _one(count, "count"), _one(threshold, "threshold")
        if mode not in MODES:
            raise HyperLoRAError(f"Unknown mode {mode!r}: use one of {', '.join(MODES)}.")
        batches = [b for b in (images if isinstance(images, list) else [images]) if b is not None]
        if not batches:
            raise HyperLoRAError("Keep the Best needs the pictures: connect 'images'.")
        if len({tuple(b.shape[1:]) for b in batches}) > 1:
            raise HyperLoRAError("The pictures to choose from have different sizes: give one batch of one size.")
        pictures = torch.cat(batches) if len(batches) > 1 else batches[0]
        scores = similarity if isinstance(similarity, list) else [similarity]
        kept = keep_best(scores, count=int(count) if mode == MODES[0] else None,
                         threshold=float(threshold) if mode == MODES[1] else None, pictures=int(pictures.shape[0]))
        text = kept.text()
        log.info("HyperLoRA keep the best:\n%s", text)
        return io.NodeOutput(pictures[kept.indices], list(kept.indices), text, ui=ui.PreviewText(text))
