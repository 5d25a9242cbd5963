"""``python -m hyperlora_core download``: the model files into a models folder (ComfyUI's or any other)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import EXIT_OK, MODELS_DIR_DEFAULT, PROG, add_common, models_dir, out


def add_parser(sub) -> None:
    from ..download.models import PARTS, VARIANT_CHOICES

    p = sub.add_parser(
        "download",
        help="fetch the HyperLoRA, CLIP ViT-L/14 and antelopev2 face models into a ComfyUI models folder",
        description=(
            "Fetch the model files into the folders ComfyUI and the HyperLoRA nodes read: "
            "the HyperLoRA release into MODELS/hyperlora/<variant>/, OpenAI CLIP ViT-L/14 into "
            "MODELS/clip_vision/clip-vit-large-patch14.safetensors, and the antelopev2 face models into "
            "MODELS/insightface/models/antelopev2/. Files already there are skipped; each file arrives under "
            "its final name only once its size and hash match what the Hub lists; a download cut off part-way "
            "resumes where it stopped when the same command runs again. Uses huggingface_hub and "
            "its settings from the environment: HF_ENDPOINT (a mirror), HF_TOKEN, HF_HUB_OFFLINE=1 (no "
            "network: only checks what is there), HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT (seconds, "
            "default 10)."
        ),
        epilog=(
            "Licences: HyperLoRA weights CC BY-NC 4.0 (non-commercial); insightface antelopev2 models "
            "non-commercial research only; CLIP ViT-L/14 MIT. Example: "
            f"{PROG} download --models-dir ~/ComfyUI/models --variant both"
        ),
    )
    p.add_argument(
        "--models-dir",
        type=Path,
        metavar="MODELS",
        help=f"where the models go, created when missing: the models folder of your ComfyUI (the one holding "
        f"checkpoints/ and loras/) or any folder; default: {MODELS_DIR_DEFAULT}",
    )
    p.add_argument(
        "--variant",
        choices=sorted(VARIANT_CHOICES),
        default="fidelity",
        help=(
            "which HyperLoRA release to fetch (about 3.1 GB each): fidelity = better likeness, "
            "edit = follows the prompt more freely, both = the two (default: fidelity)"
        ),
    )
    p.add_argument(
        "--only",
        choices=PARTS,
        action="append",
        metavar="PART",
        help=(
            "fetch only this part, may be repeated: hyperlora (the release folder), clip (CLIP ViT-L/14, "
            "1.7 GB), face (antelopev2, 0.3 GB); default: all three"
        ),
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list what would be downloaded, how big it is and where it would go; download nothing",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="also re-check the hash of files already in place (slow for large files: reads them in full)",
    )
    add_common(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..download.models import VARIANT_CHOICES, run_download

    folder = models_dir(args)
    parts = args.only or ("hyperlora", "clip", "face")
    out(f"Models folder: {folder.absolute()}")
    run_download(folder, VARIANT_CHOICES[args.variant], parts=parts, dry_run=args.dry_run,
                 verify=args.verify, report=out)
    if not args.dry_run and set(parts) == {"hyperlora", "clip", "face"}:
        where = f" --models-dir {folder}" if args.models_dir else ""
        out(f"Next: {PROG} generate --photos PHOTO [PHOTO ...] --out my_face.safetensors{where}"
            + (" --variant edit" if args.variant == "edit" else ""))
        out("In ComfyUI: pick clip-vit-large-patch14.safetensors in 'Load CLIP Vision' and the HyperLoRA "
            "folder in 'Load HyperLoRA' (refresh the page first).")
    return EXIT_OK
