"""Face regions of any picture, for re-drawing a face: a feathered mask of the face and a square
crop at a working size, and pasting the re-drawn crop back.

Pictures are float32 (H, W, 3) arrays in 0..1, ComfyUI IMAGE layout; faces are found on their
8-bit copy (``images.float_to_uint8``) with the same detection and choice as the face pipeline.

* The square: centred on the landmark square (spec section 8) and ``crop_factor`` times its side,
  moved (never cut) to lie inside the picture; if it is larger than the picture's shorter side it
  becomes that side. Its pixels are resized to ``size`` x ``size`` (area average when shrinking,
  bicubic when enlarging).
* The mask: the face outline of spec section 8 (contour and brows), grown by ``grow`` and
  feathered over ``feather`` pixels of the working-size crop, a smooth ramp that is exactly 0
  beyond the feather, and that also fades out toward the square's sides inside the picture, so a
  paste never leaves a seam. Outside it, a paste leaves the picture untouched.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw

from ..errors import InputError, NoFaceError
from ..files.images import float_to_uint8
from .crops import landmark_box, outline_points
from .detection import check_choice, choose_face

logger = logging.getLogger(__name__)

ALL_FACES = "all"
WORK_SIZE = 1024  # SDXL's native size
CROP_FACTOR = 2.0
GROW = 16
FEATHER = 32
MIN_SIDE = 8


@dataclass
class FaceRegion:
    """One face of one picture: the square around it and its landmarks (picture pixels)."""

    picture: int  # index of the picture in the batch
    face_index: int  # counted from the left (0 = leftmost); -1: the picture has no face
    n_faces: int
    x0: int
    y0: int
    side: int  # the square (x0, y0, x0 + side, y0 + side), inside the picture
    landmarks: np.ndarray | None = field(default=None, repr=False)  # (106, 2) float32
    det_score: float = 0.0

    @property
    def empty(self) -> bool:
        """No face: the picture passes through, its crop is not pasted."""
        return self.face_index < 0

    def window(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y0 + self.side), slice(self.x0, self.x0 + self.side)


@dataclass
class FaceCrops:
    """What a paste needs: where each crop was cut, its masks, and the pictures it came from."""

    size: int
    picture_size: tuple[int, int]  # (height, width)
    fingerprints: tuple[str, ...]  # one per picture: a paste into another picture is refused
    regions: list[FaceRegion]
    crops: np.ndarray = field(repr=False)  # float32 (N, size, size, 3), as cut
    crop_masks: np.ndarray = field(repr=False)  # float32 (N, size, size)
    square_masks: list[np.ndarray] = field(repr=False)  # float32 (side, side) per region, picture pixels
    grow: float = GROW
    feather: float = FEATHER

    def __len__(self) -> int:
        return len(self.regions)

    def picture_masks(self) -> np.ndarray:
        """float32 (B, H, W): each picture's mask, the largest value of its faces' masks."""
        height, width = self.picture_size
        out = np.zeros((len(self.fingerprints), height, width), dtype=np.float32)
        for region, mask in zip(self.regions, self.square_masks):
            if not region.empty:
                ys, xs = region.window()
                np.maximum(out[region.picture, ys, xs], mask, out=out[region.picture, ys, xs])
        return out


def fingerprint(picture: np.ndarray) -> str:
    """A digest of the picture's pixels, to recognise it at paste time."""
    return hashlib.blake2b(np.ascontiguousarray(picture, dtype=np.float32).tobytes(), digest_size=16).hexdigest()


def check_pictures(pictures: np.ndarray, what: str = "image") -> np.ndarray:
    """A float32 (B, H, W, 3) batch in 0..1, or an InputError naming ``what``."""
    pictures = np.asarray(pictures)
    if pictures.ndim == 3:
        pictures = pictures[None]
    if pictures.ndim != 4 or pictures.shape[-1] not in (3, 4) or 0 in pictures.shape:
        raise InputError(
            f"'{what}' should be a batch of RGB pictures (batch, height, width, 3), not shape "
            f"{tuple(pictures.shape)}."
        )
    return np.ascontiguousarray(pictures[..., :3], dtype=np.float32)


def place_square(landmarks: np.ndarray, width: int, height: int, crop_factor: float = CROP_FACTOR) -> tuple[int, int, int]:
    """(x0, y0, side) of the crop square around a face, inside a ``width`` x ``height`` picture."""
    cx, cy, half = landmark_box(landmarks)
    side = max(MIN_SIDE, int(round(2.0 * half * crop_factor)))
    limit = min(width, height)
    if side > limit:
        logger.info(
            "The face crop (%d px with crop_factor %.3g) is larger than the %dx%d picture; it is "
            "cut to the picture's shorter side, %d px.", side, crop_factor, width, height, limit,
        )
        side = limit
    x0 = min(max(int(round(cx - side / 2.0)), 0), width - side)
    y0 = min(max(int(round(cy - side / 2.0)), 0), height - side)
    return x0, y0, side


