"""Training data: portraits with captions, preprocessed once into a cache of features.

Sources (``[data]`` of the config):

* ``folder``: every image (jpg, jpeg, png, webp, bmp) directly in the folder, each with a caption
  file of the same name and the extension ``.txt`` beside it;
* ``manifest``: a JSONL file, one ``{"image": "path", "caption": "text"}`` per line (``file_name``
  and ``text`` are accepted too, as in Hugging Face ``metadata.jsonl``), paths relative to the
  manifest; or a ``.parquet`` file with those columns (needs ``pyarrow``).

Each photo goes once through our face pipeline (:class:`~hyperlora_core.face.FaceAnalyzer`: the
ArcFace embedding, the CLIP crop and the face-blurred Base-LoRA crop), CLIP ViT-L/14 (penultimate
tokens of both crops) and the base model's VAE (the training image, shorter side resized to
``resolution`` and centre-cropped square). One small ``.safetensors`` per photo is written under
``<cache>/items/``, named by a fingerprint of the file (path, size, modification time) and of the
preprocessing settings, so a second run, or a run with a few photos added, only computes what is new.
``<cache>/index.json`` lists the usable items in dataset order. Photos without a face are skipped,
remembered (not analysed again) and counted in the log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save

from ..files.atomic import write_atomic
from ..constants import IMAGE_SUFFIXES
from ..errors import DataError

log = logging.getLogger(__name__)

INDEX = "index.json"
CACHE_VERSION = 1




@dataclass(frozen=True)
class Entry:
    image: Path
    caption: str


def list_folder(folder: str | os.PathLike, missing_caption: str = "error") -> list[Entry]:
    """The images of a folder (sorted by name) with their ``.txt`` captions."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"Training image folder not found: {folder}.")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DataError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    entries, missing = [], []
    for image in images:
        caption_file = image.with_suffix(".txt")
        if caption_file.is_file():
            entries.append(Entry(image, caption_file.read_text(encoding="utf-8").strip()))
        elif missing_caption == "empty":
            entries.append(Entry(image, ""))
        else:
            missing.append(caption_file.name)
    if missing:
        raise DataError(
            f"{len(missing)} of {len(images)} images in {folder} have no caption file: "
            f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}. Write a caption into each "
            "(an empty file is allowed), or set data.missing_caption = \"empty\" to train them without one."
        )
    return entries


def _manifest_rows(path: Path) -> list[tuple[str, dict]]:
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise DataError(f"Reading {path} needs pyarrow: pip install pyarrow (or use a JSONL manifest).") from exc
        return [(f"row {n + 1}", row) for n, row in enumerate(pq.read_table(str(path)).to_pylist())]
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise DataError(f"{path}, line {n}: not valid JSON ({exc}).") from exc
            if not isinstance(row, dict):
                raise DataError(f"{path}, line {n}: expected an object with \"image\" and \"caption\".")
            rows.append((f"line {n}", row))
    return rows


def read_manifest(path: str | os.PathLike, missing_caption: str = "error") -> list[Entry]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Training manifest not found: {path}.")
    entries = []
    for where, row in _manifest_rows(path):
        image = row.get("image", row.get("file_name"))
        caption = row.get("caption", row.get("text"))
        if not isinstance(image, str) or not image:
            raise DataError(f"{path}, {where}: no \"image\" path.")
        if caption is None:
            if missing_caption != "empty":
                raise DataError(f"{path}, {where}: {image} has no \"caption\". Add one (\"\" is allowed), or set "
                                "data.missing_caption = \"empty\".")
            caption = ""
        if not isinstance(caption, str):
            raise DataError(f"{path}, {where}: the caption must be a string, got {caption!r}.")
        entries.append(Entry((path.parent / image).resolve(), caption.strip()))
    if not entries:
        raise DataError(f"{path} lists no images.")
    return entries


def list_entries(data_config) -> list[Entry]:
    if data_config.folder and data_config.manifest:
        raise DataError("Give data.folder or data.manifest, not both.")
    if data_config.folder:
        return list_folder(data_config.folder, data_config.missing_caption)
    if data_config.manifest:
        return read_manifest(data_config.manifest, data_config.missing_caption)
    raise DataError("No training data: set data.folder or data.manifest (or data.cache to a prepared cache).")


# -- the cache --------------------------------------------------------------------------------

def fingerprint(image: Path, settings: dict[str, Any]) -> str:
    stat = image.stat()
    text = json.dumps([str(image.resolve()), stat.st_size, stat.st_mtime_ns, settings], sort_keys=True)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


def training_pixels(rgb: np.ndarray, resolution: int) -> tuple[torch.Tensor, list[float]]:
    """Shorter side to ``resolution`` (bicubic), centre crop: (3, res, res) in -1..1 and the SDXL size
    conditioning (original h, w, crop top, crop left, target h, w)."""
    height, width = rgb.shape[:2]
    scale = resolution / min(height, width)
    size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    image = Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC)
    left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    array = np.asarray(image)[top : top + resolution, left : left + resolution]
    pixels = torch.from_numpy(array.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)
    return pixels, [float(height), float(width), float(top), float(left), float(resolution), float(resolution)]


def write_item(cache: Path, key: str, features: dict[str, torch.Tensor]) -> None:
    """One cached sample: arcface (512), clip_tokens (257, W), base_clip_tokens (257, W),
    latents (C, h, w), sizes (6)."""
    items = cache / "items"
    items.mkdir(parents=True, exist_ok=True)
    data = save({k: v.detach().cpu().contiguous() for k, v in features.items()})
    write_atomic(items / f"{key}.safetensors", data, overwrite=True)


