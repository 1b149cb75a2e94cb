"""The real JWT Pizza factory (tests/real_factory/jwt-pizza-factory), run for tests.

Each `RealFactory` is one `node` process on 127.0.0.1 with a MariaDB database and user of
its own, a fresh RSA signing key and a `config.js`, as the factory's README asks; its npm
packages are installed once per version of its lock file, outside the checkout
(`$REAL_FACTORY_DIR`, else `$TMPDIR/jwt-pizza-real-factory`). The factory itself is never
changed: chaos is set through its vendor API, and only its start is moved in its database,
as the factory's own tests do (`PUT /api/vendor/chaos/{type}` schedules it for a random
time the next morning).

MariaDB is reached with the `mariadb` command line as the current user (root on a test
machine: Debian's root account signs in over the socket). `bash scripts/test` installs
and starts MariaDB, node and npm; when one is missing anyway, starting fails with a
`RealFactoryError` that says which, and a factory that does not come up fails with its log.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.utils.servers import free_port

SOURCE = Path(__file__).resolve().parents[1] / "real_factory" / "jwt-pizza-factory" / "backend"
ADMIN_ID = "factory-admin"  # the admin the factory creates with its database (config.js)
CHAOS_MODES = ("fail", "throttle", "badjwt")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
NPM_TIMEOUT_S = 600.0
MARIADB_TIMEOUT_S = 30.0
PORT_TRIES = 3


class RealFactoryError(Exception):
    """The real factory could not be started or driven; the message says why."""


def work_root() -> Path:
    configured = os.environ.get("REAL_FACTORY_DIR")
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / "jwt-pizza-real-factory"


def iso(at: datetime) -> str:
    """A time as the factory writes one (JavaScript's `toISOString`)."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- MariaDB -------------------------------------------------------------------------------


def mariadb(sql: str) -> str:
    """Run SQL with the `mariadb` command line; its tab-separated output, no column names."""
    try:
        done = subprocess.run(
            ["mariadb", "--batch", "--skip-column-names", "-e", sql],
            capture_output=True,
            text=True,
            timeout=MARIADB_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as exc:
        raise RealFactoryError(
            "MariaDB is not installed (bash scripts/test installs Debian's mariadb-server)"
        ) from exc
    if done.returncode != 0:
        raise RealFactoryError(f"mariadb: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def ensure_mariadb() -> None:
    """MariaDB answering: started here if it is installed but not running."""
    with contextlib.suppress(RealFactoryError):
        mariadb("SELECT 1")
        return
    if shutil.which("mariadbd") is None and not Path("/usr/sbin/mariadbd").exists():
        raise RealFactoryError(
            "MariaDB is not installed (bash scripts/test installs Debian's mariadb-server)"
        )
    subprocess.run(["service", "mariadb", "start"], capture_output=True, timeout=60, check=False)
    deadline = time.monotonic() + MARIADB_TIMEOUT_S
    while True:
        try:
            mariadb("SELECT 1")
            return
        except RealFactoryError as exc:
            if time.monotonic() > deadline:
                raise RealFactoryError(f"MariaDB does not answer: {exc}") from exc
        time.sleep(0.2)


# -- npm packages ---------------------------------------------------------------------------


def node_modules() -> Path:
    """The factory's production packages (`npm ci --omit=dev`), installed once per lock file."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise RealFactoryError(f"{tool} is not installed (bash scripts/test installs it)")
    manifest = (SOURCE / "package.json").read_bytes() + (SOURCE / "package-lock.json").read_bytes()
    root = work_root()
    target = root / f"npm-{hashlib.sha256(manifest).hexdigest()[:16]}"
    ready = target / "ready"
    if ready.exists():
        return target / "node_modules"
    root.mkdir(parents=True, exist_ok=True)
    # Several test runs may share the folder: one installs, the others wait for it.
    with (root / f"{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.exists():
            return target / "node_modules"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        for name in ("package.json", "package-lock.json"):
            shutil.copy(SOURCE / name, target / name)
        done = subprocess.run(
            ["npm", "ci", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=target,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise RealFactoryError(f"npm ci failed in {target}:\n{done.stdout}\n{done.stderr}")
        ready.write_text("npm ci --omit=dev\n")
    return target / "node_modules"


# -- one factory ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Vendor:
    """A vendor of the factory: its id (netId) and API key."""

    id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@dataclass
class RealFactory:
    """One running factory: its URL, its database, its admin's key, its log."""

    url: str
    port: int
    database: str
    folder: Path
    process: subprocess.Popen[bytes]
    admin_key: str = ""

    @property
    def log_path(self) -> Path:
        return self.folder / "factory.log"

    def log(self) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 60.0), **kwargs)

    # -- vendors and chaos, as the factory's own tests drive them -----------------------------

    def new_vendor(self, name: str = "Pizza vendor") -> Vendor:
        """A new vendor (`POST /api/vendor`); its key is read where the factory keeps it."""
        vendor_id = f"vendor-{secrets.token_hex(4)}"
        body = {"id": vendor_id, "name": name, "email": f"{vendor_id}@factory.example"}
        with self.client() as http:
            answer = http.post("/api/vendor", json=body)
        if answer.status_code != 200:
            raise RealFactoryError(f"POST /api/vendor: HTTP {answer.status_code} {answer.text}")
        return Vendor(vendor_id, self._key_of(vendor_id))

    def start_chaos(self, vendor: Vendor, mode: str, *, now: bool = True) -> datetime:
        """Put ``vendor`` into chaos ``mode``; with ``now``, its start pulled to this moment.

        Returns the chaos' start as the factory has it.
        """
        with self.client() as http:
            answer = http.put(f"/api/vendor/chaos/{mode}", headers=vendor.headers)
        if answer.status_code != 200:
            raise RealFactoryError(f"PUT chaos/{mode}: HTTP {answer.status_code} {answer.text}")
        if not now:
            return datetime.fromisoformat(self.chaos_row(vendor)["startDate"])
        return self.move_chaos_start(vendor, datetime.now(UTC))

    def move_chaos_start(self, vendor: Vendor, start: datetime) -> datetime:
        """Set the chaos' `startDate` in the factory's database (its tests do the same)."""
        when = iso(start)
        mariadb(
            f"UPDATE {self.database}.chaos SET body = JSON_SET(body, '$.startDate', '{when}') "
            f"WHERE netId = '{_checked(vendor.id)}'"
        )
        return start

    def chaos_row(self, vendor: Vendor) -> dict[str, Any]:
        """The chaos as stored (fix code included), for tests that check the factory itself."""
        row = mariadb(
            f"SELECT body FROM {self.database}.chaos WHERE netId = '{_checked(vendor.id)}'"
        ).strip()
        if not row:
            raise RealFactoryError(f"no chaos for {vendor.id}")
        found: dict[str, Any] = json.loads(row)
        return found

    def vendor_record(self, vendor: Vendor) -> dict[str, Any]:
        """`GET /api/vendor` as the factory answers it."""
        with self.client() as http:
            answer = http.get("/api/vendor", headers=vendor.headers)
        if answer.status_code != 200:
            raise RealFactoryError(f"GET /api/vendor: HTTP {answer.status_code} {answer.text}")
        record: dict[str, Any] = answer.json()
        return record

    def pizzas(self, vendor: Vendor) -> Counter[int]:
        """The signed pizzas the factory answered to ``vendor``, per order id (run.js)."""
        made: Counter[int] = Counter()
        path = self.folder / "pizzas.log"
        if not path.exists():
            return made
        hashed = hashlib.sha256(vendor.api_key.encode()).hexdigest()
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["vendor"] == hashed:
                made[int(record["order"])] += 1
        return made

    def remove_chaos(self, vendor: Vendor) -> httpx.Response:
        """The factory admin's `DELETE /api/admin/vendor {id, deleteType: "chaos"}`."""
        with self.client() as http:
            return http.request(
                "DELETE",
                "/api/admin/vendor",
                json={"id": vendor.id, "deleteType": "chaos"},
                headers=self.admin_headers,
            )

    # -- inside ---------------------------------------------------------------------------------

    def _key_of(self, vendor_id: str) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        query = f"SELECT apiKey FROM {self.database}.vendor WHERE netId = '{_checked(vendor_id)}'"
        while True:
            with contextlib.suppress(RealFactoryError):
                key = mariadb(query).strip()
                if key:
                    return key
            if time.monotonic() > deadline:
                raise RealFactoryError(f"no API key for {vendor_id}:\n{self.tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the process (its database stays until `running_real_factory` drops it)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)


def _drop(database: str, *, users: bool) -> None:
    drop = f"DROP DATABASE IF EXISTS {database};"
    if users:
        drop += f" DROP USER IF EXISTS '{database}'@'localhost', '{database}'@'127.0.0.1';"
    with contextlib.suppress(RealFactoryError):
        mariadb(drop)


def _checked(name: str) -> str:
    """A name put into SQL: only ours, never anything a test did not make."""
    if not re.fullmatch(r"[A-Za-z0-9_.@-]+", name):
        raise ValueError(f"not a name for SQL: {name!r}")
    return name


def _signing_key(backend: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (backend / "jwt.key").write_bytes(private)
    (backend / "jwt.key.pub").write_bytes(public)


def _config(database: str, password: str) -> str:
    return f"""module.exports = {{
  db: {{ connection: {{ host: '127.0.0.1', user: '{database}', password: '{password}',
    database: '{database}', connectTimeout: 60000 }} }},
  defaultAdmin: {{ id: '{ADMIN_ID}', name: 'Factory admin', email: 'admin@factory.example' }},
}};
"""


# Listens on 127.0.0.1 only (the factory's own index.js listens on every address), and
# writes a line to pizzas.log for each signed pizza it answers (the factory keeps no record
# of them): the vendor's key hashed, and the order's id. Its code is not touched: this
# listener only looks at the answer as it leaves.
RUN_JS = """const crypto = require('crypto');
const fs = require('fs');
const app = require('./backend/service');
const port = Number(process.argv[2]);
const pizzas = fs.createWriteStream('pizzas.log', { flags: 'a' });
const server = app.listen(port, '127.0.0.1', () => console.log('factory on 127.0.0.1:' + port));
server.prependListener('request', (req, res) => {
  if (req.method !== 'POST' || req.url !== '/api/order') return;
  const end = res.end;
  res.end = function (chunk, ...rest) {
    try {
      const jwt = JSON.parse(chunk).jwt;
      if (res.statusCode === 200 && typeof jwt === 'string' && jwt.startsWith('eyJ')) {
        const key = (req.headers.authorization || '').replace(/bearer /i, '');
        const vendor = crypto.createHash('sha256').update(key).digest('hex');
        pizzas.write(JSON.stringify({ vendor, order: req.body.order.id }) + '\\n');
      }
    } catch (e) {}
    return end.call(this, chunk, ...rest);
  };
});
"""


def _prepare(modules: Path) -> tuple[Path, str]:
    """A folder with the factory, its packages, key and configuration; its database name."""
    database = f"rf_{os.getpid()}_{secrets.token_hex(4)}"
    password = secrets.token_hex(16)
    folder = work_root() / "instances" / database
    backend = folder / "backend"
    shutil.copytree(SOURCE, backend, ignore=shutil.ignore_patterns("node_modules"))
    for path in backend.rglob("*"):
        path.chmod(path.stat().st_mode | 0o200)  # the copy may come from a read-only tree
    (backend / "node_modules").symlink_to(modules, target_is_directory=True)
    _signing_key(backend)
    (backend / "config.js").write_text(_config(database, password))
    (folder / "run.js").write_text(RUN_JS)
    mariadb(
        f"DROP DATABASE IF EXISTS {database}; "
        f"CREATE USER IF NOT EXISTS '{database}'@'localhost' IDENTIFIED BY '{password}'; "
        f"CREATE USER IF NOT EXISTS '{database}'@'127.0.0.1' IDENTIFIED BY '{password}'; "
        f"GRANT ALL ON {database}.* TO '{database}'@'localhost'; "
        f"GRANT ALL ON {database}.* TO '{database}'@'127.0.0.1';"
    )
    return folder, database


def _launch(folder: Path, database: str) -> RealFactory:
    """Start node on a free port; a port taken meanwhile is tried again."""
    for attempt in range(PORT_TRIES):
        port = free_port()
        log_path = folder / "factory.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                ["node", "run.js", str(port)],
                cwd=folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        factory = RealFactory(f"http://127.0.0.1:{port}", port, database, folder, process)
        if _answers(factory):
            return factory
        factory.stop()
        # The admin is created with the database: the next try starts from none.
        _drop(database, users=False)
        if "EADDRINUSE" not in factory.log() or attempt == PORT_TRIES - 1:
            raise RealFactoryError(f"the real factory did not start:\n{factory.tail()}")
    raise AssertionError("unreachable")


def _answers(factory: RealFactory) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(timeout=2.0) as http:
        while factory.process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if http.get(f"{factory.url}/api/docs").status_code == 200:
                    return True
            time.sleep(0.1)
    return False


def _drop_abandoned() -> None:
    """Databases and folders of test runs that died before they could drop them (their
    names carry the process id; another run's, still alive, are left alone)."""
    for name in mariadb(r"SHOW DATABASES LIKE 'rf\\_%'").split():
        pid = name.split("_")[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _drop(name, users=True)
            shutil.rmtree(work_root() / "instances" / name, ignore_errors=True)


@contextlib.contextmanager
def running_real_factory() -> Iterator[RealFactory]:
    """A real factory with a fresh database; stopped and dropped at the end.

    Its log's last lines are printed when it stops: pytest shows them if a test failed.
    """
    ensure_mariadb()
    _drop_abandoned()
    modules = node_modules()
    folder, database = _prepare(modules)
    factory: RealFactory | None = None
    try:
        factory = _launch(folder, database)
        factory.admin_key = factory._key_of(ADMIN_ID)
        yield factory
    finally:
        if factory is not None:
            factory.stop()
            print(f"\n----- real factory log (last lines) -----\n{factory.tail()}")
        _drop(database, users=True)
        shutil.rmtree(folder, ignore_errors=True)
