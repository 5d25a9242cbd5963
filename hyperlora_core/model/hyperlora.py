"""`HyperLoRA`: a loaded release folder that turns face features into LoRA weights."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import (
    ModuleSpec,
    SafetensorsFile,
    check_modules_file,
    check_release_folder,
    read_modules,
)
from ..constants import (
    ARCFACE_DIM,
    BASE_RESAMPLER_WEIGHTS,
    CLIP_TOKENS,
    HF_URL,
    ID_PROJECTOR_WEIGHTS,
    MODULES_JSON,
    MODULES_WEIGHTS,
    RESAMPLER_WEIGHTS,
    TOKENS_PER_MODULE,
)
from ..errors import CheckpointError, HyperLoRAError, InputError
from .hypernet import IDProjector, Resampler
from ..finite import check_module_finite
from .lora import BasisBank, NonFiniteLoRA

log = logging.getLogger(__name__)

DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "float16": torch.float16, "fp16": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}
NORM_EPS = 1e-8


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.lower() in DTYPES:
        return DTYPES[dtype.lower()]
    raise HyperLoRAError(f"Unsupported dtype {dtype!r}: use float32, float16 or bfloat16.")


def resolve_device(device: torch.device | str) -> torch.device:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise HyperLoRAError(f"Unknown device {device!r}: use 'cpu' or 'cuda' (or 'cuda:N').") from exc
    if device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise HyperLoRAError(f"Device {str(device)!r} cannot run HyperLoRA (it holds no real weights or is not a "
                             "compute device): use 'cpu' or 'cuda' (or 'cuda:N').")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HyperLoRAError(f"Device {device} was requested but this PyTorch sees no CUDA GPU; use 'cpu'.")
    return device


def _features(value, name: str, tail: tuple[int, ...], what: str) -> torch.Tensor:
    """Check a batch of per-photo features and return it as a float tensor."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{name} must be a tensor of shape (N, {', '.join(map(str, tail))}), got {type(value).__name__}.")
    if value.dim() == len(tail) and tuple(value.shape) == tail:
        value = value.unsqueeze(0)  # a single photo without its batch dimension
    if value.dim() != len(tail) + 1 or tuple(value.shape[1:]) != tail:
        raise InputError(
            f"{name} must have shape (N, {', '.join(map(str, tail))}) ({what}), got {list(value.shape)}."
        )
    if value.shape[0] == 0:
        raise InputError(f"{name} holds no photo (N = 0): give the features of at least one face.")
    if not value.is_floating_point():
        raise InputError(f"{name} must be floating point, got {value.dtype}.")
    if not torch.isfinite(value).all():
        raise InputError(f"{name} contains NaN or infinite values; recompute the features from the photos.")
    return value


def photo_weights(weights, count: int) -> torch.Tensor:
    """Per-photo weights as float32 (count,) summing to 1 (equal when None); anything else is refused."""
    if weights is None:
        return torch.full((count,), 1.0 / count)
    try:
        if isinstance(weights, (str, bytes)):
            raise TypeError
        w = torch.as_tensor(np.asarray(weights, dtype=np.float64) if not isinstance(weights, torch.Tensor)
                            else weights, dtype=torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"weights must be numbers, one per photo (a list, array or tensor such as [1.0, 0.5]), "
                         f"got {type(weights).__name__} {str(weights)[:40]!r}.") from None
    if w.numel() != count:
        raise InputError(f"weights has {w.numel()} entries for {count} photos: give one weight per photo.")
    if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise InputError(f"weights must be finite, non-negative and not all zero, got {w.tolist()}.")
    return (w / w.sum()).float()


