"""`python -m hyperlora_core generate` (cli/generate.py) end to end on small models the tests make, and
its errors: one line, exit code 1. Usage errors and help of every command: tests/test_cli_app.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from checkpoints import make_release_folder
from cli_run import one_line_error, run
from hyperlora_core import TRIGGER_WORDS, HyperLoRA, IdentityFeatures
from hyperlora_core.features.clip import ClipVisionEncoder
from hyperlora_core.constants import KOHYA_SUFFIX, VARIANTS
from hyperlora_core.face import FaceAnalyzer
from tiny_clip import make_tiny_clip
from tiny_face_models import draw_face, make_tiny_antelopev2

FIDELITY = VARIANTS[0]


def _photo(path: Path, boxes, seed: int, size=(300, 260)) -> Path:
    """A noisy photo with face markers (see tiny_face_models) at ``boxes`` [(box, slot), ...]."""
    rng = np.random.default_rng(seed)
    image = (rng.random((*size, 3)) * 200).astype(np.uint8)  # below the marker colours' range
    for box, slot in boxes:
        draw_face(image, box, slot=slot, ring=6)
    Image.fromarray(image).save(path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    models = root / "ComfyUI" / "models"
    make_release_folder(models / "hyperlora" / FIDELITY, dim=64, depth=1, inner=64, hyper_dim=16, seed=5)
    make_tiny_clip(models / "hyper_lora" / "clip_vit" / "clip_vit_large_14")
    make_tiny_antelopev2(models / "insightface" / "models" / "antelopev2")
    photos = root / "photos"
    photos.mkdir()
    one = _photo(photos / "one.png", [((70, 80, 180, 210), 0)], seed=1)
    two = _photo(photos / "two.png", [((90, 60, 200, 200), 0)], seed=2)
    pair = _photo(photos / "pair.png", [((10, 80, 110, 200), 1), ((150, 70, 270, 220), 0)], seed=3, size=(300, 300))
    blank = root / "blank.png"
    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(blank)
    return {"root": root, "models": models, "one": one, "two": two, "pair": pair, "blank": blank}


def api_lora(setup, photos, clip=None) -> dict[str, torch.Tensor]:
    """The same LoRA through the Python API: face pipeline, CLIP encoder, HyperLoRA."""
    models = setup["models"]
    faces = FaceAnalyzer(models / "insightface" / "models" / "antelopev2").analyze([str(p) for p in photos])
    encoder = ClipVisionEncoder.load(clip or models / "hyper_lora" / "clip_vit" / "clip_vit_large_14")
    tokens = encoder.encode_crops([f.clip_crop for f in faces])
    arcface = torch.stack([torch.from_numpy(f.arcface_embedding) for f in faces])
    network = HyperLoRA.from_pretrained(models / "hyperlora" / FIDELITY, dtype=torch.float16)
    return network.generate_id_lora(arcface / arcface.norm(dim=-1, keepdim=True), tokens)


def assert_same_lora(written: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    """Same keys and dtypes, same values up to one float16 rounding step: CPU kernels may sum in
    another order when the same numbers sit at another memory alignment (a tensor read from a file)."""
    assert set(written) == set(reference)
    for key, tensor in reference.items():
        assert written[key].dtype == tensor.dtype, key
        torch.testing.assert_close(written[key], tensor, rtol=2**-10, atol=1e-5, msg=key)


def expected_keys(setup) -> set[str]:
    modules = json.loads((setup["models"] / "hyperlora" / FIDELITY / "hyper_lora_modules.json").read_text())
    return {f"{m}_{s}.{t}" for m in modules for s in KOHYA_SUFFIX.values()
            for t in ("lora_down.weight", "lora_up.weight", "alpha")}


# --------------------------------------------------------------------------------------------
# generate


def test_lora_file_has_the_checkpoints_keys_and_equals_the_python_api(setup, capsys, tmp_path):
    out = tmp_path / "me.safetensors"
    code, stdout, err = run(capsys, "generate", "--photos", setup["one"], setup["two"], "--out", out,
                            "--models-dir", setup["models"], "--device", "cpu")
    assert code == 0, err
    written = load_file(str(out))
    assert set(written) == expected_keys(setup)
    reference = api_lora(setup, [setup["one"], setup["two"]])
    assert_same_lora(written, reference)
    assert all(t.dtype == torch.float16 for t in written.values())
    with safe_open(str(out), "pt") as handle:
        meta = handle.metadata()
    assert meta["hyperlora.trigger_words"] == TRIGGER_WORDS
    assert meta["hyperlora.num_photos"] == "2"
    assert meta["ss_network_module"] == "networks.lora"


def test_generate_names_the_face_used_in_each_photo_and_the_trigger_words(setup, capsys, tmp_path):
    code, out, err = run(capsys, "generate", "--photos", setup["one"], setup["pair"], setup["blank"],
                         "--out", tmp_path / "x.safetensors", "--models-dir", setup["models"], "--skip-no-face")
    assert code == 0, err
    assert "one.png: 1 face" in out
    assert "pair.png: 2 faces, using face 1 counted from the left" in out
    assert "blank.png: no face found (200x200), left out (--skip-no-face)" in out
    assert TRIGGER_WORDS.strip() in out
    assert "from 2 photo(s)" in out


def test_photo_without_a_face_stops_the_command_and_names_the_file(setup, capsys, tmp_path):
    out = tmp_path / "x.safetensors"
    code, stdout, err = run(capsys, "generate", "--photos", setup["one"], setup["blank"], "--out", out,
                            "--models-dir", setup["models"])
    assert code == 1
    assert f"No face was found in {setup['blank']} (200x200)" in one_line_error(err)
    assert "--skip-no-face" in err
    assert "Encoding" not in stdout and not out.exists()


def test_face_index_beyond_the_faces_of_a_photo_names_the_file(setup, capsys, tmp_path):
    code, _, err = run(capsys, "generate", "--photos", setup["one"], "--face", "3",
                       "--out", tmp_path / "x.safetensors", "--models-dir", setup["models"])
    assert code == 1
    assert f"{setup['one']}: this photo has 1 face(s)" in one_line_error(err)


def test_models_in_the_default_folder_are_found_without_models_dir(setup, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(setup["root"] / "ComfyUI")  # ./models is the default, as for download
    out = tmp_path / "default.safetensors"
    code, _, err = run(capsys, "generate", "--photos", setup["one"], "--out", out)
    assert code == 0, err
    assert out.is_file()


def test_face_index_picks_the_face_counted_from_the_left(setup, capsys, tmp_path):
    code, out, err = run(capsys, "generate", "--photos", setup["pair"], "--face", "0",
                         "--out", tmp_path / "x.safetensors", "--models-dir", setup["models"])
    assert code == 0, err
    assert "pair.png: 2 faces, using face 0 counted from the left (by index" in out


def test_a_folder_of_photos_stands_for_its_images(setup, capsys, tmp_path):
    out = tmp_path / "folder.safetensors"
    code, stdout, err = run(capsys, "generate", "--photos", setup["root"] / "photos", "--out", out,
                            "--models-dir", setup["models"])
    assert code == 0, err
    assert "Finding faces in 3 photo(s)" in stdout


def test_saved_identity_gives_the_same_lora_without_photos(setup, capsys, tmp_path):
    first, second, ident = tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "id.safetensors"
    args = ("--out", first, "--models-dir", setup["models"], "--save-identity", ident)
    assert run(capsys, "generate", "--photos", setup["one"], setup["two"], *args)[0] == 0
    identity = IdentityFeatures.load(ident)
    assert identity.num_photos == 2 and identity.base_clip_tokens is None  # not asked for
    assert identity.sources == ["one.png", "two.png"]
    # No face models or CLIP needed now.
    code, out, err = run(capsys, "generate", "--identity", ident, "--out", second,
                         "--hyperlora", setup["models"] / "hyperlora" / FIDELITY)
    assert code == 0, err
    assert_same_lora(load_file(str(second)), load_file(str(first)))


def test_single_clip_vision_file_gives_the_same_lora(setup, capsys, tmp_path):
    """ComfyUI's models/clip_vision/clip-vit-large-patch14.safetensors, no config.json beside it."""
    models = tmp_path / "models"
    (models / "clip_vision").mkdir(parents=True)
    shutil.copy(setup["models"] / "hyper_lora" / "clip_vit" / "clip_vit_large_14" / "model.safetensors",
                models / "clip_vision" / "clip-vit-large-patch14.safetensors")
    (models / "hyper_lora" / "hyper_lora").mkdir(parents=True)  # the reference pack's layout
    (models / "hyper_lora" / "hyper_lora" / FIDELITY).symlink_to(setup["models"] / "hyperlora" / FIDELITY)
    (models / "insightface").symlink_to(setup["models"] / "insightface")
    out = tmp_path / "single.safetensors"
    code, stdout, err = run(capsys, "generate", "--photos", setup["one"], "--out", out, "--models-dir", models)
    assert code == 0, err
    assert "clip-vit-large-patch14.safetensors" in stdout
    reference = api_lora(setup, [setup["one"]])
    assert_same_lora(load_file(str(out)), reference)


