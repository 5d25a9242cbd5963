"""Tiny stand-ins for insightface's antelopev2 models, for tests that cannot have the real weights.

``make_tiny_antelopev2(folder)`` writes ``scrfd_10g_bnkps.onnx``, ``2d106det.onnx`` and
``glintr100.onnx`` (plus two decoy files where the real folder has its unused models) as ONNX graphs
exported with ``torch.onnx.export(..., dynamo=False)``. insightface's ``model_zoo`` loads and routes
them exactly like the real files: the detector by its 9 outputs (strides 8/16/32 x score, box and five
keypoints, 2 anchors per cell, dynamic input size), the landmark model by its 192x192 input and 212
outputs, the recognition model by its 112x112 input and 512 outputs.

How a test puts a "face" where it wants it
------------------------------------------
A face is a rectangle drawn in a marker colour with :func:`draw_face` (filled, or a ring so that the
inside can hold any picture). The models look for those colours, within 48 of 255 in each channel:

* slot 0 magenta (255, 0, 255), detection score 0.9
* slot 1 cyan    (0, 255, 255), score 0.8
* slot 2 yellow  (255, 255, 0), score 0.7
* slot 3 white   (>= 232 in all channels), score 0.6, counted only when the whole detector input is
  grey (R = G = B within 8): this is how a greyscale photo can hold a face.

One face per slot, so at most four faces in a photo. The **detector** reports a slot when at least
16 of its pixels are in the detector input and the marker's longer side is at most 60% of the
shorter side of that input: like the real SCRFD, whose anchors stop at a certain face size, it misses
a face that fills the frame (a close-up), at every detection size, until the photo is padded. The box is the
marker's extent; the five keypoints sit at :data:`KPS_TEMPLATE` inside it.

The **landmark model** finds the marker pixels (any slot) in the middle of its 192x192 crop
(pixels 20..171, so that a neighbouring face at the crop's edge does not count) and puts the 106
landmarks at :data:`TEMPLATE_106` inside the marker's extent: the landmarks' min/max box is the
marker, their face outline (the spec's polygon) is an ellipse-like U closed by two brows.
:func:`landmarks_for_box` gives where they land for a marker at a box (to about one crop pixel).

The **recognition model** average-pools the aligned 112x112 crop to 8x8 and projects the 192
numbers with a fixed random matrix to 512: what is inside the face changes the embedding, the
same pixels always give the same embedding.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

MARKER_COLOURS = ((255, 0, 255), (0, 255, 255), (255, 255, 0))
GREY_MARKER = (255, 255, 255)
SLOT_SCORES = (0.9, 0.8, 0.7, 0.6)
COLOUR_TOLERANCE = 48
GREY_MARKER_MIN = 232
MIN_MARKER_PIXELS = 16
MAX_MARKER_FRACTION = 0.6
LANDMARK_WINDOW = (20, 172)

# Five keypoints (eyes, nose, mouth corners) relative to the marker box.
KPS_TEMPLATE = np.array(
    [[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]], dtype=np.float32
)

# The spec's face polygon (section 8), in its order: contour and brows.
FACE_POLYGON = (
    [1, *range(9, 17), *range(2, 9), 0, *range(24, 17, -1), *range(32, 24, -1), 17]
    + [101, 105, 104, 103, 102, 50, 51, 49, 48, 43]
)


FIVE_POINTS = (38, 88, 86, 52, 61)  # insightface's 5-point subset of the 106 landmarks
ARCFACE_TEMPLATE = ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655), (70.7299, 92.2041))


def _template_106() -> np.ndarray:
    t = np.zeros((106, 2), dtype=np.float32)
    contour = FACE_POLYGON[:33]
    for j, index in enumerate(contour):
        phi = np.pi * (1.0 - j / 32.0)  # from the left temple down to the chin and up again
        t[index] = (0.5 + 0.5 * np.cos(phi), 0.3 + 0.7 * np.sin(phi))
    brow_x = [0.92, 0.82, 0.72, 0.62, 0.54, 0.46, 0.38, 0.28, 0.18, 0.08]
    brow_y = [0.12, 0.03, 0.0, 0.03, 0.08, 0.08, 0.03, 0.0, 0.03, 0.12]
    for index, x, y in zip(FACE_POLYGON[33:], brow_x, brow_y):
        t[index] = (x, y)
    inner = [i for i in range(106) if i not in FACE_POLYGON]
    grid = [(x, y) for y in np.linspace(0.3, 0.85, 7) for x in np.linspace(0.25, 0.75, 9)]
    for index, point in zip(inner, grid):
        t[index] = point
    # The five alignment points (eyes, nose tip, mouth corners) where a frontal face has them (the ArcFace
    # template, 112 px square), so that the photo check's head pose reads a tiny face as frontal.
    for index, (x, y) in zip(FIVE_POINTS, ARCFACE_TEMPLATE):
        t[index] = (x / 112.0, y / 112.0)
    return t


TEMPLATE_106 = _template_106()


def landmarks_for_box(box) -> np.ndarray:
    """Where the tiny landmark model puts the 106 landmarks for a marker drawn at ``box``."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return np.stack(
        [x0 + TEMPLATE_106[:, 0] * (x1 - x0), y0 + TEMPLATE_106[:, 1] * (y1 - y0)], axis=1
    )


