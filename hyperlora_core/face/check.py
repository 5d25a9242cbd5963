"""The photo check: is each photo of a set a good, single-person input for HyperLoRA?

Per photo, from what the face pipeline computes anyway (:class:`~.analyzer.FaceResult`):

* face size: the detection box's width in photo pixels;
* detection score: how sure SCRFD is that this is a face;
* sharpness: the variance of the Laplacian of the landmark square, greyscale at 112 x 112 (the
  ArcFace input size), so that faces of any size are measured at the scale ArcFace sees;
* head pose: yaw / pitch / roll in degrees, a landmark-geometry estimate from five of the 106
  landmarks (eye centres, nose tip, mouth corners; the indices insightface's 5-point alignment uses),
  assuming the nose tip stands half an eye distance in front of the eyes. A rule-of-thumb estimate,
  good to about 10 degrees up to 45 (no 3D model is fitted): for spotting a turned head, not for
  measuring one;
* agreement: the ArcFace cosine of the photo to the normalised mean of the *other* photos
  (leave-one-out), so a photo of someone else stands out against a set of one person.

Every threshold below is a rule of thumb, not a measured property of HyperLoRA; each says where
it comes from. A flag never stops a run: :func:`check_faces` says what it found, and
:func:`apply_check` keeps, drops or down-weights the flagged photos as asked. When every photo is
flagged, all are kept and the check says so (there is nothing better to keep).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import InputError

# -- thresholds (rules of thumb) -------------------------------------------------------------------
# ArcFace (glintr100) works on 112 x 112 aligned crops: a face narrower than that is upscaled, and
# its embedding gets less reliable (insightface's recognition input size).
MIN_FACE_PX = 112
# SCRFD's own threshold is 0.5 (DET_THRESH); a face barely above it is often partly hidden or
# not a face at all. 0.6 leaves a margin (rule of thumb).
MIN_DET_SCORE = 0.6
# Variance of the Laplacian of the 112 x 112 grey face crop. The often-quoted 100 is for whole
# photos; a face crop has fewer edges, and sharp photo faces give a few hundred, a visibly blurred
# one tens (rule of thumb from the "variance of the Laplacian" blur test).
MIN_SHARPNESS = 40.0
# Beyond about 30 degrees of yaw one eye and cheek start to hide and ArcFace similarities of the
# same person drop clearly; pitch (up or down) shows it sooner (rules of thumb from face
# recognition on frontal vs profile benchmarks). Roll is undone by the alignment: reported only.
MAX_YAW = 30.0
MAX_PITCH = 25.0
# ArcFace cosines (glintr100): photos of one person usually agree above 0.4, different people
# mostly below 0.3 (common verification thresholds are 0.3-0.4). A photo is flagged below 0.3, or
# when it is 0.25 below the others' median (a set of harder photos agrees less overall).
MIN_AGREEMENT = 0.3
AGREEMENT_MARGIN = 0.25
# Down-weighting gives a flagged photo this weight against 1 for each good photo.
DOWNWEIGHT = 0.25

SHARPNESS_SIZE = 112
# Indices among the 106 landmarks (insightface 2d106det) of the five alignment points.
FIVE_POINTS = (38, 88, 86, 52, 61)  # left eye, right eye, nose tip, left mouth corner, right mouth corner
NOSE_DEPTH = 0.5  # nose tip in front of the eyes, in eye distances (average adult face; rule of thumb)
# The frontal face: insightface's ArcFace alignment template (the five points in a 112 x 112 crop).
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]])
# Where the nose tip sits between the eye line (0) and the mouth line (1) in the frontal face.
NOSE_HEIGHT = float((ARCFACE_TEMPLATE[2, 1] - ARCFACE_TEMPLATE[:2, 1].mean())
                    / (ARCFACE_TEMPLATE[3:, 1].mean() - ARCFACE_TEMPLATE[:2, 1].mean()))

ACTIONS = ("keep", "drop", "downweight")


@dataclass
class PhotoCheck:
    """What the check found in one photo."""

    index: int  # position among the checked faces' photos (FaceResult.index)
    label: str
    face_px: float
    det_score: float
    sharpness: float | None  # None: not measured (no photo pixels)
    yaw: float
    pitch: float
    roll: float
    agreement: float | None  # None: a set of one photo has nothing to agree with
    reasons: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)

    def as_dict(self) -> dict:
        return {"index": self.index, "label": self.label, "face_px": round(self.face_px, 1),
                "det_score": round(self.det_score, 3),
                "sharpness": None if self.sharpness is None else round(self.sharpness, 1),
                "yaw": round(self.yaw, 1), "pitch": round(self.pitch, 1), "roll": round(self.roll, 1),
                "agreement": None if self.agreement is None else round(self.agreement, 3),
                "flagged": self.flagged, "reasons": list(self.reasons)}


@dataclass
class SetCheck:
    """The check of a set of photos and what was done with it."""

    photos: list[PhotoCheck]
    action: str = "keep"
    kept: list[int] = field(default_factory=list)  # positions in ``photos`` that go on
    weights: list[float] = field(default_factory=list)  # one per kept photo (relative)
    note: str = ""  # what was done, in a sentence

    @property
    def flagged(self) -> list[PhotoCheck]:
        return [p for p in self.photos if p.flagged]

    def reasons(self) -> list[str]:
        return [reason for p in self.photos for reason in p.reasons]

    def table(self) -> str:
        """A plain-text table (one row per photo), the reasons and what was done."""
        rows = [("photo", "face px", "det", "sharp", "yaw", "pitch", "roll", "agrees", "flag")]
        for p in self.photos:
            rows.append((p.label, f"{p.face_px:.0f}", f"{p.det_score:.2f}",
                         "-" if p.sharpness is None else f"{p.sharpness:.0f}",
                         f"{round(p.yaw):+d}", f"{round(p.pitch):+d}", f"{round(p.roll):+d}",
                         "-" if p.agreement is None else f"{p.agreement:.2f}", "yes" if p.flagged else ""))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
                 for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.extend(self.reasons() or ["no photo flagged"])
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"action": self.action, "photos": [p.as_dict() for p in self.photos], "kept": list(self.kept),
                "weights": [round(w, 4) for w in self.weights], "note": self.note}


# -- measurements ------------------------------------------------------------------------------------

def face_sharpness(rgb: np.ndarray, landmarks: np.ndarray) -> float:
    """Variance of the Laplacian of the landmark square, greyscale, resized to 112 x 112."""
    import cv2
    from PIL import Image

    from .crops import landmark_box, square_crop

    cx, cy, half = landmark_box(landmarks)
    crop = square_crop(Image.fromarray(np.asarray(rgb, dtype=np.uint8)), cx, cy, half).convert("L")
    grey = cv2.resize(np.asarray(crop), (SHARPNESS_SIZE, SHARPNESS_SIZE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey.astype(np.float64), cv2.CV_64F).var())


def head_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from the 106 landmarks (see the module's note: an estimate).

    Signs: yaw > 0 when the nose points to the photo's right, pitch > 0 when the face looks up,
    roll > 0 when the eye line rises to the photo's left (the head tilts clockwise in the photo)."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if points.shape[0] != 106:
        raise InputError(f"head_pose needs the 106 landmarks, got {points.shape[0]} points.")
    left_eye, right_eye, nose, mouth_l, mouth_r = points[list(FIVE_POINTS)]
    eye_vec = right_eye - left_eye
    eye_dist = float(np.hypot(*eye_vec))
    if eye_dist < 1e-6:
        return 0.0, 0.0, 0.0
    roll = math.degrees(math.atan2(eye_vec[1], eye_vec[0]))
    # Undo the roll: x along the eye line, y down across it, eye midpoint at the origin.
    c, s = eye_vec / eye_dist
    rotate = np.array([[c, s], [-s, c]])
    eyes_mid = (left_eye + right_eye) / 2
    nose_r = rotate @ (nose - eyes_mid)
    mouth_r = rotate @ ((mouth_l + mouth_r) / 2 - eyes_mid)
    # Yaw: the nose tip (depth NOSE_DEPTH eye distances) moves sideways by depth x sin(yaw) while the
    # eye distance shrinks by cos(yaw), measured from the eye-mouth midline.
    midline_x = mouth_r[0] * (nose_r[1] / mouth_r[1]) if abs(mouth_r[1]) > 1e-6 else 0.0
    yaw = math.degrees(math.atan2(nose_r[0] - midline_x, NOSE_DEPTH * eye_dist))
    # Pitch: the nose tip moves up or down from its frontal height between the eye and mouth lines.
    height = float(mouth_r[1])
    if abs(height) < 1e-6:
        pitch = 0.0
    else:
        offset = NOSE_HEIGHT * height - float(nose_r[1])  # > 0: nose higher than frontal -> looking up
        pitch = math.degrees(math.atan2(offset, NOSE_DEPTH * eye_dist))
    return yaw, pitch, roll


def agreements(embeddings: np.ndarray, weights: Sequence[float] | None = None) -> list[float | None]:
    """ArcFace cosine of each embedding to the normalised (weighted) mean of the others; None for a set of one."""
    e = np.asarray(embeddings, dtype=np.float64).reshape(len(embeddings), -1)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    if len(e) < 2:
        return [None] * len(e)
    w = np.ones(len(e)) if weights is None else np.asarray(weights, dtype=np.float64)
    out: list[float | None] = []
    for i in range(len(e)):
        others = np.delete(np.arange(len(e)), i)
        mean = (w[others, None] * e[others]).sum(axis=0)
        norm = float(np.linalg.norm(mean))
        out.append(float(e[i] @ mean / norm) if norm > 1e-12 else 0.0)
    return out


# -- the check ------------------------------------------------------------------------------------------

def check_faces(faces: Sequence[Any], labels: Sequence[str] | None = None, *,
                photos: Sequence[np.ndarray] | None = None) -> SetCheck:
    """Check each face (``FaceResult``s, or anything with ``box``, ``det_score``, ``landmarks``,
    ``arcface_embedding`` and optionally ``sharpness``) and flag what looks wrong, with the reason.

    ``labels``: a name per face ("photo 0", ... when not given). ``photos``: the RGB photos, indexed
    like the faces, for the sharpness of faces that do not carry it."""
    faces = list(faces)
    if not faces:
        raise InputError("The photo check needs at least one face.")
    labels = [str(x) for x in labels] if labels else [f"photo {getattr(f, 'index', i)}" for i, f in enumerate(faces)]
    if len(labels) != len(faces):
        raise InputError(f"The photo check got {len(labels)} labels for {len(faces)} faces.")
    agree = agreements(np.stack([np.asarray(f.arcface_embedding, dtype=np.float64).reshape(-1) for f in faces]))
    checks = []
    for i, (face, label) in enumerate(zip(faces, labels)):
        box = np.asarray(face.box, dtype=np.float64).reshape(-1)
        sharp = getattr(face, "sharpness", None)
        if sharp is None and photos is not None:
            sharp = face_sharpness(photos[i], face.landmarks)
        yaw, pitch, roll = head_pose(face.landmarks)
        checks.append(PhotoCheck(index=int(getattr(face, "index", i)), label=label, face_px=float(box[2] - box[0]),
                                 det_score=float(face.det_score), sharpness=None if sharp is None else float(sharp),
                                 yaw=yaw, pitch=pitch, roll=roll, agreement=agree[i]))
    for i, p in enumerate(checks):
        p.reasons.extend(_reasons(p, [q.agreement for j, q in enumerate(checks) if j != i]))
    return SetCheck(photos=checks, kept=list(range(len(checks))), weights=[1.0] * len(checks),
                    note=_flag_note(checks))


def _reasons(p: PhotoCheck, others: list[float | None]) -> list[str]:
    reasons = []
    if p.agreement is not None:
        known = [a for a in others if a is not None]
        median = float(np.median(known)) if known else None
        if len(known) == 1:  # two photos: the pair disagrees, either could be the stranger
            if p.agreement < MIN_AGREEMENT:
                reasons.append(f"{p.label} does not look like the other photo: {p.agreement:.2f} "
                               f"(photos of one person usually agree above {MIN_AGREEMENT:.1f}); one of the two "
                               "may be another person")
        elif p.agreement < MIN_AGREEMENT or (median is not None and p.agreement < median - AGREEMENT_MARGIN):
            reasons.append(f"{p.label} looks like a different person: {p.agreement:.2f} against the others' "
                           f"median {median:.2f}")
    if p.face_px < MIN_FACE_PX:
        reasons.append(f"{p.label}: the face is {p.face_px:.0f} px wide; {MIN_FACE_PX} px or more works best")
    if p.det_score < MIN_DET_SCORE:
        reasons.append(f"{p.label}: the face detector is unsure (score {p.det_score:.2f}; below {MIN_DET_SCORE} "
                       "the face is often partly hidden)")
    if p.sharpness is not None and p.sharpness < MIN_SHARPNESS:
        reasons.append(f"{p.label}: the face looks blurred (sharpness {p.sharpness:.0f}; "
                       f"{MIN_SHARPNESS:.0f} or more is sharp enough)")
    if abs(p.yaw) > MAX_YAW:
        reasons.append(f"{p.label}: head turned {abs(p.yaw):.0f} degrees (up to {MAX_YAW:.0f} works best)")
    if abs(p.pitch) > MAX_PITCH:
        reasons.append(f"{p.label}: head tilted {'up' if p.pitch > 0 else 'down'} {abs(p.pitch):.0f} degrees "
                       f"(up to {MAX_PITCH:.0f} works best)")
    return reasons


def _flag_note(checks: list[PhotoCheck]) -> str:
    n = sum(p.flagged for p in checks)
    return f"{n} of {len(checks)} photo(s) flagged" if n else ""


def apply_check(check: SetCheck, action: str = "keep") -> SetCheck:
    """Decide which photos go on and with what weight: ``keep`` (all, equal weights: flags only),
    ``drop`` (the flagged ones are left out) or ``downweight`` (flagged ones weigh DOWNWEIGHT against 1).
    A set where every photo is flagged keeps them all, equally, and says so. Returns ``check`` updated."""
    if action not in ACTIONS:
        raise InputError(f"Unknown photo check action {action!r}: use one of {', '.join(ACTIONS)}.")
    n = len(check.photos)
    flagged = [p.flagged for p in check.photos]
    check.action = action
    count = sum(flagged)
    if count == 0 or action == "keep":
        check.kept, check.weights = list(range(n)), [1.0] * n
        check.note = (f"{count} of {n} photo(s) flagged; all kept (photo check: keep)" if count
                      else f"no photo of {n} flagged")
    elif count == n:
        check.kept, check.weights = list(range(n)), [1.0] * n
        check.note = (f"every photo is flagged, so all {n} are kept with equal weights (nothing better to "
                      f"{'keep' if action == 'drop' else 'weigh them against'})")
    elif action == "drop":
        check.kept = [i for i in range(n) if not flagged[i]]
        check.weights = [1.0] * len(check.kept)
        check.note = f"dropped {count} flagged photo(s): " + ", ".join(p.label for p in check.photos if p.flagged)
    else:
        check.kept = list(range(n))
        check.weights = [DOWNWEIGHT if f else 1.0 for f in flagged]
        check.note = (f"{count} flagged photo(s) down-weighted to {DOWNWEIGHT} (1 for the others): "
                      + ", ".join(p.label for p in check.photos if p.flagged))
    return check
