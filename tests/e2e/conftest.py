"""End-to-end fixtures: the `pizza` command run as real processes on real ports.

Each process gets a temporary working directory (so no `.env` of the checkout is
read), an environment stripped of every setting the service knows, its own log
file (shown when a test fails), and is stopped in a `finally` whatever happens.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ORIGIN = "http://localhost:5173"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
PORT_TRIES = 3
CHROMIUM = Path(os.environ.get("PIZZA_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def pizza_command() -> list[str]:
    """The installed console script next to this interpreter (the venv's `pizza`)."""
    script = Path(sys.executable).with_name("pizza")
    if script.exists():
        return [str(script)]
    found = shutil.which("pizza")
    if found is None:
        pytest.fail("the `pizza` console script is not installed: pip install -e '.[test]'")
    return [found]


def wait_until(
    condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class PortTaken(Exception):
    """The process lost a race for a port `free_port` had reported free."""


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


@dataclass
class Processes:
    """Starts `pizza` processes and guarantees they are stopped."""

    workdir: Path
    running: list[Proc] = field(default_factory=list)
    started: list[Proc] = field(default_factory=list)

    def run(
        self, *args: str, env: dict[str, str], check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """A short `pizza` command (e.g. `admin create`); with ``check``, it must succeed."""
        done = subprocess.run(
            [*pizza_command(), *args],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0 or not check, (
            f"pizza {args[:2]} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
        return done

    def start(self, name: str, *args: str, env: dict[str, str], ready: list[str]) -> Proc:
        """Start `pizza *args`; return once every URL in ``ready`` answers 200."""
        log_path = self.workdir / f"{name}.log"
        log_file = log_path.open("ab")
        try:
            popen = subprocess.Popen(
                [*pizza_command(), *args],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        finally:
            log_file.close()
        proc = Proc(name, popen, log_path)
        self.running.append(proc)
        self.started.append(proc)
        pending = list(ready)
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(timeout=2.0) as client:
            while pending:
                if popen.poll() is not None:
                    if "already in use" in proc.log().lower():
                        raise PortTaken(name)
                    pytest.fail(f"{name} exited {popen.returncode} at start:\n{proc.tail()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"{name} not ready after {START_TIMEOUT_S:g} s:\n{proc.tail()}")
                try:
                    if client.get(pending[0]).status_code == 200:
                        pending.pop(0)
                        continue
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        return proc

    def start_on_free_ports(
        self, name: str, build: Callable[[], tuple[list[str], dict[str, str], list[str]]]
    ) -> Proc:
        """`start` with ports chosen by ``build``; new ports if one was taken meanwhile."""
        for _ in range(PORT_TRIES - 1):
            args, env, ready = build()
            try:
                return self.start(name, *args, env=env, ready=ready)
            except PortTaken:
                self.stop(self.running[-1])
        args, env, ready = build()
        return self.start(name, *args, env=env, ready=ready)

    def stop(self, proc: Proc, sig: signal.Signals = signal.SIGINT) -> int:
        """Ask ``proc`` to stop; kill it if it has not exited within STOP_TIMEOUT_S."""
        if proc.popen.poll() is None:
            proc.popen.send_signal(sig)
            try:
                proc.popen.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(timeout=STOP_TIMEOUT_S)
        if proc in self.running:
            self.running.remove(proc)
        return proc.popen.returncode

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            self.stop(proc)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Run from a fresh working directory; every process is stopped at the end, pass or fail.

    The logs' last lines are printed at teardown: pytest shows them when the test failed.
    """
    workdir = tmp_path / "work"
    workdir.mkdir()
    procs = Processes(workdir)
    try:
        yield procs
    finally:
        procs.stop_all()
        for proc in procs.started:
            print(f"\n----- {proc.name} log (last lines) -----\n{proc.tail(80)}")


@pytest.fixture
def chromium() -> Path:
    """The system Chromium; its absence fails the test in CI and skips it elsewhere."""
    if CHROMIUM.exists():
        return CHROMIUM
    message = f"{CHROMIUM} not found: apt-get install -y chromium"
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)