def normalise_coefficients(per_photo: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(N, Q, K) -> (Q, K): weighted mean over the photos, then L2 normalisation of each token."""
    mean = torch.einsum("n,nqk->qk", weights.to(per_photo), per_photo)
    return mean * torch.rsqrt(mean.pow(2).sum(-1, keepdim=True) + NORM_EPS)


class HyperLoRA(nn.Module):
    """A HyperLoRA checkpoint: ID projector, resampler(s) and the LoRA bases.

    It is an `nn.Module` whose weights are parameters and buffers, so a host application can move
    it between devices (ComfyUI wraps it in a ModelPatcher).
    """

    def __init__(self, modules: list[ModuleSpec], id_projector: IDProjector, resampler: Resampler,
                 id_bank: BasisBank, base_resampler: Resampler | None = None,
                 base_bank: BasisBank | None = None, source: str = ""):
        super().__init__()
        self.target_modules = modules
        self.id_projector = id_projector
        self.resampler = resampler
        self.id_bank = id_bank
        self.base_resampler = base_resampler
        self.base_bank = base_bank
        self.source = source

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, dtype: torch.dtype | str = torch.float32,
                        device: torch.device | str = "cpu") -> "HyperLoRA":
        """Load a release folder (spec section 1) with every key, shape, dtype and small-network weight checked."""
        if not isinstance(folder, (str, os.PathLike)) or not str(folder).strip():
            raise CheckpointError(
                f"HyperLoRA.from_pretrained needs the path of a release folder (a str or Path), got "
                f"{type(folder).__name__}{' (empty)' if isinstance(folder, str) else ''}. Download a variant folder "
                f"(e.g. sdxl_hyper_id_lora_v1_fidelity) from {HF_URL} and pass its path."
            )
        dtype = resolve_dtype(dtype)
        device = resolve_device(device)
        folder = check_release_folder(folder)
        modules = read_modules(folder / MODULES_JSON)

        weights = SafetensorsFile(folder / MODULES_WEIGHTS)
        layout = check_modules_file(weights, modules)
        id_projector = IDProjector.from_file(SafetensorsFile(folder / ID_PROJECTOR_WEIGHTS))
        resampler = Resampler.from_file(SafetensorsFile(folder / RESAMPLER_WEIGHTS), n_conds=2)
        _check_resampler(resampler, folder / RESAMPLER_WEIGHTS, len(modules), layout.hyper_dim,
                         expected_in=id_projector.width)
        if id_projector.layers[0].in_features != ARCFACE_DIM:
            raise CheckpointError(
                f"{folder / ID_PROJECTOR_WEIGHTS}: takes {id_projector.layers[0].in_features}-d embeddings, "
                f"expected ArcFace's {ARCFACE_DIM}. Download the variant folder again from {HF_URL}."
            )

        base_resampler = base_bank = None
        base_path = folder / BASE_RESAMPLER_WEIGHTS
        if base_path.is_file():
            if layout.base_rank is None:
                raise CheckpointError(
                    f"{folder} has {BASE_RESAMPLER_WEIGHTS} but {MODULES_WEIGHTS} holds no base_*_basis "
                    "tensors: the two files come from different checkpoints."
                )
            base_resampler = Resampler.from_file(SafetensorsFile(base_path), n_conds=1)
            _check_resampler(base_resampler, base_path, len(modules), layout.hyper_dim,
                             expected_in=resampler.in_dims[1])
        elif layout.base_rank is not None:
            log.warning("%s has Base-LoRA bases but no %s; Base-LoRA generation is unavailable.",
                        folder, BASE_RESAMPLER_WEIGHTS)

        id_bank = BasisBank(modules, "id", layout.hyper_dim, layout.rank, dtype, device)
        id_bank.load_from(weights)
        if base_resampler is not None:
            base_bank = BasisBank(modules, "base", layout.hyper_dim, layout.base_rank, dtype, device)
            base_bank.load_from(weights)
        model = cls(modules, id_projector, resampler, id_bank, base_resampler, base_bank, source=folder.name)
        model.path = str(folder)
        # The small networks are converted here; the banks were filled in place in their dtype. Their
        # weights are checked after the conversion, which also catches values too large for float16.
        for net, name, prefix in ((id_projector, ID_PROJECTOR_WEIGHTS, "layers."), (resampler, RESAMPLER_WEIGHTS, ""),
                                  (base_resampler, BASE_RESAMPLER_WEIGHTS, "")):
            if net is not None:
                net.to(device=device, dtype=dtype)
                check_module_finite(net, folder / name, prefix)
        log.info("Loaded HyperLoRA %s: %d modules, rank %d, hyper dim %d, %s on %s%s",
                 folder.name, len(modules), layout.rank, layout.hyper_dim, str(dtype).removeprefix("torch."),
                 device, ", with Base-LoRA" if base_bank is not None else "")
        return model.eval().requires_grad_(False)

    # -- properties ----------------------------------------------------------------------------

    @property
    def has_base_lora(self) -> bool:
        return self.base_bank is not None

    @property
    def rank(self) -> int:
        return self.id_bank.rank

    @property
    def hyper_dim(self) -> int:
        return self.id_bank.hyper_dim

    @property
    def device(self) -> torch.device:
        return self.resampler.latents.device

    @property
    def dtype(self) -> torch.dtype:
        return self.resampler.latents.dtype

    @property
    def compute_dtype(self) -> torch.dtype:
        # CPUs have no fast half arithmetic: compute in float32 on the stored half weights.
        return torch.float32 if self.device.type == "cpu" else self.dtype

    # -- generation ----------------------------------------------------------------------------

    def _clip(self, clip_tokens, width: int) -> torch.Tensor:
        return _features(clip_tokens, "clip_tokens", (CLIP_TOKENS, width),
                         "CLIP ViT-L/14 penultimate hidden states, one set per photo")

    @torch.no_grad()
    def coefficients(self, arcface_embeds, clip_tokens, weights=None) -> torch.Tensor:
        """Face features of N photos -> the normalised ID-LoRA coefficients (Q, K), float32.

        arcface_embeds: (N, 512) L2-normalised ArcFace embeddings; clip_tokens: (N, 257, 1024).
        weights: optional per-photo weights (default: all equal, the plain mean of spec 4.4).
        """
        arcface = _features(arcface_embeds, "arcface_embeds", (ARCFACE_DIM,),
                            "L2-normalised ArcFace embeddings, one per photo")
        clip = self._clip(clip_tokens, self.resampler.in_dims[1])
        if arcface.shape[0] != clip.shape[0]:
            raise InputError(
                f"arcface_embeds has {arcface.shape[0]} photos but clip_tokens has {clip.shape[0]}: "
                "both must come from the same photos, in the same order."
            )
        norms = arcface.double().norm(dim=-1)
        if ((norms - 1).abs() > 1e-2).any():
            raise InputError(
                f"arcface_embeds must be L2-normalised (norm 1), found norms {[round(n, 3) for n in norms.tolist()]}; "
                "use insightface's normed_embedding or divide each embedding by its norm."
            )
        w = photo_weights(weights, arcface.shape[0])
        cdt = self.compute_dtype
        ids = self.id_projector(arcface.to(self.device, cdt))
        per_photo = self.resampler(ids, clip.to(self.device, cdt))
        return self._finite(normalise_coefficients(per_photo.float(), w.to(self.device)), clip, "clip_tokens")

    @torch.no_grad()
    def base_coefficients(self, clip_tokens, weights=None) -> torch.Tensor:
        """CLIP tokens of N face-blurred photos -> the normalised Base-LoRA coefficients (Q, K)."""
        self._require_base()
        clip = self._clip(clip_tokens, self.base_resampler.in_dims[0])
        w = photo_weights(weights, clip.shape[0])
        per_photo = self.base_resampler(clip.to(self.device, self.compute_dtype))
        return self._finite(normalise_coefficients(per_photo.float(), w.to(self.device)), clip, "base clip_tokens")

    def _finite(self, coefficients: torch.Tensor, clip: torch.Tensor, name: str) -> torch.Tensor:
        """The small networks were checked at load, so NaN here means the inputs overflowed the arithmetic."""
        if bool(torch.isfinite(coefficients).all()):
            return coefficients
        largest = float(clip.abs().max())
        raise InputError(
            f"The face features overflowed the network's {str(self.compute_dtype).removeprefix('torch.')} arithmetic "
            f"(the largest {name} value is {largest:.3g}; CLIP ViT-L/14 tokens are usually within a few hundred), so "
            "no LoRA was made. Recompute the features from the photos with OpenAI CLIP ViT-L/14; on a GPU, "
            "float32 instead of float16 also gives more headroom."
        )

    @torch.no_grad()
    def lora_from_coefficients(self, coefficients: torch.Tensor, kind: str = "id") -> dict[str, torch.Tensor]:
        """Normalised coefficients (Q, K) -> the kohya LoRA (spec section 7), tensors on the CPU."""
        if kind == "base":
            self._require_base()
        bank = {"id": self.id_bank, "base": self.base_bank}.get(kind)
        if bank is None:
            raise HyperLoRAError(f"Unknown LoRA kind {kind!r}: use 'id' or 'base'.")
        expected = (len(self.target_modules) * TOKENS_PER_MODULE, self.hyper_dim)
        if not isinstance(coefficients, torch.Tensor):
            raise InputError(f"coefficients must be a tensor of shape {list(expected)} (from HyperLoRA.coefficients), "
                             f"got {type(coefficients).__name__}.")
        if tuple(coefficients.shape) != expected:
            raise InputError(f"coefficients must have shape {list(expected)}, got {list(coefficients.shape)}.")
        if not coefficients.is_floating_point() or not bool(torch.isfinite(coefficients).all()):
            raise InputError("coefficients must be finite floating-point numbers; compute them again with "
                             "HyperLoRA.coefficients from the face features.")
        try:
            return bank.mix(coefficients.to(self.device))
        except NonFiniteLoRA as exc:
            raise CheckpointError(
                f"The {kind.upper() if kind == 'id' else 'Base'}-LoRA made from the HyperLoRA checkpoint "
                f"{getattr(self, 'path', '') or self.source!r} holds NaN or infinite values ({exc}): the checkpoint's "
                f"bases are damaged (the file header is intact, the numbers are not). Download "
                f"{MODULES_WEIGHTS} again from {HF_URL}."
            ) from None

    def generate_id_lora(self, arcface_embeds, clip_tokens, weights=None) -> dict[str, torch.Tensor]:
        """Face features of N photos of one person -> the ID-LoRA in kohya format, on the CPU."""
        return self.lora_from_coefficients(self.coefficients(arcface_embeds, clip_tokens, weights), "id")

    def generate_base_lora(self, clip_tokens, weights=None) -> dict[str, torch.Tensor]:
        """CLIP tokens of N face-blurred photos -> the Base-LoRA in kohya format, on the CPU."""
        return self.lora_from_coefficients(self.base_coefficients(clip_tokens, weights), "base")

    def _require_base(self) -> None:
        if not self.has_base_lora:
            raise HyperLoRAError(
                f"The HyperLoRA checkpoint {self.source!r} has no Base-LoRA weights ({BASE_RESAMPLER_WEIGHTS} "
                "and base_*_basis tensors). The released v1 variants have none: their ID-LoRA already "
                "carries a 0.25x Base-LoRA. Use the ID-LoRA alone."
            )


def _check_resampler(resampler: Resampler, path: Path, n_modules: int, hyper_dim: int, expected_in: int) -> None:
    queries = resampler.latents.shape[1]
    if queries != n_modules * TOKENS_PER_MODULE:
        raise CheckpointError(
            f"{path}: {queries} learned queries, but hyper_lora_modules.json lists {n_modules} modules "
            f"(needs {n_modules * TOKENS_PER_MODULE}). The files come from different checkpoints."
        )
    if resampler.proj_out.out_features != hyper_dim:
        raise CheckpointError(
            f"{path}: outputs {resampler.proj_out.out_features} coefficients per token, but the bases have "
            f"hyper dim {hyper_dim}. The files come from different checkpoints."
        )
    if resampler.in_dims[0] != expected_in:
        raise CheckpointError(f"{path}: proj_in takes {resampler.in_dims[0]}-wide tokens, expected {expected_in}.")
