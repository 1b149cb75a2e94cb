"""One outage, one page: a real Prometheus scraping a real `pizza serve` (with its bundled
simulator) and a real Alertmanager, running the shipped rules and routing.

The shipped files are used through a test copy that changes only time and addresses:

- time runs 30 times faster: every duration in the rules (range selectors, `for`,
  `keep_firing_for`, a group's `interval`) and Alertmanager's `group_interval` is divided
  by 30, so a production minute is two seconds here (the SLOs' 5-minute window is 10 s,
  their hour 120 s); Prometheus scrapes and evaluates every second;
- Alertmanager's `group_wait` is 3 s (30 s shipped): with time 30 times faster it would
  be 1 s, less than the two evaluations that may separate the two causes of one outage;
  `repeat_interval` stays (nothing repeats within the test);
- the receivers' URLs point at a webhook receiver in this test; the scrape target and the
  Alertmanager address at the processes started here.

Routes, grouping, matchers, inhibition, `send_resolved` and every expression are the
shipped ones.
"""

from __future__ import annotations

import copy
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI, Request

from pizza_tools.bench.procs import isolated_env
from tests.e2e.conftest import Processes, wait_until
from tests.e2e.test_recovery import ADMIN, KEY, Shop
from tests.telemetry.promql import RULE_FILES
from tests.utils.servers import free_port, serve_in_thread
from tests.utils.tools import debian_tool

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ALERTMANAGER_CONFIG = ROOT / "telemetry" / "alertmanager" / "alertmanager.yml"
SCRAPE_CONFIG = ROOT / "telemetry" / "provisioning" / "prometheus-scrape.yaml"
SPEEDUP = 30
GROUP_WAIT = "3s"
CAUSES = {"PizzaFactoryChaos", "PizzaRemediationLinkWaiting"}
# The symptoms a `fail` chaos sets off, which Alertmanager must hold back.
SYMPTOMS = {"PizzaFactoryBreakerOpen", "PizzaSalesStopped", "PizzaOrderAvailabilityFastBurn"}
ORDER_EVERY_S = 0.2
START_TIMEOUT_S = 30.0
_DURATION = re.compile(r"^(\d+)([smhd])$")
_RANGE = re.compile(r"\[(\d+[smhd])\]")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def faster(duration: str) -> str:
    """A Prometheus duration, SPEEDUP times shorter, in whole seconds."""
    match = _DURATION.match(duration)
    assert match is not None, duration
    total = int(match[1]) * _UNIT_S[match[2]]
    assert total % SPEEDUP == 0, f"{duration} is no whole number of test seconds"
    return f"{total // SPEEDUP}s"


def faster_rules(path: Path) -> dict[str, Any]:
    """A shipped rule file with its durations shortened (the module docstring)."""
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    for group in document["groups"]:
        if "interval" in group:
            group["interval"] = faster(group["interval"])
        for rule in group["rules"]:
            rule["expr"] = _RANGE.sub(lambda m: f"[{faster(m[1])}]", rule["expr"])
            for key in ("for", "keep_firing_for"):
                if key in rule:
                    rule[key] = faster(rule[key])
    return document


def alertmanager_test_copy(receiver_url: str) -> dict[str, Any]:
    """The shipped Alertmanager configuration with its timers and receivers changed."""
    shipped: dict[str, Any] = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    config = copy.deepcopy(shipped)
    route = config["route"]
    route["group_wait"] = GROUP_WAIT
    route["group_interval"] = faster(route["group_interval"])
    for receiver in config["receivers"]:
        for webhook in receiver["webhook_configs"]:
            webhook["url"] = f"{receiver_url}/{receiver['name']}"
    # Nothing else differs from what ships.
    for key in ("inhibit_rules", "global"):
        assert config[key] == shipped[key]
    assert route["routes"] == shipped["route"]["routes"]
    assert route["group_by"] == shipped["route"]["group_by"]
    return config


@dataclass
class Notifications:
    """What Alertmanager sent, by receiver, in order."""

    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, receiver: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for name, body in self.received if name == receiver]


