"""``python -m hyperlora_core generate``: photos (or a saved identity) to an SDXL LoRA file."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .cli import EXIT_OK, MODELS_DIR_DEFAULT, PROG, UsageError, _add_common, _models_dir, _out
from .errors import HyperLoRAError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
DTYPE_CHOICES = ("auto", "float16", "bfloat16", "float32")


def add_generate_parser(sub) -> None:
    from .download import VARIANT_CHOICES

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
    p.add_argument("--save-identity", type=Path, metavar="FILE",
                   help="also write the face features as a small identity file (.safetensors) that the "
                   "'Load HyperLoRA Identity' node and --identity read, to reuse without the photos")
    p.add_argument("--base-lora-features", action="store_true",
                   help="also put Base-LoRA features (a second CLIP pass per photo) in the --save-identity file, "
                   "for a checkpoint with Base-LoRA weights; the released v1 variants have none (default: off)")
    _add_common(p)
    p.set_defaults(run=_run_generate)


@dataclass
class _Models:
    hyperlora: Path
    clip: Path | None
    faces: Path | None


def _check_new_file(path: Path, option: str, suffixes: Sequence[str] = (".safetensors",)) -> Path:
    """A file to write: new, with one of ``suffixes``, in a folder that exists and takes files
    (checked before any work)."""
    import tempfile

    path = path.expanduser()
    if path.suffix.lower() not in suffixes:
        names = ", ".join(suffixes[:-1]) + " or " + suffixes[-1] if len(suffixes) > 1 else suffixes[0]
        raise UsageError(f"{option} {path} must end in {names}")
    if path.exists():
        raise HyperLoRAError(f"{path} already exists and will not be overwritten; choose another name for {option}")
    if path.parent.exists() and not path.parent.is_dir():
        raise HyperLoRAError(f"the folder of {option} {path} is a file, not a folder: {path.parent}")
    if not path.parent.is_dir():
        raise HyperLoRAError(f"the folder of {option} {path} does not exist: {path.parent}; create it or choose another")
    try:
        with tempfile.TemporaryFile(dir=path.parent, prefix=".hyperlora-probe-"):
            pass
    except OSError as exc:
        raise HyperLoRAError(
            f"cannot write into the folder of {option} {path} ({exc.strerror or exc}); choose a folder you can "
            "write to"
        ) from exc
    return path


def _expand_photos(paths: Sequence[Path]) -> list[Path]:
    from .errors import InputError

    photos: list[Path] = []
    for path in paths:
        path = path.expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise InputError(f"the folder {path} holds no photos ({', '.join(IMAGE_SUFFIXES)})")
            photos.extend(found)
        elif path.is_file():
            photos.append(path)
        elif path.exists():
            raise InputError(f"photo {path} is not a regular file (a device or a pipe?); pass an image file")
        else:
            raise InputError(f"photo not found: {path}")
    return photos


def _find_models(args: argparse.Namespace, need_faces: bool) -> _Models:
    from .clip_encoder import find_clip_vision
    from .download import REFERENCE_HYPERLORA_FOLDER, VARIANT_CHOICES

    given = bool(args.hyperlora and (args.clip or not need_faces) and (args.face_models or not need_faces))
    models_dir = None if given and not args.models_dir else _models_dir(args)
    where = f" --models-dir {args.models_dir}" if args.models_dir else ""
    get = f"run '{PROG} download{where}'"
    if models_dir is not None and not models_dir.is_dir():
        default = "" if args.models_dir else " (the default; pass --models-dir to use another)"
        raise HyperLoRAError(f"the models folder {models_dir}{default} does not exist; {get} first")

    variant = VARIANT_CHOICES[args.variant][0]
    if args.hyperlora:
        hyperlora = args.hyperlora.expanduser()
    else:
        candidates = [models_dir / "hyperlora" / variant, models_dir.joinpath(*REFERENCE_HYPERLORA_FOLDER, variant)]
        hyperlora = next((c for c in candidates if c.is_dir()), None)
        if hyperlora is None:
            raise HyperLoRAError(f"HyperLoRA {variant} not found in {candidates[0]} or {candidates[1]}; {get}")

    clip = faces = None
    if need_faces:
        if args.clip:
            clip = args.clip.expanduser()
        else:
            clip = find_clip_vision(models_dir)
            if clip is None:
                raise HyperLoRAError(
                    f"CLIP ViT-L/14 not found in {models_dir} (clip_vision/ or hyper_lora/clip_vit/); {get}"
                )
        if args.face_models:
            faces = args.face_models.expanduser()
        else:
            faces = models_dir / "insightface" / "models" / "antelopev2"
            if not faces.is_dir():
                raise HyperLoRAError(f"the antelopev2 face models are not in {faces}; {get}")
    return _Models(hyperlora, clip, faces)


def _device_and_dtypes(args: argparse.Namespace):
    import torch

    from .model import resolve_device, resolve_dtype

    device = resolve_device("cuda" if args.device == "auto" and torch.cuda.is_available()
                            else "cpu" if args.device == "auto" else args.device)
    dtype = resolve_dtype("float16" if args.dtype == "auto" else args.dtype)
    # CPUs have no fast half-precision arithmetic: CLIP runs in float32 there.
    clip_dtype = torch.float32 if device.type == "cpu" else dtype
    return device, dtype, clip_dtype


def _analyze_photos(args: argparse.Namespace, photos: list[Path], analyzer, choice) -> list:
    """The face of each photo, in order; every error names the photo's file."""
    from .errors import InputError, NoFaceError
    from .images import load_image

    results, skipped = [], []
    for i, photo in enumerate(photos):
        try:
            rgb = load_image(photo)
            result = analyzer.analyze_photo(rgb, i, choice, remove_background=not args.keep_background,
                                            grey=args.grey)
        except HyperLoRAError as exc:
            text = str(exc).replace(f"Photo {i} ", "this photo ")
            raise type(exc)(text if str(photo) in text else f"{photo}: {text}") from exc
        except Exception as exc:  # noqa: BLE001 - a fault deep in the face models: say which photo
            raise InputError(f"{photo}: the face analysis failed ({type(exc).__name__}: {exc})") from exc
        if result is None:
            size = f"{rgb.shape[1]}x{rgb.shape[0]}"
            if not args.skip_no_face:
                raise NoFaceError(
                    f"No face was found in {photo} ({size}). Use photos where the face is clearly visible: frontal "
                    "or nearly so, sharp, well lit, not covered (sunglasses, masks, hands) and at least about 64 px "
                    f"wide; or pass --skip-no-face to leave such photos out. If no photo ever gives a face, check "
                    f"that {analyzer.folder} holds the real insightface antelopev2 models."
                )
            _out(f"  {photo.name}: no face found ({size}), left out (--skip-no-face)")
            skipped.append(photo)
        elif result.n_faces == 1:
            _out(f"  {photo.name}: 1 face (detection score {result.det_score:.2f})")
        else:
            _out(f"  {photo.name}: {result.n_faces} faces, using face {result.face_index} counted from the left "
                 f"({choice if isinstance(choice, str) else 'by index'}; detection score {result.det_score:.2f})")
        if result is not None:
            results.append(result)
    if not results:
        raise NoFaceError(
            f"No face was found in any of the photos ({', '.join(str(p) for p in skipped)}). Use photos where the "
            "face is clearly visible, and check that the face models are the real insightface antelopev2 models."
        )
    return results


