"""The benchmark, ``python -m hyperlora_core.bench``, and everything only it (and the tests) needs.

* ``run``: the stages, this project's path against a straightforward one, and the report;
* ``common``: timing, peak memory and the machine description;
* ``chain``: photos -> LoRA as the command line runs it; ``faces``: antelopev2-sized face models;
* ``merge``: merging a LoRA into weights (the straightforward path's counterpart);
* ``reference``: the reference implementation's own CPU path (float32), re-derived, for two stages;
* ``synthetic``: random checkpoints in the exact release layout.
"""
