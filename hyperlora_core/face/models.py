"""Load the three antelopev2 models the face pipeline uses, on the ONNX Runtime provider asked for.

Only the detector (``scrfd_10g_bnkps.onnx``), the 106-point landmark model (``2d106det.onnx``) and
the recognition model (``glintr100.onnx``) are loaded, each through insightface's ``model_zoo`` by
its full path, so insightface never looks for, or downloads, anything else. The gender/age and 3-D
landmark models of the folder are not touched.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..constants import ANTELOPEV2_FILES, ANTELOPEV2_URL
from ..errors import FaceModelError, InputError

logger = logging.getLogger(__name__)

COMFYUI_FOLDER = "models/insightface/models/antelopev2"
CPU = "CPUExecutionProvider"

PROVIDER_NAMES = {
    "cpu": CPU,
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "dml": "DmlExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
PROVIDER_CHOICES = ("auto", "CPU", "CUDA", "ROCM", "CoreML", "DirectML", "OpenVINO", "TensorRT")


@dataclass
class FaceModels:
    """The loaded insightface models and the providers they really run on."""

    detector: Any  # insightface.model_zoo.SCRFD
    landmarks: Any  # insightface.model_zoo.Landmark (landmark_2d_106)
    recognition: Any  # insightface.model_zoo.ArcFaceONNX
    folder: Path
    providers: list[str]


def find_antelopev2(folder: str | os.PathLike) -> Path:
    """Return the folder holding the antelopev2 files, or raise :class:`FaceModelError`.

    Besides the antelopev2 folder itself, accepts ComfyUI's ``models/insightface`` folder (the
    files are then in ``models/antelopev2`` below it) and the nested ``antelopev2/antelopev2`` that
    unpacking the official zip inside the folder gives.
    """
    folder = Path(folder).expanduser()
    candidates = [
        folder,
        folder / "antelopev2",
        folder / "models" / "antelopev2",
        folder / "antelopev2" / "antelopev2",
    ]
    for candidate in candidates:
        if all((candidate / name).is_file() for name in ANTELOPEV2_FILES.values()):
            return candidate
    best = next((c for c in candidates if c.is_dir() and any(c.glob("*.onnx"))), None)
    if best is None:
        problem = (
            f"The insightface antelopev2 folder {folder} does not exist."
            if not folder.exists()
            else f"No antelopev2 models were found in {folder}."
        )
    else:
        missing = [name for name in ANTELOPEV2_FILES.values() if not (best / name).is_file()]
        problem = f"The antelopev2 folder {best} is incomplete: {', '.join(missing)} missing."
    raise FaceModelError(
        f"{problem} The face pipeline needs {', '.join(ANTELOPEV2_FILES.values())} "
        f"(the antelopev2 pack also holds 1k3d68.onnx and genderage.onnx, which are not used). "
        f"Put the antelopev2 files in ComfyUI/{COMFYUI_FOLDER}/ ; they come from {ANTELOPEV2_URL}."
    )


def provider_name(provider: str) -> str:
    """The full ONNX Runtime name of ``provider`` ("auto" stays "auto"); InputError if unknown."""
    key = str(provider).strip()
    if key.lower() == "auto":
        return "auto"
    if key.endswith("ExecutionProvider"):
        return key
    if key.lower() in PROVIDER_NAMES:
        return PROVIDER_NAMES[key.lower()]
    raise InputError(
        f"Unknown ONNX Runtime provider {provider!r}: choose one of {', '.join(PROVIDER_CHOICES)}."
    )


def resolve_providers(provider: str = "auto", available: Sequence[str] | None = None) -> list[str]:
    """ONNX Runtime providers to ask for: ``provider`` first (if it can run here), then the CPU.

    ``provider`` is ``"auto"`` (CUDA when ONNX Runtime has it, else CPU), a short name such as
    ``"CUDA"``, ``"ROCM"``, ``"CoreML"``, ``"DirectML"`` (any case), or a full ONNX Runtime name
    such as ``"CUDAExecutionProvider"``. A provider that this ONNX Runtime lacks gives a warning
    and the CPU.
    """
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    wanted = provider_name(provider)
    if wanted == "auto":
        wanted = "CUDAExecutionProvider" if "CUDAExecutionProvider" in available else CPU
    if wanted != CPU and wanted not in available:
        logger.warning(
            "ONNX Runtime provider %s is not available here (available: %s); face analysis "
            "runs on the CPU. For CUDA install onnxruntime-gpu in place of onnxruntime.",
            wanted, ", ".join(available),
        )
        return [CPU]
    return [wanted] if wanted == CPU else [wanted, CPU]


def load_face_models(folder: str | os.PathLike, provider: str = "auto") -> FaceModels:
    """Load detector, landmark and recognition models from an antelopev2 folder."""
    folder = find_antelopev2(folder)
    providers = resolve_providers(provider)
    try:
        from insightface.model_zoo import model_zoo
    except ImportError as error:
        raise FaceModelError(
            f"insightface cannot be imported ({error}). Install it with "
            "`pip install insightface onnxruntime` (on Windows a prebuilt wheel may be needed)."
        ) from error

    models = {}
    for task, name in ANTELOPEV2_FILES.items():
        path = folder / name
        model = _load_one(model_zoo, path, providers)
        if model is None or getattr(model, "taskname", None) != task:
            found = getattr(model, "taskname", "nothing insightface recognises")
            raise FaceModelError(
                f"{path} should be the antelopev2 {task} model but looks like {found}. "
                f"Download the antelopev2 pack again from {ANTELOPEV2_URL}."
            )
        models[task] = model

    used = list(models["detection"].session.get_providers())
    if providers[0] != CPU and providers[0] not in used:
        logger.warning(
            "ONNX Runtime could not start %s (its libraries may be missing); face analysis runs on "
            "%s.", providers[0], ", ".join(used),
        )
    logger.info("Loaded antelopev2 face models from %s on %s", folder, ", ".join(used))
    return FaceModels(
        detector=models["detection"],
        landmarks=models["landmark_2d_106"],
        recognition=models["recognition"],
        folder=folder,
        providers=used,
    )


def _load_one(model_zoo, path: Path, providers: list[str]):
    try:
        return model_zoo.get_model(str(path), providers=providers)
    except Exception as error:  # ONNX Runtime raises its own exception types
        if providers != [CPU]:
            logger.warning(
                "Loading %s on %s failed (%s); trying the CPU.", path.name, providers[0], error
            )
            try:
                return model_zoo.get_model(str(path), providers=[CPU])
            except Exception as cpu_error:
                error = cpu_error
        raise FaceModelError(
            f"{path} could not be loaded ({type(error).__name__}: {error}). The file may be "
            f"damaged or partly downloaded: download the antelopev2 pack again from {ANTELOPEV2_URL}."
        ) from error
