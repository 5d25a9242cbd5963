"""Exceptions with messages a person can act on.

Every error raised for bad user input derives from :class:`HyperLoRAError`, so callers (the ComfyUI
nodes, the command line) can show the message as it is instead of a traceback.
"""


class HyperLoRAError(ValueError):
    """Base class: the message says what is wrong and what to do about it."""


class CheckpointError(HyperLoRAError):
    """A HyperLoRA release folder or one of its files is missing, damaged or of the wrong layout."""


class InputError(HyperLoRAError):
    """Face features, images or other inputs of the wrong shape, type or content."""


class FaceModelError(HyperLoRAError):
    """The insightface model folder is missing, incomplete or cannot be loaded."""


class NoFaceError(HyperLoRAError):
    """No face could be found in a photo (or in any photo of a batch)."""


class UsageError(HyperLoRAError):
    """The command line itself is wrong (exit code 2)."""


class DownloadError(HyperLoRAError):
    """A model file could not be fetched or did not match what the Hub lists."""


class DiskError(DownloadError):
    """The disk, not the network: full, too small a file-size limit, or not writable."""


class ClipModelError(HyperLoRAError):
    """The CLIP vision file is missing, unreadable or not OpenAI CLIP ViT-L/14."""


class NonFiniteLoRA(CheckpointError):
    """A mixed LoRA holds NaN or infinite values (the caller names the checkpoint)."""


class ConfigError(HyperLoRAError):
    """The training configuration is invalid, or does not match the run it resumes."""


class DataError(HyperLoRAError):
    """The training data is missing, unreadable or incomplete."""
