"""Photos of a person -> their HyperLoRA LoRA: the one path that the command line, the benchmark and
the Python API all take.

    from hyperlora_core import photos_to_lora, save_lora
    made = photos_to_lora(["me1.jpg", "me2.jpg"], models_dir="models")
    save_lora(made.lora, "me.safetensors", made.metadata())

Steps, each a public function for callers that hold some of the parts already:

* :func:`find_models`: the release folder, CLIP ViT-L/14 and the face models in a models folder
  (:func:`models_folder`, the default one every command shares; :func:`face_models_folder`, the
  face models alone, which ``score`` uses);
* :func:`analyze_photos`: the chosen face of each photo (every error names the photo's file);
  :func:`faces_of_photos` also returns the photos left out and why;
* :func:`check_photos`: the photo check (:mod:`hyperlora_core.face.check`), keeping, dropping or
  down-weighting flagged photos;
* :func:`identity_from_photos`: faces -> ArcFace + CLIP features (:meth:`IdentityFeatures.from_faces`);
  :func:`identity_from_faces` does the CLIP half with an encoder loaded before (:func:`load_clip`);
* :func:`lora_from_identity`: features -> the ID-LoRA's tensors (with a network from :func:`load_network`).

The batch (:mod:`hyperlora_core.batch`) loads the models once and calls the same functions per person.

The ComfyUI nodes take the same steps with ComfyUI's own CLIP vision model: "Load Faces" is
:func:`analyze_photos`, "HyperLoRA ID Embedding" ends in :meth:`IdentityFeatures.from_faces` with
the crops resized by :func:`hyperlora_core.features.clip_pixels.clip_resize`, and "Generate
HyperLoRA" is :meth:`HyperLoRA.generate_id_lora`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .constants import CLI
from .errors import HyperLoRAError, InputError, NoFaceError

if TYPE_CHECKING:  # torch and the face pipeline load only when a function runs
    import torch

    from .face.check import SetCheck
    from .features.identity import IdentityFeatures

log = logging.getLogger(__name__)

Report = Callable[[str], None]


@dataclass
class ModelPaths:
    """Where the models of one run are: the release folder, and CLIP and the face models when photos are read."""

    hyperlora: Path
    clip: Path | None = None
    faces: Path | None = None


@dataclass
class MadeLoRA:
    """A generated ID-LoRA (kohya keys -> tensors), the identity it came from and the release it used."""

    lora: dict
    identity: "IdentityFeatures"
    source: str

    def metadata(self) -> dict[str, str]:
        """The file's metadata; the photos' file names stay out (a shared LoRA should not carry them)."""
        from .files.export import lora_metadata

        return lora_metadata(self.lora, source=self.source, num_photos=self.identity.num_photos, kind="id")


def _get_them(models_dir: str | os.PathLike | None, only: str = "") -> str:
    where = f" --models-dir {models_dir}" if models_dir else ""
    return f"run '{CLI} download{only}{where}'"


def models_folder(models_dir: str | os.PathLike | None = None) -> Path:
    """The models folder every command reads: ``models_dir``, else the folder ``download`` fills by
    default (:func:`hyperlora_core.download.models.default_models_dir`); it must exist."""
    from .download.models import default_models_dir

    folder = Path(models_dir).expanduser() if models_dir else default_models_dir()
    if not folder.is_dir():
        default = "" if models_dir else " (the default; pass --models-dir to use another)"
        raise HyperLoRAError(f"the models folder {folder}{default} does not exist; {_get_them(models_dir)} first")
    return folder


def face_models_folder(models_dir: str | os.PathLike | None = None,
                       face_models: str | os.PathLike | None = None) -> Path:
    """The antelopev2 face models: ``face_models`` as given, else where ``download`` puts them in the
    models folder (:func:`models_folder`); also ComfyUI's other layouts below ``insightface/``."""
    if face_models:
        return Path(face_models).expanduser()  # FaceAnalyzer says what is missing in a folder given
    from .constants import ANTELOPEV2_FILES
    from .download.models import ANTELOPEV2_FOLDER
    from .errors import FaceModelError
    from .face.models import find_antelopev2

    folder = models_folder(models_dir)
    try:
        return find_antelopev2(folder / ANTELOPEV2_FOLDER[0])
    except FaceModelError:
        expected = folder.joinpath(*ANTELOPEV2_FOLDER)
        missing = [name for name in ANTELOPEV2_FILES.values() if not (expected / name).is_file()]
        raise HyperLoRAError(
            f"the antelopev2 face models are not in {expected} (missing {', '.join(missing)}); "
            f"{_get_them(models_dir, ' --only face')} to fetch them, or pass --face-models the antelopev2 folder"
        ) from None


