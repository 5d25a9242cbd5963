"""The batch as a Ray Data pipeline: ``python -m hyperlora_core batch PEOPLE --out FOLDER --ray [ADDRESS]``.

The same two stages as :mod:`.run`, with the same functions:

1. faces: :func:`~.run.face_stage` as Ray tasks on CPUs (each worker process loads the face models
   once and keeps them for the people it is given);
2. network: :func:`~.run.network_stage` in a pool of actors (``map_batches`` with a callable class),
   each loading CLIP and the hyper-network once, one GPU each when the cluster has GPUs.

Ray streams people from stage 1 to stage 2, so the two overlap across the cluster. The actors write
each person's files into FOLDER themselves, so FOLDER must be a path that every node and this
process see (NFS, a cluster file system, or object storage mounted as a folder); the report is
written here. Finished people are found and left out before the pipeline starts, as in the
in-process batch. This package is shipped to the workers with the job (``runtime_env.py_modules``);
the cluster needs this pack's requirements (torch, onnxruntime, insightface...) installed.

Ray is an optional extra (``pip install ".[ray]"``); nothing else in the pack imports it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from ..errors import HyperLoRAError
from .manifest import Person
from .report import PersonReport
from .run import BatchSettings, FacesFound, expected_keys, open_run

log = logging.getLogger(__name__)

INSTALL = 'pip install "hyperlora-studio[ray]" (or, in a checkout: pip install ".[ray]"; it installs ray[data])'
CONNECT_TIMEOUT_S = 10.0
_FACE_ANALYZERS: dict[tuple[str, str], Any] = {}  # per worker process: loaded once, kept for later tasks


def require_ray():
    """The ray module, or a message that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is an extra of its own
    except ImportError as exc:
        raise HyperLoRAError(f"--ray needs Ray Data, which is not installed ({exc}): {INSTALL}. Without --ray the "
                             "batch runs in this process.") from exc
    return ray


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse, within ``timeout`` seconds, a cluster address where nothing answers (ray.init would retry
    for minutes). ``auto`` (a cluster started on this machine with ``ray start``) is left to Ray."""
    if address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"gcs://{address}")
    host, port = parts.hostname, parts.port
    if parts.scheme not in ("gcs", "ray") or not host:
        raise HyperLoRAError(f"--ray {address!r} is not a Ray address: use HOST:PORT of the head node (port 6379), "
                             "ray://HOST:10001 for Ray Client, or auto")
    port = port or (10001 if parts.scheme == "ray" else 6379)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise HyperLoRAError(
            f"the Ray cluster at {address} does not answer ({exc.strerror or exc}); check that it runs (ray status on "
            "the head node), that the address is HOST:6379 of the head node or ray://HOST:10001, and that no firewall "
            "is between; or leave out the address to run on a Ray started here"
        ) from exc


@dataclass
class CarriedFace:
    """What the network stage reads of a ``FaceResult``: its photo's position, the CLIP crop, ArcFace."""

    index: int
    clip_crop: Any
    arcface_embedding: Any
    base_crop: Any = None


def faces_to_row(faces: FacesFound) -> dict[str, Any]:
    """Stage 1's result as plain data between Ray processes: JSON and an .npz of the crops and
    embeddings (no pickle: ``np.load(allow_pickle=False)`` reads it back)."""
    import numpy as np

    found = faces.found
    meta: dict[str, Any] = {"person": faces.person.to_row(), "error": faces.error, "seconds": faces.seconds,
                            "weights": faces.weights, "check": faces.check}
    arrays: dict[str, Any] = {}
    if found is not None:
        meta["photos"] = [str(p) for p in found.photos]
        meta["skipped"] = [{"photo": str(s.photo), "reason": s.reason} for s in found.skipped]
        meta["indices"] = [face.index for face in found.faces]
        for k, face in enumerate(found.faces):
            arrays[f"clip_{k}"] = np.asarray(face.clip_crop)
            arrays[f"arcface_{k}"] = np.asarray(face.arcface_embedding)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return {"id": faces.person.id, "meta": json.dumps(meta), "arrays": buffer.getvalue()}


def faces_from_row(row: dict[str, Any]) -> FacesFound:
    import numpy as np

    from ..pipeline import PhotoFaces, SkippedPhoto

    meta = json.loads(row["meta"])
    result = FacesFound(Person.from_row(meta["person"]), error=meta["error"], seconds=meta["seconds"],
                        weights=meta.get("weights"), check=meta.get("check"))
    if "photos" in meta:
        with np.load(io.BytesIO(row["arrays"]), allow_pickle=False) as arrays:
            faces = [CarriedFace(index, arrays[f"clip_{k}"], arrays[f"arcface_{k}"])
                     for k, index in enumerate(meta["indices"])]
        result.found = PhotoFaces([Path(p) for p in meta["photos"]], faces,
                                  [SkippedPhoto(Path(s["photo"]), s["reason"]) for s in meta["skipped"]])
    return result


