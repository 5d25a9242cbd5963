"""Frames of a video file, read with OpenCV (cv2.VideoCapture), every N-th frame as RGB uint8."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError

# What OpenCV's wheels (opencv-python, built with FFmpeg) read on every platform; others depend on the build.
VIDEO_FORMATS = "MP4 (H.264), AVI (MJPG or H.264), MOV, MKV and WebM (VP8/VP9)"
CONVERT = "convert it with, e.g., `ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4`"
MAX_FRAMES = 2000


def read_frames(path: str | os.PathLike, every: int = 1, max_frames: int = MAX_FRAMES) -> tuple[list[int], list[np.ndarray]]:
    """(frame numbers, RGB uint8 frames) of every ``every``-th frame, from the first; at most ``max_frames``.
    A file that OpenCV cannot open or that gives no frame is named with the formats that work."""
    import cv2

    path = Path(path).expanduser()
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise InputError(f"--every must be a whole number of frames, 1 or more; got {every!r}.")
    if not path.is_file():
        raise InputError(f"video not found: {path}")
    capture = cv2.VideoCapture(str(path))
    numbers: list[int] = []
    frames: list[np.ndarray] = []
    try:
        if not capture.isOpened():
            raise InputError(f"OpenCV cannot read the video {path}: its format or codec is not one this OpenCV "
                             f"build reads. Formats that work: {VIDEO_FORMATS}; {CONVERT}.")
        index = 0
        while len(frames) < max_frames:
            ok = capture.grab()
            if not ok:
                break
            if index % every == 0:
                ok, bgr = capture.retrieve()
                if not ok or bgr is None:
                    break
                frames.append(np.ascontiguousarray(bgr[:, :, ::-1]))
                numbers.append(index)
            index += 1
    finally:
        capture.release()
    if not frames:
        raise InputError(f"No frame could be read from the video {path} (empty, damaged, or a codec this OpenCV "
                         f"build lacks). Formats that work: {VIDEO_FORMATS}; {CONVERT}.")
    return numbers, frames
