"""`pizza migrate`, `pizza admin create` and `pizza incident report`: what an operator asks
of the database."""

from __future__ import annotations

from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError

from app.cli.common import (
    admin_cli,
    cli,
    fail,
    incident_cli,
    load_settings,
    on_database,
    prepare_database,
)
from app.config import Settings

T = TypeVar("T")


@cli.command()
def migrate() -> None:
    """Set the database up, then exit: the schema at the newest migration, the development
    token secret, the first admin from ADMIN_EMAIL. For deployments that migrate as a step
    of their own; `pizza serve` does the same at every start, one process at a time."""
    from app import db
    from telemetry.logging import configure_logging

    settings = load_settings()
    configure_logging(secrets=settings.secrets)
    prepare_database(settings)
    typer.echo(f"the database is set up: schema at revision {db.head_revision()}")


@admin_cli.command("create")
def admin_create(
    name: Annotated[str, typer.Option()],
    email: Annotated[str, typer.Option()],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True)],
) -> None:
    """Make an admin (there is no default admin). Brings the schema up to date first."""
    from app.schemas import RegisterBody

    try:
        body = RegisterBody(name=name, email=email, password=password)
    except ValidationError as error:
        for item in error.errors():
            typer.echo(f"error: --{item['loc'][0]}: {item['msg']}", err=True)
        raise typer.Exit(2) from None
    settings = load_settings()
    prepare_database(settings)
    on_database(settings, _admin_create(settings, body.name, body.email, body.password))
    typer.echo(f"admin {body.email} is ready")


async def _admin_create(settings: Settings, name: str, email: str, password: str) -> None:
    from app import db
    from app.users.accounts import create_admin

    engine = db.create_engine(settings.database_url)
    try:
        await create_admin(db.session_factory(engine), name=name, email=email, password=password)
    finally:
        await engine.dispose()


@incident_cli.command("report")
def incident_report(
    incident_id: Annotated[
        int | None, typer.Argument(min=1, help="the incident's id (default: the latest)")
    ] = None,
) -> None:
    """A Markdown postmortem draft of a recorded incident (the latest by default)."""
    from app.incidents.report import report_from_settings

    settings = load_settings()
    text = on_database(settings, report_from_settings(settings, incident_id))
    if text is None:
        fail(
            "no incident is recorded in this database"
            if incident_id is None
            else f"no incident {incident_id}: `GET /factory/incidents` lists them"
        )
    typer.echo(text, nl=False)