# --------------------------------------------------------------------------------------------
# bad inputs: one line, exit code 1


def test_existing_output_is_never_overwritten(setup, capsys, tmp_path):
    out = tmp_path / "taken.safetensors"
    out.write_bytes(b"keep me")
    code, _, err = run(capsys, "generate", "--photos", setup["one"], "--out", out, "--models-dir", setup["models"])
    assert code == 1 and "already exists" in one_line_error(err)
    assert out.read_bytes() == b"keep me"


def test_no_face_in_any_photo_is_one_line(setup, capsys, tmp_path):
    out = tmp_path / "x.safetensors"
    code, _, err = run(capsys, "generate", "--photos", setup["blank"], "--out", out, "--models-dir", setup["models"],
                       "--skip-no-face")
    assert code == 1 and f"No face was found in any of the photos ({setup['blank']})" in one_line_error(err)
    assert not out.exists()


def test_unwritable_out_folder_is_refused_before_any_model_loads(setup, capsys):
    folder = Path("/sys/kernel")
    try:
        (folder / "hyperlora-probe").touch()
    except OSError:
        pass
    else:
        pytest.skip("/sys/kernel is writable here")
    code, out, err = run(capsys, "generate", "--photos", setup["one"], "--out", folder / "x.safetensors",
                         "--models-dir", setup["models"])
    assert code == 1 and "cannot write into the folder of --out" in one_line_error(err)
    assert "Finding faces" not in out


