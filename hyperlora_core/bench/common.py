"""What every benchmark stage shares: timing with the spread, peak memory, and the machine it ran on."""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import re
import statistics
import threading
import time

import torch

WARMUP = 1  # untimed runs before each measurement (the bench's --warmup)


def _release_freed_memory() -> None:
    """Give freed heap pages back to the OS, so that RSS growth shows a stage's own allocations."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory above the level at entry: CUDA allocator stats, or sampled RSS on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_bytes = 0
        self.peak_rss_bytes = 0  # CPU only: with the file pages the process has mapped (VmRSS)

    @staticmethod
    def _rss_both() -> tuple[int, int]:
        """Anonymous resident memory (what the process allocated) and all of it with mapped file pages."""
        anon = total = 0
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) * 1024
                elif line.startswith("VmRSS:"):
                    total = int(line.split()[1]) * 1024
        return anon, total

    @classmethod
    def _rss(cls) -> int:
        return cls._rss_both()[0]

    def __enter__(self):
        gc.collect()
        _release_freed_memory()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base, self._base_total = self._rss_both()
            self._max, self._max_total = self._base, self._base_total
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            anon, total = self._rss_both()
            self._max, self._max_total = max(self._max, anon), max(self._max_total, total)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._stop.set()
            self._thread.join()
            anon, total = self._rss_both()
            self.peak_bytes = max(self._max, anon) - self._base
            self.peak_rss_bytes = max(self._max_total, total) - self._base_total


def spread(times: list[float]) -> dict:
    """min / median / max of timed runs, in seconds."""
    return {"min_s": round(min(times), 5), "median_s": round(statistics.median(times), 5),
            "max_s": round(max(times), 5), "runs": len(times)}


def measure(fn, device: torch.device, repeats: int, warmup: int | None = None) -> dict:
    for _ in range(WARMUP if warmup is None else warmup):
        fn()
    times, peaks = [], []
    for _ in range(repeats):
        with PeakMemory(device) as mem:
            start = time.perf_counter()
            result = fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        peaks.append(mem.peak_bytes)
        del result
    return {**spread(times), "peak_mb": round(max(peaks) / 2**20, 1)}


def measure_interleaved(paths: dict[str, tuple], device: torch.device, warmup: int | None = None) -> dict[str, dict]:
    """Several paths timed in turn within each round, so that a change in the machine's load falls
    on all of them alike. paths: name -> (fn, repeats); returns name -> measure()'s figures."""
    for fn, _ in paths.values():
        for _ in range(WARMUP if warmup is None else warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in paths}
    peaks: dict[str, list[int]] = {name: [] for name in paths}
    for round_ in range(max(repeats for _, repeats in paths.values())):
        for name, (fn, repeats) in paths.items():
            if round_ >= repeats:
                continue
            with PeakMemory(device) as mem:
                start = time.perf_counter()
                result = fn()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times[name].append(time.perf_counter() - start)
            peaks[name].append((mem.peak_bytes, mem.peak_rss_bytes))
            del result
    # peak_mb: allocated memory (RssAnon on the CPU); peak_rss_mb: with mapped file pages (VmRSS), CPU only
    return {name: {**spread(times[name]), "peak_mb": round(max(p[0] for p in peaks[name]) / 2**20, 1),
                   **({"peak_rss_mb": round(max(p[1] for p in peaks[name]) / 2**20, 1)} if device.type == "cpu" else {})}
            for name in paths}


def add_reference(stage: dict, reference: dict) -> dict:
    """The reference implementation's own path beside a compare() result: its figures, the speed-up of
    this project over it (medians, and the slowest/fastest range) and its peak memory over ours."""
    p = stage["project"]
    stage["reference"] = reference
    stage["speedup_vs_reference"] = round(reference["median_s"] / max(p["median_s"], 1e-9), 2)
    stage["speedup_vs_reference_range"] = [round(reference["min_s"] / max(p["max_s"], 1e-9), 2),
                                           round(reference["max_s"] / max(p["min_s"], 1e-9), 2)]
    stage["peak_vs_reference"] = round(reference["peak_mb"] / max(p["peak_mb"], 1e-9), 2)
    return stage


def compare(project: dict, straightforward: dict) -> dict:
    """Both paths and the speed-up of the medians, with its range (slowest and fastest pairing)."""
    p, s = project, straightforward
    return {"project": p, "straightforward": s,
            "speedup": round(s["median_s"] / max(p["median_s"], 1e-9), 2),
            "speedup_range": [round(s["min_s"] / max(p["max_s"], 1e-9), 2), round(s["max_s"] / max(p["min_s"], 1e-9), 2)]}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _torch_build() -> str:
    """The parts of torch's build summary that decide CPU speed: BLAS, oneDNN, the vector ISA."""
    config = torch.__config__.show()
    keep = [m.group(0).strip() for pattern in (r"Math Kernel Library Version [^\n]*", r"MKL-DNN v[0-9.]+",
                                                 r"OpenBLAS[^\n,]*", r"CPU capability usage: \w+")
            if (m := re.search(pattern, config))]
    return "; ".join(keep)


def machine(device: torch.device) -> dict:
    """The machine a report comes from, and how busy it was when the run started."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"cpu": _cpu_model(), "cores": cores, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "torch": torch.__version__,
            "torch_build": _torch_build(), "python": platform.python_version(),
            "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def finish_machine(info: dict) -> dict:
    """Add the load at the end; a run whose 1-minute load passed the core count is marked loaded."""
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    worst = max(info["load_average_start"][0], info["load_average_end"][0])
    info["loaded"] = worst > 1.25 * info["cores"]
    return info
