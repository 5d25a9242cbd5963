import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The nodes are written against ComfyUI's comfy_api (V3 schema). The real-ComfyUI tier
# (COMFYUI_DIR set) uses ComfyUI's own; the CI tier uses the stand-in in tests/standin, which that
# tier checks against the real one (tests/comfyui/test_v3_schema.py). Run the two tiers as separate
# pytest commands, as README says.
API = os.environ.get("COMFYUI_DIR") or str(ROOT / "tests" / "standin")
for path in (ROOT, ROOT / "tests", API):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from checkpoints import make_release_folder  # noqa: E402


@pytest.fixture(scope="session")
def release_folder(tmp_path_factory) -> Path:
    """A random fp16 checkpoint in the release layout with the full-size resampler and Base-LoRA."""
    return make_release_folder(tmp_path_factory.mktemp("release") / "sdxl_hyper_id_lora_v1_test", with_base=True)


@pytest.fixture(scope="session")
def id_only_folder(tmp_path_factory) -> Path:
    """Like the released v1 variants: no Base-LoRA weights (a narrow resampler keeps it small)."""
    return make_release_folder(tmp_path_factory.mktemp("release") / "sdxl_hyper_id_lora_v1_small",
                               dim=128, depth=2, inner=128, seed=3)


@pytest.fixture
def small_folder(tmp_path) -> Path:
    """A fresh small checkpoint each test may damage."""
    return make_release_folder(tmp_path / "ckpt", dim=64, depth=1, inner=64, hyper_dim=16, seed=5)


@pytest.fixture
def folder(small_folder) -> Path:
    """The small checkpoint under the name the bad-file tests give it."""
    return small_folder


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small HyperLoRA (no Base-LoRA) loaded once per test file, for tests that only read it."""
    from hyperlora_core import HyperLoRA

    return HyperLoRA.from_pretrained(
        make_release_folder(tmp_path_factory.mktemp("m") / "c", dim=64, depth=1, inner=64, hyper_dim=16))


@pytest.fixture(scope="module")
def antelopev2(tmp_path_factory) -> Path:
    """The tiny stand-ins for insightface's antelopev2 models (tests/tiny_face_models.py), per test file."""
    from tiny_face_models import make_tiny_antelopev2

    return make_tiny_antelopev2(tmp_path_factory.mktemp("insightface") / "models" / "antelopev2")


@pytest.fixture(scope="module")
def analyzer(antelopev2):
    """A face analyzer on the tiny models, on the CPU."""
    from hyperlora_core.face import FaceAnalyzer

    return FaceAnalyzer(antelopev2, provider="CPU")


@pytest.fixture
def hub(monkeypatch):
    """The fake Hugging Face Hub of tests/fake_hub.py serving download_harness.fake_repos(), as HF_ENDPOINT."""
    from download_harness import fake_repos
    from fake_hub import serving

    with serving(monkeypatch, fake_repos()) as fake:
        yield fake


@pytest.fixture
def models(tmp_path) -> Path:
    """An empty ComfyUI/models folder for the download command to fill."""
    folder = tmp_path / "ComfyUI" / "models"
    folder.mkdir(parents=True)
    return folder
