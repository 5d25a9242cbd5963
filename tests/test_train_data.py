"""train/data.py: photos are prepared once with the face pipeline (those without a face skipped and
counted), captions from files or a JSONL manifest."""

from __future__ import annotations

import json
import os

import pytest
import torch

from hyperlora_core import HyperLoRA
from hyperlora_core.train import Trainer
from hyperlora_core.train.data import DataError
from tiny_training import face_config, face_data, one_thread  # noqa: F401


def test_photos_are_preprocessed_once_and_photos_without_a_face_skipped_and_counted(tmp_path, face_data, caplog):
    from hyperlora_core.train.data import prepare_cache

    config = face_config(tmp_path, face_data)
    trainer = Trainer(config)
    with caplog.at_level("INFO", logger="hyperlora_core.train"):
        trainer.run()
    assert "Skipped 1 of 3 photos without a face" in caplog.text
    assert len(trainer.dataset) == 2 and trainer.dataset.no_face == [str(face_data["photos"] / "wall.png")]
    item = trainer.dataset[0]
    assert item["caption"] == "a photo of person 0" and item["latents"].shape == (4, 8, 8)
    assert item["clip_tokens"].shape == (257, 1024) and abs(item["arcface"].norm() - 1) < 1e-4
    assert not torch.equal(item["clip_tokens"], item["base_clip_tokens"])  # the face is blurred out in one
    report = prepare_cache(config, trainer.backbone, analyzer=object(), encoder=object())  # nothing to compute
    assert (report.reused, report.computed, len(report.no_face)) == (2, 0, 1)
    HyperLoRA.from_pretrained(tmp_path / "out" / "release")


def test_missing_caption_is_a_clear_message(tmp_path, face_data):
    import shutil

    photos = tmp_path / "photos"
    shutil.copytree(face_data["photos"], photos)
    (photos / "face1.txt").unlink()
    with pytest.raises(DataError, match=r"1 of 3 images .* have no caption file: face1.txt.*missing_caption"):
        Trainer(face_config(tmp_path, face_data, folder=str(photos))).run()


def test_jsonl_manifest_with_relative_paths(tmp_path, face_data):
    from hyperlora_core.train.data import read_manifest

    manifest = tmp_path / "train.jsonl"
    rel = os.path.relpath(face_data["photos"], tmp_path)
    manifest.write_text(json.dumps({"image": f"{rel}/face0.png", "caption": "one"}) + "\n\n"
                        + json.dumps({"file_name": f"{rel}/face1.png", "text": "two"}) + "\n")
    entries = read_manifest(manifest)
    assert [(e.image.name, e.caption) for e in entries] == [("face0.png", "one"), ("face1.png", "two")]
    manifest.write_text(json.dumps({"image": "x.png"}) + "\n")
    with pytest.raises(DataError, match=r"line 1: x.png has no \"caption\""):
        read_manifest(manifest)
