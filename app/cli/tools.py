"""`pizza bench`, `pizza soak` and `pizza drill`: pizza_tools, loaded only when one of
them runs (the service never imports it)."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.common import cli, load_settings


@cli.command()
def bench(
    out: Annotated[str, typer.Option(help="where to write the JSON report")] = "bench.json",
    quick: Annotated[bool, typer.Option(help="the short form CI runs")] = False,
    profile: Annotated[
        str | None,
        typer.Option(help="instead: write a py-spy flame graph (SVG) of the service here"),
    ] = None,
    route: Annotated[str, typer.Option(help="with --profile: order or menu")] = "order",
    seconds: Annotated[float, typer.Option(min=1, help="with --profile: how long")] = 15.0,
    telemetry: Annotated[
        bool, typer.Option(help="with --profile: telemetry exported to a local sink")
    ] = False,
) -> None:
    """Benchmark the service against the factory simulator (README, Performance)."""
    from pathlib import Path

    from pizza_tools.bench.runner import bench_command

    settings = load_settings()
    if profile is not None:
        from pizza_tools.bench.profile import profile_command

        raise typer.Exit(
            profile_command(
                database_url=settings.database_url,
                out=Path(profile),
                seconds=seconds,
                route=route,
                telemetry=telemetry,
            )
        )
    code = bench_command(
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        out=Path(out),
        quick=quick,
    )
    raise typer.Exit(code)


@cli.command()
def soak(
    minutes: Annotated[
        float, typer.Option(min=0.5, help="how long the traffic and faults run")
    ] = 30,
    replicas: Annotated[int, typer.Option(min=1, max=8, help="`pizza serve` replicas")] = 3,
    out: Annotated[str, typer.Option(help="where to write the JSON report")] = "soak.json",
    seed: Annotated[int, typer.Option(help="the fault schedule's seed")] = 13,
    keep: Annotated[bool, typer.Option(help="keep the temporary directory and its logs")] = False,
) -> None:
    """Replicas behind nginx on their own PostgreSQL and Redis, faults at random: nothing lost."""
    from pathlib import Path

    from pizza_tools.soak.runner import soak_command

    code = soak_command(minutes=minutes, replicas=replicas, out=Path(out), seed=seed, keep=keep)
    raise typer.Exit(code)


@cli.command()
def drill(
    mode: Annotated[
        str, typer.Option(help="the chaos to inject: fail, throttle, badjwt, or all (each in turn)")
    ] = "all",
    quick: Annotated[bool, typer.Option(help="the short form CI runs")] = False,
) -> None:
    """Replay the 2024-12-05 incident against the simulator: detection, alerts, postmortem."""
    from pizza_tools.drill import Mode
    from pizza_tools.drill.runner import drill_command

    try:
        chosen = Mode(mode)
    except ValueError:
        names = ", ".join(m.value for m in Mode)
        raise typer.BadParameter(f"{mode!r} is not one of {names}", param_hint="--mode") from None
    raise typer.Exit(drill_command(mode=chosen, quick=quick))
