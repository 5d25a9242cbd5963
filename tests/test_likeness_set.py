"""Likeness over a set (hyperlora_core/likeness/stats.py, chart.py; files/video.py): statistics and the
worst picture on constructed scores, pictures without a face counted and left out, a batch of one, the
chart, and `score` on a short video written by the test (MJPG .avi) frame by frame."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_run import run
from hyperlora_core.errors import InputError
from hyperlora_core.likeness.chart import WORST, likeness_chart
from hyperlora_core.likeness.score import Likeness
from hyperlora_core.likeness.stats import LOW_LIKENESS, summarise
from tiny_face_models import make_tiny_antelopev2, marked_picture


def test_set_statistics_and_the_worst_picture_on_constructed_scores():
    stats = summarise([0.62, 0.71, 0.35, 0.58, 0.44], threshold=0.5)
    assert (stats.minimum, stats.median, stats.maximum) == (0.35, 0.58, 0.71)
    assert stats.mean == pytest.approx(0.54) and stats.worst == 2 and stats.best == 1
    assert stats.below == [2, 4] and stats.share_below == pytest.approx(0.4)
    text = stats.text()
    assert "min 0.350, median 0.580, max 0.710" in text and "worst: picture 2 (0.350)" in text
    assert "below 0.50: 2 of 5 (40%): picture 2, picture 4" in text


def test_pictures_without_a_face_are_counted_listed_and_left_out():
    scores = [Likeness(0, "a", 0.7), Likeness(1, "b", None), Likeness(2, "c", 0.5), Likeness(3, "d", float("nan"))]
    stats = summarise(scores)
    assert stats.missing == [1, 3] and stats.scored == [0, 2]
    assert stats.median == pytest.approx(0.6) and stats.worst == 2
    assert "no face in 2 picture(s), not counted: b, d" in stats.text()
    data = stats.as_dict()
    assert data["no_face"] == ["b", "d"] and data["with_face"] == 2 and data["worst"] == "c"


def test_a_batch_of_one_picture_says_why_the_spread_is_not_there():
    stats = summarise([0.64])
    assert stats.minimum == stats.median == stats.maximum == 0.64 and stats.worst == 0
    assert "min, median and max need two or more" in stats.text()


def test_no_face_anywhere_gives_no_numbers_and_says_so():
    stats = summarise([None, None])
    assert stats.worst is None and stats.share_below is None
    assert stats.text() == "no face found in any of the 2 picture(s): no statistics"


def test_equal_scores_name_the_first_as_the_worst():
    assert summarise([0.6, 0.5, 0.5]).worst == 1


@pytest.mark.parametrize("bad,match", [([], "empty"), (["x"], "must be a number")])
def test_bad_scores_are_named(bad, match):
    with pytest.raises(InputError, match=match):
        summarise(bad)


def test_a_threshold_outside_minus_one_to_one_is_refused():
    with pytest.raises(InputError, match="between -1 and 1"):
        summarise([0.5], threshold=2)


def test_the_chart_marks_the_worst_picture_and_draws_without_faces():
    chart = likeness_chart([0.7, None, 0.2, 0.6], threshold=LOW_LIKENESS, size=(640, 300))
    assert chart.shape == (300, 640, 3) and chart.dtype == np.uint8
    red = np.all(chart == np.array(WORST, np.uint8), axis=-1)
    assert red.any()  # the worst point
    ys, xs = np.nonzero(red)
    # the worst is the third of four points: two thirds of the way along the plot (64 px left margin)
    assert abs(np.median(xs) - (64 + 2 * (640 - 64 - 24) / 3)) < 25
    assert likeness_chart([None]).shape == (400, 960, 3)
    assert likeness_chart([0.5]).shape == (400, 960, 3)


# -- score --video ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def video_setup(tmp_path_factory):
    cv2 = pytest.importorskip("cv2")
    root = tmp_path_factory.mktemp("video")
    models = root / "models"
    make_tiny_antelopev2(models / "insightface" / "models" / "antelopev2")
    me = marked_picture(1, size=(320, 288), noise=200)
    Image.fromarray(me).save(root / "me.png")
    other = marked_picture(7, size=(320, 288), noise=200)
    blank = np.full_like(me, 90)
    frames = [me, me, me, blank, other, me]
    path = root / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (288, 320))
    assert writer.isOpened()
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    writer.release()
    return {"root": root, "models": models, "me": root / "me.png", "video": path, "frames": frames}


def test_read_frames_gives_every_nth_frame_with_its_number(video_setup):
    from hyperlora_core.files.video import read_frames
    numbers, frames = read_frames(video_setup["video"], every=2)
    assert numbers == [0, 2, 4] and len(frames) == 3
    assert frames[0].shape == (320, 288, 3) and frames[0].dtype == np.uint8
    # MJPG is lossy (and the noise is hard on it): close to the frame written at a coarser scale, not equal
    import cv2
    coarse = [cv2.blur(f.astype(np.float32), (9, 9)) for f in (frames[0], video_setup["frames"][0])]
    assert np.abs(coarse[0] - coarse[1]).mean() < 12


def test_score_measures_a_video_frame_by_frame(video_setup, capsys, tmp_path):
    chart = tmp_path / "chart.png"
    code, out, err = run(capsys, "score", "--photos", video_setup["me"], "--video", video_setup["video"],
                         "--models-dir", video_setup["models"], "--json", "--chart", chart)
    assert code == 0, err
    data = json.loads(out)
    assert [row["frame"] for row in data["images"]] == [0, 1, 2, 3, 4, 5]
    sims = [row["similarity"] for row in data["images"]]
    assert sims[3] is None and data["missing"] == ["frame 3"]
    assert all(s > 0.95 for s in (sims[0], sims[1], sims[2], sims[5])) and sims[4] < sims[0]
    stats = data["stats"]
    assert stats["worst_index"] == 4 and stats["no_face_index"] == [3] and stats["with_face"] == 5
    assert stats["min"] == pytest.approx(sims[4], abs=1e-4)
    with Image.open(chart) as image:
        assert image.size == (960, 400)


def test_score_prints_the_set_statistics_under_the_table(video_setup, capsys):
    code, out, err = run(capsys, "score", "--photos", video_setup["me"], "--video", video_setup["video"],
                         "--every", "2", "--models-dir", video_setup["models"])
    assert code == 0, err
    lines = out.splitlines()
    assert any(line.startswith("frame 4") for line in lines)
    assert "3 pictures with a face: min" in out and "worst: frame 4" in out


def test_a_video_that_cannot_be_read_names_the_file_and_the_formats_that_work(video_setup, capsys, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    code, out, err = run(capsys, "score", "--photos", video_setup["me"], "--video", bad,
                         "--models-dir", video_setup["models"])
    assert code == 1
    assert str(bad) in err and "MP4 (H.264), AVI (MJPG or H.264)" in err
    code, out, err = run(capsys, "score", "--photos", video_setup["me"], "--video", tmp_path / "none.mp4",
                         "--models-dir", video_setup["models"])
    assert code == 1 and "video not found" in err


def test_every_goes_with_video_and_is_one_or_more(video_setup, capsys):
    code, _, err = run(capsys, "score", "--photos", video_setup["me"], "--images", video_setup["me"], "--every", "2",
                       "--models-dir", video_setup["models"])
    assert code == 2 and "--every goes with --video" in err
    code, _, err = run(capsys, "score", "--photos", video_setup["me"], "--video", video_setup["video"], "--every", "0",
                       "--models-dir", video_setup["models"])
    assert code == 2 and "--every must be 1 or more" in err
