"""Who is in a batch: a folder with one sub-folder of photos per person, or a manifest file.

Manifests (paths relative to the manifest's folder):

* CSV with a header: ``id,photos`` and optional ``face``, ``keep_background``, ``grey`` columns;
  ``photos`` is one path, or several separated by ``;`` (a folder stands for the images in it);
* JSONL: one object per line, ``{"id": "ana", "photos": ["a1.jpg", "a2.jpg"], "face": "largest"}``.

Everything is checked before any model loads: duplicate ids, ids that cannot be file names, a person
without photos, a photo that does not exist. Each error names the row.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..constants import IMAGE_SUFFIXES
from ..errors import InputError

# Options a person may set for itself (the batch's command-line values otherwise), and their types.
PERSON_OPTIONS = {"face": (str, int), "keep_background": (bool,), "grey": (bool,), "photo_check": (str,)}
_ID = re.compile(r"^\w[\w. @+=-]*$")  # letters of any script, digits, a few signs
MAX_ID_BYTES = 200  # + ".identity.safetensors" stays under the 255 bytes a file name may have
_TRUE, _FALSE = {"1", "true", "yes", "y"}, {"0", "false", "no", "n"}


@dataclass
class Person:
    """One person of a batch: an id (the output files' name), their photos, and options of their own."""

    id: str
    photos: list[Path]
    options: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        return {"id": self.id, "photos": [str(p) for p in self.photos], "options": dict(self.options)}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Person":
        return cls(row["id"], [Path(p) for p in row["photos"]], dict(row.get("options") or {}))


def read_people(source: str | os.PathLike) -> list[Person]:
    """The people of ``source``: a folder of per-person folders, a ``.csv`` or a ``.jsonl`` manifest."""
    source = Path(source).expanduser()
    if source.is_dir():
        people = _from_folder(source)
    elif source.is_file():
        suffix = source.suffix.lower()
        if suffix == ".csv":
            people = _from_csv(source)
        elif suffix in (".jsonl", ".json"):
            people = _from_jsonl(source)
        else:
            raise InputError(f"{source} is neither a folder nor a manifest: use a folder with one sub-folder of "
                             "photos per person, or a .csv or .jsonl manifest (id, photos)")
    else:
        raise InputError(f"the people to make LoRAs for were not found: {source} does not exist")
    if not people:
        raise InputError(f"{source} lists no people: give one sub-folder of photos per person, or manifest rows")
    return people


def _from_folder(folder: Path) -> list[Person]:
    people = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        where = f"{sub}/"
        _check_id(sub.name, where)
        people.append(Person(sub.name, _photos_in(sub, where)))
    if not people:
        loose = [p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        hint = (f"; it holds photos ({', '.join(sorted(loose)[:3])}...) directly: put each person's photos in a "
                "sub-folder named by their id") if loose else ""
        raise InputError(f"the folder {folder} has no sub-folders, one per person{hint}")
    return people


def _photos_in(folder: Path, where: str) -> list[Path]:
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not found:
        raise InputError(f"{where}: the folder {folder} holds no photos ({', '.join(IMAGE_SUFFIXES)}); add the "
                         "person's photos or remove the folder")
    return found


def _check_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: the id is missing or empty; every person needs an id (it names the output files)")
    if not _ID.match(value) or len(value.encode("utf-8")) > MAX_ID_BYTES:
        raise InputError(f"{where}: the id {value!r} cannot name a file: use letters, digits, spaces and . _ - @ + = "
                         f"(starting with a letter or digit, at most {MAX_ID_BYTES} bytes in UTF-8)")
    return value


def _resolve_photos(value: Any, base: Path, where: str) -> list[Path]:
    if isinstance(value, str):
        items = [v.strip() for v in value.split(";") if v.strip()]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = value
    else:
        raise InputError(f"{where}: photos must be a path or a list of paths, got {value!r}")
    if not items:
        raise InputError(f"{where}: no photos are listed")
    photos: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        path = path if path.is_absolute() else base / path
        if path.is_dir():
            photos.extend(_photos_in(path, where))
        elif path.is_file():
            photos.append(path)
        else:
            raise InputError(f"{where}: the photo {path} does not exist; fix the path or remove it from the row")
    return photos


def _options(row: dict[str, Any], where: str, csv_text: bool) -> dict[str, Any]:
    options = {}
    for key, types in PERSON_OPTIONS.items():
        value = row.get(key)
        if value is None or (csv_text and not str(value).strip()):  # an empty cell: the batch's value
            continue
        if csv_text and bool in types:
            text = str(value).strip().lower()
            if text not in _TRUE | _FALSE:
                raise InputError(f"{where}: {key} must be true or false, got {value!r}")
            value = text in _TRUE
        elif csv_text and key == "face":
            value = int(value) if value.strip().isdigit() else value.strip()
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise InputError(f"{where}: {key} has the wrong type ({value!r})")
        options[key] = value
    if "photo_check" in options:
        from ..face.check import ACTIONS

        if options["photo_check"] not in ACTIONS:
            raise InputError(f"{where}: photo_check must be one of {', '.join(ACTIONS)}, got {options['photo_check']!r}")
    if "face" in options:
        from ..face.detection import check_choice

        try:
            options["face"] = check_choice(options["face"])
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
    return options


def _add(people: list[Person], seen: dict[str, str], person: Person, where: str) -> None:
    if person.id in seen:
        raise InputError(f"{where}: the id {person.id!r} is already used by {seen[person.id]}; ids must be unique "
                         "(they name the output files)")
    seen[person.id] = where
    people.append(person)


def _from_csv(path: Path) -> list[Person]:
    people: list[Person] = []
    seen: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"id", "photos"} - set(reader.fieldnames or [])
        if missing:
            raise InputError(f"{path}: the header must name the columns id and photos (missing: "
                             f"{', '.join(sorted(missing))}); optional: {', '.join(PERSON_OPTIONS)}")
        unknown = set(reader.fieldnames or []) - {"id", "photos", *PERSON_OPTIONS}
        if unknown:
            raise InputError(f"{path}: unknown column(s) {', '.join(sorted(unknown))}; the columns are id, photos, "
                             f"{', '.join(PERSON_OPTIONS)}")
        for line, row in enumerate(reader, start=2):
            if not any((v or "").strip() for v in row.values()):
                continue
            where = f"{path} line {line}"
            person_id = _check_id((row.get("id") or "").strip(), where)
            person = Person(person_id, _resolve_photos(row.get("photos") or "", path.parent, where),
                            _options(row, where, csv_text=True))
            _add(people, seen, person, where)
    return people


def _from_jsonl(path: Path) -> list[Person]:
    people: list[Person] = []
    seen: dict[str, str] = {}
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        where = f"{path} line {line}"
        try:
            row = json.loads(text)
        except ValueError as exc:
            raise InputError(f"{where} is not JSON ({exc})") from None
        if not isinstance(row, dict):
            raise InputError(f"{where}: each line must be an object with id and photos")
        unknown = set(row) - {"id", "photos", *PERSON_OPTIONS}
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; the keys are id, photos, "
                             f"{', '.join(PERSON_OPTIONS)}")
        person = Person(_check_id(row.get("id"), where), _resolve_photos(row.get("photos"), path.parent, where),
                        _options(row, where, csv_text=False))
        _add(people, seen, person, where)
    return people