def face_mask(region: FaceRegion, picture_size: tuple[int, int], grow: float, feather: float) -> np.ndarray:
    """float32 (side, side) mask of the face in its square: the outline grown by ``grow`` and
    feathered over ``feather`` picture pixels (a smoothstep, 0 beyond it), faded toward the
    square's sides that are inside the picture."""
    side = region.side
    points = outline_points(region.landmarks) - (region.x0, region.y0)
    drawn = Image.new("L", (side, side), 0)
    ImageDraw.Draw(drawn).polygon([(float(x), float(y)) for x, y in points], fill=255)
    inside = (np.asarray(drawn) > 0).astype(np.uint8)
    # Signed distance to the outline (pixels; positive inside).
    into = cv2.distanceTransform(inside, cv2.DIST_L2, 5) if inside.any() else np.zeros(inside.shape, np.float32)
    out_of = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5) if (1 - inside).any() else np.zeros(inside.shape, np.float32)
    signed = np.where(inside > 0, into - 0.5, 0.5 - out_of) + float(grow)
    if feather > 0:
        t = np.clip(signed / float(feather) + 0.5, 0.0, 1.0)
        mask = t * t * (3.0 - 2.0 * t)
        height, width = picture_size
        index = np.arange(side, dtype=np.float64) + 0.5
        for touches_edge, distance, axis in (
            (region.x0 == 0, index, 1), (region.x0 + side == width, index[::-1], 1),
            (region.y0 == 0, index, 0), (region.y0 + side == height, index[::-1], 0),
        ):
            if not touches_edge:
                fade = np.clip(distance / float(feather), 0.0, 1.0)
                mask = mask * (fade[None, :] if axis == 1 else fade[:, None])
    else:
        mask = (signed > 0).astype(np.float64)
    return mask.astype(np.float32)


def resize(array: np.ndarray, size: int) -> np.ndarray:
    """A square float32 picture or mask resized to ``size`` x ``size``: area average when
    shrinking, bicubic when enlarging, clipped to 0..1."""
    if array.shape[0] == size and array.shape[1] == size:
        return np.ascontiguousarray(array, dtype=np.float32)
    method = cv2.INTER_AREA if size < array.shape[0] else cv2.INTER_CUBIC
    out = cv2.resize(np.ascontiguousarray(array, dtype=np.float32), (size, size), interpolation=method)
    return np.clip(out, 0.0, 1.0)