def draw_face(image: np.ndarray, box, slot: int = 0, ring: int | None = None) -> np.ndarray:
    """Draw a face marker of ``slot`` covering pixels ``box`` = (x0, y0, x1, y1), end exclusive.

    ``image`` is an RGB uint8 array, changed in place and returned. With ``ring`` only a border of
    that many pixels is drawn, so the inside keeps its content (which then shapes the embedding).
    """
    colour = GREY_MARKER if slot == 3 else MARKER_COLOURS[slot]
    x0, y0, x1, y1 = (int(v) for v in box)
    if ring is None:
        image[y0:y1, x0:x1] = colour
    else:
        image[y0 : y0 + ring, x0:x1] = colour
        image[y1 - ring : y1, x0:x1] = colour
        image[y0:y1, x0 : x0 + ring] = colour
        image[y0:y1, x1 - ring : x1] = colour
    return image


def _build_modules():
    import torch
    from torch import nn

    colours = torch.tensor(MARKER_COLOURS, dtype=torch.float32).view(1, 3, 3, 1, 1)

    def pixels(x: torch.Tensor, std: float) -> torch.Tensor:
        return x * std + 127.5

    def slot_masks(pix: torch.Tensor) -> torch.Tensor:
        """(1, 4, H, W) masks of the four marker slots."""
        colour = ((pix.unsqueeze(1) - colours).abs() <= COLOUR_TOLERANCE).all(dim=2)  # (1,3,H,W)
        r, g, b = pix[:, 0:1], pix[:, 1:2], pix[:, 2:3]
        spread = ((r - g).abs() + (g - b).abs()).amax(dim=(1, 2, 3), keepdim=True)
        is_grey = spread <= 8
        white = (pix >= GREY_MARKER_MIN).all(dim=1, keepdim=True) & is_grey
        return torch.cat([colour, white], dim=1).float()

    def extents(masks: torch.Tensor):
        """Per channel: count, x0, y0, x1, y1 (end exclusive) of the mask pixels."""
        ones = torch.ones_like(masks[:, :1])
        xs = torch.cumsum(ones, dim=3) - 1
        ys = torch.cumsum(ones, dim=2) - 1
        outside = (1 - masks) * 1e6
        x0 = (xs + outside).amin(dim=(2, 3))
        y0 = (ys + outside).amin(dim=(2, 3))
        x1 = (xs - outside).amax(dim=(2, 3)) + 1
        y1 = (ys - outside).amax(dim=(2, 3)) + 1
        return masks.sum(dim=(2, 3)), x0, y0, x1, y1, xs, ys

    kps_template = torch.tensor(KPS_TEMPLATE)
    slot_scores = torch.tensor(SLOT_SCORES).view(1, 4)

    class TinyDetector(nn.Module):
        def forward(self, x):
            pix = pixels(x, 128.0)
            masks = slot_masks(pix)
            count, x0, y0, x1, y1, xs, ys = extents(masks)  # each (1, 4)
            height = ys.amax() + 1
            width = xs.amax() + 1
            side = torch.maximum(x1 - x0, y1 - y0)
            found = (count >= MIN_MARKER_PIXELS) & (
                side <= MAX_MARKER_FRACTION * torch.minimum(height, width)
            )
            score = found.float() * slot_scores  # (1, 4)

            ones = torch.ones_like(x[:, :1])
            levels = []
            for stride in (8, 16, 32):
                cells = nn.functional.avg_pool2d(ones, stride).reshape(-1, 1)  # (H/s*W/s, 1)
                anchors = torch.cat([cells, cells], dim=1).reshape(-1, 1)  # 2 anchors per cell
                levels.append(anchors)
            # Slot k is reported by anchor k of stride 8: anchors 0-1 sit at (0, 0), 2-3 at (8, 0).
            position = torch.cumsum(levels[0], dim=0) - 1  # (N8, 1)
            anchor_x = torch.floor(torch.arange(4, dtype=torch.float32) / 2) * 8  # (4,)
            dist = torch.stack(
                [anchor_x - x0[0], 0 - y0[0], x1[0] - anchor_x, y1[0] - 0], dim=1
            ) / 8  # (4, 4)
            kx = x0[0].unsqueeze(1) + kps_template[:, 0] * (x1 - x0)[0].unsqueeze(1)  # (4, 5)
            ky = y0[0].unsqueeze(1) + kps_template[:, 1] * (y1 - y0)[0].unsqueeze(1)
            kps = torch.stack([kx - anchor_x.unsqueeze(1), ky], dim=2).reshape(4, 10) / 8
            scores8 = torch.zeros_like(levels[0])
            boxes8 = torch.zeros_like(levels[0]).repeat(1, 4)
            kps8 = torch.zeros_like(levels[0]).repeat(1, 10)
            for k in range(4):
                hit = (position == k).float()
                scores8 = scores8 + hit * score[0, k]
                boxes8 = boxes8 + hit * dist[k]
                kps8 = kps8 + hit * kps[k]
            zeros = [level * 0 for level in levels[1:]]
            return (
                scores8, zeros[0], zeros[1],
                boxes8, zeros[0].repeat(1, 4), zeros[1].repeat(1, 4),
                kps8, zeros[0].repeat(1, 10), zeros[1].repeat(1, 10),
            )

    template = torch.tensor(TEMPLATE_106)
    window = torch.zeros(1, 1, 192, 192)
    lo, hi = LANDMARK_WINDOW
    window[:, :, lo:hi, lo:hi] = 1

    class TinyLandmarks(nn.Module):
        def forward(self, x):
            pix = pixels(x, 128.0)
            mask = slot_masks(pix).amax(dim=1, keepdim=True) * window
            _, x0, y0, x1, y1, _, _ = extents(mask)
            points = torch.stack(
                [x0 + template[:, 0] * (x1 - x0), y0 + template[:, 1] * (y1 - y0)], dim=2
            )  # (1, 106, 2) in crop pixels
            return (points / 96.0 - 1.0).reshape(1, 212)

    generator = torch.Generator().manual_seed(1234)
    projection = torch.randn(192, 512, generator=generator)

    class TinyRecognition(nn.Module):
        def forward(self, x):
            pooled = nn.functional.avg_pool2d(x, 14).reshape(x.shape[0], 192)
            return pooled @ projection + 0.05

    return TinyDetector(), TinyLandmarks(), TinyRecognition()


