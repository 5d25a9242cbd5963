"""The command line as a whole (cli/app.py): usage errors are one line with exit code 2, and every option
of every command has its help."""

from __future__ import annotations

import pytest

from cli_run import one_line_error, run
from hyperlora_core import cli


# --------------------------------------------------------------------------------------------
# bad usage: one line, exit code 2


@pytest.mark.parametrize(
    "args, words",
    [
        ([], "download or generate"),
        (["generate", "--out", "x.safetensors"], "--photos"),
        (["generate", "--photos", "a.jpg"], "--out"),
        (["generate", "--photos", "a.jpg", "--identity", "i.safetensors", "--out", "x.safetensors"], "not allowed"),
        (["generate", "--photos", "a.jpg", "--out", "x.safetensors", "--dtype", "int8"], "--dtype"),
        (["generate", "--photos", "a.jpg", "--out", "x.safetensors", "--variant", "both"], "--variant"),
        (["generate", "--photos", "a.jpg", "--out", "x.png", "--models-dir", "."], "must end in .safetensors"),
        (["upload"], "invalid choice"),
    ],
)
def test_bad_usage_is_one_line_and_exit_code_2(capsys, args, words):
    code, _, err = run(capsys, *args)
    assert code == 2
    assert words in one_line_error(err)


@pytest.mark.parametrize("command", ["download", "generate"])
def test_help_explains_every_option(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    for action in sub._actions:
        for flag in action.option_strings:
            assert flag in out
        assert action.help and len(action.help) > 10
