"""`pizza bench --quick` (README, Performance) runs end to end and reports every key.

A benchmark is not a test: nothing here asserts a timing, only that each figure is there,
of the right type and positive, and that no request failed.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pizza_tools.bench.procs import isolated_env
from tests.e2e.conftest import pizza_command

pytestmark = pytest.mark.slow

BENCH_TIMEOUT_S = 110
STOP_TIMEOUT_S = 60
POSITIVE = (
    "factory_alone_per_s",
    "service_orders_per_s",
    "ratio_to_factory",
    "order_p50_ms",
    "order_p99_ms",
    "service_cpu_ms_per_order",
    "factory_cpu_ms_per_pizza",
    "client_cpu_ms_per_order",
    "breaker_open_p99_ms",
    "menu_cpu_ms_per_read",
    "telemetry_ratio",
    "redis_breaker_ratio",
    "drain_orders_per_s",
    "rss_mb",
)


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """One quick run, on SQLite in a temporary directory (DATABASE_URL stripped)."""
    workdir = tmp_path_factory.mktemp("bench")
    out = workdir / "report.json"
    bench = subprocess.Popen(
        [*pizza_command(), "bench", "--quick", "--out", str(out)],
        cwd=workdir,
        env=isolated_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = bench.communicate(timeout=BENCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: the bench stops the processes it started on its way out.
        bench.terminate()
        stdout, stderr = bench.communicate(timeout=STOP_TIMEOUT_S)
        pytest.fail(f"pizza bench --quick took over {BENCH_TIMEOUT_S} s\n{stderr[-3000:]}")
    assert bench.returncode == 0, f"pizza bench exited {bench.returncode}\n{stderr[-3000:]}"
    report: dict[str, Any] = json.loads(Path(out).read_text(encoding="utf-8"))
    return report, stdout


class TestQuickBench:
    def test_every_figure_is_a_positive_number(self, bench: tuple[dict[str, Any], str]) -> None:
        report, _ = bench
        wrong = {key: report.get(key) for key in POSITIVE if not positive(report.get(key))}
        assert not wrong

    def test_no_request_failed(self, bench: tuple[dict[str, Any], str]) -> None:
        report, _ = bench
        assert report["errors"] == 0
        assert all(m["errors"] == 0 for m in report["measurements"].values())

    def test_scaling_and_processes_by_level(self, bench: tuple[dict[str, Any], str]) -> None:
        report, _ = bench
        assert set(report["scaling"]) == {"1", "8", "32", "128"}
        assert set(report["processes"]) == {"1", "2"}
        for figures in [*report["scaling"].values(), *report["processes"].values()]:
            assert positive(figures["orders_per_s"]) and positive(figures["p99_ms"])

    def test_the_drain_made_every_accepted_order(self, bench: tuple[dict[str, Any], str]) -> None:
        drain = bench[0]["drain"]
        assert drain["backlog"] > 0
        assert drain["fulfilled_after_chaos_end"] == drain["backlog"]
        assert drain["final_statuses"] == {"fulfilled": drain["backlog"]}

    def test_machine_command_and_table(self, bench: tuple[dict[str, Any], str]) -> None:
        report, stdout = bench
        machine = report["machine"]
        assert positive(machine["cpu_count"]) and machine["cpu_model"] and machine["python"]
        assert machine["database"].startswith("sqlite")
        assert "bench --quick" in report["command"]
        assert report["quick"] is True
        assert {"ratio_to_factory", "breaker_open_p99_ms", "errors"} <= set(report["targets"])
        # The idle service's CPU is measured (it may be 0 within the clock's resolution),
        # and answers pending at high concurrency are counted at both levels.
        assert report["idle_cpu_ms_per_s"] >= 0
        assert set(report["pending_under_load"]) == {"128", "256"}
        assert all(isinstance(n, int) for n in report["pending_under_load"].values())
        assert {"service_cpu_ms_per_order", "menu_cpu_ms_per_read", "idle_cpu_ms_per_s"} <= set(
            report["targets"]
        )
        for key in ("service_orders_per_s", "ratio_to_factory", "drain_orders_per_s"):
            assert key in stdout
