"""Starting on an empty database with many processes: the schema, the token secret and the
first admin are made once, by whichever process comes first, and every process serves.
A start that cannot succeed exits non-zero, with one line that says why.

Real `pizza` processes, each PostgreSQL test on a database of its own.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.synchronize import Event
from pathlib import Path

import httpx
import psycopg
import pytest

from app.cli.workers import supervise
from pizza_tools.bench.procs import isolated_env
from tests.conftest import PG_ADMIN_URL
from tests.e2e.conftest import Proc, Processes, wait_until
from tests.utils.servers import free_port

pytestmark = pytest.mark.slow

KEY = "start-vendor-key-5c5c"
ADMIN = {"email": "first@jwt.com", "password": "first admin passphrase"}
READY_LINE = '"message":"JWT Pizza '
START_TIMEOUT_S = 60.0


@pytest.fixture
def empty_pg() -> Iterator[str]:
    """A new, empty PostgreSQL database of this test's own, dropped at the end."""
    name = f"pizza_start_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def factory_url(processes: Processes) -> str:
    """A factory simulator process: `--workers` needs a factory of its own."""
    port = free_port()
    processes.start(
        "factory",
        "factory-sim",
        "--port",
        str(port),
        "--api-key",
        KEY,
        env=isolated_env(),
        ready=[f"http://127.0.0.1:{port}/api/docs"],
    )
    return f"http://127.0.0.1:{port}"


def service_env(database_url: str, factory_url: str) -> dict[str, str]:
    # No JWT_SECRET: the development secret is generated once and kept in the database,
    # one more thing the first process makes for all.
    return isolated_env(
        DATABASE_URL=database_url,
        FACTORY_URL=factory_url,
        FACTORY_API_KEY=KEY,
        ADMIN_EMAIL=ADMIN["email"],
        ADMIN_PASSWORD=ADMIN["password"],
    )


def serve(processes: Processes, name: str, env: dict[str, str], *args: str) -> tuple[Proc, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = processes.start(name, "serve", "--port", str(port), *args, env=env, ready=[])
    wait_until(
        lambda: proc.popen.poll() is not None or _answers(f"{url}/readyz"),
        timeout=START_TIMEOUT_S,
        what=f"{name} to serve",
    )
    assert proc.popen.poll() is None, f"{name} exited {proc.popen.returncode}:\n{proc.tail()}"
    return proc, url


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def assert_all_workers_serve(proc: Proc, workers: int) -> None:
    """Every worker announced it was ready, none failed, and the parent still runs."""
    wait_until(
        lambda: proc.popen.poll() is not None or proc.log().count(READY_LINE) >= workers,
        timeout=START_TIMEOUT_S,
        what=f"{workers} workers ready",
    )
    log = proc.log()
    assert proc.popen.poll() is None, f"exited {proc.popen.returncode}:\n{proc.tail()}"
    assert log.count(READY_LINE) == workers, proc.tail()
    assert "startup failed" not in log.lower() and "Traceback" not in log, proc.tail(80)


def sign_in(url: str) -> str:
    answer = httpx.put(f"{url}/api/auth", json=ADMIN, timeout=10)
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["token"]
    return token


def admins(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            'SELECT count(*) FROM "user" JOIN user_role ON user_role.user_id = "user".id'
            " WHERE user_role.role = 'admin'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def stop(processes: Processes, proc: Proc) -> None:
    assert processes.stop(proc, signal.SIGTERM) == 0, proc.tail()


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_four_workers_start_on_an_empty_postgresql_database(
    processes: Processes, factory_url: str, empty_pg: str, attempt: int
) -> None:
    proc, url = serve(processes, "service", service_env(empty_pg, factory_url), "--workers", "4")
    assert_all_workers_serve(proc, 4)
    # Any worker answers with the one secret the first start made (tokens verify anywhere).
    token = sign_in(url)
    for _ in range(8):
        me = httpx.get(f"{url}/api/user/me", headers={"authorization": f"Bearer {token}"})
        assert me.status_code == 200, me.text
    assert admins(empty_pg) == 1
    stop(processes, proc)


def test_two_services_started_at_once_both_serve(
    processes: Processes, factory_url: str, empty_pg: str
) -> None:
    env = service_env(empty_pg, factory_url)
    with ThreadPoolExecutor(2) as pool:
        started = list(pool.map(lambda name: serve(processes, name, env), ["one", "two"]))
    tokens = [sign_in(url) for _, url in started]
    # A token made by one is accepted by the other: they share the generated secret.
    one, two = started[0][1], started[1][1]
    me = httpx.get(f"{two}/api/user/me", headers={"authorization": f"Bearer {tokens[0]}"})
    assert me.status_code == 200, me.text
    assert httpx.get(f"{one}/readyz").status_code == 200
    assert admins(empty_pg) == 1
    for proc, _ in started:
        stop(processes, proc)


def test_sqlite_with_two_workers_serves(
    processes: Processes, factory_url: str, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path}/pizza.db"
    proc, url = serve(processes, "service", service_env(database, factory_url), "--workers", "2")
    assert_all_workers_serve(proc, 2)
    sign_in(url)
    stop(processes, proc)


def test_migrate_alone_then_serve(processes: Processes, factory_url: str, empty_pg: str) -> None:
    """`pizza migrate` as a deployment step of its own, twice at once: both succeed, and
    the service then starts on the database they set up."""
    env = service_env(empty_pg, factory_url)
    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda _: processes.run("migrate", env=env), range(2)))
    assert all("the database is set up: schema at revision" in d.stdout for d in done)
    assert admins(empty_pg) == 1
    proc, url = serve(processes, "service", env)
    sign_in(url)
    assert "Running upgrade" not in proc.log()
    stop(processes, proc)


