"""``python -m hyperlora_core score``: how much pictures look like the person (ArcFace similarity).

Registered in :data:`hyperlora_core.cli.app.COMMANDS`; photo listing and file checks from ``common``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import UsageError
from .common import (EXIT_OK, MODELS_DIR_DEFAULT, PROG, add_common, check_identity_file, check_new_file,
                     expand_photos, out)

GRID_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "score",
        help="how much pictures look like the person: ArcFace cosine similarity, as the HyperLoRA paper reports",
        description=(
            "Measure the likeness of pictures (generated ones, for instance) to a person: for the chosen face "
            "in each picture, the cosine similarity of its ArcFace embedding (insightface antelopev2) to the "
            "person's, the normalised mean of the reference photos' embeddings (or of an identity file's). "
            "1 is the same face; different people score about 0-0.3. A picture without a face is reported "
            "as 'no face' (null in --json), never as 0, and left out of the mean."
        ),
        epilog=(f"Example: {PROG} score --photos me1.jpg me2.jpg --images outputs/   (the face models come from "
                "the download command; add --models-dir ~/ComfyUI/models for another models folder)"),
    )
    reference = p.add_mutually_exclusive_group(required=True)
    reference.add_argument("--photos", nargs="+", type=Path, metavar="PHOTO",
                           help="photos of the person (a folder stands for the images in it)")
    reference.add_argument("--identity", type=Path, metavar="FILE",
                           help="an identity file (--save-identity or 'Save HyperLoRA Identity') instead of photos")
    pictures = p.add_mutually_exclusive_group(required=True)
    pictures.add_argument("--images", nargs="+", type=Path, metavar="IMAGE",
                          help="the pictures to measure (a folder stands for the images in it)")
    pictures.add_argument("--video", type=Path, metavar="FILE",
                          help="a video to measure frame by frame (read with OpenCV: MP4, AVI, MOV, MKV, WebM)")
    p.add_argument("--every", type=int, default=1, metavar="N",
                   help="with --video, measure every N-th frame from the first (default: 1, every frame)")
    p.add_argument("--threshold", type=float, default=None, metavar="SIMILARITY",
                   help="the set's summary counts the pictures below this similarity (default: 0.5, a rule of "
                   "thumb: below it a generated picture is a weak likeness)")
    p.add_argument("--chart", type=Path, metavar="OUT.png",
                   help="also write a chart of the similarity per picture or frame (never overwrites)")
    p.add_argument("--models-dir", type=Path, metavar="MODELS",
                   help="the models folder the download command filled; the face models are read from "
                   f"insightface/models/antelopev2/; default, as for download and generate: {MODELS_DIR_DEFAULT}")
    p.add_argument("--face-models", type=Path, metavar="FOLDER",
                   help="the insightface antelopev2 folder, instead of the one in --models-dir")
    p.add_argument("--face", default="largest", metavar="CHOICE",
                   help="which face of a picture with several is measured: largest, most_confident, or an index "
                   "counted from the left (0 = leftmost) (default: largest)")
    p.add_argument("--photo-face", default="largest", metavar="CHOICE",
                   help="the same for the reference photos (default: largest)")
    p.add_argument("--provider", default="auto", metavar="NAME",
                   help="ONNX Runtime provider for face analysis: auto, CPU, CUDA, ... (default: auto)")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--grid", type=Path, metavar="OUT.png",
                   help="also write the pictures as a grid, each labelled with its similarity (never overwrites)")
    add_common(p)
    p.set_defaults(run=run_score)


def run_score(args: argparse.Namespace) -> int:
    from ..face import FaceAnalyzer, check_choice
    from ..likeness.score import mean_similarity, photo_embeddings, reference_embedding, score_images, table
    from ..likeness.stats import LOW_LIKENESS, summarise
    from ..pipeline import face_models_folder

    choice, photo_choice = check_choice(args.face), check_choice(args.photo_face)
    grid_path = check_new_file(args.grid, "--grid", GRID_SUFFIXES) if args.grid is not None else None
    chart_path = check_new_file(args.chart, "--chart", GRID_SUFFIXES) if args.chart is not None else None
    threshold = LOW_LIKENESS if args.threshold is None else args.threshold
    if not -1.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold is a cosine similarity, between -1 and 1; got {threshold}")
    if args.video is None and args.every != 1:
        raise UsageError("--every goes with --video")
    if args.every < 1:
        raise UsageError(f"--every must be 1 or more, got {args.every}")
    if args.video is not None:
        from ..files.video import read_frames

        frame_numbers, pictures = read_frames(args.video, args.every)
        images = [Path(f"{args.video.name}#frame{n}") for n in frame_numbers]
        names = [f"frame {n}" for n in frame_numbers]
    else:
        images = expand_photos(args.images, "--images")
        pictures = [str(p) for p in images]
        frame_numbers, names = None, [p.name for p in images]
    photos = expand_photos(args.photos) if args.photos is not None else []
    if args.identity is not None:
        check_identity_file(args.identity)
    # The same models folder as download and generate: --models-dir, else the shared default.
    analyzer = FaceAnalyzer(face_models_folder(args.models_dir, args.face_models), provider=args.provider)
    say = (lambda text: None) if args.json else out

    if photos:
        say(f"Reference: {len(photos)} photo(s), faces found with {analyzer.folder} ...")
        embeddings, used = photo_embeddings(analyzer, [str(p) for p in photos], photo_choice)
        for i, photo in enumerate(photos):
            if i not in used:
                say(f"  {photo.name}: no face found, left out of the reference")
        target = reference_embedding(embeddings, what="reference photos")
        reference = {"photos": [str(photos[i]) for i in used], "left_out": [str(p) for i, p in enumerate(photos)
                                                                        if i not in used]}
    else:
        from ..features.identity import IdentityFeatures

        identity = IdentityFeatures.load(args.identity.expanduser())
        target = reference_embedding(identity, what=f"identity file {args.identity}")
        reference = {"identity": str(args.identity), "photos": list(identity.sources)}
        say(f"Reference: identity {args.identity} ({identity.num_photos} photo(s))")

    if args.video is not None:
        say(f"Video {args.video}: {len(pictures)} frame(s), every {args.every}")
    scores = score_images(analyzer, pictures, target, choice, labels=names)
    stats = summarise(scores, threshold)
    if args.json:
        rows = [dict(s.as_dict(), image=str(path)) for s, path in zip(scores, images)]
        for row, number in zip(rows, frame_numbers or [None] * len(rows)):
            row.pop("label")
            if number is not None:
                row["frame"] = number
                row.pop("image")
        result = {"reference": reference, "face_choice": choice, "images": rows, "mean": mean_similarity(scores),
                  "missing": [str(p) for s, p in zip(scores, images) if s.missing], "stats": stats.as_dict()}
        if args.video is not None:
            result["video"] = str(args.video)
            result["every"] = args.every
            result["missing"] = [f"frame {n}" for s, n in zip(scores, frame_numbers) if s.missing]
        out(json.dumps(result, indent=2))
    else:
        out(table(scores, label_header="frame" if args.video is not None else "image"))
        out(stats.text())
    if grid_path is not None:
        _write_grid(grid_path, pictures, scores)
        say(f"Wrote the grid {grid_path}.")
    if chart_path is not None:
        from ..likeness.chart import likeness_chart

        chart = likeness_chart(scores, threshold=threshold, x_values=frame_numbers,
                               title="likeness per frame" if frame_numbers else "likeness per picture",
                               x_name="frame" if frame_numbers else "picture")
        _write_picture(chart_path, chart)
        say(f"Wrote the chart {chart_path}.")
    return EXIT_OK


def _write_grid(path: Path, pictures: list, scores) -> None:
    from ..likeness.grid import labelled_grid
    from ..files.images import load_image

    captions = [f"{s.label} \u00b7 " + ("no face" if s.missing else f"similarity {s.similarity:.2f}") for s in scores]
    sheet = labelled_grid([load_image(p) if isinstance(p, str) else p for p in pictures], captions,
                          highlight=[s.missing for s in scores])
    _write_picture(path, sheet)


def _write_picture(path: Path, sheet) -> None:
    import io

    from PIL import Image

    from ..files.export import write_new_file

    buffer = io.BytesIO()
    Image.fromarray(sheet).save(buffer, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else
                                path.suffix.lstrip(".").upper())
    write_new_file(path, buffer.getvalue())
