"""The batch in this process: the models loaded once, face analysis ahead of the network stage.

Two stages per person, the same functions :mod:`hyperlora_core.pipeline` gives ``generate``:

1. faces (CPU, ONNX Runtime): :func:`face_stage` -> the chosen face of each photo, photos left out;
2. network (the device): :func:`network_stage` -> CLIP tokens, identity, ID-LoRA, both files written.

A thread runs stage 1 for the next people while the main thread runs stage 2, with a bounded queue
between them (so at most a few people's face crops wait in memory). Each person's LoRA equals what
``generate --photos ... --skip-no-face --save-identity ...`` makes from the same photos and options:
the network runs one person at a time, as ``generate`` does, because batching several people changes
the order of the sums in the kernels and with it the last bits of the result.

A person whose two files exist and check out (:func:`outputs_check_out`) is not recomputed, so a run
that was stopped or killed continues with the people it had not finished.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..errors import HyperLoRAError
from ..pipeline import ModelPaths, PhotoFaces
from .manifest import Person
from .report import DONE_BEFORE, FAILED, MADE, PersonReport, Progress, ReportWriter

log = logging.getLogger(__name__)

LORA_SUFFIX = ".safetensors"
IDENTITY_SUFFIX = ".identity.safetensors"


@dataclass
class BatchSettings:
    """What every person shares: the models, where they run, and the default per-person options."""

    models: ModelPaths
    device: str = "auto"
    dtype: str = "auto"
    provider: str = "auto"
    face: str | int = "largest"
    keep_background: bool = False
    grey: bool = False
    photo_check: str = "keep"  # keep (flags only), drop or downweight the flagged photos

    def check_action(self, person: Person) -> str:
        """What the photo check does with ``person``'s flagged photos: theirs where set, else the batch's."""
        return person.options.get("photo_check", self.photo_check)

    def analysis(self, person: Person) -> dict[str, Any]:
        """The face-analysis options of ``person``: theirs where set, else the batch's."""
        o = person.options
        return {"choice": o.get("face", self.face),
                "remove_background": not o.get("keep_background", self.keep_background),
                "grey": o.get("grey", self.grey)}


@dataclass
class FacesFound:
    """Stage 1's result for one person (or the error that stopped it)."""

    person: Person
    found: PhotoFaces | None = None
    error: str | None = None
    seconds: float = 0.0
    weights: list[float] | None = None  # one per face in ``found``, from the photo check
    check: dict | None = None  # the photo check (SetCheck.as_dict()), for the report


@dataclass
class Outputs:
    lora: Path
    identity: Path

    def all(self) -> list[Path]:
        return [self.identity, self.lora]


def outputs_of(out: Path, person_id: str) -> Outputs:
    return Outputs(out / f"{person_id}{LORA_SUFFIX}", out / f"{person_id}{IDENTITY_SUFFIX}")


# -- what is done already ------------------------------------------------------------------------

def expected_keys(release: Path) -> set[str]:
    """The keys every LoRA of ``release`` has (from its hyper_lora_modules.json, without loading weights)."""
    from ..constants import MODULES_JSON
    from ..model.checkpoint import read_modules
    from ..model.lora import kohya_key_plan

    return set(kohya_key_plan(read_modules(Path(release) / MODULES_JSON), rank=1))


def lora_problem(path: Path, keys: set[str], dtype: Any = None) -> str | None:
    """Why the LoRA file at ``path`` is not a finished output, or None when it checks out: readable,
    the release's keys, every tensor finite, the factors in ``dtype``."""
    from safetensors import SafetensorError, safe_open

    from ..finite import non_finite_tensor

    if not path.is_file():
        return "missing"
    try:
        with safe_open(str(path), framework="pt") as handle:
            names = set(handle.keys())
            if names != keys:
                return f"other keys than the release's ({len(names)} for {len(keys)})"
            tensors = ((k, handle.get_tensor(k)) for k in sorted(names))
            for name, tensor in tensors:
                if non_finite_tensor([(name, tensor)]) is not None:
                    return f"{name} holds NaN or infinite values"
                if dtype is not None and not name.endswith(".alpha") and tensor.dtype != dtype:
                    return f"{name} is {tensor.dtype}, not {dtype}"
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        return f"unreadable ({exc})"
    return None


