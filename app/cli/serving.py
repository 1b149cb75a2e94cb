"""`pizza serve` and `pizza factory-sim`: uvicorn on uvloop, a socket bound before start."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import socket
from collections.abc import Coroutine, Iterator
from multiprocessing.synchronize import Event
from typing import Annotated, Any

import typer
import uvicorn
import uvloop

from app.cli.common import cli, fail, load_settings, prepare_database
from app.cli.workers import supervise
from app.config import Settings
from factory_sim import SimulatorConfig, create_simulator_app
from telemetry.logging import configure_logging, log_source


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
        # The service writes its own access line (telemetry/server.py), with the duration.
        access_log=False,
        # No route speaks WebSocket: uvicorn neither loads nor offers a WebSocket protocol.
        ws="none",
    )


WAKE_S = 0.5
SIMULATOR_LOG_SOURCE = "factory-simulator"
TICKS_PER_WAKE = 5  # uvicorn counts a tick per 0.1 s


class _Server(uvicorn.Server):
    """One of the servers of this process: the process, not each server, handles signals.

    uvicorn's own handlers, one set per server, chain into each other and end by
    re-raising the signal, so a stop exited 0, 130 or -15 depending on timing.
    """

    # Whose log records this server's tasks write, when not the service's (log_source).
    log_source: str | None = None
    # Set once the server serves (a worker tells its supervisor: app/cli/workers.py).
    started_event: Event | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        # uvicorn wakes ten times a second to look for a stop request and to refresh the
        # Date header: twice is enough (a stop is acted on within half a second, the date
        # still changes every second), and an idle service sleeps (pizza bench,
        # idle_cpu_ms_per_s).
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + TICKS_PER_WAKE) % 864_000  # on_tick dates every 10th
            await asyncio.sleep(WAKE_S)
            should_exit = await self.on_tick(counter)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        if self.log_source is not None:
            # This task's context, inherited by every connection it serves.
            log_source.set(self.log_source)
        await super().serve(sockets=sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            # Everything built at start (app, routes, models, telemetry) is kept for the
            # process's life: out of the collector's sight, a full collection under load
            # has far fewer objects to walk (latency tails, pizza bench).
            gc.collect()
            gc.freeze()
            if self.started_event is not None:
                self.started_event.set()
            for sock in sockets or []:
                host, port = sock.getsockname()[:2]
                shown = f"[{host}]" if ":" in host else host
                logging.getLogger("uvicorn.error").info(
                    "listening on http://%s:%d (Ctrl+C to stop)", shown, port
                )


def _bind(host: str, port: int, what: str) -> socket.socket:
    """Take the port before anything starts: a taken one is one clear line and exit 2."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose proto
    # says TCP. Without it every answer written in two parts (headers, then body) waits
    # for the client's delayed ACK: 40 ms per request (pizza bench, order_p50_ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        reason = "already in use" if error.errno == errno.EADDRINUSE else error.strerror
        fail(f"configuration error: {what}: cannot listen on {host}:{port}: {reason}")
    return sock


async def _run_servers(
    servers: list[tuple[uvicorn.Server, socket.socket]],
    stop_signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
) -> int:
    """Serve until one of ``stop_signals`` (graceful; a second one stops at once) or until
    a server ends; then stop the others. 0, or uvicorn's code if one did not start."""
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        for server, _ in servers:
            server.should_exit = True
            server.force_exit = server.force_exit or signals > 1

    loop = asyncio.get_running_loop()
    for sig in stop_signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)

    async def run(server: uvicorn.Server, sock: socket.socket) -> int:
        code = 0
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn's answer to an app that failed to start
            code = exc.code if isinstance(exc.code, int) and exc.code else 1
        finally:
            sock.close()
        for other, _ in servers:  # the process is one unit: one server ending ends it
            other.should_exit = True
        return code

    return max(await asyncio.gather(*(run(server, sock) for server, sock in servers)))


