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

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 768  # the browser shows cards about 300 px wide; twice that for sharp screens, and small files
TOP, LEFT = 40, 48  # the editor's menu bar and side bar, not part of the graph


def thumbnail(screenshot: Path) -> Image.Image:
    with Image.open(screenshot) as shot:
        graph = shot.convert("RGB").crop((LEFT, TOP, shot.width, shot.height))
    height = round(graph.height * WIDTH / graph.width)
    return graph.resize((WIDTH, height), Image.Resampling.LANCZOS)


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