def identity_problem(path: Path) -> str | None:
    from ..features.identity import IdentityFeatures

    if not path.is_file():
        return "missing"
    try:
        IdentityFeatures.load(path)
    except HyperLoRAError as exc:
        return str(exc)
    return None


def outputs_check_out(outputs: Outputs, keys: set[str], dtype: Any = None) -> bool:
    return lora_problem(outputs.lora, keys, dtype) is None and identity_problem(outputs.identity) is None


def clear_unfinished(outputs: Outputs, keys: set[str], dtype: Any = None) -> list[str]:
    """Make room for a person's new files. A file that checks out (the identity of a person whose LoRA
    was not written yet) is removed: the new one is the same. A damaged one is kept beside, as
    ``NAME.damaged``, never deleted. Returns what was moved aside."""
    moved = []
    for path, problem in ((outputs.identity, identity_problem(outputs.identity)),
                          (outputs.lora, lora_problem(outputs.lora, keys, dtype))):
        if not (path.exists() or path.is_symlink()):
            continue
        if problem is None:
            path.unlink()
        else:
            aside = path.with_name(path.name + ".damaged")
            os.replace(path, aside)
            moved.append(f"{path.name} ({problem}) moved to {aside.name}")
    return moved


# -- the two stages ------------------------------------------------------------------------------

