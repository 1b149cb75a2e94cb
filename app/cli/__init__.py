"""The `pizza` command (operations.md). Exit codes: 0 ok, 2 usage or configuration, 1 other.

serving.py runs the service and the factory simulator, operators.py holds what an
operator asks of a database (accounts, incident reports), tools.py the commands that
run the service as a process to measure it (pizza_tools, loaded only when they run).
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, NoReturn

import typer
from pydantic import ValidationError

from app.config import Settings, describe_errors

if TYPE_CHECKING:
    from app.bootstrap import Prepared

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="JWT Pizza service")
admin_cli = typer.Typer(no_args_is_help=True, help="Accounts")
cli.add_typer(admin_cli, name="admin")
incident_cli = typer.Typer(no_args_is_help=True, help="Recorded factory incidents")
cli.add_typer(incident_cli, name="incident")


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and .env; one line per mistake, exit 2."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        for line in describe_errors(error):
            typer.echo(f"configuration error: {line}", err=True)
        raise typer.Exit(2) from None


def prepare_database(settings: Settings, *, demo: bool = False) -> Prepared:
    """The database set up (app/bootstrap.py); one that cannot be reached is one line
    naming it and exit 1."""
    from app.bootstrap import DatabaseUnreachable, prepare

    try:
        return asyncio.run(prepare(settings, demo=demo))
    except DatabaseUnreachable as error:
        fail(f"error: {error}", 1)


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)


# The commands register themselves on `cli` when their modules load.
from app.cli import operators, serving, tools  # noqa: E402

__all__ = [
    "cli",
    "fail",
    "load_settings",
    "main",
    "operators",
    "prepare_database",
    "serving",
    "tools",
]
