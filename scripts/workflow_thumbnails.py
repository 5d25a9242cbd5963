"""Make the template browser's thumbnails: `workflows/<name>.jpg` beside each `workflows/<name>.json`.

The ComfyUI editor shows a custom pack's workflow templates with the JPEG of the same name as their
picture (a grey placeholder without one). The pictures are the editor's own view of each workflow:
the screenshots that the editor test of the real-ComfyUI tier takes in headless Chromium.

    COMFYUI_DIR=... HLS_SCREENSHOT_DIR=/tmp/shots python -m pytest tests/comfyui/test_editor.py
    python scripts/workflow_thumbnails.py /tmp/shots
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
# The browser shows each picture in a 4:3 card about 300 px wide: twice that for sharp screens, the
# graph fitted inside on the canvas colour, so no part of it is cut off.
SIZE = (768, 576)
# The canvas in the editor test's 2000 x 1300 window: below the menu bars, right of the side bar, above
# the zoom controls and the frame counter.
CANVAS = (70, 85, 2000, 1050)
BACKGROUND = 45  # the canvas and its grid are darker than this in every channel; nodes are lighter
MARGIN = 24


def thumbnail(screenshot: Path) -> Image.Image:
    """The part of the screenshot that holds the graph, fitted into SIZE."""
    with Image.open(screenshot) as shot:
        canvas = shot.convert("RGB").crop(CANVAS)
    ink = canvas.convert("L").point(lambda v: 255 if v > BACKGROUND else 0)
    left, top, right, bottom = ink.getbbox() or (0, 0, canvas.width, canvas.height)
    graph = canvas.crop((max(left - MARGIN, 0), max(top - MARGIN, 0),
                         min(right + MARGIN, canvas.width), min(bottom + MARGIN, canvas.height)))
    return ImageOps.pad(graph, SIZE, method=Image.Resampling.LANCZOS, color=canvas.getpixel((0, 0)))


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print(__doc__, file=sys.stderr)
        return 2
    shots = Path(argv[0])
    missing = []
    for workflow in sorted((ROOT / "workflows").glob("*.json")):
        shot = shots / f"{workflow.stem}.png"
        if not shot.is_file():
            missing.append(shot.name)
            continue
        out = workflow.with_suffix(".jpg")
        thumbnail(shot).save(out, "JPEG", quality=82, optimize=True)
        print(f"wrote {out.relative_to(ROOT)}")
    if missing:
        print(f"no screenshot for: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
