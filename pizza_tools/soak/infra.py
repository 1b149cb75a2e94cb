"""The soak's own PostgreSQL, Redis and nginx: in its temporary directory, on its own
loopback ports, so that restarting them touches nothing else on the machine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from pizza_tools.bench.procs import BenchError, free_port
from pizza_tools.soak.nginx import nginx_conf

PG_BIN = Path(os.environ.get("PIZZA_SOAK_PG_BIN", "/usr/lib/postgresql/15/bin"))
START_TIMEOUT_S = 30.0


def _as_postgres() -> list[str]:
    """PostgreSQL refuses to run as root: then it runs as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


async def _run(*command: str) -> None:
    done = await asyncio.to_thread(
        subprocess.run, list(command), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"{command[0]} exited {done.returncode}: {done.stderr[-2000:]}")


async def wait_for_port(port: int, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        await asyncio.sleep(0.05)
    raise BenchError(f"nothing listening on 127.0.0.1:{port} after {timeout_s:g} s")


class Postgres:
    """A PostgreSQL 15 cluster of the soak's own (initdb into the temporary directory)."""

    def __init__(self, workdir: Path) -> None:
        self.data = workdir / "pgdata"
        self.log = workdir / "postgres.log"
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    async def start(self) -> None:
        self.data.mkdir()
        if os.geteuid() == 0:
            self.data.parent.chmod(0o755)  # mkdtemp's 0700 would keep `postgres` out
            shutil.chown(self.data, "postgres")
            self.log.touch()
            shutil.chown(self.log, "postgres")
        await _run(
            *_as_postgres(),
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        )
        await self._ctl("start")

    async def _ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        args = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w"]
        if action != "stop":
            args += ["-o", options]
        await _run(*_as_postgres(), *args, "-m", "fast", action)

    async def stop(self) -> None:
        await self._ctl("stop")

    async def restart(self) -> None:
        await self._ctl("restart")

    async def close(self) -> None:
        with contextlib.suppress(BenchError):
            await self.stop()


class _Daemon:
    """One foreground process of ours (redis-server, nginx), stopped on close."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    async def start(self) -> None:
        with (self.workdir / f"{self.name}.log").open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.command(),
                cwd=self.workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        await wait_for_port(self.port)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.process = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def close(self) -> None:
        await self.stop()


class Redis(_Daemon):
    def __init__(self, workdir: Path) -> None:
        super().__init__("redis", workdir)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        # No persistence: a restart is a Redis that lost the breaker's shared state.
        return [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--appendonly",
            "no",
        ]


class Nginx(_Daemon):
    def __init__(self, workdir: Path, replica_ports: list[int]) -> None:
        super().__init__("nginx", workdir)
        self.prefix = workdir / "nginx"
        (self.prefix / "tmp").mkdir(parents=True)
        user = pwd.getpwuid(os.geteuid()).pw_name
        conf = nginx_conf(
            self.prefix,
            f"127.0.0.1:{self.port}",
            [f"127.0.0.1:{port}" for port in replica_ports],
            # Run as root, nginx would hand its workers to `nobody`: keep them ours.
            user=user if os.geteuid() == 0 else None,
        )
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(conf, encoding="utf-8")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return ["nginx", "-c", str(self.conf), "-p", str(self.prefix)]
