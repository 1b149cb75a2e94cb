"""The `pizza` command (docs/operations.md#commands).

Exit codes: 0 ok, 2 usage or configuration, 1 other.

common.py holds what every command shares, serving.py runs the service and the factory
simulator, operators.py holds what an operator asks of a database (accounts, incident
reports), tools.py the commands that run the service as a process to measure it
(pizza_tools, loaded only when they run).
"""

from __future__ import annotations

import sys

# The commands register themselves on `cli` when their modules load.
from app.cli import operators, serving, tools
from app.cli.common import cli, fail, load_settings, on_database, prepare_database


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = [
    "cli",
    "fail",
    "load_settings",
    "main",
    "on_database",
    "operators",
    "prepare_database",
    "serving",
    "tools",
]
