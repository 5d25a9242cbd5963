"""Test-side name for the random release-layout checkpoints (see hyperlora_core.bench.synthetic)."""

from hyperlora_core.bench.synthetic import (  # noqa: F401
    SMALL_MODULES,
    basis_state,
    make_release_folder,
    random_features,
    resampler_state,
)
