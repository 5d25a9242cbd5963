"""Keep the best (hyperlora_core/likeness/keep.py and the 'HyperLoRA Keep the Best' node): the top K or
every picture above a threshold, best first with their indices; pictures without a face never kept;
K larger than the batch and scores of another length each with a clear message."""

from __future__ import annotations

import math

import pytest
import torch
from node_fixtures import nodes, pack  # noqa: F401

from hyperlora_core.errors import InputError
from hyperlora_core.likeness.keep import keep_best
from hyperlora_core.likeness.score import Likeness

SCORES = [0.41, 0.72, math.nan, 0.66, 0.72, 0.30]


def test_top_k_gives_the_best_indices_in_order_equal_scores_earlier_first():
    kept = keep_best(SCORES, count=3)
    assert kept.indices == [1, 4, 3] and kept.scores == [0.72, 0.72, 0.66]
    assert kept.text().startswith("kept 3 of 6, best first: 1 (0.720), 4 (0.720), 3 (0.660)")
    assert "1 picture(s) without a face never kept: 2" in kept.text()


def test_above_threshold_keeps_every_picture_at_or_above_it_best_first():
    assert keep_best(SCORES, threshold=0.66).indices == [1, 4, 3]
    assert keep_best([Likeness(0, "a", 0.5), Likeness(1, "b", None), Likeness(2, "c", 0.6)], threshold=0.5).indices == [2, 0]


def test_k_larger_than_the_batch_keeps_all_with_a_face_and_says_so():
    kept = keep_best(SCORES, count=10)
    assert kept.indices == [1, 4, 3, 0, 5]
    assert "asked for the best 10 but the set has 6 picture(s): all 5 with a face kept" in kept.text()
    assert "only 2 picture(s) have a face" in keep_best([0.5, None, 0.7], count=3).text()


@pytest.mark.parametrize("kwargs,match", [
    ({"count": 2, "pictures": 5}, "5 picture\\(s\\) but 6 score\\(s\\)"),
    ({}, "either a count .* or a threshold, not neither"),
    ({"count": 2, "threshold": 0.5}, "not both"),
    ({"count": 0}, "1 or more"),
    ({"threshold": 0.9}, "No picture scores 0.90 or more \\(the best, picture 1, scores 0.720\\)"),
    ({"threshold": 3}, "between -1 and 1"),
])
def test_bad_requests_are_named_with_the_fix(kwargs, match):
    with pytest.raises(InputError, match=match):
        keep_best(SCORES, **kwargs)


def test_no_face_anywhere_keeps_nothing_and_says_why():
    with pytest.raises(InputError, match="None of the 2 picture\\(s\\) has a face"):
        keep_best([None, math.nan], count=1)


def _batch(n: int) -> torch.Tensor:
    """n pictures, picture i filled with i / 10 (to see which were kept)."""
    return torch.stack([torch.full((8, 6, 3), i / 10) for i in range(n)])


def test_node_returns_the_kept_pictures_their_indices_and_a_summary(pack):  # noqa: F811
    node = nodes(pack)["HLS_KeepBest"]
    assert node.INPUT_IS_LIST and list(node.OUTPUT_IS_LIST) == [False, True, False]
    # INPUT_IS_LIST: each input arrives as a list; the similarity list of Likeness as it is
    out = node.execute([_batch(6)], SCORES, ["top K"], [3], [0.5])
    kept, indices, text = out
    assert indices == [1, 4, 3]
    assert torch.equal(kept[:, 0, 0, 0], torch.tensor([0.1, 0.4, 0.3]))
    assert out.ui.as_dict()["text"] == (text,) or list(out.ui.as_dict()["text"]) == [text]
    kept, indices, _ = node.execute([_batch(6)], SCORES, ["above threshold"], [3], [0.6])
    assert indices == [1, 4, 3] and kept.shape[0] == 3


def test_node_refuses_scores_of_another_length(pack):  # noqa: F811
    node = nodes(pack)["HLS_KeepBest"]
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="4 picture\\(s\\) but 6 score\\(s\\)"):
        node.execute([_batch(4)], SCORES, ["top K"], [2], [0.5])
