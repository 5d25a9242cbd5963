"""What a batch tells: one JSON line per person in ``report.jsonl``, a summary at the end, a progress bar.

The report is appended one whole line at a time (a single ``write`` on a file opened for appending), so
a run killed at any moment leaves every earlier line intact, and a restarted run adds its own lines
after them. Each line carries the run's ``run`` id (its start time) so runs can be told apart.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..files.atomic import write_atomic, write_error

log = logging.getLogger(__name__)

REPORT_NAME = "report.jsonl"
SUMMARY_NAME = "summary.json"

MADE, DONE_BEFORE, FAILED = "made", "done before", "failed"


@dataclass
class PersonReport:
    """One person's line: ``status`` is made, done before (outputs found whole, not recomputed) or failed."""

    id: str
    status: str
    photos_used: list[str] = field(default_factory=list)
    photos_skipped: list[dict[str, str]] = field(default_factory=list)  # {"photo": ..., "reason": ...}
    photo_check: dict | None = None  # the photo check of the faces found: flags, kept photos, weights
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    run: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> "PersonReport":
        known = {k: row[k] for k in cls.__dataclass_fields__ if k in row}
        return cls(**known)


class ReportWriter:
    """Appends person lines to ``folder/report.jsonl`` and writes the summary."""

    def __init__(self, folder: Path, run: str | None = None):
        self.path = folder / REPORT_NAME
        self.run = run or time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        self.lines: list[PersonReport] = []

    def add(self, line: PersonReport) -> None:
        line.run = self.run
        data = (line.to_json() + "\n").encode("utf-8")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            raise write_error(self.path, exc) from exc
        self.lines.append(line)

    def summary(self, seconds: float) -> dict[str, Any]:
        counts = {status: sum(1 for line in self.lines if line.status == status) for status in (MADE, DONE_BEFORE, FAILED)}
        made = counts[MADE]
        return {
            "run": self.run,
            "people": len(self.lines),
            "made": made,
            "done_before": counts[DONE_BEFORE],
            "failed": counts[FAILED],
            "failed_ids": [line.id for line in self.lines if line.status == FAILED],
            "photos_skipped": sum(len(line.photos_skipped) for line in self.lines),
            "seconds": round(seconds, 3),
            "people_per_minute": round(60.0 * made / seconds, 3) if seconds > 0 and made else 0.0,
            "report": str(self.path),
        }

    def write_summary(self, seconds: float) -> dict[str, Any]:
        summary = self.summary(seconds)
        write_atomic(self.path.with_name(SUMMARY_NAME), (json.dumps(summary, indent=1) + "\n").encode("utf-8"),
                     overwrite=True)
        return summary


def read_report(folder: Path) -> list[PersonReport]:
    """Every whole line of ``folder/report.jsonl`` (a line cut by a crash is left out)."""
    path = folder / REPORT_NAME
    if not path.is_file():
        return []
    lines = []
    for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            lines.append(PersonReport.from_dict(json.loads(text)))
        except (ValueError, TypeError):
            continue
    return lines


class Progress:
    """A progress bar (tqdm when installed, else a line per person) with people per minute."""

    def __init__(self, total: int, enabled: bool = True):
        self.total = total
        self.done = 0
        self.made = 0
        self.started = time.perf_counter()
        self.bar = None
        self.enabled = enabled
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc="people", unit="person", dynamic_ncols=True, file=sys.stderr)

    @property
    def per_minute(self) -> float:
        elapsed = time.perf_counter() - self.started
        return 60.0 * self.made / elapsed if elapsed > 0 else 0.0

    def update(self, line: PersonReport) -> None:
        self.done += 1
        self.made += line.status == MADE
        if not self.enabled:
            return
        text = f"{self.per_minute:.1f} people/min"
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(text)
        else:
            print(f"[{self.done}/{self.total}] {line.id}: {line.status} ({text})", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