def _face_task(row: dict[str, Any], settings: BatchSettings) -> dict[str, Any]:
    from ..face import FaceAnalyzer
    from .run import face_stage

    key = (str(settings.models.faces), settings.provider)
    if key not in _FACE_ANALYZERS:
        _FACE_ANALYZERS[key] = FaceAnalyzer(settings.models.faces, provider=settings.provider)
    person = Person.from_row(json.loads(row["person"]))
    return faces_to_row(face_stage(_FACE_ANALYZERS[key], person, settings))


class NetworkStage:
    """A Ray actor of stage 2: CLIP and the hyper-network loaded once, then one person per call."""

    def __init__(self, settings: BatchSettings, out: str, use_gpu: bool, threads: int):
        import torch

        from ..pipeline import load_clip, load_network, pick_device

        # Ray gives an actor one thread per CPU it asked for; CPU kernels sum in another order with
        # another number of threads, so the actor takes the driver's to give the same bits.
        torch.set_num_threads(threads)

        requested = settings.device if use_gpu or settings.device != "auto" else "cpu"
        self.device, self.dtype, clip_dtype = pick_device(requested, settings.dtype)
        if use_gpu and self.device.type != "cuda" and torch.cuda.is_available():
            self.device = torch.device("cuda")
        self.out = Path(out)
        self.keys = expected_keys(settings.models.hyperlora)
        self.encoder = load_clip(settings.models, device=self.device, clip_dtype=clip_dtype)
        self.network = load_network(settings.models.hyperlora, device=self.device, dtype=self.dtype, report=log.info)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from .run import network_stage

        rows = [{"meta": meta, "arrays": arrays} for meta, arrays in zip(batch["meta"], batch["arrays"])]
        lines = [network_stage(faces_from_row(row), self.encoder, self.network, self.out, self.keys, self.dtype)
                 for row in rows]
        return {"line": np.array([line.to_json() for line in lines], dtype=object)}


def _actor_pool(ray_data: Any, size: int) -> dict[str, Any]:
    """``map_batches`` arguments for an actor pool of ``size``, in the spelling of the installed Ray."""
    try:
        return {"compute": ray_data.ActorPoolStrategy(size=size)}
    except TypeError:  # Ray before 2.9 spelt it min_size/max_size
        return {"compute": ray_data.ActorPoolStrategy(min_size=size, max_size=size)}


def _start(ray: Any, address: str | None, num_cpus: int | None) -> bool:
    """Connect to ``address`` or start a Ray here; True when this call started it (and must stop it)."""
    if ray.is_initialized():
        return False
    import hyperlora_core

    package = str(Path(hyperlora_core.__file__).resolve().parent)
    runtime_env = {"py_modules": [package], "env_vars": {"PYTHONWARNINGS": "ignore"}}
    if address is not None:
        check_address(address)
    try:
        ray.init(address=address, num_cpus=num_cpus if address is None else None, include_dashboard=False,
                 runtime_env=runtime_env, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise HyperLoRAError(f"could not connect to {where}: {exc}") from exc
    return True


def run_batch_on_ray(people: list[Person], out: str | os.PathLike, settings: BatchSettings, *,
                     address: str | None = None, num_cpus: int | None = None, network_actors: int = 1,
                     progress: bool = True, report: Callable[[str], None] = log.info) -> dict[str, Any]:
    """:func:`~.run.run_batch` on Ray: ``address`` None starts a Ray here (``num_cpus``: its CPUs)."""
    ray = require_ray()
    import torch

    from ..pipeline import pick_device

    started = time.perf_counter()
    _, dtype, _ = pick_device("cpu", settings.dtype)  # the dtype only: the devices are the actors' business
    out, keys, done, todo, writer, bar = open_run(people, out, settings, dtype, progress)
    if not todo:
        bar.close()
        return writer.write_summary(time.perf_counter() - started)

    stop = _start(ray, address, num_cpus)
    try:
        import ray.data

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        gpus = ray.cluster_resources().get("GPU", 0) > 0 and settings.device != "cpu"
        report(f"Ray: {ray.cluster_resources().get('CPU', 0):.0f} CPUs, {ray.cluster_resources().get('GPU', 0):.0f} "
               f"GPUs; {len(todo)} people, {network_actors} network actor(s){' on GPUs' if gpus else ''}")
        rows = [{"id": person.id, "person": json.dumps(person.to_row())} for person in todo]
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
        # Half a CPU per face task: two run beside each network actor on a CPU, and the different
        # request keeps Ray from fusing the two stages into one actor (which would end the overlap).
        dataset = dataset.map(_face_task, fn_kwargs={"settings": settings}, num_cpus=0.5)
        dataset = dataset.map_batches(
            NetworkStage, batch_size=1, batch_format="numpy",
            fn_constructor_kwargs={"settings": settings, "out": str(out), "use_gpu": gpus,
                                   "threads": torch.get_num_threads()},
            num_gpus=1 if gpus else None, num_cpus=1, **_actor_pool(ray.data, network_actors))
        for row in dataset.iter_rows():
            line = PersonReport.from_dict(json.loads(row["line"]))
            writer.add(line)
            bar.update(line)
    finally:
        bar.close()
        if stop:
            ray.shutdown()
    return writer.write_summary(time.perf_counter() - started)
