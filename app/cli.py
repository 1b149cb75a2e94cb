"""The `pizza` command (operations.md). Exit codes: 0 ok, 2 usage or configuration, 1 other."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from decimal import Decimal
from typing import Annotated, NoReturn

import typer
import uvicorn
from pydantic import ValidationError

from app.config import Settings, describe_errors
from clients.simulator import SimulatorConfig, create_simulator_app
from telemetry.logging import configure_logging

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="JWT Pizza service")
admin_cli = typer.Typer(no_args_is_help=True, help="Accounts")
cli.add_typer(admin_cli, name="admin")

DEMO_MENU = [
    ("Veggie", "A garden of delight", "pizza1.png", "0.0038"),
    ("Pepperoni", "Spicy treat", "pizza2.png", "0.0042"),
    ("Margarita", "Essential classic", "pizza3.png", "0.0042"),
    ("Crusty", "A dry mouthed favorite", "pizza4.png", "0.0028"),
    ("Charred Leopard", "For those with a darker side", "pizza5.png", "0.0099"),
]


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


def _uvicorn_config(app: object, host: str, port: int) -> uvicorn.Config:
    # Our own logging config, no Server banner header, X-Forwarded-For judged by TRUSTED_PROXIES.
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_config=None,
        server_header=False,
        proxy_headers=False,
        lifespan="on",
    )


async def _serve(settings: Settings, host: str, port: int) -> None:
    from app.main import create_app

    servers = [uvicorn.Server(_uvicorn_config(create_app(settings), host, port))]
    if settings.uses_simulator:
        simulator = create_simulator_app(
            SimulatorConfig(
                api_key=settings.factory_sim_api_key.get_secret_value(),
                cors_origins=settings.cors_origins,
            )
        )
        servers.append(
            uvicorn.Server(_uvicorn_config(simulator, "127.0.0.1", settings.factory_sim_port))
        )
    await asyncio.gather(*(server.serve() for server in servers))


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 3000,
    workers: Annotated[int, typer.Option(min=1, max=64)] = 1,
    demo: Annotated[bool, typer.Option(help="fill an empty database with sample data")] = False,
) -> None:
    """Run the service (and the bundled factory simulator when FACTORY_URL is unset)."""
    settings = load_settings()
    if settings.uses_simulator and workers > 1:
        fail("configuration error: FACTORY_URL: required with --workers above 1")
    if demo and settings.production:
        fail("configuration error: --demo is for development only")
    if not settings.public_url:
        os.environ["PUBLIC_URL"] = f"http://127.0.0.1:{port}"
        settings = load_settings()
    configure_logging(secrets=settings.secrets)
    import logging

    log = logging.getLogger("app")
    if settings.uses_simulator:
        log.warning(
            "no FACTORY_URL: using the bundled factory simulator at http://127.0.0.1:%d "
            "(vendor key: FACTORY_SIM_API_KEY, see README)",
            settings.factory_sim_port,
        )
    if demo:
        asyncio.run(_demo(settings))
    if workers > 1:
        # Each worker process builds its own app (and telemetry) from the environment.
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=None,
            server_header=False,
            proxy_headers=False,
        )
        return
    asyncio.run(_serve(settings, host, port))


async def _demo(settings: Settings) -> None:
    from app import db
    from app.main import create_admin
    from app.models import Franchise, MenuItem, Role, Store, UserRole

    engine = db.create_engine(settings.database_url)
    try:
        await db.migrate(engine)
        sessions = db.session_factory(engine)
        async with sessions() as session:
            if await session.get(MenuItem, 1) is not None:
                typer.echo("--demo: the database already has data; left as it is")
                return
            for title, description, image, price in DEMO_MENU:
                session.add(
                    MenuItem(
                        title=title, description=description, image=image, price=Decimal(price)
                    )
                )
            franchise = Franchise(name="pizzaPocket")
            session.add(franchise)
            await session.flush()
            assert franchise.id is not None
            session.add(Store(franchise_id=franchise.id, name="SLC"))
            await session.commit()
        password = secrets.token_urlsafe(12)
        admin = await create_admin(
            sessions, name="Demo Admin", email="admin@jwt.com", password=password
        )
        async with sessions() as session:
            assert admin.id is not None
            session.add(UserRole(user_id=admin.id, role=Role.FRANCHISEE, object_id=franchise.id))
            await session.commit()
        # Printed once, to the terminal only: it is not logged.
        typer.echo(f"--demo: admin@jwt.com can sign in with password {password}")
    finally:
        await engine.dispose()


@cli.command("factory-sim")
def factory_sim(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 3100,
    api_key: Annotated[
        str | None, typer.Option(help="vendor key (default: FACTORY_SIM_API_KEY)")
    ] = None,
    throttle_delay_s: Annotated[float, typer.Option(min=0)] = 32.0,
) -> None:
    """Run the pizza factory simulator alone (factory.md), chaos control included."""
    settings = load_settings()
    configure_logging(secrets=settings.secrets)
    config = SimulatorConfig(
        api_key=api_key or settings.factory_sim_api_key.get_secret_value(),
        throttle_delay_s=throttle_delay_s,
        cors_origins=settings.cors_origins,
    )
    asyncio.run(uvicorn.Server(_uvicorn_config(create_simulator_app(config), host, port)).serve())


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
    asyncio.run(_admin_create(settings, body.name, body.email, body.password))
    typer.echo(f"admin {body.email} is ready")


async def _admin_create(settings: Settings, name: str, email: str, password: str) -> None:
    from app import db
    from app.main import create_admin

    engine = db.create_engine(settings.database_url)
    try:
        await db.migrate(engine)
        await create_admin(db.session_factory(engine), name=name, email=email, password=password)
    finally:
        await engine.dispose()


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)