def _identity_from_photos(args: argparse.Namespace, photos: list[Path], models: _Models, device, clip_dtype,
                          with_base: bool):
    import torch

    from .clip_encoder import ClipVisionEncoder
    from .face import FaceAnalyzer, check_choice
    from .identity import IdentityFeatures

    choice = check_choice(args.face)
    _out(f"Finding faces in {len(photos)} photo(s) with {models.faces} ...")
    analyzer = FaceAnalyzer(models.faces, provider=args.provider)
    results = _analyze_photos(args, photos, analyzer, choice)

    _out(f"Encoding {len(results)} face crop(s) with CLIP ViT-L/14 from {models.clip} ...")
    encoder = ClipVisionEncoder.load(models.clip, device=device, dtype=clip_dtype)
    tokens = encoder.encode_crops([r.clip_crop for r in results])
    base = encoder.encode_crops([r.base_crop for r in results]) if with_base else None
    del encoder
    arcface = torch.stack([torch.as_tensor(r.arcface_embedding, dtype=torch.float32).flatten() for r in results])
    arcface = arcface / arcface.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return IdentityFeatures(arcface=arcface, clip_tokens=tokens, base_clip_tokens=base,
                            sources=[photos[r.index].name for r in results])


def _run_generate(args: argparse.Namespace) -> int:
    from .constants import TRIGGER_WORDS
    from .errors import InputError
    from .export import lora_metadata, save_lora
    from .identity import IdentityFeatures

    out = _check_new_file(args.out, "--out")
    identity_out = _check_new_file(args.save_identity, "--save-identity") if args.save_identity else None
    if identity_out is not None and identity_out.resolve() == out.resolve():
        raise UsageError("--out and --save-identity name the same file")
    if args.base_lora_features and (identity_out is None or args.photos is None):
        raise UsageError("--base-lora-features adds to the identity made from --photos: give --photos and --save-identity")
    if args.photos is not None:
        from .face import check_choice  # the face pipeline (OpenCV, insightface) only when photos are given

        check_choice(args.face)  # a bad --face fails before any model loads
        photos = _expand_photos(args.photos)
    else:
        if not args.identity.expanduser().is_file():
            raise InputError(f"identity file not found: {args.identity}")
        photos = []
    models = _find_models(args, need_faces=bool(photos))
    device, dtype, clip_dtype = _device_and_dtypes(args)

    if photos:
        identity = _identity_from_photos(args, photos, models, device, clip_dtype, with_base=args.base_lora_features)
    else:
        identity = IdentityFeatures.load(args.identity.expanduser())
        _out(f"Identity {args.identity}: {identity.num_photos} photo(s): {', '.join(identity.sources)}")

    from .model import HyperLoRA

    _out(f"Loading HyperLoRA {models.hyperlora} ({str(dtype).removeprefix('torch.')} on {device}) ...")
    network = HyperLoRA.from_pretrained(models.hyperlora, dtype=dtype, device=device)
    lora = network.generate_id_lora(identity.arcface, identity.clip_tokens, identity.weights)
    # The photos' file names stay out of the metadata: a shared LoRA should not carry them.
    meta = lora_metadata(lora, source=network.source, num_photos=identity.num_photos, kind="id")
    save_lora(lora, out, metadata=meta)
    _out(f"Wrote {out} ({len(lora)} tensors, {out.stat().st_size / 1e6:.1f} MB) from {identity.num_photos} photo(s).")
    if identity_out is not None:
        identity.save(identity_out)
        _out(f"Wrote the identity {identity_out}.")
    _out(f"Start your prompt with the trigger words: {TRIGGER_WORDS.strip()}")
    _out("Use it on a realistic SDXL model (RealVisXL 4.0 works best) at strength 0.75-0.9 with CLIP skip -2.")
    return EXIT_OK


