"""Likeness: how much the face in a picture looks like the person, as the HyperLoRA paper reports it.

The number is the cosine similarity of ArcFace embeddings (insightface antelopev2: SCRFD detection,
106 landmarks, glintr100 recognition), computed exactly as the face pipeline computes the
embeddings HyperLoRA is fed (:meth:`FaceAnalyzer.analyze_photo`), so a photo scored against an
identity made from that same photo gives 1.

The reference is an identity's ArcFace embeddings (their weighted mean, normalised: the person's
direction in ArcFace space), the embeddings of reference photos, or one embedding. In each picture
the face is chosen as Load Faces chooses it (largest, most confident, or by position from the
left). A picture without a face is reported as missing (``similarity is None``), never as 0: a
0 would pull an average down as if the face were a stranger's.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..constants import ARCFACE_DIM
from ..errors import InputError

logger = logging.getLogger(__name__)

NO_FACE = "no face"


@dataclass
class Likeness:
    """The likeness of one picture to the reference."""

    index: int  # position of the picture in the batch
    label: str  # the picture's name in tables and on the grid
    similarity: float | None  # ArcFace cosine similarity in -1..1; None: no face found
    n_faces: int = 0  # faces found in the picture
    face_index: int | None = None  # the face used, counted from the left (0 = leftmost)
    det_score: float | None = None  # detection score of the face used
    box: tuple[float, float, float, float] | None = field(default=None, repr=False)

    @property
    def missing(self) -> bool:
        return self.similarity is None

    def text(self) -> str:
        """``0.712`` or ``no face``."""
        return NO_FACE if self.similarity is None else f"{self.similarity:.3f}"

    def as_dict(self) -> dict:
        return {"index": self.index, "label": self.label, "similarity": self.similarity,
                "faces": self.n_faces, "face_index": self.face_index, "det_score": self.det_score}


def reference_embedding(reference: Any, weights: Any = None, what: str = "reference") -> np.ndarray:
    """The normalised (weighted) mean of the reference's ArcFace embeddings, as float64 (512,).

    ``reference``: an identity (anything with ``arcface`` and optionally ``weights``, such as
    :class:`~hyperlora_core.features.identity.IdentityFeatures`), face results (with ``arcface_embedding``),
    a tensor or array of shape (N, 512) or (512,). ``what`` names the input in messages.
    """
    if weights is None:
        weights = getattr(reference, "weights", None)
    if hasattr(reference, "arcface"):
        embeddings = reference.arcface
    elif hasattr(reference, "results"):  # a batch of faces (the HYPERLORA_FACES link)
        embeddings = [r.arcface_embedding for r in reference.results]
    elif isinstance(reference, (list, tuple)) and reference and hasattr(reference[0], "arcface_embedding"):
        embeddings = [r.arcface_embedding for r in reference]
    else:
        embeddings = reference
    array = _as_array(embeddings)
    if array is None or array.ndim not in (1, 2) or array.shape[-1] != ARCFACE_DIM or array.size == 0:
        shape = None if array is None else list(array.shape)
        raise InputError(
            f"The {what} has no ArcFace embeddings (got {type(reference).__name__}"
            f"{'' if shape is None else f' of shape {shape}'}; expected N x {ARCFACE_DIM}). Make the identity "
            "from photos with 'Load Faces' and 'HyperLoRA ID Embedding' (or connect the faces of 'Load Faces')."
        )
    array = array.reshape(-1, ARCFACE_DIM)
    norms = np.linalg.norm(array, axis=1)
    if not np.isfinite(array).all() or (norms < 1e-6).any():
        raise InputError(
            f"The {what} holds ArcFace embeddings that are empty (all zero) or not finite, so there is no face "
            "to compare with. Make the identity again from photos with a visible face ('Load Faces' -> "
            "'HyperLoRA ID Embedding', or the command line's --photos)."
        )
    array = array / norms[:, None]
    if weights is None:
        w = np.full(len(array), 1.0 / len(array))
    else:
        w = _as_array(weights)
        if w is None or w.size != len(array) or (w < 0).any() or w.sum() <= 0:
            raise InputError(f"The {what} needs {len(array)} non-negative weights, not all zero.")
        w = w.reshape(-1) / w.sum()
    mean = (w[:, None] * array).sum(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm < 1e-6:  # opposite embeddings that cancel: no direction to compare with
        raise InputError(f"The {what}'s ArcFace embeddings cancel out; use photos of one person.")
    return mean / norm


def _as_array(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    if type(value).__module__.split(".")[0] == "torch":
        value = value.detach().cpu().double().numpy()
    if isinstance(value, (list, tuple)):
        try:
            value = np.stack([np.asarray(_as_array(v), dtype=np.float64).reshape(-1) for v in value])
        except (TypeError, ValueError):
            return None
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def check_labels(labels: Sequence[str] | None, count: int, what: str = "labels") -> list[str]:
    """One label per picture: ``labels`` as given, or ``picture 0``, ``picture 1``, ... when empty."""
    labels = [str(label) for label in (labels or [])]
    if not labels:
        return [f"picture {i}" for i in range(count)]
    if len(labels) != count:
        raise InputError(
            f"{what}: {len(labels)} label(s) for {count} picture(s). Give one label per picture (one per line), "
            "or leave the labels empty to number the pictures."
        )
    return labels


def cosine(embedding: np.ndarray, reference: np.ndarray) -> float:
    """Cosine similarity of an embedding with a normalised reference, in -1..1."""
    embedding = np.asarray(embedding, dtype=np.float64).reshape(-1)
    value = float(embedding @ reference) / max(float(np.linalg.norm(embedding)), 1e-12)
    return max(-1.0, min(1.0, value))


def score_images(analyzer, images: Any, reference: Any, choice: str | int = "largest",
                 labels: Sequence[str] | None = None) -> list[Likeness]:
    """The likeness of the chosen face in each picture to ``reference`` (see :func:`reference_embedding`).

    ``analyzer``: a :class:`~hyperlora_core.face.FaceAnalyzer`; ``images``: a list of RGB uint8
    arrays (of any size: one too small for a face is reported as missing), or anything
    :func:`~hyperlora_core.files.images.to_rgb_list` accepts (an IMAGE batch, files, ...).
    """
    from ..face import check_choice
    from ..files.images import to_rgb_list

    choice = check_choice(choice)
    target = reference_embedding(reference)
    if isinstance(images, (list, tuple)) and all(_is_rgb(p) for p in images):
        pictures = list(images)  # decoded already (a node's batch, the trainer's samples), any size
    else:
        pictures = to_rgb_list(images)
    labels = check_labels(labels, len(pictures))
    scores = []
    for index, (rgb, label) in enumerate(zip(pictures, labels)):
        # The embedding as Load Faces computes it; the crops, which do not change it, are not made.
        face = analyzer.analyze_photo(rgb, index, choice, crops=False)
        if face is None:
            logger.info("Likeness: no face in %s; reported as missing.", label)
            scores.append(Likeness(index, label, None))
            continue
        scores.append(Likeness(
            index, label, cosine(face.arcface_embedding, target), n_faces=face.n_faces,
            face_index=face.face_index, det_score=float(face.det_score),
            box=tuple(float(v) for v in face.box),
        ))
    return scores


def _is_rgb(picture: Any) -> bool:
    return isinstance(picture, np.ndarray) and picture.dtype == np.uint8 and picture.ndim == 3 \
        and picture.shape[2] == 3


def photo_embeddings(analyzer, photos: Any, choice: str | int = "largest") -> tuple[np.ndarray, list[int]]:
    """ArcFace embeddings (N, 512) of the reference photos that have a face, and their indices.

    Raises :class:`NoFaceError` when none has a face.
    """
    results = analyzer.analyze(photos, choice=choice, remove_background=False)
    return np.stack([r.arcface_embedding for r in results]), [r.index for r in results]


def mean_similarity(scores: Sequence[Likeness]) -> float | None:
    """Mean over the pictures with a face; None when none has one."""
    found = [s.similarity for s in scores if s.similarity is not None]
    return math.fsum(found) / len(found) if found else None


def summary(scores: Sequence[Likeness]) -> str:
    """A line per picture (``label: 0.712`` / ``label: no face``) and the mean of those with a face."""
    lines = [f"{s.label}: {s.text()}" for s in scores]
    mean = mean_similarity(scores)
    found = sum(not s.missing for s in scores)
    if mean is None:
        lines.append(f"no face found in any of the {len(scores)} picture(s)")
    else:
        lines.append(f"mean of {found} picture(s) with a face: {mean:.3f}"
                     + (f" ({len(scores) - found} without a face)" if found < len(scores) else ""))
    return "\n".join(lines)


def table(scores: Sequence[Likeness], label_header: str = "picture") -> str:
    """A plain-text table: label, faces found, face used, similarity; then the mean."""
    rows = [(label_header, "faces", "used", "similarity")]
    for s in scores:
        rows.append((s.label, str(s.n_faces), "-" if s.face_index is None else str(s.face_index), s.text()))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             .rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(summary(scores).splitlines()[-1])
    return "\n".join(lines)

