"""bench/common.py: the spread of timings and the machine each benchmark report names (no timings are
asserted)."""

from __future__ import annotations

import torch

from hyperlora_core.bench import common as bench_common


def test_spread_and_speedup_range():
    s = bench_common.spread([3.0, 1.0, 2.0, 5.0, 4.0])
    assert (s["min_s"], s["median_s"], s["max_s"], s["runs"]) == (1.0, 3.0, 5.0, 5)
    fast, slow = bench_common.spread([1.0, 2.0, 4.0]), bench_common.spread([8.0, 10.0, 12.0])
    c = bench_common.compare(fast, slow)
    assert c["speedup"] == 5.0 and c["speedup_range"] == [2.0, 12.0]


def test_machine_names_cpu_cores_torch_and_load():
    info = bench_common.finish_machine(bench_common.machine(torch.device("cpu")))
    assert info["cpu"] and info["cores"] >= 1 and info["threads"] == torch.get_num_threads()
    assert info["torch"] == torch.__version__
    assert len(info["load_average_start"]) == len(info["load_average_end"]) == 3
    assert info["loaded"] == (max(info["load_average_start"][0], info["load_average_end"][0]) > 1.25 * info["cores"])
