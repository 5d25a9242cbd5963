"""`batch --ray`: the same stages as a Ray Data pipeline on a local Ray (2 CPUs) give the same files
as the in-process batch; an address that does not answer and a missing Ray are clear messages."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from batch_fixtures import assert_same_safetensors, make_models, make_people
from hyperlora_core import cli
from hyperlora_core.batch.ray_run import check_address
from hyperlora_core.errors import HyperLoRAError


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return make_models(tmp_path_factory.mktemp("batch_ray") / "models")


def run(capsys, *args) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_ray_batch_on_a_local_ray_gives_the_in_process_files(models, capsys, tmp_path):
    pytest.importorskip("ray.data", reason="the Ray path needs pip install '.[ray]'")
    people = make_people(tmp_path / "people", count=3, photos=2, blank_for=2)
    here, on_ray = tmp_path / "here", tmp_path / "ray"
    common = ["--models-dir", models, "--device", "cpu", "--no-progress"]
    assert run(capsys, "batch", people, "--out", here, *common)[0] == 0
    (on_ray).mkdir()
    code, out, err = run(capsys, "batch", people, "--out", on_ray, "--ray", "--ray-cpus", "2", *common)
    assert code == 0, err + out
    assert "Made 3, done before 0, failed 0 of 3 people" in out
    names = sorted(p.name for p in here.glob("*.safetensors"))
    assert len(names) == 6 and names == sorted(p.name for p in on_ray.glob("*.safetensors"))
    for name in names:
        assert_same_safetensors(here / name, on_ray / name)
    lines = {line["id"]: line for line in map(json.loads, (on_ray / "report.jsonl").read_text().splitlines())}
    assert [s["reason"] for s in lines["person_2"]["photos_skipped"]] == ["no face found (200x200)"]
    # A second run on Ray finds everything done and starts no Ray at all.
    code, out, _ = run(capsys, "batch", people, "--out", on_ray, "--ray", *common)
    assert code == 0 and "Made 0, done before 3" in out


def test_an_address_that_does_not_answer_is_a_message_within_a_minute(models, capsys, tmp_path):
    pytest.importorskip("ray.data", reason="the Ray path needs pip install '.[ray]'")
    people = make_people(tmp_path / "people", count=1, photos=1)
    started = time.monotonic()
    code, _, err = run(capsys, "batch", people, "--out", tmp_path / "out", "--models-dir", models, "--no-progress",
                       "--ray", "127.0.0.1:9")
    assert code == 1 and "the Ray cluster at 127.0.0.1:9 does not answer" in err
    assert time.monotonic() - started < 60
    with pytest.raises(HyperLoRAError, match="not a Ray address"):
        check_address("http://head:6379")


def test_ray_without_ray_installed_says_how_to_install(models, capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    people = make_people(tmp_path / "people", count=1, photos=1)
    code, _, err = run(capsys, "batch", people, "--out", tmp_path / "out", "--models-dir", models, "--ray")
    assert code == 1 and 'pip install "hyperlora-studio[ray]"' in err
