"""What every `pizza` command shares: the Typer apps, settings, the database, failing.

The command modules (serving.py, operators.py, tools.py) import this module, and the
package's `__init__` imports them: none of them imports the package back.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError

from app.config import Settings, describe_errors

if TYPE_CHECKING:
    from app.bootstrap import Prepared

T = TypeVar("T")

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


def on_database(settings: Settings, work: Coroutine[Any, Any, T]) -> T:
    """Run a command's ``work`` on the database; a database that cannot be reached is one
    line on stderr naming it, and exit 1, not a traceback (any other error is a bug and
    keeps its own)."""
    from sqlalchemy.engine import make_url

    from app.bootstrap import DatabaseUnreachable
    from app.sql.failures import driver_error, unreachable

    url = make_url(settings.database_url)
    try:
        if settings.is_sqlite and url.database and url.database != ":memory:":
            # Opened here first: when aiosqlite fails to open a file, its thread outlives
            # the event loop and prints a traceback of its own at exit.
            sqlite3.connect(url.database).close()
        return asyncio.run(work)
    except Exception as error:
        work.close()  # never started when the file could not be opened
        if not isinstance(error, DatabaseUnreachable) and not unreachable(error):
            raise
        reason = str(error) if isinstance(error, DatabaseUnreachable) else driver_error(error)
        for secret in [*settings.secrets(), url.password]:
            if secret:
                reason = reason.replace(str(secret), "***")
        where = url.render_as_string(hide_password=True)
        fail(
            f"error: cannot reach the database {where} ({reason}): is it up, and "
            "DATABASE_URL right?",
            1,
        )


def prepare_database(settings: Settings, *, demo: bool = False) -> Prepared:
    """The database set up (app/bootstrap.py), or one line and exit 1 (`on_database`)."""
    from app.bootstrap import prepare

    return on_database(settings, prepare(settings, demo=demo))