@pytest.mark.parametrize(
    ("command", "database"),
    [
        (["serve"], "postgresql://postgres@127.0.0.1:{port}/pizza"),
        (["serve", "--workers", "2"], "postgresql://postgres@127.0.0.1:{port}/pizza"),
        (["migrate"], "postgresql://postgres@127.0.0.1:{port}/pizza"),
        (["serve"], "sqlite:////nonexistent-{port}/pizza.db"),
    ],
)
def test_a_start_with_an_unreachable_database_exits_1_with_one_line(
    processes: Processes, command: list[str], database: str
) -> None:
    port = free_port()  # nothing listens there
    env = isolated_env(
        DATABASE_URL=database.format(port=port),
        FACTORY_URL="http://127.0.0.1:9",
        FACTORY_API_KEY=KEY,
    )
    port_option = ["--port", str(free_port())] if command[0] == "serve" else []
    done = processes.run(*command, *port_option, env=env, check=False)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("error: cannot reach the database "), errors[0]
    assert "started" not in done.stdout  # no worker was started


MARKS = "PIZZA_TEST_WORKER_MARKS"


def _fails_to_start(_sock: socket.socket, _started: Event) -> None:
    raise SystemExit(3)


def _dies_once_after_starting(_sock: socket.socket, started: Event) -> None:
    """The first worker serves, then dies; its replacement serves and asks the supervisor
    to stop (SIGTERM, as a process manager would), then waits for the supervisor's."""
    started.set()
    marks = Path(os.environ[MARKS])
    if not (marks / "died").exists():
        (marks / "died").touch()
        raise SystemExit(1)
    (marks / "replaced").touch()
    stop = False

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    os.kill(os.getppid(), signal.SIGTERM)
    while not stop:
        time.sleep(0.05)


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


def test_a_worker_that_fails_to_start_stops_the_service_with_exit_1(
    listening: socket.socket,
) -> None:
    assert supervise(2, listening, _fails_to_start) == 1


def test_a_worker_that_dies_after_starting_is_replaced(
    listening: socket.socket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MARKS, str(tmp_path))
    assert supervise(1, listening, _dies_once_after_starting) == 0
    assert (tmp_path / "died").exists() and (tmp_path / "replaced").exists()
