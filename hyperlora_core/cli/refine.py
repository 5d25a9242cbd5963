"""``python -m hyperlora_core refine``: a short fine-tune of a generated LoRA file on the person's photos."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import HyperLoRAError, UsageError
from .common import EXIT_OK, MODELS_DIR_DEFAULT, PROG, add_common, check_new_file, expand_photos, out


def add_parser(sub) -> None:
    p = sub.add_parser(
        "refine",
        help="fine-tune a generated LoRA for a minute on the person's own photos",
        description=(
            "Fine-tune a LoRA made by 'generate' (or the 'Save HyperLoRA' node) on the person's photos, as the "
            "'Refine HyperLoRA' node does: it starts exactly from the LoRA, trains only the LoRA's own layers "
            "with the SDXL checkpoint frozen, and weights the loss towards the face. Needs diffusers and a GPU "
            "for real use (100 steps at 1024 px: about a minute on a recent GPU). See docs/refine.md."
        ),
        epilog=(f"Example: {PROG} refine --lora me.safetensors --photos me1.jpg me2.jpg me3.jpg "
                "--checkpoint sd_xl_base_1.0.safetensors --steps 100 --out me_refined.safetensors"),
    )
    p.add_argument("--lora", type=Path, required=True, metavar="LORA.safetensors",
                   help="the ID-LoRA file to refine (from 'generate' or 'Save HyperLoRA'); it is not changed")
    p.add_argument("--photos", nargs="+", type=Path, required=True, metavar="PHOTO",
                   help="photos of the person (a folder stands for the images in it); 3-10 varied photos work best")
    p.add_argument("--checkpoint", type=Path, required=True, metavar="SDXL",
                   help="the SDXL checkpoint the LoRA will be used with: a single .safetensors file or a diffusers folder")
    p.add_argument("--out", type=Path, required=True, metavar="OUT.safetensors",
                   help="the refined LoRA file to write; an existing file is never overwritten")
    p.add_argument("--steps", type=int, default=100, help="training steps (default 100; 50-200 is typical)")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (default 1e-4; at most 1e-2)")
    p.add_argument("--extra-rank", type=int, default=0,
                   help="rank added to every layer, zero at the start (default 0; 4-8 learns finer detail)")
    p.add_argument("--face-weight", type=float, default=1.0,
                   help="how much more face pixels count in the loss (default 1: twice; 0: all alike)")
    p.add_argument("--seed", type=int, default=0, help="seed of the augmentation and noise (default 0)")
    p.add_argument("--caption", default="a photo of a person",
                   help="neutral caption, one line per photo (the trigger words are put in front)")
    p.add_argument("--resolution", type=int, default=1024,
                   help="side of the square training views (default 1024; 768 or 512 use less memory)")
    p.add_argument("--device", default="auto", help="auto (a CUDA GPU if there is one), cpu, cuda or cuda:N")
    p.add_argument("--config", default=None, metavar="REPO_OR_FOLDER",
                   help="the diffusers config for a single-file checkpoint (offline: a local SDXL config folder)")
    p.add_argument("--models-dir", type=Path, metavar="MODELS",
                   help=f"the models folder with insightface/models/antelopev2 (default: {MODELS_DIR_DEFAULT})")
    p.add_argument("--face-models", type=Path, metavar="FOLDER",
                   help="the insightface antelopev2 folder to use instead of the one in --models-dir")
    p.add_argument("--provider", default="auto", help="ONNX Runtime provider for face analysis (default auto)")
    p.add_argument("--log-every", type=int, default=10, help="print the loss every N steps (default 10)")
    p.add_argument("--validate", type=int, default=2, metavar="N",
                   help="render N pictures with fixed prompts and seeds before and after refining and print the "
                        "ArcFace likeness of each to the photos (default 2; 0: off)")
    p.add_argument("--validate-steps", type=int, default=20, help="sampling steps of those pictures (default 20)")
    add_common(p)
    p.set_defaults(run=_run_refine)


def _face_folder(args: argparse.Namespace) -> Path:
    if args.face_models:
        return args.face_models.expanduser()
    from ..download.models import default_models_dir

    folder = (args.models_dir.expanduser() if args.models_dir else default_models_dir())
    faces = folder / "insightface" / "models" / "antelopev2"
    if not faces.is_dir():
        raise HyperLoRAError(f"the antelopev2 face models are not in {faces}; run '{PROG} download' or pass "
                             "--face-models")
    return faces


def load_backbone(checkpoint: Path, config: str | None):
    """SDXL through diffusers, as the trainer loads it (refuses other checkpoints by what they are)."""
    from ..train.backbone import SDXLBackbone, check_sdxl

    check_sdxl(checkpoint)
    return SDXLBackbone.load(checkpoint, config)


def render_pictures(backbone, lora, prompts, resolution: int, steps: int) -> list:
    """The validation pictures of one LoRA (the tests put a stand-in here)."""
    from ..refine.backbone import render_with_lora

    return render_with_lora(backbone, lora, prompts, resolution, steps)


def _run_refine(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..files.export import lora_metadata, save_lora
    from ..files.images import load_image
    from ..pipeline import analyze_photos
    from ..refine import RefineSettings, captions_for, check_id_lora, prepare_views, refine, training_views
    from ..refine.backbone import backbone_parts

    out_file = check_new_file(args.out, "--out")
    lora_path = args.lora.expanduser()
    if not lora_path.is_file():
        raise HyperLoRAError(f"LoRA file not found: {lora_path}")
    if out_file.resolve() == lora_path.resolve():
        raise UsageError("--out names the --lora file; the LoRA you give is never overwritten")
    settings = RefineSettings(steps=args.steps, learning_rate=args.lr, extra_rank=args.extra_rank,
                              face_weight=args.face_weight, seed=args.seed, log_every=0)
    settings.check()
    try:
        lora = load_file(str(lora_path))
    except (SafetensorError, OSError) as exc:
        raise HyperLoRAError(f"{lora_path} is not a readable .safetensors file ({exc})") from exc
    shapes = check_id_lora(lora)
    photos = expand_photos(args.photos)
    checkpoint = args.checkpoint.expanduser()
    if not checkpoint.exists():
        raise HyperLoRAError(f"SDXL checkpoint not found: {checkpoint}")

    from ..face import FaceAnalyzer

    out(f"LoRA {lora_path.name}: {len(shapes)} layers, rank {next(iter(shapes.values())).rank}")
    analyzer = FaceAnalyzer(str(_face_folder(args)), provider=args.provider)
    faces = analyze_photos(analyzer, photos, report=out)
    images = [load_image(photos[r.index]) for r in faces]
    views = training_views(images, [r.landmarks for r in faces], captions_for(args.caption, len(faces)),
                           args.resolution, seed=args.seed, sources=[photos[r.index].name for r in faces])

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    backbone = load_backbone(checkpoint, args.config).to(device, dtype)
    if device.type == "cuda":
        backbone.enable_gradient_checkpointing()
    parts = backbone_parts(backbone, args.resolution)
    encoded = prepare_views(views, parts.encode_pixels, parts.encode_caption, settings.face_weight)
    out(f"Refining for {settings.steps} steps on {len(encoded)} views of {len(faces)} photo(s) at "
        f"{args.resolution} px on {device} ...")
    bar = _progress(settings.steps)

    def on_step(step: int, loss: float) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
        if args.log_every and (step % args.log_every == 0 or step == settings.steps):
            text = f"  step {step}/{settings.steps}: loss {loss:.4f}"
            (bar.write if bar is not None else out)(text)

    try:
        result = refine(lora, parts.predict, encoded, parts.alphas_cumprod, settings, parts.attach, device=device,
                        on_step=on_step)
    finally:
        if bar is not None:
            bar.close()
    meta = lora_metadata(result.lora, source=f"{lora_path.name} refined", num_photos=len(faces),
                         extra={"hyperlora.refine": {"steps": settings.steps, "learning_rate": settings.learning_rate,
                                                     "extra_rank": settings.extra_rank, "seed": settings.seed,
                                                     "resolution": args.resolution}})
    save_lora(result.lora, out_file, metadata=meta)
    first, last = result.losses[0], result.losses[-1]
    out(f"Wrote {out_file} ({result.steps} steps in {result.seconds:.0f} s, {result.steps_per_second:.2f} steps/s; "
        f"loss {first:.4f} -> {last:.4f}).")
    if args.validate > 0:
        from ..refine.validate import compare_likeness

        out(f"Likeness to the photos (ArcFace), generated -> refined, {args.validate} picture(s):")
        reference = np.stack([r.arcface_embedding for r in faces])
        comparison = compare_likeness(
            lambda tensors, prompts: render_pictures(backbone, tensors, prompts, args.resolution, args.validate_steps),
            lora, result.lora, analyzer, reference, args.validate)
        for line in comparison.lines():
            out(line)
    out("Use it as the generated LoRA: same trigger words, strength 0.75-0.9.")
    return EXIT_OK


def _progress(total: int):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="refine", unit="step", dynamic_ncols=True)
