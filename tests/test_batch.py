"""`python -m hyperlora_core batch`: many people, the models loaded once, each LoRA bit-identical to
`generate`'s; resumable after a kill; the report; the bad inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from batch_fixtures import assert_same_safetensors, blank_photo, face_photo, make_models, make_people
from hyperlora_core import cli
from hyperlora_core.batch import read_people
from hyperlora_core.errors import InputError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return make_models(tmp_path_factory.mktemp("batch") / "models")


def run(capsys, *args) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def report_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]


def test_each_lora_is_bit_identical_to_generate_and_the_report_names_the_skipped_photo(models, capsys, tmp_path):
    people = make_people(tmp_path / "people", count=3, photos=2, blank_for=1)
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "batch", people, "--out", out, "--models-dir", models, "--device", "cpu",
                            "--no-progress")
    assert code == 0, err
    assert "Made 3, done before 0, failed 0 of 3 people" in stdout
    for n in range(3):
        person = people / f"person_{n}"
        alone = tmp_path / f"alone_{n}.safetensors"
        identity = tmp_path / f"alone_{n}.identity.safetensors"
        code, _, err = run(capsys, "generate", "--photos", person, "--out", alone, "--save-identity", identity,
                           "--models-dir", models, "--device", "cpu", "--skip-no-face")
        assert code == 0, err
        assert_same_safetensors(out / f"person_{n}.safetensors", alone)
        assert_same_safetensors(out / f"person_{n}.identity.safetensors", identity)
    lines = {line["id"]: line for line in report_lines(out)}
    assert set(lines) == {"person_0", "person_1", "person_2"}
    assert all(line["status"] == "made" and line["error"] is None for line in lines.values())
    assert lines["person_1"]["photos_skipped"] == [
        {"photo": str(people / "person_1" / "zz_blank.png"), "reason": "no face found (200x200)"}]
    assert lines["person_1"]["photos_used"] == [str(people / "person_1" / f"p{k}.png") for k in range(2)]
    assert lines["person_0"]["photos_skipped"] == []
    assert lines["person_2"]["outputs"] == [str(out / "person_2.identity.safetensors"),
                                            str(out / "person_2.safetensors")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["made"] == 3 and summary["photos_skipped"] == 1 and summary["people_per_minute"] > 0


def test_a_failing_person_is_reported_and_the_batch_goes_on(models, capsys, tmp_path):
    people = make_people(tmp_path / "people", count=2, photos=1)
    faceless = people / "nobody"
    faceless.mkdir()
    blank_photo(faceless / "a.png")
    (faceless / "b.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "batch", people, "--out", out, "--models-dir", models, "--device", "cpu",
                            "--no-progress")
    assert code == 1
    assert "Failed: nobody" in stdout
    lines = {line["id"]: line for line in report_lines(out)}
    assert lines["person_0"]["status"] == lines["person_1"]["status"] == "made"
    nobody = lines["nobody"]
    assert nobody["status"] == "failed" and "No face was found in any of the photos" in nobody["error"]
    reasons = {Path(s["photo"]).name: s["reason"] for s in nobody["photos_skipped"]}
    assert reasons["a.png"] == "no face found (200x200)"
    assert reasons["b.jpg"].startswith("unreadable: ")
    assert not list(out.glob("nobody*"))
    assert (out / "person_1.safetensors").is_file()


def test_finished_people_are_not_made_again(models, capsys, tmp_path):
    people = make_people(tmp_path / "people", count=2, photos=1)
    out = tmp_path / "out"
    assert run(capsys, "batch", people, "--out", out, "--models-dir", models, "--device", "cpu", "--no-progress")[0] == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.safetensors")}
    (out / "person_1.safetensors").unlink()  # as if the first run had stopped before it
    code, stdout, _ = run(capsys, "batch", people, "--out", out, "--models-dir", models, "--device", "cpu",
                          "--no-progress")
    assert code == 0
    assert "Made 1, done before 1" in stdout
    assert (out / "person_0.safetensors").stat().st_mtime_ns == stamps["person_0.safetensors"]
    statuses = [(line["id"], line["status"]) for line in report_lines(out)]
    assert statuses[2:] == [("person_0", "done before"), ("person_1", "made")]


def test_a_killed_batch_continues_with_every_file_whole(models, tmp_path):
    people = make_people(tmp_path / "people", count=4, photos=1)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "hyperlora_core", "batch", str(people), "--out", str(out), "--models-dir",
               str(models), "--device", "cpu", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "person_0.safetensors").exists():  # killed once the first person is written
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode()
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("person_*.safetensors")}
    assert process.returncode == -signal.SIGKILL
    assert len(first) < 8, "the kill came too late to test anything"
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".safetensors") == sorted(
        f"person_{n}{suffix}" for n in range(4) for suffix in (".safetensors", ".identity.safetensors"))
    assert not list(out.glob(".*partial")) and not list(out.glob("*.damaged"))
    for n in range(4):
        load_file(str(out / f"person_{n}.safetensors"))
    assert (out / "person_0.safetensors").stat().st_mtime_ns == first["person_0.safetensors"]
    last_run = [line for line in report_lines(out) if line["run"] == report_lines(out)[-1]["run"]]
    assert ("person_0", "done before") in [(line["id"], line["status"]) for line in last_run]


def test_manifests_with_per_person_options(models, capsys, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(3):
        face_photo(photos / f"{k}.png", seed=k)
    csv = tmp_path / "people.csv"
    csv.write_text("id,photos,grey\nana,photos/0.png;photos/1.png,true\nbo,photos/2.png,\n")
    jsonl = tmp_path / "people.jsonl"
    jsonl.write_text(json.dumps({"id": "ana", "photos": ["photos/0.png", "photos/1.png"], "grey": True}) + "\n"
                     + json.dumps({"id": "bo", "photos": "photos"}) + "\n")
    assert [(p.id, [x.name for x in p.photos], p.options) for p in read_people(csv)] == [
        ("ana", ["0.png", "1.png"], {"grey": True}), ("bo", ["2.png"], {})]
    assert [(p.id, len(p.photos)) for p in read_people(jsonl)] == [("ana", 2), ("bo", 3)]
    out = tmp_path / "out"
    assert run(capsys, "batch", csv, "--out", out, "--models-dir", models, "--device", "cpu", "--no-progress")[0] == 0
    grey = tmp_path / "grey.safetensors"
    assert run(capsys, "generate", "--photos", photos / "0.png", photos / "1.png", "--grey", "--out", grey,
               "--models-dir", models, "--device", "cpu")[0] == 0
    assert_same_safetensors(out / "ana.safetensors", grey)


@pytest.mark.parametrize("manifest, message", [
    ('{"id": "a", "photos": ["x.png"]}\n{"id": "a", "photos": ["x.png"]}\n',
     "line 2: the id 'a' is already used by .* line 1; ids must be unique"),
    ('{"id": "a", "photos": ["missing.png"]}\n', r"line 1: the photo .*missing.png does not exist"),
    ('{"id": "../up", "photos": ["x.png"]}\n', "line 1: the id '../up' cannot name a file"),
    ('{"id": "a", "photos": ["x.png"], "colour": 1}\n', "line 1: unknown key"),
    ('{"id": "a", "photos": ["x.png"], "face": "biggest"}\n', "line 1: Unknown face choice"),
])
def test_manifest_errors_name_the_line(tmp_path, manifest, message):
    face_photo(tmp_path / "x.png", seed=0)
    path = tmp_path / "people.jsonl"
    path.write_text(manifest)
    with pytest.raises(InputError, match=message):
        read_people(path)


def test_a_person_folder_without_photos_is_named(tmp_path):
    people = make_people(tmp_path / "people", count=1, photos=1)
    (people / "empty").mkdir()
    (people / "empty" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="empty.*holds no photos"):
        read_people(people)


def test_an_output_folder_that_cannot_be_written_stops_before_the_models_load(models, capsys, tmp_path):
    people = make_people(tmp_path / "people", count=1, photos=1)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, "batch", people, "--out", blocker / "out", "--models-dir", models, "--no-progress")
    assert code == 1 and "cannot create the output folder" in err
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        code, _, err = run(capsys, "batch", people, "--out", locked, "--models-dir", models, "--no-progress")
        locked.chmod(0o700)
        assert code == 1 and "no permission to write" in err


def test_the_photo_check_runs_per_person_as_generate_runs_it(models, capsys, tmp_path):
    """--photo-check (and a manifest row's photo_check) reach each person: the report holds the check,
    and the LoRA equals generate's with the same --photo-check."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(3):
        face_photo(photos / f"{k}.png", seed=k)
    csv = tmp_path / "people.csv"
    csv.write_text("id,photos,photo_check\nana,photos/0.png;photos/1.png;photos/2.png,drop\n"
                   "bo,photos/0.png;photos/1.png;photos/2.png,\n")
    out = tmp_path / "out"
    code, _, err = run(capsys, "batch", csv, "--out", out, "--models-dir", models, "--device", "cpu",
                       "--no-progress", "--photo-check", "downweight")
    assert code == 0, err
    lines = {line["id"]: line for line in report_lines(out)}
    assert lines["ana"]["photo_check"]["action"] == "drop"
    assert lines["bo"]["photo_check"]["action"] == "downweight"
    assert [p["label"] for p in lines["bo"]["photo_check"]["photos"]] == ["0.png", "1.png", "2.png"]
    for person, action in (("ana", "drop"), ("bo", "downweight")):
        alone = tmp_path / f"{person}.safetensors"
        code, _, err = run(capsys, "generate", "--photos", photos, "--out", alone, "--models-dir", models,
                           "--device", "cpu", "--photo-check", action)
        assert code == 0, err
        assert_same_safetensors(out / f"{person}.safetensors", alone)


def test_a_manifest_photo_check_that_is_not_an_action_names_the_line(tmp_path):
    face_photo(tmp_path / "x.png", seed=0)
    path = tmp_path / "people.jsonl"
    path.write_text('{"id": "a", "photos": ["x.png"], "photo_check": "maybe"}\n')
    with pytest.raises(InputError, match="line 1: photo_check must be one of keep, drop, downweight"):
        read_people(path)