@pytest.fixture
def notifications() -> Iterator[tuple[Notifications, str]]:
    """A webhook receiver on a free port: (what it received, its base URL)."""
    seen = Notifications()
    app = FastAPI()

    @app.post("/{receiver}")
    async def receive(receiver: str, request: Request) -> dict[str, str]:
        body = await request.json()
        with seen.lock:
            seen.received.append((receiver, body))
        return {"status": "ok"}

    with serve_in_thread(app) as url:
        yield seen, url


@dataclass
class Binaries:
    """Prometheus and Alertmanager as processes, stopped at the end whatever happens."""

    workdir: Path
    running: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, args: list[str], ready: str) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        try:
            popen = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        self.running.append((name, popen))

        def answers() -> bool:
            assert popen.poll() is None, f"{name} exited:\n{self.tail(name)}"
            try:
                return httpx.get(ready, timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answers, timeout=START_TIMEOUT_S, what=f"{name} to be ready")

    def tail(self, name: str) -> str:
        lines = (self.workdir / f"{name}.log").read_text(errors="replace").splitlines()
        return "\n".join(lines[-40:])

    def stop_all(self) -> None:
        for name, popen in reversed(self.running):
            popen.terminate()
            try:
                popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=10)
            print(f"\n----- {name} log (last lines) -----\n{self.tail(name)}")


@pytest.fixture
def binaries(tmp_path: Path) -> Iterator[Binaries]:
    debian_tool("prometheus", "prometheus")
    debian_tool("prometheus-alertmanager", "prometheus-alertmanager")
    started = Binaries(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


def start_alertmanager(binaries: Binaries, tmp_path: Path, port: int, receiver_url: str) -> str:
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump(alertmanager_test_copy(receiver_url), sort_keys=False))
    url = f"http://127.0.0.1:{port}"
    binaries.start(
        "alertmanager",
        [
            "prometheus-alertmanager",
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip port: a single instance
        ],
        f"{url}/-/ready",
    )
    return url


def start_prometheus(binaries: Binaries, tmp_path: Path, service: str, alertmanager: int) -> str:
    rule_files = []
    for path in RULE_FILES:
        copy_path = tmp_path / path.name
        copy_path.write_text(yaml.safe_dump(faster_rules(path), sort_keys=False))
        rule_files.append(str(copy_path))
    config: dict[str, Any] = yaml.safe_load(SCRAPE_CONFIG.read_text(encoding="utf-8"))
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = rule_files
    [job] = config["scrape_configs"]
    job["static_configs"] = [{"targets": [service.removeprefix("http://")]}]
    config["alerting"]["alertmanagers"][0]["static_configs"] = [
        {"targets": [f"127.0.0.1:{alertmanager}"]}
    ]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    binaries.start(
        "prometheus",
        [
            "prometheus",
            f"--config.file={path}",
            f"--storage.tsdb.path={tmp_path / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            # Alerts still firing are sent again every second, not every minute.
            "--rules.alert.resend-delay=1s",
        ],
        f"{url}/-/ready",
    )
    return url


def start_service(processes: Processes, tmp_path: Path) -> tuple[str, str]:
    """`pizza serve` with its bundled simulator; (service URL, simulator URL)."""
    chosen: dict[str, str] = {}

    def build() -> tuple[list[str], dict[str, str], list[str]]:
        port, sim_port = free_port(), free_port()
        chosen.update(url=f"http://127.0.0.1:{port}", sim=f"http://127.0.0.1:{sim_port}")
        env = isolated_env(
            DATABASE_URL=f"sqlite:///{tmp_path}/pizza.db",
            JWT_SECRET="paging-jwt-secret-" + "p" * 32,
            FACTORY_SIM_PORT=str(sim_port),
            FACTORY_SIM_API_KEY=KEY,
            ADMIN_EMAIL=ADMIN["email"],
            ADMIN_PASSWORD=ADMIN["password"],
            # A person must act. The breaker probes every second: production's 30 s,
            # SPEEDUP times faster, like the rules.
            FACTORY_AUTO_REMEDIATE="false",
            BREAKER_FAIL_MAX="3",
            BREAKER_RESET_S="1",
            FACTORY_TIMEOUT_S="1",
            RETRY_BASE_S="0.1",
            RETRY_MAX_S="0.5",
            WORKER_POLL_S="0.1",
        )
        return ["serve", "--port", str(port)], env, [f"{chosen['url']}/readyz"]

    processes.start_on_free_ports("pizza-serve", build)
    return chosen["url"], chosen["sim"]


