"""Write docs/incident-example.md from a real run: `pizza factory-sim` and `pizza serve`
as processes, the fail chaos, a page to a local webhook, an admin who follows the link.

    python scripts/incident_example.py [docs/incident-example.md]

It runs in a temporary directory (SQLite database there) and takes about half a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import httpx

SIM_KEY = "example-vendor-key"
ADMIN = ("Ada Admin", "ada@jwt.com", "a long passphrase for ada")
ORDERS_BEFORE_SOMEONE_LOOKS = 8
SECONDS_BEFORE_SOMEONE_LOOKS = 12.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pizza() -> str:
    found = Path(sys.executable).with_name("pizza")
    return str(found) if found.exists() else shutil.which("pizza") or "pizza"


def start(*args: str, env: dict[str, str], cwd: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """`pizza *args` in the background (our own console script, fixed arguments)."""
    return subprocess.Popen(  # noqa: S603
        [pizza(), *args], env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT
    )


def call(*args: str, env: dict[str, str], cwd: Path) -> str:
    """`pizza *args` to the end; its output."""
    done = subprocess.run(  # noqa: S603
        [pizza(), *args], env=env, cwd=cwd, check=True, capture_output=True, text=True
    )
    return done.stdout


def wait_for(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout_s:g} s")


def webhook_receiver() -> tuple[ThreadingHTTPServer, list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received


def main(out: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="incident-example-"))
    sim_port, port = free_port(), free_port()
    hook, pages = webhook_receiver()
    base = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FACTORY_", "OTEL_"))},
        "DATABASE_URL": f"sqlite:///{work}/pizza.db",
        "FACTORY_URL": f"http://127.0.0.1:{sim_port}",
        "FACTORY_API_KEY": SIM_KEY,
        "FACTORY_AUTO_REMEDIATE": "false",  # a person must act, as on 2024-12-05
        "BREAKER_FAIL_MAX": "3",
        "BREAKER_RESET_S": "5",
        "ALERT_WEBHOOK_URL": f"http://127.0.0.1:{hook.server_address[1]}/hook",
        "PUBLIC_URL": base,
        "JWT_SECRET": "example-" + "s" * 40,
    }
    log = (work / "processes.log").open("wb")
    where: dict[str, Any] = {"env": env, "cwd": work}
    procs = [start("factory-sim", "--port", str(sim_port), "--api-key", SIM_KEY, **where, log=log)]
    try:
        wait_for(f"http://127.0.0.1:{sim_port}/.well-known/jwks.json")
        name, email, password = ADMIN
        call("admin", "create", "--name", name, "--email", email, "--password", password, **where)
        procs.append(start("serve", "--port", str(port), **where, log=log))
        wait_for(f"{base}/healthz")
        run(base, sim_port)
        report = call("incident", "report", **where)
        print(f"{len(pages)} pages received: {[p['event'] for p in pages]}", file=sys.stderr)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=15)
        hook.shutdown()
        log.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report, encoding="utf-8")
    print(f"wrote {out} ({work} kept for inspection)", file=sys.stderr)


def run(base: str, sim_port: int) -> None:
    with httpx.Client(base_url=base, timeout=30) as api:

        def sign_in(email: str, password: str) -> dict[str, str]:
            answer = api.put("/api/auth", json={"email": email, "password": password})
            answer.raise_for_status()
            return {"authorization": f"Bearer {answer.json()['token']}"}

        admin = sign_in(ADMIN[1], ADMIN[2])
        menu = api.put(
            "/api/order/menu",
            headers=admin,
            json={"title": "Veggie", "description": "A garden", "image": "p.png", "price": 0.0038},
        ).json()
        franchise = api.post(
            "/api/franchise", headers=admin, json={"name": "pizzaPocket", "admins": []}
        ).json()
        store = api.post(
            f"/api/franchise/{franchise['id']}/store", headers=admin, json={"name": "SLC"}
        ).json()
        diners = []
        for n in range(3):
            api.post(
                "/api/auth",
                json={"name": f"diner {n}", "email": f"d{n}@jwt.com", "password": "pizza pizza"},
            ).raise_for_status()
            diners.append(sign_in(f"d{n}@jwt.com", "pizza pizza"))
        order = {
            "franchiseId": franchise["id"],
            "storeId": store["id"],
            "items": [{"menuId": menu[-1]["id"]}],
        }

        def buy(n: int) -> int:
            answer = api.post("/api/order", headers=diners[n % len(diners)], json=order)
            return answer.status_code

        assert [buy(n) for n in range(3)] == [200, 200, 200]
        httpx.put(
            f"http://127.0.0.1:{sim_port}/api/vendor/chaos/fail",
            headers={"authorization": f"Bearer {SIM_KEY}"},
        ).raise_for_status()
        pace = SECONDS_BEFORE_SOMEONE_LOOKS / ORDERS_BEFORE_SOMEONE_LOOKS
        for n in range(ORDERS_BEFORE_SOMEONE_LOOKS):
            buy(n)
            time.sleep(pace)
        api.post("/factory/remediate", headers=admin).raise_for_status()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listed = api.get("/factory/incidents", headers=admin).json()["incidents"]
            if listed and listed[0]["status"] == "closed" and listed[0]["impact"]["pending"] == 0:
                break
            time.sleep(0.5)
        buy(0)
        time.sleep(1.0)  # the close page goes out


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/incident-example.md"))