def _serve(settings: Settings, host: str, port: int) -> int:
    from app.main import create_app

    sockets = [_bind(host, port, "--port")]
    if settings.uses_simulator:
        sockets.append(_bind("127.0.0.1", settings.factory_sim_port, "FACTORY_SIM_PORT"))
    servers: list[tuple[uvicorn.Server, socket.socket]] = [
        (_Server(_uvicorn_config(create_app(settings), host, port)), sockets[0])
    ]
    if settings.uses_simulator:
        simulator = create_simulator_app(
            SimulatorConfig(
                api_key=settings.factory_sim_api_key.get_secret_value(),
                admin_key=settings.factory_sim_admin_key.get_secret_value(),
            )
        )
        bundled = _Server(_uvicorn_config(simulator, "127.0.0.1", settings.factory_sim_port))
        # The simulator stands in for the vendor: no telemetry of its own, and its log
        # records are not the service's (shown with "source" on stdout, not exported).
        bundled.log_source = SIMULATOR_LOG_SOURCE
        servers.append((bundled, sockets[1]))
    return run_on_uvloop(_run_servers(servers))


def _worker(sock: socket.socket, started: Event) -> None:
    """One process of `pizza serve --workers N`: the app built from the environment, served
    on the supervisor's socket until the supervisor's SIGTERM (app/cli/workers.py)."""
    # A Ctrl+C reaches the whole process group: the supervisor alone acts on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from app.main import create_app

    settings = load_settings()
    configure_logging(secrets=settings.secrets)
    server = _Server(_uvicorn_config(create_app(settings), "", 0))
    server.started_event = started
    code = run_on_uvloop(_run_servers([(server, sock)], stop_signals=(signal.SIGTERM,)))
    raise SystemExit(code)


def run_on_uvloop(main: Coroutine[Any, Any, int]) -> int:
    """uvloop's event loop (libuv), as `uvicorn.run` would pick: the service's whole
    per-request cost shrinks with the loop's (pizza bench)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def _stopped(code: int) -> None:
    if code:
        fail("error: the service did not start; the log above says why", 1)


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
    log = logging.getLogger("app")
    if settings.uses_simulator:
        log.warning(
            "no FACTORY_URL: using the bundled factory simulator at http://127.0.0.1:%d "
            "(vendor key: FACTORY_SIM_API_KEY, see README)",
            settings.factory_sim_port,
        )
    from app.bootstrap import DEMO_ADMIN

    # Before any worker starts: a database that cannot be set up is one line and exit 1.
    prepared = prepare_database(settings, demo=demo)
    if prepared.demo_password is not None:
        # Printed once, to the terminal only: it is not logged.
        typer.echo(f"--demo: {DEMO_ADMIN} can sign in with password {prepared.demo_password}")
    elif demo:
        typer.echo("--demo: the database already has data; left as it is")
    if workers > 1:
        sock = _bind(host, port, "--port")
        _stopped(supervise(workers, sock, _worker))
        return
    _stopped(_serve(settings, host, port))


@cli.command("factory-sim")
def factory_sim(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 3100,
    api_key: Annotated[
        str | None, typer.Option(help="vendor key (default: FACTORY_SIM_API_KEY)")
    ] = None,
    admin_key: Annotated[
        str | None,
        typer.Option(help="the factory admin's key (default: FACTORY_SIM_ADMIN_KEY)"),
    ] = None,
    throttle_delay_s: Annotated[float, typer.Option(min=0)] = 32.0,
) -> None:
    """Run the pizza factory simulator alone (docs/factory.md), chaos control included."""
    settings = load_settings()
    configure_logging(secrets=settings.secrets)
    config = SimulatorConfig(
        api_key=api_key or settings.factory_sim_api_key.get_secret_value(),
        admin_key=admin_key or settings.factory_sim_admin_key.get_secret_value(),
        throttle_delay_s=throttle_delay_s,
    )
    sock = _bind(host, port, "--port")
    server = _Server(_uvicorn_config(create_simulator_app(config), host, port))
    _stopped(run_on_uvloop(_run_servers([(server, sock)])))
