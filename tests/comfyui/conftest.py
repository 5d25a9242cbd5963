"""Real-ComfyUI tier: `COMFYUI_DIR=/path/to/ComfyUI python -m pytest tests/comfyui` with the Python
that runs that ComfyUI (it needs torch and ComfyUI's requirements, plus insightface, onnxruntime and
onnx for the tiny face models). Without COMFYUI_DIR every test here is skipped.

One ComfyUI server is started for the session with `--cpu` on a free local port and a base
directory of its own (custom_nodes holds links to this pack and to tests/comfyui/test_pack; models
holds the tiny models made below; output/loras is also a LoRA folder, so a saved LoRA loads in
LoraLoaderModelOnly), and stopped at the end.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from hls_comfy import CHECKPOINT_NAME, COMFYUI_DIR, HERE, PACK_DIR_NAME, ROOT, TEST_PACK, stop_process

START_TIMEOUT = 300
RUN_TIMEOUT = 600

# Photos the shipped workflows name, and one without a face. (file name, face marker seed or None)
PHOTOS = {"person.jpg": 0, "person_1.jpg": 1, "person_2.jpg": 2, "person_3.jpg": 3,
          "person_a.jpg": 4, "person_b.jpg": 5, "target_photo.jpg": 6, "no_face.png": None}


def pytest_collection_modifyitems(config, items):
    if COMFYUI_DIR:
        return
    skip = pytest.mark.skip(reason="set COMFYUI_DIR to a ComfyUI checkout to run the real-ComfyUI tier")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _photo(seed: int | None) -> np.ndarray:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_face_models import draw_face

    rng = np.random.default_rng(100 + (seed or 0))
    img = (rng.random((448, 384, 3)) * 110).astype(np.uint8)
    if seed is not None:
        x0 = 120 + 8 * seed
        draw_face(img, (x0, 150, x0 + 110, 290), slot=0, ring=8)
        img[160:280, x0 + 10:x0 + 100] = rng.integers(0, 200, (120, 90, 3), dtype=np.uint8)
    return img


def build_models(base: Path) -> None:
    """The tiny models in the layouts users have: the reference pack's folder for the checkpoint."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(TEST_PACK))
    from checkpoints import make_release_folder
    from hyperlora_core.model.checkpoint import ModuleSpec
    from tiny_face_models import make_tiny_antelopev2
    from tiny_sdxl import hyperlora_modules
    from PIL import Image

    models = base / "models"
    modules = [ModuleSpec(name, hidden, cross) for name, hidden, cross in hyperlora_modules()]
    make_release_folder(models / "hyper_lora" / "hyper_lora" / CHECKPOINT_NAME, modules, hyper_dim=32,
                        dim=64, depth=1, inner=64, seed=11)
    make_tiny_antelopev2(models / "insightface" / "models" / "antelopev2")
    # The reference's CLIP location: listed by the core 'Load CLIP Vision' through our folder registration.
    clip_dir = models / "hyper_lora" / "clip_vit" / "clip_vit_large_14"
    clip_dir.mkdir(parents=True)
    (clip_dir / "model.safetensors").write_bytes(b"")
    # The name README and the shipped workflows use (ComfyUI Manager's), in the core folder.
    (models / "clip_vision").mkdir(parents=True)
    (models / "clip_vision" / "clip-vit-large-patch14.safetensors").write_bytes(b"")
    (base / "input").mkdir(parents=True, exist_ok=True)
    for name, seed in PHOTOS.items():
        Image.fromarray(_photo(seed)).save(base / "input" / name)


class Server:
    def __init__(self, url: str, base: Path, log: Path, process: subprocess.Popen):
        self.url, self.base, self.log_path, self.process = url, base, log, process

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=60) as r:
            return json.loads(r.read())

    def post_prompt(self, prompt: dict) -> str:
        body = json.dumps({"prompt": prompt, "client_id": str(uuid.uuid4())}).encode()
        req = urllib.request.Request(self.url + "/prompt", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())["prompt_id"]
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"/prompt refused the prompt: {exc.read().decode(errors='replace')}") from None

    def run(self, prompt: dict, timeout: float = RUN_TIMEOUT) -> dict:
        """Queue a prompt and wait for its history entry: {"outputs": ..., "status": ...}."""
        return self.wait(self.post_prompt(prompt), timeout)

    def wait(self, prompt_id: str, timeout: float = RUN_TIMEOUT) -> dict:
        """The history entry of a queued prompt, once it has finished."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            if self.process.poll() is not None:
                raise AssertionError(f"ComfyUI exited while running the prompt:\n{self.log[-4000:]}")
            time.sleep(0.5)
        raise AssertionError(f"prompt {prompt_id} did not finish in {timeout}s:\n{self.log[-4000:]}")


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfyui_base")
    custom = base / "custom_nodes"
    custom.mkdir()
    (custom / PACK_DIR_NAME).symlink_to(ROOT, target_is_directory=True)
    (custom / "hls_test_pack").symlink_to(TEST_PACK, target_is_directory=True)
    build_models(base)
    (base / "output" / "loras").mkdir(parents=True)
    yaml = base / "extra_model_paths.yaml"
    yaml.write_text(f"hls_test:\n    base_path: {base}\n    loras: output/loras\n")
    port = _free_port()
    log = base / "server.log"
    cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--base-directory", str(base), "--extra-model-paths-config", str(yaml),
           "--disable-auto-launch", "--disable-api-nodes", "--database-url", "sqlite:///:memory:"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "w") as out:
        process = subprocess.Popen(cmd, cwd=COMFYUI_DIR, stdout=out, stderr=subprocess.STDOUT, env=env)
    srv = Server(f"http://127.0.0.1:{port}", base, log, process)
    try:
        deadline = time.time() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {process.returncode}:\n{srv.log[-6000:]}")
            try:
                srv.get("/system_stats")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.time() > deadline:
                    raise RuntimeError(f"ComfyUI did not start in {START_TIMEOUT}s:\n{srv.log[-6000:]}") from None
                time.sleep(1)
        yield srv
    finally:
        stop_process(process, timeout=30)


@pytest.fixture(scope="session")
def object_info(server):
    return server.get("/object_info")
