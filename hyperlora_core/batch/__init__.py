"""Many people in one run: ``python -m hyperlora_core batch PEOPLE --out FOLDER``.

* ``manifest``: who is in the batch (a folder of per-person folders, or a CSV/JSONL manifest);
* ``run``: the two stages (faces, network) with the models loaded once, in this process;
* ``ray_run``: the same stages as a Ray Data pipeline, on a local Ray or a cluster (``--ray``);
* ``report``: ``report.jsonl`` (one line per person), ``summary.json`` and the progress bar.

Each person's LoRA is bit-identical to what ``generate`` makes from the same photos and options.
"""

from .manifest import Person, read_people
from .run import BatchSettings, outputs_of, run_batch

__all__ = ["BatchSettings", "Person", "outputs_of", "read_people", "run_batch"]
