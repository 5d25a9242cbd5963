"""The one-command model download, through huggingface_hub.

* ``models``: what goes where (the release, CLIP ViT-L/14, antelopev2), the default models folder,
  and the download run;
* ``hub``: talking to the Hub: settings, error wording, the listing of a repository;
* ``transfer``: the bytes of one file: staged, verified, resumed after an interruption.
"""

from .models import default_models_dir, run_download

__all__ = ["default_models_dir", "run_download"]
