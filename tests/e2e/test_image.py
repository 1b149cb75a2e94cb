"""The image, as CI builds it: the Dockerfile built by buildah on a local Debian bookworm
base (scripts/build-image), started with the command it declares, and an order placed
against it that the bundled factory simulator fulfils. Its health check answers from inside,
it runs as a user other than root, and it holds exactly the versions uv.lock names.

Needs root and Debian's buildah and mmdebstrap (scripts/test installs them). The first
build makes the base from Debian's mirror and downloads the locked wheels (a minute or
two); later ones reuse both (seconds).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.e2e.conftest import wait_until
from tests.utils.servers import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TAG = "localhost/jwt-pizza:test"
BUILD_TIMEOUT_S = 1800
START_TIMEOUT_S = 60
ADMIN = {"email": "ops@jwt.com", "password": "image admin passphrase"}


def _cache() -> str:
    return os.environ.get("PIZZA_IMAGE_CACHE", "/var/cache/jwt-pizza-image")


def buildah(*args: str) -> list[str]:
    """A buildah command on the store scripts/build-image builds into."""
    cache = _cache()
    driver = os.environ.get("PIZZA_IMAGE_DRIVER", "overlay")
    store = ["--root", f"{cache}/store", "--runroot", f"{cache}/run", "--storage-driver", driver]
    return ["buildah", *store, *args]


def run(*args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        buildah(*args), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"buildah {args[0]}: {done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def image() -> str:
    missing = [tool for tool in ("buildah", "mmdebstrap") if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        message = f"needs root, buildah and mmdebstrap (missing: {', '.join(missing) or 'root'})"
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-image"), TAG],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"build failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return TAG


@pytest.fixture(scope="module")
def config(image: str) -> dict[str, Any]:
    """The image's Docker config (user, command, health check, environment)."""
    found: dict[str, Any] = json.loads(run("inspect", "--type", "image", image))
    docker: dict[str, Any] = found["Docker"]["config"]
    return docker


@pytest.fixture
def container(image: str) -> Iterator[str]:
    name = run("from", "--quiet", "--pull-never", image).strip()
    try:
        yield name
    finally:
        run("rm", name)


def inside(container: str, *command: str, env: dict[str, str] | None = None) -> str:
    """``command`` run in ``container`` (chroot isolation: this machine's network)."""
    options = [f"--env={k}={v}" for k, v in (env or {}).items()]
    return run("run", "--isolation", "chroot", *options, container, "--", *command)


def test_the_image_serves_an_order(container: str, config: dict[str, Any], tmp_path: Path) -> None:
    port, simulator = free_port(), free_port()
    env = {
        "PORT": str(port),
        "FACTORY_SIM_PORT": str(simulator),
        "ADMIN_EMAIL": ADMIN["email"],
        "ADMIN_PASSWORD": ADMIN["password"],
    }
    log = (tmp_path / "image.log").open("wb")
    options = [f"--env={k}={v}" for k, v in env.items()]
    # The command the image declares, as a container engine would start it.
    server = subprocess.Popen(
        buildah("run", "--isolation", "chroot", *options, container, "--", *config["Cmd"]),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: server.poll() is not None or _ready(base),
            timeout=START_TIMEOUT_S,
            what="the image's service to be ready",
        )
        assert server.poll() is None, (tmp_path / "image.log").read_text()
        _order_is_fulfilled(base)
        # The health check, run inside the container as an engine would.
        kind, *check = config["Healthcheck"]["Test"]
        assert kind == "CMD"
        inside(container, *check, env={"PORT": str(port)})
        # Not root: the service's own processes, as this machine sees them.
        tree = psutil.Process(server.pid).children(recursive=True)
        served = [p for p in tree if "serve" in p.cmdline()]
        assert served and all(p.uids().real != 0 for p in served), served
    finally:
        _stop(server)
        log.close()


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _order_is_fulfilled(base: str) -> None:
    """The admin from ADMIN_EMAIL sets up a menu and a store, then orders: a pizza."""
    with httpx.Client(base_url=base, timeout=10) as http:
        signed_in = http.put("/api/auth", json=ADMIN)
        assert signed_in.status_code == 200, signed_in.text
        admin = {"Authorization": f"Bearer {signed_in.json()['token']}"}
        item = {"title": "Veggie", "description": "v", "image": "v.png", "price": 0.0038}
        menu = http.put("/api/order/menu", headers=admin, json=item).json()
        franchise = http.post(
            "/api/franchise", headers=admin, json={"name": "image", "admins": []}
        ).json()
        store = http.post(
            f"/api/franchise/{franchise['id']}/store", headers=admin, json={"name": "SLC"}
        ).json()
        body = {
            "franchiseId": franchise["id"],
            "storeId": store["id"],
            "items": [{"menuId": menu[-1]["id"]}],
        }
        answer = http.post("/api/order", headers=admin, json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["jwt"], answer.text
        assert answer.json()["order"]["status"] == "fulfilled"


def _stop(server: subprocess.Popen[bytes]) -> None:
    children = psutil.Process(server.pid).children(recursive=True)
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=30)
    for child in children:
        if child.is_running():
            child.kill()


def test_the_image_runs_as_a_user_other_than_root(container: str, config: dict[str, Any]) -> None:
    assert config["User"] == "pizza"
    assert inside(container, "id", "-u").strip() == "10001"


def test_the_image_holds_exactly_the_locked_versions(container: str) -> None:
    listing = inside(
        container,
        "python",
        "-c",
        "import importlib.metadata as m, json;"
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))",
    )
    installed = {_normal(name): version for name, version in json.loads(listing).items()}
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    locked = {_normal(p["name"]): p["version"] for p in lock["package"] if "version" in p}
    assert installed.pop("jwt-pizza-service") == locked["jwt-pizza-service"]
    assert {n: v for n, v in installed.items() if locked.get(n) != v} == {}
    # The service's own dependencies are all there (a sample that spans the stack).
    assert {"fastapi", "uvicorn", "asyncpg", "opentelemetry-sdk"} <= installed.keys()


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")
