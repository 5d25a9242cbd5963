"""The command line, ``python -m hyperlora_core COMMAND``: ``main`` parses and runs one command.

* ``app``: the parser, ``main`` and the one-line error handling;
* ``common``: what the commands share (exit codes, console output, the models folder, file checks);
* ``download``, ``generate``, ``batch``, ``score``: one module per command.
"""

from .app import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]
