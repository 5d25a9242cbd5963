"""How much a picture looks like a person: the ArcFace cosine similarity, as the paper reports it.

* ``score``: the person's reference embedding, scores of pictures, summaries and tables;
* ``grid``: the pictures in a labelled grid, for showing the scores.
"""

from .grid import labelled_grid
from .score import Likeness, reference_embedding, score_images, summary, table

__all__ = ["Likeness", "labelled_grid", "reference_embedding", "score_images", "summary", "table"]
