"""`python -m hyperlora_core refine` (cli/refine.py) end to end on the toy backbone (put in place of
diffusers' SDXL) with the tiny face models, and its errors: one line, exit code 1, no file written."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from cli_run import one_line_error, run
from hyperlora_core.cli import refine as refine_command
from hyperlora_core.refine.layers import attention_linears
from hyperlora_core.train.toy import ToyBackbone
from tiny_face_models import draw_face, make_tiny_antelopev2
from tiny_refine import random_id_lora


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("refine_cli")
    faces = make_tiny_antelopev2(root / "antelopev2")
    photos = root / "photos"
    photos.mkdir()
    for n, box in enumerate([(70, 80, 180, 210), (90, 60, 200, 200)]):
        rng = np.random.default_rng(n)
        image = (rng.random((300, 260, 3)) * 200).astype(np.uint8)
        draw_face(image, box, slot=0, ring=6)
        Image.fromarray(image).save(photos / f"p{n}.png")
    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(root / "blank.png")
    lora = root / "me.safetensors"
    save_file(random_id_lora(attention_linears(ToyBackbone().unet)), str(lora))
    checkpoint = root / "sdxl.safetensors"
    checkpoint.write_bytes(b"stand-in: load_backbone is replaced")
    return {"root": root, "faces": faces, "photos": photos, "lora": lora, "checkpoint": checkpoint}


@pytest.fixture
def toy_backbone(monkeypatch):
    monkeypatch.setattr(refine_command, "load_backbone", lambda checkpoint, config: ToyBackbone())


def _args(setup, out, *extra):
    return ["refine", "--lora", setup["lora"], "--photos", setup["photos"], "--checkpoint", setup["checkpoint"],
            "--face-models", setup["faces"], "--provider", "CPU", "--resolution", 32, "--steps", 4, "--lr", 1e-3,
            "--device", "cpu", "--log-every", 2, "--validate", 0, "--out", out, *extra]


def test_refine_writes_a_lora_with_the_input_keys_and_prints_the_loss(setup, toy_backbone, capsys, tmp_path):
    out = tmp_path / "me_refined.safetensors"
    code, stdout, err = run(capsys, *_args(setup, out, "--extra-rank", 2))
    assert code == 0, err
    assert "step 2/4: loss" in stdout and "step 4/4: loss" in stdout and f"Wrote {out}" in stdout
    given, refined = load_file(str(setup["lora"])), load_file(str(out))
    assert set(refined) == set(given)
    key = next(k for k in given if k.endswith(".lora_down.weight"))
    assert refined[key].shape[0] == given[key].shape[0] + 2


def test_an_existing_output_is_never_overwritten(setup, toy_backbone, capsys, tmp_path):
    out = tmp_path / "taken.safetensors"
    out.write_bytes(b"mine")
    code, _, err = run(capsys, *_args(setup, out))
    assert code == 1 and "already exists and will not be overwritten" in one_line_error(err)
    assert out.read_bytes() == b"mine"
    code, _, err = run(capsys, *_args(setup, setup["lora"]))
    assert code == 1 and "already exists" in one_line_error(err)


@pytest.mark.parametrize("extra, message", [
    (("--steps", 0), "steps must be a whole number from 1"),
    (("--lr", 5), "learning_rate 5.0 is out of range"),
])
def test_bad_settings_are_refused_before_any_work(setup, toy_backbone, capsys, tmp_path, extra, message):
    out = tmp_path / "x.safetensors"
    code, _, err = run(capsys, *_args(setup, out, *extra))
    assert code == 1 and message in one_line_error(err)
    assert not out.exists()


def test_a_lora_that_is_not_an_id_lora_is_named(setup, toy_backbone, capsys, tmp_path):
    ordinary = tmp_path / "ordinary.safetensors"
    save_file({"lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(4, 8),
               "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": torch.zeros(8, 4),
               "lora_te1_text_model_encoder_layers_0_mlp_fc1.alpha": torch.tensor(4.0)}, str(ordinary))
    args = _args(setup, tmp_path / "x.safetensors")
    args[args.index("--lora") + 1] = ordinary
    code, _, err = run(capsys, *args)
    assert code == 1 and "text-encoder layers" in one_line_error(err) and "lora_te1" in err


def test_a_photo_without_a_face_is_named(setup, toy_backbone, capsys, tmp_path):
    args = _args(setup, tmp_path / "x.safetensors")
    args[args.index("--photos") + 1] = setup["root"] / "blank.png"
    code, _, err = run(capsys, *args)
    assert code == 1 and "No face was found in" in one_line_error(err) and "blank.png" in err
    assert not (tmp_path / "x.safetensors").exists()


def test_likeness_before_and_after_is_printed_for_fixed_prompts(setup, toy_backbone, capsys, tmp_path, monkeypatch):
    rendered = []

    def render(backbone, lora, prompts, resolution, steps):
        rendered.append((dict(lora), list(prompts)))
        return [np.asarray(Image.open(setup["photos"] / "p0.png").convert("RGB"))] * len(prompts)

    monkeypatch.setattr(refine_command, "render_pictures", render)
    out = tmp_path / "validated.safetensors"
    args = _args(setup, out)
    args[args.index("--validate") + 1] = 2
    code, stdout, err = run(capsys, *args)
    assert code == 0, err
    assert "Likeness to the photos (ArcFace), generated -> refined, 2 picture(s):" in stdout
    assert "seed 1000: portrait photo of a person" in stdout and "mean: " in stdout
    (before, prompts_before), (after, prompts_after) = rendered
    assert prompts_before == prompts_after and prompts_before[0][0].startswith("fcsks fxhks fhyks, ")
    given = load_file(str(setup["lora"]))
    assert all(torch.equal(before[k], given[k]) for k in given)
    assert any(not torch.equal(after[k], given[k]) for k in given)
