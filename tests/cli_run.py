"""Running `python -m hyperlora_core` in the test's own process, and reading its output."""

from __future__ import annotations

from hyperlora_core import cli


def run(capsys, *args) -> tuple[int, str, str]:
    """The exit code, standard output and standard error of the command line given ``args``."""
    code = cli.main(list(map(str, args)))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str) -> str:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err