def find_models(models_dir: str | os.PathLike | None = None, variant: str = "fidelity", *,
                hyperlora: str | os.PathLike | None = None, clip: str | os.PathLike | None = None,
                face_models: str | os.PathLike | None = None, need_faces: bool = True) -> ModelPaths:
    """The models in ``models_dir`` (default: the folder ``download`` fills, see :func:`models_folder`)
    where ``download`` puts them; a path given for a model is used as it is. ``variant``: fidelity or edit."""
    from .download.models import REFERENCE_HYPERLORA_FOLDER, VARIANT_CHOICES
    from .features.clip import find_clip_vision

    given = bool(hyperlora and (clip or not need_faces) and (face_models or not need_faces))
    folder = None if given and not models_dir else models_folder(models_dir)
    get = _get_them(models_dir)

    if variant not in VARIANT_CHOICES or variant == "both":
        raise InputError(f"variant {variant!r} is not a HyperLoRA release: use fidelity or edit")
    name = VARIANT_CHOICES[variant][0]
    if hyperlora:
        release = Path(hyperlora).expanduser()
    else:
        candidates = [folder / "hyperlora" / name, folder.joinpath(*REFERENCE_HYPERLORA_FOLDER, name)]
        release = next((c for c in candidates if c.is_dir()), None)
        if release is None:
            raise HyperLoRAError(f"HyperLoRA {name} not found in {candidates[0]} or {candidates[1]}; {get}")

    clip_path = faces = None
    if need_faces:
        if clip:
            clip_path = Path(clip).expanduser()
        else:
            clip_path = find_clip_vision(folder)
            if clip_path is None:
                raise HyperLoRAError(
                    f"CLIP ViT-L/14 not found in {folder} (clip_vision/ or hyper_lora/clip_vit/); {get}"
                )
        faces = face_models_folder(models_dir, face_models)
    return ModelPaths(release, clip_path, faces)


def pick_device(device: str = "auto", dtype: str = "auto") -> tuple["torch.device", "torch.dtype", "torch.dtype"]:
    """(device, dtype of the network, dtype of CLIP): auto = a CUDA GPU when there is one, float16."""
    import torch

    from .model.hyperlora import resolve_device, resolve_dtype

    where = resolve_device("cuda" if device == "auto" and torch.cuda.is_available()
                           else "cpu" if device == "auto" else device)
    weights = resolve_dtype("float16" if dtype == "auto" else dtype)
    # CPUs have no fast half-precision arithmetic: CLIP runs in float32 there.
    clip_dtype = torch.float32 if where.type == "cpu" else weights
    return where, weights, clip_dtype


@dataclass
class SkippedPhoto:
    """A photo left out of a person's identity, and why (no face, unreadable)."""

    photo: Path
    reason: str


@dataclass
class PhotoFaces:
    """The faces found in a person's photos (``FaceResult``s, ``index`` = position in ``photos``) and
    the photos left out."""

    photos: list[Path]
    faces: list
    skipped: list[SkippedPhoto]

    def no_face_error(self) -> NoFaceError:
        return NoFaceError(
            f"No face was found in any of the photos ({', '.join(str(s.photo) for s in self.skipped)}). Use photos "
            "where the face is clearly visible, and check that the face models are the real insightface antelopev2 "
            "models."
        )