def write_index(cache: Path, items: list[dict[str, Any]], skipped: list[str], settings: dict[str, Any]) -> None:
    data = {"version": CACHE_VERSION, "settings": settings, "items": items, "no_face": skipped}
    write_atomic(cache / INDEX, json.dumps(data, indent=1).encode("utf-8"), overwrite=True)


@dataclass
class CacheReport:
    total: int
    reused: int
    computed: int
    no_face: list[str]


def _settings(config, backbone) -> dict[str, Any]:
    d = config.data
    return {"resolution": d.resolution, "remove_background": d.remove_background, "face_choice": d.face_choice,
            "clip_model": str(d.clip_model), "backbone": getattr(backbone, "description", "")}


def prepare_cache(config, backbone, analyzer=None, encoder=None) -> CacheReport:
    """Preprocess every photo not in the cache yet; write the index. Run on one process only."""
    from ..files.images import to_rgb_list

    cache = config.cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    entries = list_entries(config.data)
    settings = _settings(config, backbone)
    noface_dir = cache / "no_face"
    items, skipped, todo = [], [], []
    reused = 0
    for entry in entries:
        if not entry.image.is_file():
            raise DataError(f"Training image not found: {entry.image}.")
        key = fingerprint(entry.image, settings)
        if (cache / "items" / f"{key}.safetensors").is_file():
            items.append({"image": str(entry.image), "caption": entry.caption, "key": key})
            reused += 1
        elif (noface_dir / key).is_file():
            skipped.append(str(entry.image))
        else:
            todo.append((entry, key))
            items.append({"image": str(entry.image), "caption": entry.caption, "key": key})
    if todo:
        if analyzer is None:
            from ..face import FaceAnalyzer

            if not config.data.face_models:
                raise DataError("data.face_models must name the insightface antelopev2 folder to preprocess photos.")
            analyzer = FaceAnalyzer(config.data.face_models, provider=config.data.provider)
        if encoder is None:
            from ..features.clip import ClipVisionEncoder

            if not config.data.clip_model:
                raise DataError("data.clip_model must name the CLIP ViT-L/14 vision model to preprocess photos.")
            device = getattr(backbone, "device", "cpu")
            encoder = ClipVisionEncoder.load(config.data.clip_model, device=device)
        log.info("Preprocessing %d of %d photos into %s", len(todo), len(entries), cache)
        lost = set()
        for count, (entry, key) in enumerate(todo, 1):
            rgb = to_rgb_list(str(entry.image))[0]
            face = analyzer.analyze_photo(rgb, count - 1, config.data.face_choice, config.data.remove_background)
            if face is None:
                noface_dir.mkdir(parents=True, exist_ok=True)
                (noface_dir / key).touch()
                skipped.append(str(entry.image))
                lost.add(key)
                log.info("No face in %s: skipped.", entry.image)
                continue
            tokens = encoder.encode_crops([face.clip_crop, face.base_crop])
            pixels, sizes = training_pixels(rgb, config.data.resolution)
            latents = backbone.encode_images(pixels[None])[0]
            write_item(cache, key, {
                "arcface": torch.from_numpy(face.arcface_embedding).float(),
                "clip_tokens": tokens[0].half(),
                "base_clip_tokens": tokens[1].half(),
                "latents": latents.float(),
                "sizes": torch.tensor(sizes),
            })
            if count % 100 == 0:
                log.info("Preprocessed %d / %d photos", count, len(todo))
        items = [item for item in items if item["key"] not in lost]
    if skipped:
        log.warning("Skipped %d of %d photos without a face (listed under no_face in %s).",
                    len(skipped), len(entries), cache / INDEX)
    if not items:
        raise DataError(f"None of the {len(entries)} photos has a face that the face models find; nothing to train on.")
    write_index(cache, items, skipped, settings)
    log.info("Dataset: %d photos with a face (%d reused from the cache, %d computed, %d without a face).",
             len(items), reused, len(items) - reused, len(skipped))
    return CacheReport(len(entries), reused, len(items) - reused, skipped)


class CachedDataset:
    """The cached samples, in index order; each item a dict of tensors plus its caption."""

    def __init__(self, cache: str | os.PathLike):
        self.cache = Path(cache)
        index = self.cache / INDEX
        if not index.is_file():
            raise DataError(f"No prepared dataset in {self.cache} (no {INDEX}); set data.folder or data.manifest.")
        data = json.loads(index.read_text(encoding="utf-8"))
        if data.get("version") != CACHE_VERSION:
            raise DataError(f"{index} was written by another version of the trainer; delete {self.cache}.")
        self.items = data["items"]
        self.no_face = data.get("no_face", [])
        if not self.items:
            raise DataError(f"{index} lists no usable photos.")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.items[i]
        path = self.cache / "items" / f"{item['key']}.safetensors"
        try:
            tensors = load_file(str(path))
        except (OSError, RuntimeError) as exc:
            raise DataError(f"Cached item {path} is unreadable ({exc}); delete it and run again.") from exc
        return {**tensors, "caption": item["caption"], "image": item["image"]}


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"caption": [s["caption"] for s in samples], "image": [s["image"] for s in samples]}
    for key in ("arcface", "clip_tokens", "base_clip_tokens", "latents", "sizes"):
        out[key] = torch.stack([s[key].float() for s in samples])
    return out
