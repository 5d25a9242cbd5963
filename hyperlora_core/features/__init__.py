"""What the network reads from a person's photos: CLIP ViT-L/14 tokens and ArcFace embeddings.

* ``clip_pixels``: the CLIP resize and normalisation of a face crop (shared with the nodes);
* ``clip``: the CLIP vision tower outside ComfyUI (transformers);
* ``identity``: :class:`IdentityFeatures`, the features of one person, built once from the faces,
  saved and loaded as small files, blended.
"""

from .identity import IdentityFeatures

__all__ = ["IdentityFeatures"]