def test_out_folder_that_is_a_file_is_named_as_such(setup, capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    code, _, err = run(capsys, "generate", "--photos", setup["one"], "--out", tmp_path / "notes.txt" / "x.safetensors",
                       "--models-dir", setup["models"])
    assert code == 1 and "is a file, not a folder" in one_line_error(err)


def test_a_device_given_as_a_photo_is_not_called_missing(setup, capsys, tmp_path):
    code, _, err = run(capsys, "generate", "--photos", "/dev/zero", "--out", tmp_path / "x.safetensors",
                       "--models-dir", setup["models"])
    assert code == 1 and "/dev/zero is not a regular file" in one_line_error(err)


def test_missing_photo_is_named(setup, capsys, tmp_path):
    code, _, err = run(capsys, "generate", "--photos", tmp_path / "nope.jpg", "--out", tmp_path / "x.safetensors",
                       "--models-dir", setup["models"])
    assert code == 1 and "nope.jpg" in one_line_error(err)


def test_file_that_is_not_an_image_is_named(setup, capsys, tmp_path):
    fake = tmp_path / "notes.jpg"
    fake.write_text("not a photo")
    code, _, err = run(capsys, "generate", "--photos", fake, "--out", tmp_path / "x.safetensors",
                       "--models-dir", setup["models"])
    assert code == 1 and "notes.jpg" in one_line_error(err)


def test_models_dir_without_the_models_says_how_to_get_them(setup, capsys, tmp_path):
    empty = tmp_path / "models"
    empty.mkdir()
    code, _, err = run(capsys, "generate", "--photos", setup["one"], "--out", tmp_path / "x.safetensors",
                       "--models-dir", empty)
    assert code == 1 and "download --models-dir" in one_line_error(err)


def test_wrong_clip_model_is_refused(setup, capsys, tmp_path):
    clip = tmp_path / "vit_h.safetensors"
    from safetensors.torch import save_file

    save_file({"vision_model.embeddings.patch_embedding.weight": torch.zeros(1280, 3, 14, 14),
               "vision_model.embeddings.position_embedding.weight": torch.zeros(257, 1280),
               "vision_model.encoder.layers.0.mlp.fc1.weight": torch.zeros(64, 1280)}, str(clip))
    code, _, err = run(capsys, "generate", "--photos", setup["one"], "--out", tmp_path / "x.safetensors",
                       "--models-dir", setup["models"], "--clip", clip)
    assert code == 1 and "width 1280" in one_line_error(err)


def test_debug_shows_the_traceback(setup, capsys, tmp_path):
    code, _, err = run(capsys, "generate", "--photos", setup["blank"], "--out", tmp_path / "x.safetensors",
                       "--models-dir", setup["models"], "--debug")
    assert code == 1
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("error: No face was found")


def test_generate_without_models_says_where_it_looked_and_how_to_get_them(setup, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "generate", "--photos", setup["one"], "--out", tmp_path / "x.safetensors")
    assert code == 1
    assert f"the models folder {tmp_path / 'models'} (the default" in one_line_error(err)
    assert "download' first" in err


def test_unknown_face_choice_is_reported_before_loading_anything(setup, capsys, tmp_path):
    code, _, err = run(capsys, "generate", "--photos", setup["one"], "--out", tmp_path / "x.safetensors",
                       "--models-dir", setup["models"], "--face", "biggest")
    assert code == 1 and "biggest" in one_line_error(err)


def _checked_photos(folder: Path) -> list[Path]:
    """Three photos with wide faces and one with a face 60 px wide (flagged by the photo check)."""
    folder.mkdir()
    return [_photo(folder / "a.png", [((60, 60, 220, 240), 0)], seed=1, size=(320, 300)),
            _photo(folder / "b.png", [((70, 50, 230, 240), 0)], seed=2, size=(320, 300)),
            _photo(folder / "c.png", [((80, 70, 240, 250), 0)], seed=3, size=(320, 300)),
            _photo(folder / "small.png", [((100, 100, 160, 170), 0)], seed=4, size=(320, 300))]


def test_generate_prints_the_photo_check_and_keeps_every_photo_by_default(setup, capsys, tmp_path):
    photos = _checked_photos(tmp_path / "photos")
    code, out, err = run(capsys, "generate", "--photos", *photos, "--out", tmp_path / "x.safetensors",
                         "--models-dir", setup["models"])
    assert code == 0, err
    assert "Photo check:" in out and "small.png: the face is 60 px wide; 112 px or more works best" in out
    assert "1 of 4 photo(s) flagged; all kept (photo check: keep)" in out and "from 4 photo(s)" in out


@pytest.mark.parametrize("action,photos,weights", [("drop", ["a.png", "b.png", "c.png"], [1 / 3] * 3),
                                                   ("downweight", ["a.png", "b.png", "c.png", "small.png"],
                                                    [1 / 3.25, 1 / 3.25, 1 / 3.25, 0.25 / 3.25])])
def test_generate_drops_or_downweights_flagged_photos_and_says_so_in_json(setup, capsys, tmp_path, action, photos,
                                                                          weights):
    files = _checked_photos(tmp_path / "photos")
    identity = tmp_path / "me.safetensors"
    code, out, err = run(capsys, "generate", "--photos", *files, "--out", tmp_path / "x.safetensors",
                         "--save-identity", identity, "--models-dir", setup["models"], "--photo-check", action,
                         "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["photos"] == photos and data["weights"] == pytest.approx(weights, abs=1e-4)
    check = data["photo_check"]
    assert check["action"] == action and [p["flagged"] for p in check["photos"]] == [False, False, False, True]
    saved = IdentityFeatures.load(identity)
    assert saved.sources == photos
    assert torch.allclose(saved.weights, torch.tensor(weights), atol=1e-6)