def find_face_regions(
    analyzer,
    pictures: np.ndarray,
    choice: str | int = "largest",
    crop_factor: float = CROP_FACTOR,
    if_no_face: str = "error",
    what: str = "image",
) -> list[FaceRegion]:
    """The faces to re-draw in each picture of the batch: ``choice`` as in Load Faces ("largest",
    "most_confident", an index from the left) or ``"all"``. A picture without a face raises
    :class:`NoFaceError` naming ``what``, unless ``if_no_face`` is "pass through"."""
    if if_no_face not in ("error", "pass through"):
        raise InputError(f"Unknown if_no_face {if_no_face!r}: use 'error' or 'pass through'.")
    if not crop_factor > 0:
        raise InputError(f"crop_factor must be above 0 (the crop is crop_factor x the face square); got {crop_factor}.")
    choice = ALL_FACES if str(choice).strip().lower() in ("all", "all faces", "all_faces") else check_choice(choice)
    pictures = check_pictures(pictures, what)
    height, width = pictures.shape[1:3]
    regions = []
    for index, picture in enumerate(pictures):
        rgb = float_to_uint8(picture)
        detection = analyzer.detect(rgb)
        name = what if len(pictures) == 1 else f"{what}[{index}]"
        if not len(detection):
            if if_no_face == "error":
                raise NoFaceError(
                    f"No face was found in '{name}' ({width}x{height}). Connect a picture with a clearly "
                    "visible face (frontal or nearly so, at least about 64 px wide), or set if_no_face "
                    "to 'pass through' to leave pictures without a face unchanged."
                )
            side = min(width, height)
            logger.info("No face in %s; it passes through unchanged.", name)
            regions.append(FaceRegion(index, -1, 0, (width - side) // 2, (height - side) // 2, side))
            continue
        if choice == ALL_FACES:
            centres = (detection.boxes[:, 0] + detection.boxes[:, 2]) / 2.0
            rows = [(int(row), order) for order, row in enumerate(np.argsort(centres, kind="stable"))]
        else:
            rows = [choose_face(detection, choice, index)]
        for row, face_index in rows:
            landmarks = analyzer.landmarks(rgb, detection, row)
            x0, y0, side = place_square(landmarks, width, height, crop_factor)
            regions.append(FaceRegion(index, face_index, len(detection), x0, y0, side, landmarks,
                                      float(detection.scores[row])))
    return regions


def cut_faces(
    pictures: np.ndarray,
    regions: Sequence[FaceRegion],
    size: int = WORK_SIZE,
    grow: float = GROW,
    feather: float = FEATHER,
) -> FaceCrops:
    """The crops (size x size) of ``regions`` and their masks; ``grow`` and ``feather`` are in
    pixels of the working-size crop."""
    pictures = check_pictures(pictures)
    if int(size) < MIN_SIDE:
        raise InputError(f"The crop size must be at least {MIN_SIDE} px; got {size}.")
    if feather < 0:
        raise InputError(f"feather must be 0 or more pixels; got {feather}.")
    size = int(size)
    height, width = pictures.shape[1:3]
    crops, crop_masks, square_masks = [], [], []
    for region in regions:
        ys, xs = region.window()
        crops.append(resize(pictures[region.picture, ys, xs], size))
        if region.empty:
            mask = np.zeros((region.side, region.side), np.float32)
        else:
            scale = region.side / size  # working-size pixels -> picture pixels
            mask = face_mask(region, (height, width), grow * scale, feather * scale)
        square_masks.append(mask)
        crop_masks.append(resize(mask, size))
    return FaceCrops(
        size=size,
        picture_size=(height, width),
        fingerprints=tuple(fingerprint(p) for p in pictures),
        regions=list(regions),
        crops=np.stack(crops),
        crop_masks=np.stack(crop_masks),
        square_masks=square_masks,
        grow=float(grow),
        feather=float(feather),
    )


# Paste: each crop is resized back to its square (area average when shrinking, bicubic when
# enlarging) and blended in at the picture's resolution through the feathered face mask,
# picture x (1 - mask) + crop x mask. Where the mask is 0 the picture's pixels are kept bit for bit;
# a crop that comes back exactly as it was cut leaves its square untouched (it was not re-drawn,
# and resizing it there and back would only soften it).


def _size(array: np.ndarray) -> str:
    return f"{array.shape[-2]}x{array.shape[-3]}" if array.ndim >= 3 else f"{array.shape[-1]}x{array.shape[-2]}"


def check_paste(pictures: np.ndarray, info: FaceCrops, redrawn: np.ndarray, mask: np.ndarray | None) -> None:
    """InputError, naming the input and the fix, for anything that does not belong together."""
    height, width = info.picture_size
    batch = len(info.fingerprints)
    if pictures.shape[0] != batch or pictures.shape[1:3] != (height, width):
        raise InputError(
            f"The picture connected to 'image' is {pictures.shape[0]} x {_size(pictures)}, but the face crops "
            f"were cut from {batch} x {width}x{height}: connect the same IMAGE that went into 'Face Crop'."
        )
    for index, picture in enumerate(pictures):
        if fingerprint(picture) != info.fingerprints[index]:
            which = "The picture" if batch == 1 else f"Picture {index} of the batch"
            raise InputError(
                f"{which} connected to 'image' is not the one the face crops were cut from (same size, other "
                "pixels): a crop pasted into another picture lands on the wrong face. Connect the IMAGE that "
                "went into 'Face Crop'."
            )
    if redrawn.ndim != 4 or redrawn.shape[0] != len(info.regions):
        got = redrawn.shape[0] if redrawn.ndim == 4 else f"shape {tuple(redrawn.shape)}"
        raise InputError(
            f"'crops' holds {got} picture(s), but 'Face Crop' cut {len(info.regions)}: connect the decoded "
            "crops of that node (one per face, in its order)."
        )
    if redrawn.shape[1] != redrawn.shape[2]:
        raise InputError(
            f"The crops connected to 'crops' are {_size(redrawn)}, not square: the face crops were cut "
            f"{info.size}x{info.size}. Keep the crop's shape when re-drawing it."
        )
    if mask is not None and (mask.ndim != 3 or mask.shape[1:] != (height, width) or mask.shape[0] not in (1, batch)):
        raise InputError(
            f"The MASK connected to 'mask' is {' x '.join(map(str, mask.shape))}, but it must cover the picture: "
            f"{width}x{height} (one per picture, or one for all). Leave 'mask' empty to use the face mask."
        )


def paste_faces(
    pictures: np.ndarray, info: FaceCrops, redrawn: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """The pictures with the re-drawn crops blended in (float32 (B, H, W, 3)). ``mask``: an
    optional (B or 1, H, W) mask to blend with instead of each face's feathered mask."""
    pictures = check_pictures(pictures)
    redrawn = np.asarray(redrawn, dtype=np.float32)
    if redrawn.ndim == 4:
        redrawn = redrawn[..., :3]
    if mask is not None:
        mask = np.asarray(mask, dtype=np.float32)
        mask = mask[None] if mask.ndim == 2 else mask
    check_paste(pictures, info, redrawn, mask)
    out = pictures.copy()
    for k, region in enumerate(info.regions):
        if region.empty or np.array_equal(redrawn[k], info.crops[k]):
            continue
        ys, xs = region.window()
        if mask is None:
            weight = info.square_masks[k]
        else:
            weight = np.clip(mask[region.picture if mask.shape[0] > 1 else 0, ys, xs], 0.0, 1.0)
        weight = weight[..., None]
        under = out[region.picture, ys, xs]
        piece = resize(redrawn[k], region.side)
        blended = under * (1.0 - weight) + piece * weight
        out[region.picture, ys, xs] = np.where(weight > 0, blended, under)
    return out
