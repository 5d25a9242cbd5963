"""Test-side names for the random release-layout checkpoints (see hyperlora_core.bench.synthetic), and
the page the checkpoint errors send the user to."""

from hyperlora_core.bench.synthetic import (  # noqa: F401
    SMALL_MODULES,
    basis_state,
    make_release_folder,
    random_features,
    resampler_state,
)

# Where the checkpoint errors send the user for the release files.
HF = "huggingface.co/bytedance-research/HyperLoRA"