def faces_of_photos(analyzer: Any, photos: Sequence[Path], choice: str | int = "largest", *,
                    skip_no_face: bool = False, skip_unreadable: bool = False, remove_background: bool = True,
                    grey: bool = False, report: Report = log.info) -> PhotoFaces:
    """The chosen face of each photo, and the photos left out: without a face (with ``skip_no_face``,
    else that stops the run) or unreadable (with ``skip_unreadable``, else that stops the run). Every
    error names the photo's file. An empty ``faces`` is not an error here (see :func:`analyze_photos`)."""
    from .files.images import load_image

    photos = [Path(p) for p in photos]
    results, skipped = [], []
    for i, photo in enumerate(photos):
        try:
            rgb = load_image(photo)
        except InputError as exc:
            if not skip_unreadable:
                raise
            report(f"  {photo.name}: unreadable, left out ({exc})")
            skipped.append(SkippedPhoto(photo, f"unreadable: {exc}"))
            continue
        try:
            result = analyzer.analyze_photo(rgb, i, choice, remove_background=remove_background, grey=grey)
        except HyperLoRAError as exc:
            text = str(exc).replace(f"Photo {i} ", "this photo ")
            raise type(exc)(text if str(photo) in text else f"{photo}: {text}") from exc
        except Exception as exc:  # noqa: BLE001 - a fault deep in the face models: say which photo
            raise InputError(f"{photo}: the face analysis failed ({type(exc).__name__}: {exc})") from exc
        if result is None:
            size = f"{rgb.shape[1]}x{rgb.shape[0]}"
            if not skip_no_face:
                raise NoFaceError(
                    f"No face was found in {photo} ({size}). Use photos where the face is clearly visible: frontal "
                    "or nearly so, sharp, well lit, not covered (sunglasses, masks, hands) and at least about 64 px "
                    f"wide; or pass --skip-no-face to leave such photos out. If no photo ever gives a face, check "
                    f"that {analyzer.folder} holds the real insightface antelopev2 models."
                )
            report(f"  {photo.name}: no face found ({size}), left out (--skip-no-face)")
            skipped.append(SkippedPhoto(photo, f"no face found ({size})"))
        elif result.n_faces == 1:
            report(f"  {photo.name}: 1 face (detection score {result.det_score:.2f})")
        else:
            report(f"  {photo.name}: {result.n_faces} faces, using face {result.face_index} counted from the left "
                   f"({choice if isinstance(choice, str) else 'by index'}; detection score {result.det_score:.2f})")
        if result is not None:
            results.append(result)
    return PhotoFaces(photos, results, skipped)


def analyze_photos(analyzer: Any, photos: Sequence[Path], choice: str | int = "largest", *,
                   skip_no_face: bool = False, remove_background: bool = True, grey: bool = False,
                   report: Report = log.info) -> list:
    """The chosen face of each photo (``FaceResult``s, in order); every error names the photo's file.
    A photo without a face stops the run, or with ``skip_no_face`` is left out and reported."""
    found = faces_of_photos(analyzer, photos, choice, skip_no_face=skip_no_face,
                            remove_background=remove_background, grey=grey, report=report)
    if not found.faces:
        raise found.no_face_error()
    return found.faces


def identity_from_faces(found: PhotoFaces, encoder: Any, *, with_base: bool = False,
                        weights: Sequence[float] | None = None) -> "IdentityFeatures":
    """Faces -> the person's features: CLIP ViT-L/14 tokens of the face crops (and of the Base-LoRA
    crops with ``with_base``) with ``encoder`` (a loaded :class:`ClipVisionEncoder`), then
    :meth:`IdentityFeatures.from_faces` (``weights``: one per face, from the photo check)."""
    from .features.identity import IdentityFeatures

    results = found.faces
    tokens = encoder.encode_crops([r.clip_crop for r in results])
    base = encoder.encode_crops([r.base_crop for r in results]) if with_base else None
    return IdentityFeatures.from_faces(results, tokens, base, sources=[found.photos[r.index].name for r in results],
                                       weights=weights)


def check_photos(results: list, names: Sequence[str], action: str = "keep", *,
                 report: Report = log.info) -> tuple[list, list[float], "SetCheck"]:
    """The photo check of the faces found (``names``: one per face): its table is reported, and the
    faces that go on come back with their weights (``action``: keep, drop or downweight)."""
    from .face.check import apply_check, check_faces

    checked = apply_check(check_faces(results, labels=names), action)
    report("Photo check:")
    for line in checked.table().splitlines():
        report(f"  {line}")
    return [results[i] for i in checked.kept], list(checked.weights), checked


