"""`pizza admin create` and `pizza incident report` when the database cannot be reached:
one line that says so, and exit 1 (docs/operations.md#commands), not a traceback of 400 lines."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pizza_tools.bench.procs import isolated_env
from tests.e2e.conftest import pizza_command

COMMANDS = [
    ["admin", "create", "--name", "Ada", "--email", "ada@jwt.com", "--password", "a passphrase"],
    ["incident", "report"],
]
# Each test starts `pizza`, a process of its own (seconds of start-up each).
pytestmark = pytest.mark.slow

UNREACHABLE = {
    "nobody listening": "postgresql://postgres:db-pw-4d2f@127.0.0.1:1/pizza",
    "no such database": "postgresql://postgres:db-pw-4d2f@127.0.0.1:5432/no_such_db_for_pizza",
    "a file that cannot be opened": "sqlite:////nonexistent-dir-for-pizza/pizza.db",
}


@pytest.mark.parametrize("where", UNREACHABLE)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_one_line_and_exit_1(command: list[str], where: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [*pizza_command(), *command],
        cwd=tmp_path,
        env=isolated_env(DATABASE_URL=UNREACHABLE[where]),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("error: cannot reach the database "), line
    assert "DATABASE_URL" in line
    assert "db-pw-4d2f" not in line
