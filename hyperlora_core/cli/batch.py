"""``python -m hyperlora_core batch``: LoRAs for many people, the models loaded once (or on Ray)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import DTYPE_CHOICES, EXIT_FAILURE, EXIT_OK, MODELS_DIR_DEFAULT, PROG, add_common, out

LOCAL_RAY = "local"


def add_parser(sub) -> None:
    from ..download.models import VARIANT_CHOICES

    p = sub.add_parser(
        "batch",
        help="make the LoRA and identity file of many people in one run (resumable; optionally on Ray)",
        description=(
            "Make an SDXL LoRA (and an identity file) for each person of PEOPLE, with the models loaded once: "
            "face analysis runs ahead of the network, a person whose files exist and check out is not made "
            "again (a stopped run continues where it was), one person's failure is reported and the batch "
            "goes on. Each LoRA is the file 'generate --skip-no-face' makes from the same photos. FOLDER "
            "gets ID.safetensors, ID.identity.safetensors per person, report.jsonl (a line per person: photos "
            "used, photos left out and why, seconds, files, error) and summary.json."
        ),
        epilog=(
            f"Examples: {PROG} batch people/ --out loras/ --models-dir ~/ComfyUI/models ;  "
            f"{PROG} batch people.csv --out /shared/loras --ray ray://head:10001   (see docs/scale.md). "
            "Exit code 1 when a person failed (the others are made; see report.jsonl)."
        ),
    )
    p.add_argument("people", type=Path, metavar="PEOPLE",
                   help="a folder with one sub-folder of photos per person (the sub-folder's name is the id), or a "
                   "manifest: .csv with columns id,photos[,face,keep_background,grey] (photos separated by ';') or "
                   ".jsonl with {\"id\": ..., \"photos\": [...]} per line; paths relative to the manifest")
    p.add_argument("--out", type=Path, required=True, metavar="FOLDER",
                   help="the folder for the files (created if missing); files of finished people are kept and "
                   "never overwritten")
    p.add_argument("--models-dir", type=Path, metavar="MODELS",
                   help=f"the models folder the download command filled (as for generate); default: {MODELS_DIR_DEFAULT}")
    p.add_argument("--variant", choices=sorted(k for k in VARIANT_CHOICES if k != "both"), default="fidelity",
                   help="which HyperLoRA release to use (default: fidelity)")
    p.add_argument("--hyperlora", type=Path, metavar="FOLDER", help="a HyperLoRA release folder instead of --models-dir's")
    p.add_argument("--clip", type=Path, metavar="PATH", help="CLIP ViT-L/14 instead of --models-dir's")
    p.add_argument("--face-models", type=Path, metavar="FOLDER", help="the antelopev2 folder instead of --models-dir's")
    p.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto",
                   help="precision of the network and of the LoRAs written (as for generate; default: auto = float16)")
    p.add_argument("--device", default="auto", metavar="DEVICE",
                   help="where CLIP and the network run: auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--provider", default="auto", metavar="NAME",
                   help="ONNX Runtime provider for face analysis (as for generate; default: auto)")
    p.add_argument("--face", default="largest", metavar="CHOICE",
                   help="which face of a photo with several, for people whose row does not say: largest, "
                   "most_confident, or an index from the left (default: largest)")
    p.add_argument("--keep-background", action="store_true",
                   help="do not grey out the background of the CLIP crop (for people whose row does not say)")
    p.add_argument("--grey", action="store_true", help="greyscale CLIP crops (for people whose row does not say)")
    p.add_argument("--photo-check", choices=("keep", "drop", "downweight"), default="keep",
                   help="what the photo check (face size, sharpness, head pose, agreement with the other photos) does "
                   "with a flagged photo, as for generate: keep = flag only (the report lists the flags), drop, or "
                   "downweight (for people whose row does not say; default: keep)")
    p.add_argument("--ray", nargs="?", const=LOCAL_RAY, default=None, metavar="ADDRESS",
                   help="run the stages as a Ray Data pipeline: without ADDRESS on a Ray started here, else on the "
                   "cluster at ADDRESS (host:6379, ray://host:10001 or auto); FOLDER must then be a path every "
                   "node sees (a shared or mounted file system). Needs pip install \".[ray]\"")
    p.add_argument("--ray-cpus", type=int, default=None, metavar="N",
                   help="with --ray and no ADDRESS: CPUs of the Ray started here (default: all)")
    p.add_argument("--network-actors", type=int, default=1, metavar="N",
                   help="with --ray: how many network-stage actors (each loads the models once; one GPU each "
                   "when the cluster has GPUs) (default: 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common(p)
    p.set_defaults(run=_run_batch)


def _run_batch(args: argparse.Namespace) -> int:
    from .. import pipeline
    from ..batch import BatchSettings, read_people
    from ..errors import UsageError
    from ..face import check_choice

    face = check_choice(args.face)
    if args.ray is None and (args.ray_cpus is not None or args.network_actors != 1):
        raise UsageError("--ray-cpus and --network-actors go with --ray")
    if args.ray_cpus is not None and args.ray_cpus < 1 or args.network_actors < 1:
        raise UsageError("--ray-cpus and --network-actors must be at least 1")
    if args.ray is not None:
        from ..batch.ray_run import require_ray

        require_ray()  # before the manifest and the models: says how to install
    people = read_people(args.people)
    models = pipeline.find_models(args.models_dir, args.variant, hyperlora=args.hyperlora, clip=args.clip,
                                  face_models=args.face_models)
    settings = BatchSettings(models, device=args.device, dtype=args.dtype, provider=args.provider, face=face,
                             keep_background=args.keep_background, grey=args.grey, photo_check=args.photo_check)
    out(f"{len(people)} people from {args.people}; files in {args.out}")
    if args.ray is not None:
        from ..batch.ray_run import run_batch_on_ray

        summary = run_batch_on_ray(people, args.out, settings, address=None if args.ray == LOCAL_RAY else args.ray,
                                   num_cpus=args.ray_cpus, network_actors=args.network_actors,
                                   progress=not args.no_progress, report=out)
    else:
        from ..batch import run_batch

        summary = run_batch(people, args.out, settings, progress=not args.no_progress, report=out)
    out(f"Made {summary['made']}, done before {summary['done_before']}, failed {summary['failed']} of "
        f"{summary['people']} people in {summary['seconds']:.1f} s ({summary['people_per_minute']:.1f} people/min); "
        f"{summary['photos_skipped']} photo(s) left out. Report: {summary['report']}")
    if summary["failed"]:
        out(f"Failed: {', '.join(summary['failed_ids'])} (the reasons are in the report)")
        return EXIT_FAILURE
    return EXIT_OK
