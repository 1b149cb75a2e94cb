"""The bench's child processes: `pizza factory-sim`, `pizza serve`, the load generator.

Each runs from the bench's temporary directory (no `.env` of the checkout is read) with
an environment stripped of every service setting, so that only what the bench chooses
applies; each writes its own log file there. All are stopped when the bench ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

import httpx
import psutil

from app.config import Settings
from pizza_tools.bench.load import LoadResult, LoadSpec, parse_result

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
PORT_TRIES = 3
POLL_S = 0.05


class BenchError(Exception):
    """The bench cannot go on (a process would not start, a step did not hold)."""


def pizza_command() -> list[str]:
    """The `pizza` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("pizza")
    if script.exists():
        return [str(script)]
    found = shutil.which("pizza")
    if found is not None:
        return [found]
    return [sys.executable, "-c", "from app.cli import main; main()"]


def isolated_env(**settings: str) -> dict[str, str]:
    """This environment minus every service and OpenTelemetry setting, plus ``settings``."""
    known = {name.upper() for name in Settings.model_fields}
    env = {
        key: value
        for key, value in os.environ.items()
        if key.upper() not in known and not key.upper().startswith("OTEL_")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


def free_port() -> int:
    """A port that was free a moment ago (the start is retried if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _open_log(path: Path) -> IO[bytes]:
    return path.open("ab")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Child:
    """One running `pizza` process and the URL it answers on."""

    name: str
    process: asyncio.subprocess.Process
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def pids(self) -> list[int]:
        """This process and its children (the workers of `pizza serve --workers N`)."""
        try:
            parent = psutil.Process(self.pid)
            return [self.pid, *(c.pid for c in parent.children(recursive=True))]
        except psutil.Error:
            return []

    def rss_bytes(self) -> int:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(psutil.Error):
                total += psutil.Process(pid).memory_info().rss
        return total

    def tail(self) -> str:
        return _tail(self.log_path)


@dataclass
class Processes:
    """Starts the bench's processes in ``workdir`` and guarantees they are stopped."""

    workdir: Path
    running: list[Child] = field(default_factory=list)

    async def start(
        self,
        name: str,
        args: Sequence[str],
        env: dict[str, str],
        ready_path: str,
        port: int | None = None,
    ) -> Child:
        """`pizza *args --port P` on a free port (or ``port``: a replica restarted behind a
        load balancer keeps its address); returns once ``ready_path`` answers 200."""
        chosen = port
        for attempt in range(PORT_TRIES):
            port = chosen or free_port()
            log_path = self.workdir / f"{name}.log"
            log = _open_log(log_path)
            try:
                process = await asyncio.create_subprocess_exec(
                    *pizza_command(),
                    *args,
                    "--port",
                    str(port),
                    cwd=self.workdir,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                )
            finally:
                log.close()
            child = Child(name, process, f"http://127.0.0.1:{port}", log_path)
            self.running.append(child)
            if await self._ready(child, ready_path):
                return child
            await self.stop(child)
            if "address already in use" not in child.tail().lower() or attempt == PORT_TRIES - 1:
                raise BenchError(f"{name} did not start:\n{child.tail()}")
        raise AssertionError("unreachable")

    async def _ready(self, child: Child, path: str) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if child.process.returncode is not None:
                    return False
                try:
                    if (await client.get(child.url + path)).status_code == 200:
                        return True
                except httpx.TransportError:
                    pass
                await asyncio.sleep(POLL_S)
        return False

    async def wait_for_workers(self, child: Child, workers: int) -> None:
        """With ``--workers N``: until the N worker processes are up (the first is serving)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while workers > 1 and len(child.pids()) <= workers:
            if time.monotonic() > deadline:
                raise BenchError(f"{child.name}: {workers} workers not up:\n{child.tail()}")
            await asyncio.sleep(POLL_S)

    async def stop(self, child: Child) -> None:
        """Ask ``child`` to stop (SIGINT, as Ctrl-C would); kill it if it does not."""
        if child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(child.process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                for pid in reversed(child.pids()):
                    with contextlib.suppress(psutil.Error):
                        psutil.Process(pid).kill()
                await child.process.wait()
        if child in self.running:
            self.running.remove(child)

    async def stop_all(self) -> None:
        for child in reversed(list(self.running)):
            await self.stop(child)


class LoadGenerator:
    """The load-generator process, one for the whole bench: a measurement per request."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.process: asyncio.subprocess.Process | None = None
        self.stderr_path = workdir / "load.log"

    async def start(self) -> None:
        log = _open_log(self.stderr_path)
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "pizza_tools.bench.load",
                cwd=self.workdir,
                env=isolated_env(),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                limit=2**26,  # a result line carries every latency of its window
            )
        finally:
            log.close()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def run(self, spec: LoadSpec) -> LoadResult:
        """One measurement: the spec goes out on a line, its result comes back on one."""
        process = self.process
        if process is None or process.stdin is None or process.stdout is None:
            raise BenchError("the load generator is not running")
        bound = 2 * spec.max_s + 60.0  # warm-up and window are each bounded by max_s
        process.stdin.write(json.dumps(asdict(spec)).encode() + b"\n")
        try:
            await process.stdin.drain()
            line = await asyncio.wait_for(process.stdout.readline(), bound)
        except (TimeoutError, ConnectionError):
            line = b""
        if not line:
            await self.stop()
            raise BenchError(f"the load generator stopped or hung:\n{_tail(self.stderr_path)}")
        return parse_result(line.decode())

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