def face_stage(analyzer: Any, person: Person, settings: BatchSettings) -> FacesFound:
    """Stage 1: the faces in a person's photos; photos without a face or unreadable are left out with
    the reason; a failure of the whole person is returned as its message."""
    from ..pipeline import faces_of_photos

    started = time.perf_counter()
    try:
        found = faces_of_photos(analyzer, person.photos, skip_no_face=True, skip_unreadable=True,
                                report=log.debug, **settings.analysis(person))
        weights = check = None
        if found.faces:  # the photo check, as generate --photo-check makes it
            from ..pipeline import check_photos

            names = [found.photos[f.index].name for f in found.faces]
            found.faces, weights, checked = check_photos(found.faces, names, settings.check_action(person),
                                                         report=log.debug)
            check = checked.as_dict()
        for face in found.faces:  # the network stage needs the crops and embeddings only
            face.preview = None
            face.detection = None
        result = FacesFound(person, found, weights=weights, check=check)
    except HyperLoRAError as exc:
        result = FacesFound(person, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one person's fault must not stop the batch
        result = FacesFound(person, error=f"unexpected {type(exc).__name__}: {exc}")
    result.seconds = time.perf_counter() - started
    return result


def network_stage(faces: FacesFound, encoder: Any, network: Any, out: Path, keys: set[str],
                  dtype: Any = None) -> PersonReport:
    """Stage 2: CLIP tokens, identity and ID-LoRA of one person, both files written whole."""
    from ..files.export import save_lora
    from ..pipeline import identity_from_faces, lora_from_identity

    started = time.perf_counter()
    person = faces.person
    line = PersonReport(person.id, FAILED)
    found = faces.found
    if found is not None:
        line.photos_skipped = [{"photo": str(s.photo), "reason": s.reason} for s in found.skipped]
        line.photos_used = [str(found.photos[f.index]) for f in found.faces]
        line.photo_check = faces.check
    try:
        if faces.error is not None:
            raise HyperLoRAError(faces.error)
        if not found.faces:
            raise found.no_face_error()
        identity = identity_from_faces(found, encoder, weights=faces.weights)
        made = lora_from_identity(identity, "", network=network)
        outputs = outputs_of(out, person.id)
        moved = clear_unfinished(outputs, keys, dtype)
        if moved:
            log.warning("%s: %s", person.id, "; ".join(moved))
        identity.save(outputs.identity)
        save_lora(made.lora, outputs.lora, metadata=made.metadata())
        line.status = MADE
        line.outputs = [str(p) for p in outputs.all()]
    except HyperLoRAError as exc:
        line.error = " ".join(str(exc).split())
    except Exception as exc:  # noqa: BLE001 - one person's fault must not stop the batch
        line.error = f"unexpected {type(exc).__name__}: {exc}"
    line.seconds = round(faces.seconds + time.perf_counter() - started, 3)
    return line


def done_before(person: Person, outputs: Outputs) -> PersonReport:
    return PersonReport(person.id, DONE_BEFORE, outputs=[str(p) for p in outputs.all()])


# -- the run -------------------------------------------------------------------------------------

def prepare_out(out: Path) -> Path:
    """The output folder, created if needed, and writable (checked before any model loads)."""
    from ..files.atomic import check_writable_folder

    out = Path(out).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HyperLoRAError(f"cannot create the output folder {out} ({exc.strerror or exc}); choose a folder you "
                             "can write to") from exc
    return check_writable_folder(out)


def split_done(people: list[Person], out: Path, keys: set[str], dtype: Any) -> tuple[list[Person], list[Person]]:
    """(people whose outputs check out, people still to make)."""
    done, todo = [], []
    for person in people:
        (done if outputs_check_out(outputs_of(out, person.id), keys, dtype) else todo).append(person)
    return done, todo


def open_run(people: list[Person], out: str | os.PathLike, settings: BatchSettings, dtype: Any,
             progress: bool) -> tuple[Path, set[str], list[Person], list[Person], ReportWriter, Progress]:
    """What both engines (in process and on Ray) do first: the output folder, the keys a LoRA must hold,
    the people whose files already check out (reported as done before, not made again) and those left,
    the report writer and the progress bar."""
    out = prepare_out(Path(out))
    keys = expected_keys(settings.models.hyperlora)
    done, todo = split_done(people, out, keys, dtype)
    writer = ReportWriter(out)
    bar = Progress(len(people), enabled=progress)
    for person in done:
        line = done_before(person, outputs_of(out, person.id))
        writer.add(line)
        bar.update(line)
    return out, keys, done, todo, writer, bar


def _faces_ahead(analyzer: Any, people: Iterable[Person], settings: BatchSettings, depth: int,
                 stop: threading.Event) -> Iterator[FacesFound]:
    """Stage 1 in a thread, ``depth`` people ahead of the consumer."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    end = object()

    def produce() -> None:
        try:
            for person in people:
                if stop.is_set():
                    return
                result = face_stage(analyzer, person, settings)
                while not stop.is_set():
                    try:
                        ready.put(result, timeout=0.5)
                        break
                    except queue.Full:
                        continue
        finally:
            ready.put(end)

    thread = threading.Thread(target=produce, name="hyperlora-batch-faces", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is end:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                ready.get(timeout=0.1)
            except queue.Empty:
                pass


def run_batch(people: list[Person], out: str | os.PathLike, settings: BatchSettings, *,
              progress: bool = True, ahead: int = 2, report: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Make every person's LoRA and identity in ``out``; returns the summary (also in summary.json)."""
    from ..face import FaceAnalyzer
    from ..pipeline import load_clip, load_network, pick_device

    started = time.perf_counter()
    device, dtype, clip_dtype = pick_device(settings.device, settings.dtype)
    out, keys, done, todo, writer, bar = open_run(people, out, settings, dtype, progress)
    if done:
        report(f"{len(done)} of {len(people)} people are done already (their files check out); not made again.")
    if todo:
        report(f"Loading the models once for {len(todo)} people ({device}, {str(dtype).removeprefix('torch.')}) ...")
        analyzer = FaceAnalyzer(settings.models.faces, provider=settings.provider)
        encoder = load_clip(settings.models, device=device, clip_dtype=clip_dtype)
        network = load_network(settings.models.hyperlora, device=device, dtype=dtype, report=log.info)
        try:
            for faces in _faces_ahead(analyzer, todo, settings, ahead, threading.Event()):
                line = network_stage(faces, encoder, network, out, keys, dtype)
                writer.add(line)
                bar.update(line)
        finally:
            bar.close()
    else:
        bar.close()
    return writer.write_summary(time.perf_counter() - started)
