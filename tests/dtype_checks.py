"""The devices and dtypes the kernel tests run on, and how close a result must be in each dtype."""

from __future__ import annotations

import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# relative to the largest value: one rounding to the dtype, plus float32 accumulation
TOL = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}


def assert_close_in_dtype(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> None:
    """``a`` equals ``b`` to within TOL[dtype] of ``b``'s largest value."""
    scale = b.float().abs().max().item() or 1.0
    assert (a.float() - b.float()).abs().max().item() <= TOL[dtype] * scale