def identity_from_photos(photos: Sequence[str | os.PathLike], models: ModelPaths, *, choice: str | int = "largest",
                         skip_no_face: bool = False, remove_background: bool = True, grey: bool = False,
                         provider: str = "auto", device: "torch.device | str" = "cpu",
                         clip_dtype: "torch.dtype | None" = None, with_base: bool = False,
                         photo_check: str = "keep", on_check: "Callable[[SetCheck], None] | None" = None,
                         report: Report = log.info) -> "IdentityFeatures":
    """Photos -> the person's features: faces, the photo check (``photo_check``: keep, drop or
    downweight the flagged photos; ``on_check`` is given the :class:`SetCheck`), then CLIP ViT-L/14
    tokens of the face crops (and of the Base-LoRA crops with ``with_base``), then
    :meth:`IdentityFeatures.from_faces`."""
    from .face import FaceAnalyzer, check_choice
    from .face.check import ACTIONS

    photos = [Path(p) for p in photos]
    choice = check_choice(choice)
    if photo_check not in ACTIONS:
        raise InputError(f"photo check {photo_check!r} is not one of {', '.join(ACTIONS)}")
    report(f"Finding faces in {len(photos)} photo(s) with {models.faces} ...")
    analyzer = FaceAnalyzer(models.faces, provider=provider)
    results = analyze_photos(analyzer, photos, choice, skip_no_face=skip_no_face,
                             remove_background=remove_background, grey=grey, report=report)
    results, weights, checked = check_photos(results, [photos[r.index].name for r in results], photo_check,
                                             report=report)
    if on_check is not None:
        on_check(checked)

    report(f"Encoding {len(results)} face crop(s) with CLIP ViT-L/14 from {models.clip} ...")
    encoder = load_clip(models, device=device, clip_dtype=clip_dtype)
    identity = identity_from_faces(PhotoFaces(photos, results, []), encoder, with_base=with_base, weights=weights)
    del encoder
    return identity


def load_clip(models: ModelPaths, *, device: "torch.device | str" = "cpu", clip_dtype: "torch.dtype | None" = None):
    """CLIP ViT-L/14 of ``models`` as :func:`identity_from_photos` uses it (float32 unless told)."""
    import torch

    from .features.clip import ClipVisionEncoder

    return ClipVisionEncoder.load(models.clip, device=device, dtype=clip_dtype or torch.float32)


def load_network(release: str | os.PathLike, *, device: "torch.device | str" = "cpu",
                 dtype: "torch.dtype | str" = "float16", report: Report = log.info):
    """The release folder's hyper-network (:class:`HyperLoRA`) as :func:`lora_from_identity` loads it."""
    from .model.hyperlora import HyperLoRA, resolve_dtype

    dtype = resolve_dtype(dtype)
    report(f"Loading HyperLoRA {release} ({str(dtype).removeprefix('torch.')} on {device}) ...")
    return HyperLoRA.from_pretrained(release, dtype=dtype, device=device)


def lora_from_identity(identity: "IdentityFeatures", release: str | os.PathLike, *, device: "torch.device | str" = "cpu",
                       dtype: "torch.dtype | str" = "float16", report: Report = log.info,
                       network: Any = None) -> MadeLoRA:
    """An identity -> its ID-LoRA, with the release folder's network loaded for it (or ``network``,
    one :func:`load_network` loaded before, for many identities)."""
    if network is None:
        network = load_network(release, device=device, dtype=dtype, report=report)
    lora = network.generate_id_lora(identity.arcface, identity.clip_tokens, identity.weights)
    return MadeLoRA(lora=lora, identity=identity, source=network.source)


def photos_to_lora(photos: Sequence[str | os.PathLike], models_dir: str | os.PathLike | None = None, *,
                   variant: str = "fidelity", hyperlora: str | os.PathLike | None = None,
                   clip: str | os.PathLike | None = None, face_models: str | os.PathLike | None = None,
                   device: str = "auto", dtype: str = "auto", provider: str = "auto", choice: str | int = "largest",
                   skip_no_face: bool = False, remove_background: bool = True, grey: bool = False,
                   photo_check: str = "keep", report: Report = log.info) -> MadeLoRA:
    """Photos of one person -> their ID-LoRA, as ``python -m hyperlora_core generate`` makes it.

    Models are found as :func:`find_models` finds them; ``device``/``dtype`` as :func:`pick_device`
    picks them; ``choice`` is the face used in a photo with several (largest, most_confident or an
    index from the left); ``photo_check`` what is done with flagged photos (keep, drop, downweight)."""
    from .face import check_choice

    check_choice(choice)  # a bad choice fails before any model loads
    models = find_models(models_dir, variant, hyperlora=hyperlora, clip=clip, face_models=face_models)
    where, weights, clip_dtype = pick_device(device, dtype)
    identity = identity_from_photos(photos, models, choice=choice, skip_no_face=skip_no_face,
                                    remove_background=remove_background, grey=grey, provider=provider,
                                    device=where, clip_dtype=clip_dtype, photo_check=photo_check, report=report)
    return lora_from_identity(identity, models.hyperlora, device=where, dtype=weights, report=report)
