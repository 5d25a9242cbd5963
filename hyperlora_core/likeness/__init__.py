"""How much a picture looks like a person: the ArcFace cosine similarity, as the paper reports it.

* ``score``: the person's reference embedding, scores of pictures, summaries and tables;
* ``stats``: the spread of a set's scores (min / median / max, the worst, the share below a threshold);
* ``chart``: the scores per picture or per frame as a chart;
* ``grid``: the pictures in a labelled grid, for showing the scores.
"""

from .grid import labelled_grid
from .score import Likeness, reference_embedding, score_images, summary, table
from .stats import LOW_LIKENESS, SetStats, summarise

__all__ = ["LOW_LIKENESS", "Likeness", "SetStats", "labelled_grid", "reference_embedding", "score_images", "summarise",
           "summary", "table"]
