"""``python -m hyperlora_core generate``: photos (or a saved identity) to an SDXL LoRA file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError
from .common import (DTYPE_CHOICES, EXIT_OK, MODELS_DIR_DEFAULT, PROG, add_common, check_identity_file,
                     check_new_file, expand_photos, out)


def add_parser(sub) -> None:
    from ..download.models import VARIANT_CHOICES

    p = sub.add_parser(
        "generate",
        help="turn photos of one person into an SDXL LoRA file (kohya format)",
        description=(
            "Turn photos of one person into an SDXL LoRA file (kohya format) with the same face pipeline "
            "and hyper-network as the ComfyUI nodes: the face in each photo is found and cropped, encoded "
            "with ArcFace (insightface antelopev2) and CLIP ViT-L/14, and HyperLoRA turns the features "
            "into LoRA weights in one forward pass, no training. Several photos are averaged. The file "
            "loads with ComfyUI's LoraLoaderModelOnly, A1111/Forge, kohya and diffusers; start the prompt "
            "with the trigger words it prints."
        ),
        epilog=(
            f"Example: {PROG} generate --photos me1.jpg me2.jpg --out me.safetensors "
            "--models-dir ~/ComfyUI/models   (get the models first with the download command)"
        ),
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--photos",
        nargs="+",
        type=Path,
        metavar="PHOTO",
        help=(
            "photos of the person (JPEG, PNG, WebP...; a folder stands for the images in it); one face is "
            "used per photo; a photo without a face stops the command with its name (see --skip-no-face)"
        ),
    )
    source.add_argument(
        "--identity",
        type=Path,
        metavar="FILE",
        help="an identity file saved before (--save-identity or the 'Save HyperLoRA Identity' node) instead of photos",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="LORA.safetensors",
        help="the LoRA file to write; an existing file is never overwritten",
    )
    p.add_argument(
        "--models-dir",
        type=Path,
        metavar="MODELS",
        help=(
            "the models folder the download command filled; the models are looked up in "
            "hyperlora/<variant>/ (or hyper_lora/hyper_lora/<variant>/), clip_vision/clip-vit-large-patch14.safetensors "
            f"(or hyper_lora/clip_vit/clip_vit_large_14/), and insightface/models/antelopev2/; default, as for "
            f"download: {MODELS_DIR_DEFAULT}"
        ),
    )
    p.add_argument(
        "--variant",
        choices=sorted(k for k in VARIANT_CHOICES if k != "both"),
        default="fidelity",
        help="which HyperLoRA release to use: fidelity = better likeness, edit = follows the prompt more freely "
        "(default: fidelity)",
    )
    p.add_argument("--hyperlora", type=Path, metavar="FOLDER",
                   help="a HyperLoRA release folder to use instead of the one in --models-dir")
    p.add_argument("--clip", type=Path, metavar="PATH",
                   help="OpenAI CLIP ViT-L/14 to use instead of the one in --models-dir: a Hugging Face folder "
                   "(config.json + model.safetensors) or a single .safetensors file")
    p.add_argument("--face-models", type=Path, metavar="FOLDER",
                   help="the insightface antelopev2 folder to use instead of the one in --models-dir")
    p.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default="auto",
        help="precision of the HyperLoRA weights and of the LoRA written: auto = float16 (the release's, "
        "23 MB LoRA); float32 doubles memory and file size (default: auto)",
    )
    p.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help="where the networks run: auto (a CUDA GPU if PyTorch sees one, else the CPU), cpu, cuda or "
        "cuda:N (default: auto); the CPU needs about 5 GB of memory for the release",
    )
    p.add_argument(
        "--provider",
        default="auto",
        metavar="NAME",
        help="ONNX Runtime provider for face analysis: auto (CUDA if available, else CPU), CPU, CUDA, ROCM, "
        "CoreML, DirectML, OpenVINO, TensorRT (default: auto)",
    )
    p.add_argument(
        "--face",
        default="largest",
        metavar="CHOICE",
        help="which face to use in a photo with several: largest, most_confident, or an index counted "
        "from the left (0 = leftmost) (default: largest)",
    )
    p.add_argument("--skip-no-face", action="store_true",
                   help="leave out a photo in which no face is found (named in the output) instead of stopping; "
                   "the command still stops when no photo has a face")
    p.add_argument("--keep-background", action="store_true",
                   help="do not grey out the background around the face in the CLIP crop (the release was "
                   "trained with it greyed out, the default)")
    p.add_argument("--grey", action="store_true",
                   help="make the CLIP crop greyscale (can reduce colour cast from the photo)")
    p.add_argument("--photo-check", choices=("keep", "drop", "downweight"), default="keep",
                   help="each photo is checked (face size, detection score, sharpness, head pose, and whether it "
                   "looks like the other photos) and the table printed; keep: flags only; drop: leave flagged "
                   "photos out; downweight: flagged photos count 0.25 against 1; a set where every photo is "
                   "flagged is kept whole (default: keep)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object at the end (the files written and the photo check) instead of "
                   "the progress lines")
    p.add_argument("--save-identity", type=Path, metavar="FILE",
                   help="also write the face features as a small identity file (.safetensors) that the "
                   "'Load HyperLoRA Identity' node and --identity read, to reuse without the photos")
    p.add_argument("--base-lora-features", action="store_true",
                   help="also put Base-LoRA features (a second CLIP pass per photo) in the --save-identity file, "
                   "for a checkpoint with Base-LoRA weights; the released v1 variants have none (default: off)")
    add_common(p)
    p.set_defaults(run=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    from .. import pipeline
    from ..constants import TRIGGER_WORDS

    out_file = check_new_file(args.out, "--out")
    identity_out = check_new_file(args.save_identity, "--save-identity") if args.save_identity else None
    if identity_out is not None and identity_out.resolve() == out_file.resolve():
        raise UsageError("--out and --save-identity name the same file")
    if args.base_lora_features and (identity_out is None or args.photos is None):
        raise UsageError("--base-lora-features adds to the identity made from --photos: give --photos and --save-identity")
    if args.photos is not None:
        from ..face import check_choice  # the face pipeline (OpenCV, insightface) only when photos are given

        check_choice(args.face)  # a bad --face fails before any model loads
        photos = expand_photos(args.photos)
    else:
        check_identity_file(args.identity)
        photos = []
    say = (lambda text: None) if args.json else out
    checked = []
    models = pipeline.find_models(args.models_dir, args.variant, hyperlora=args.hyperlora, clip=args.clip,
                                  face_models=args.face_models, need_faces=bool(photos))
    device, dtype, clip_dtype = pipeline.pick_device(args.device, args.dtype)

    if photos:
        identity = pipeline.identity_from_photos(
            photos, models, choice=args.face, skip_no_face=args.skip_no_face,
            remove_background=not args.keep_background, grey=args.grey, provider=args.provider, device=device,
            clip_dtype=clip_dtype, with_base=args.base_lora_features, photo_check=args.photo_check,
            on_check=checked.append, report=say)
    else:
        from ..features.identity import IdentityFeatures

        identity = IdentityFeatures.load(args.identity.expanduser())
        say(f"Identity {args.identity}: {identity.num_photos} photo(s): {', '.join(identity.sources)}")

    made = pipeline.lora_from_identity(identity, models.hyperlora, device=device, dtype=dtype, report=say)
    from ..files.export import save_lora

    save_lora(made.lora, out_file, metadata=made.metadata())
    say(f"Wrote {out_file} ({len(made.lora)} tensors, {out_file.stat().st_size / 1e6:.1f} MB) from "
        f"{identity.num_photos} photo(s).")
    if identity_out is not None:
        identity.save(identity_out)
        say(f"Wrote the identity {identity_out}.")
    say(f"Start your prompt with the trigger words: {TRIGGER_WORDS.strip()}")
    say("Use it on a realistic SDXL model (RealVisXL 4.0 works best) at strength 0.75-0.9 with CLIP skip -2.")
    if args.json:
        import json

        out(json.dumps({"lora": str(out_file), "identity": None if identity_out is None else str(identity_out),
                        "photos": list(identity.sources), "weights": [round(float(w), 4) for w in identity.weights],
                        "photo_check": checked[0].as_dict() if checked else None,
                        "trigger_words": TRIGGER_WORDS.strip()}, indent=2))
    return EXIT_OK
