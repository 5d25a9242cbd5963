"""face/models.py: loading antelopev2 through insightface's model_zoo (never downloading), the files a
folder must hold, and the ONNX Runtime providers.

The real antelopev2 weights are not available to CI, so the models are the tiny stand-ins of
``tiny_face_models`` (real insightface ``model_zoo`` loading and real ONNX Runtime sessions)."""

from __future__ import annotations

import logging
import shutil

import pytest

from face_photos import photo
from hyperlora_core.errors import FaceModelError, InputError
from hyperlora_core.face import FaceAnalyzer
from hyperlora_core.face.models import find_antelopev2, load_face_models, resolve_providers
from tiny_face_models import draw_face

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


# -- loading the models ----------------------------------------------------------------------


def test_tiny_models_load_through_insightface_model_zoo_like_the_real_ones(antelopev2):
    models = load_face_models(antelopev2, "CPU")
    assert type(models.detector).__name__ == "SCRFD" and models.detector.use_kps
    assert models.detector.fmc == 3 and models.detector._num_anchors == 2
    assert models.landmarks.taskname == "landmark_2d_106"
    assert models.recognition.taskname == "recognition"
    assert models.providers == [CPU]
    # The decoy 1k3d68.onnx / genderage.onnx are not ONNX: loading them would have failed.
    assert (antelopev2 / "genderage.onnx").read_bytes().startswith(b"not an onnx")


def test_missing_folder_lists_the_files_and_where_to_get_them(tmp_path):
    with pytest.raises(FaceModelError) as error:
        FaceAnalyzer(tmp_path / "nowhere")
    message = str(error.value)
    for name in ("scrfd_10g_bnkps.onnx", "2d106det.onnx", "glintr100.onnx"):
        assert name in message
    assert "models/insightface/models/antelopev2" in message and "does not exist" in message


def test_incomplete_folder_names_the_missing_file(antelopev2, tmp_path):
    folder = tmp_path / "antelopev2"
    shutil.copytree(antelopev2, folder)
    (folder / "glintr100.onnx").unlink()
    with pytest.raises(FaceModelError, match=r"incomplete: glintr100\.onnx missing"):
        load_face_models(folder)


def test_damaged_model_file_is_a_face_model_error(antelopev2, tmp_path):
    folder = tmp_path / "antelopev2"
    shutil.copytree(antelopev2, folder)
    (folder / "2d106det.onnx").write_bytes(b"\x00" * 100)
    analyzer = FaceAnalyzer(folder, provider="CPU")  # models load lazily
    with pytest.raises(FaceModelError, match=r"2d106det\.onnx could not be loaded.*download"):
        analyzer.analyze(draw_face(photo(), (100, 100, 220, 240)))


def test_a_model_in_the_wrong_place_is_named(antelopev2, tmp_path):
    folder = tmp_path / "antelopev2"
    shutil.copytree(antelopev2, folder)
    shutil.copy(folder / "2d106det.onnx", folder / "glintr100.onnx")
    with pytest.raises(FaceModelError, match="should be the antelopev2 recognition model but looks like landmark_2d_106"):
        load_face_models(folder, "CPU")


def test_comfyui_insightface_folder_and_nested_zip_folder_are_accepted(antelopev2, tmp_path):
    insightface_root = antelopev2.parent.parent
    assert find_antelopev2(insightface_root) == antelopev2
    nested = tmp_path / "antelopev2" / "antelopev2"
    shutil.copytree(antelopev2, nested)
    assert find_antelopev2(tmp_path / "antelopev2") == nested


def test_insightface_is_never_asked_to_download(antelopev2, monkeypatch):
    import insightface.utils.storage as storage
    from insightface.model_zoo import model_zoo

    def forbidden(*args, **kwargs):
        raise AssertionError("insightface tried to download")

    monkeypatch.setattr(storage, "download", forbidden)
    monkeypatch.setattr(storage, "download_onnx", forbidden)
    monkeypatch.setattr(model_zoo, "download_onnx", forbidden)
    results = FaceAnalyzer(antelopev2, "CPU").analyze(draw_face(photo(), (100, 100, 220, 240)))
    assert len(results) == 1


# -- ONNX Runtime providers ------------------------------------------------------------------


def test_auto_provider_takes_cuda_when_there_and_the_cpu_otherwise():
    assert resolve_providers("auto", available=[CUDA, CPU]) == [CUDA, CPU]
    assert resolve_providers("auto", available=[CPU]) == [CPU]
    assert resolve_providers("cuda", available=[CUDA, CPU]) == [CUDA, CPU]
    assert resolve_providers("CPU", available=[CUDA, CPU]) == [CPU]
    assert resolve_providers("ROCMExecutionProvider", available=["ROCMExecutionProvider", CPU])[0] == "ROCMExecutionProvider"


def test_unavailable_provider_falls_back_to_cpu_with_a_warning(antelopev2, caplog):
    assert resolve_providers("CUDA", available=[CPU]) == [CPU]
    assert "CUDAExecutionProvider is not available" in caplog.text
    caplog.clear()
    import onnxruntime

    if CUDA not in onnxruntime.get_available_providers():
        with caplog.at_level(logging.WARNING):
            models = load_face_models(antelopev2, "CUDA")
        assert models.providers == [CPU]
        assert "runs on the CPU" in caplog.text


def test_provider_that_fails_to_start_is_retried_on_the_cpu(antelopev2, caplog):
    from hyperlora_core.face.models import _load_one
    from insightface.model_zoo import model_zoo

    class FailingOnGpu:
        calls = []

        def get_model(self, path, providers):
            self.calls.append(list(providers))
            if providers[0] != CPU:
                raise RuntimeError("CUDA failure 100: no CUDA-capable device")
            return model_zoo.get_model(path, providers=providers)

    fake = FailingOnGpu()
    model = _load_one(fake, antelopev2 / "glintr100.onnx", [CUDA, CPU])
    assert model.taskname == "recognition"
    assert fake.calls == [[CUDA, CPU], [CPU]]
    assert "trying the CPU" in caplog.text


def test_unknown_provider_is_an_input_error(antelopev2):
    with pytest.raises(InputError, match="Unknown ONNX Runtime provider 'Quantum'"):
        FaceAnalyzer(antelopev2, provider="Quantum")