def make_tiny_antelopev2(folder: Path, decoys: bool = True) -> Path:
    """Write the tiny antelopev2 models into ``folder`` (created if needed) and return it.

    With ``decoys`` the folder also gets ``1k3d68.onnx`` and ``genderage.onnx`` holding bytes that
    are not ONNX: loading them (which we must not do) would fail.
    """
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    detector, landmarks, recognition = _build_modules()
    det_outputs = [f"{kind}_{s}" for kind in ("score", "bbox", "kps") for s in (8, 16, 32)]
    exports = [
        (detector, "scrfd_10g_bnkps.onnx", (1, 3, 640, 640), det_outputs,
         {"input.1": {2: "height", 3: "width"}, **{o: {0: f"n_{o}"} for o in det_outputs}}),
        (landmarks, "2d106det.onnx", (1, 3, 192, 192), ["fc1"], None),
        (recognition, "glintr100.onnx", (1, 3, 112, 112), ["embedding"],
         {"input.1": {0: "batch"}, "embedding": {0: "batch"}}),
    ]
    for module, name, shape, outputs, axes in exports:
        target = folder / name
        if target.exists():
            continue
        partial = folder / (name + ".partial")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, on purpose
            torch.onnx.export(
                module.eval(), (torch.zeros(shape),), str(partial), input_names=["input.1"],
                output_names=outputs, dynamic_axes=axes, opset_version=17, dynamo=False,
            )
        partial.replace(target)
    if decoys:
        for name in ("1k3d68.onnx", "genderage.onnx"):
            (folder / name).write_bytes(b"not an onnx model: never load me")
    return folder


def marked_picture(seed: int, faces=(((90, 110, 200, 240), 0),), size=(320, 288), noise: int = 120) -> np.ndarray:
    """Noise below the marker colours (values under ``noise``) with face markers of ``faces``
    ((box, slot) pairs) whose inside differs by ``seed``: the same person for the same seed."""
    rng = np.random.default_rng(seed)
    rgb = (rng.random((*size, 3)) * noise).astype(np.uint8)
    for box, slot in faces:
        draw_face(rgb, box, slot=slot, ring=6)
        x0, y0, x1, y1 = box
        rgb[y0 + 6:y1 - 6, x0 + 6:x1 - 6] = rng.integers(0, 200, (y1 - y0 - 12, x1 - x0 - 12, 3), dtype=np.uint8)
    return rgb