class Traffic:
    """A diner ordering every ORDER_EVERY_S on a thread, until stopped."""

    def __init__(self, shop: Shop, base: str) -> None:
        self._stop = threading.Event()
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, args=(shop, base), daemon=True)
        self._thread.start()

    def _run(self, shop: Shop, base: str) -> None:
        while not self._stop.wait(ORDER_EVERY_S):
            try:
                shop.order(base)
            except (AssertionError, httpx.HTTPError) as exc:
                self.errors.append(repr(exc))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def firing_in_prometheus(prometheus: str) -> set[str]:
    alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}


def inhibited_in_alertmanager(alertmanager: str) -> set[str]:
    alerts = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
    return {a["labels"]["alertname"] for a in alerts if a["status"]["inhibitedBy"]}


def test_a_fail_chaos_pages_once_and_resolves_after_remediation(
    processes: Processes,
    binaries: Binaries,
    notifications: tuple[Notifications, str],
    tmp_path: Path,
) -> None:
    seen, receiver_url = notifications
    base, simulator = start_service(processes, tmp_path)
    # Alertmanager starts once Prometheus has scraped the service: before its first scrape
    # a new Prometheus has no heartbeat at all, and PizzaHeartbeatAbsent rightly fires.
    alertmanager_port = free_port()
    prometheus = start_prometheus(binaries, tmp_path, base, alertmanager_port)
    shop = Shop(base)
    traffic = Traffic(shop, base)
    try:
        # A healthy minute of production (2 s here) and more: pizzas sold, nothing fires.
        wait_until(lambda: shop.placed >= 15, timeout=30, what="healthy orders before the chaos")
        wait_until(
            lambda: firing_in_prometheus(prometheus) == set(),
            timeout=30,
            what="no alert firing on the healthy service",
        )
        alertmanager = start_alertmanager(binaries, tmp_path, alertmanager_port, receiver_url)
        httpx.put(
            f"{simulator}/api/vendor/chaos/fail", headers={"Authorization": f"Bearer {KEY}"}
        ).raise_for_status()

        # One page, with the causes: the chaos and its link.
        wait_until(lambda: bool(seen.of("page")), timeout=60, what="the page")
        [page] = seen.of("page")
        assert page["status"] == "firing"
        paged = {a["labels"]["alertname"] for a in page["alerts"]}
        assert paged <= CAUSES and "PizzaRemediationLinkWaiting" in paged, page
        assert page["groupLabels"] == {"job": "jwt-pizza"}
        assert all(a["annotations"]["runbook_url"].startswith("docs/") for a in page["alerts"])

        # The symptoms fire in Prometheus and reach Alertmanager, which holds them back.
        wait_until(
            lambda: firing_in_prometheus(prometheus) >= SYMPTOMS,
            timeout=60,
            what=f"{sorted(SYMPTOMS)} to fire in Prometheus",
        )
        wait_until(
            lambda: inhibited_in_alertmanager(alertmanager) >= SYMPTOMS,
            timeout=30,
            what="Alertmanager to inhibit the symptoms",
        )
        # Two more flushes of the group (group_interval, 10 s here): still the one page.
        time.sleep(2 * 10 + 2)
        assert [p["status"] for p in seen.of("page")] == ["firing"], seen.of("page")

        # The fix: an operator remediates; the chaos ends, the orders are made.
        answer = httpx.post(f"{base}/factory/remediate", headers=shop.admin, timeout=10)
        assert answer.json()["attempt"]["resolved"] is True, answer.text
        wait_until(lambda: len(seen.of("page")) >= 2, timeout=90, what="the resolved notification")
    finally:
        traffic.stop()
    resolved = seen.of("page")[1]
    assert resolved["status"] == "resolved", resolved
    assert {a["status"] for a in resolved["alerts"]} == {"resolved"}
    assert paged <= {a["labels"]["alertname"] for a in resolved["alerts"]}
    # No page for a symptom, before or after the fix; no order lost on the way.
    assert len(seen.of("page")) == 2, seen.of("page")
    assert traffic.errors == []
    print(f"page: {sorted(paged)}; tickets: {[t['status'] for t in seen.of('ticket')]}")
