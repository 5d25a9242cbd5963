"""Every "spec section N" the code and docs cite is a heading of docs/spec.md.

The pack's comments and docs point into the HyperLoRA v1 facts by number, in several forms:
"spec section 8", "spec sections 1-5", "spec sections 6 and 7", "spec 4.4", "spec §8",
"section 8 of the spec", "the spec's face polygon (section 8)". docs/spec.md numbers its headings
("## 8. ...", "### 4.4 ..."); a citation whose number has no heading is a dangling reference.
The folders are walked, so a module moved into a new subpackage is checked as well.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = Path("docs") / "spec.md"
# The folders whose files may cite the spec; files at the top of the repo (README.md) are read too.
SCANNED_DIRS = ("hyperlora_core", "nodes", "scripts", "tests", "web", "docs")
SUFFIXES = {".py", ".sh", ".js", ".mjs", ".md"}
SKIPPED_DIRS = {"__pycache__", "node_modules"}  # and every hidden folder (.git, .venv, ...)
MAX_RANGE = 50  # a longer "N-M" is a typo, not a citation; its ends are still checked

_NUM = r"\d+(?:\.\d+)*"
# "1-5", "6 and 7", "1, 2 and 4", "4.1 to 4.3"
_LIST = rf"{_NUM}(?:\s*(?:-|–|—|\bto\b|,\s*(?:and\b|or\b)?|\band\b|\bor\b|&)\s*{_NUM})*"
# Between words: spaces, a line break, and the comment or markdown marks of a wrapped line.
_GAP = r"(?:[\s#*>`(]|//)*\s(?:[\s#*>`(]|//)*"
_SPEC = r"\bspec(?:\.md)?(?:'s)?[,:]?"
_KEYWORD = rf"(?:sections?{_GAP}|§§?\s*)"
PATTERNS = (
    # spec section 8 / spec sections 1-5 / spec §8 / spec.md section 8
    re.compile(rf"{_SPEC}{_GAP}{_KEYWORD}(?P<nums>{_LIST})", re.IGNORECASE),
    # spec 4.4 / spec §4.5 (on one line: a bare number after a line break is too loose)
    re.compile(rf"{_SPEC}[ \t]+§?\s*(?P<nums>{_LIST})", re.IGNORECASE),
    # section 8 of the spec / sections 6 and 7 of the HyperLoRA spec
    re.compile(rf"{_KEYWORD}(?P<nums>{_LIST}){_GAP}of{_GAP}the{_GAP}(?:[\w.-]+{_GAP}){{0,2}}spec\b",
               re.IGNORECASE),
    # the spec's face polygon (section 8)
    re.compile(rf"\bspec's\b[^()\n]{{0,80}}?\(\s*{_KEYWORD}(?P<nums>{_LIST})", re.IGNORECASE),
)
_HEADING = re.compile(rf"^#{{1,6}}[ \t]+(?:§[ \t]*)?(?P<num>{_NUM})\.?(?:[ \t]|$)", re.MULTILINE)
_RANGE_SEP = re.compile(r"\s*(?:-|–|—|to)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Citation:
    path: str  # relative to the scanned root, with forward slashes
    line: int
    section: str
    text: str  # the words that cite it, for the failure message

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def _expand_range(start: str, end: str) -> list[str]:
    """'1'-'5' -> 1..5, '4.1'-'4.3' (or '4.1'-'3') -> 4.1..4.3; anything else -> its two ends."""
    first = [int(p) for p in start.split(".")]
    last = [int(p) for p in end.split(".")]
    if len(last) == 1 and len(first) > 1:
        last = first[:-1] + last
    if len(first) != len(last) or first[:-1] != last[:-1] or not 0 < last[-1] - first[-1] <= MAX_RANGE:
        return [start, end]
    prefix = "".join(f"{p}." for p in first[:-1])
    return [f"{prefix}{n}" for n in range(first[-1], last[-1] + 1)]


def expand_numbers(numbers: str) -> list[str]:
    """The sections a list such as '1-5', '6 and 7' or '4.4' names, in order."""
    found = list(re.finditer(_NUM, numbers))
    sections: list[str] = []
    for i, match in enumerate(found):
        between = numbers[found[i - 1].end():match.start()] if i else ""
        if i and _RANGE_SEP.fullmatch(between):
            sections.pop()
            sections.extend(_expand_range(found[i - 1].group(), match.group()))
        else:
            sections.append(match.group())
    return list(dict.fromkeys(sections))


def find_citations(text: str, path: str = "<text>") -> list[Citation]:
    """Every spec section cited in ``text``, each once per place it is cited."""
    seen: set[tuple[int, str]] = set()
    citations: list[Citation] = []
    for pattern in PATTERNS:
        for match in pattern.finditer(text):
            start = match.start("nums")
            line = text.count("\n", 0, start) + 1
            words = " ".join(match.group().split())
            for section in expand_numbers(match.group("nums")):
                if (start, section) not in seen:
                    seen.add((start, section))
                    citations.append(Citation(path, line, section, words))
    return sorted(citations, key=lambda c: (c.path, c.line, c.section))


def spec_headings(text: str) -> set[str]:
    """The section numbers docs/spec.md has headings for ('8', '4.4', ...)."""
    return {match.group("num") for match in _HEADING.finditer(text)}


def cited_files(root: Path) -> list[Path]:
    """The files that may cite the spec: walked, not listed, so new subpackages are included."""
    files = [path for path in root.iterdir() if path.is_file() and path.suffix in SUFFIXES]
    for name in SCANNED_DIRS:
        for folder, dirs, names in os.walk(root / name):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS)
            files.extend(Path(folder) / n for n in names if Path(n).suffix in SUFFIXES)
    return sorted(path for path in files if path.relative_to(root) != SPEC)


def citations_in(root: Path) -> list[Citation]:
    citations: list[Citation] = []
    for path in cited_files(root):
        text = path.read_text(encoding="utf-8", errors="replace")
        citations.extend(find_citations(text, path.relative_to(root).as_posix()))
    return citations


def unresolved(citations: list[Citation], headings: set[str]) -> list[str]:
    """One line per citation whose section has no heading: 'file:line: section N ...'."""
    return [f"{c.where()}: section {c.section} has no heading in {SPEC.as_posix()} (cited as {c.text!r})"
            for c in citations if c.section not in headings]


# -- the tree -------------------------------------------------------------------------------------

def test_every_spec_citation_resolves_to_a_heading():
    spec = ROOT / SPEC
    assert spec.is_file(), f"{SPEC.as_posix()} is missing; the code cites it by section number."
    citations = citations_in(ROOT)
    assert any(c.path.startswith("hyperlora_core/") for c in citations), (
        "No spec citation found under hyperlora_core/: the finder or the walk is broken.")
    missing = unresolved(citations, spec_headings(spec.read_text(encoding="utf-8")))
    assert not missing, "Spec citations without a heading in docs/spec.md:\n" + "\n".join(missing)


def test_spec_section_numbers_are_unique():
    numbers = [m.group("num") for m in _HEADING.finditer((ROOT / SPEC).read_text(encoding="utf-8"))]
    twice = sorted({n for n in numbers if numbers.count(n) > 1})
    assert not twice, f"{SPEC.as_posix()} numbers more than one heading {', '.join(twice)}."


# -- the finder -----------------------------------------------------------------------------------

SAMPLE = '''\
"""From coefficients to LoRA weights (spec sections 6 and 7)."""
# Random checkpoints in the exact release layout (spec sections 1-5).
    weights: the plain mean of spec 4.4 ...
    """(B, Q, K) -> each token L2-normalised (the per-photo form of spec 4.5)."""
# The spec's face polygon (section 8), in its order: contour and brows.
as section 3 of the spec says; see spec §2 and docs/spec.md section 7.
converted as the reference does (a long comment that wraps before the spec
# section 8 it cites).
'''


def test_finder_knows_every_form_the_code_uses():
    found = [(c.line, c.section) for c in find_citations(SAMPLE)]
    assert found == [(1, "6"), (1, "7"), (2, "1"), (2, "2"), (2, "3"), (2, "4"), (2, "5"), (3, "4.4"),
                     (4, "4.5"), (5, "8"), (6, "2"), (6, "3"), (6, "7"), (8, "8")], found


def test_finder_ignores_code_that_only_says_spec_or_section():
    code = 'for section in ("required", "optional"):\n    kind = spec[0]\n    spec.get(section, {})\n'
    assert find_citations(code) == []
    assert find_citations("LICENSE terms of section 4, provided that ...") == []


@pytest.mark.parametrize("numbers, sections", [
    ("8", ["8"]), ("1-5", ["1", "2", "3", "4", "5"]), ("6 and 7", ["6", "7"]),
    ("4.1-4.3", ["4.1", "4.2", "4.3"]), ("4.1-3", ["4.1", "4.2", "4.3"]), ("1, 2 and 4", ["1", "2", "4"]),
    ("4.4-5.1", ["4.4", "5.1"]),
])
def test_section_lists_and_ranges_expand(numbers: str, sections: list[str]):
    assert expand_numbers(numbers) == sections


def test_headings_are_read_with_and_without_a_trailing_dot():
    text = "# Title\n## 1. Files\n### 4.4 Mean\n#### §9 Weak points\n2. a numbered list item\n"
    assert spec_headings(text) == {"1", "4.4", "9"}


def test_a_missing_section_is_named_with_its_file_and_line(tmp_path: Path):
    missing = 12
    module = tmp_path / "hyperlora_core" / "moved" / "sub" / "maths.py"
    module.parent.mkdir(parents=True)
    module.write_text(f'"""Docstring."""\n\n# as spec section {missing} and spec 4.4 say\n', encoding="utf-8")
    hidden = tmp_path / "hyperlora_core" / ".venv" / "lib" / "other.py"  # hidden folders are skipped
    hidden.parent.mkdir(parents=True)
    hidden.write_text(f"# spec section {missing + 1}\n", encoding="utf-8")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "spec.md").write_text(f"## 4. Net\n### 4.4 Mean\n# spec section {missing + 2}\n",
                                               encoding="utf-8")
    citations = citations_in(tmp_path)
    assert [c.where() for c in citations] == ["hyperlora_core/moved/sub/maths.py:3"] * 2
    assert unresolved(citations, spec_headings((tmp_path / SPEC).read_text(encoding="utf-8"))) == [
        f"hyperlora_core/moved/sub/maths.py:3: section {missing} has no heading in docs/spec.md "
        f"(cited as 'spec section {missing}')"]
