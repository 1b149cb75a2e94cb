"""`pizza soak`: the 2-minute form CI runs (2 replicas behind nginx, every kind of fault),
and the nginx configuration docs/operations.md shows, which must be the one the soak runs."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pizza_tools.bench.procs import isolated_env, pizza_command
from pizza_tools.soak.faults import ESSENTIAL, Window, schedule
from pizza_tools.soak.nginx import site_conf
from pizza_tools.soak.report import (
    StoredOrder,
    checks,
    memory_report,
    orders_report,
    window_report,
)
from pizza_tools.soak.stack import SoakStack
from pizza_tools.soak.traffic import Answer

SOAK_TIMEOUT_S = 900
OPERATIONS = Path(__file__).resolve().parents[2] / "docs/operations.md"
DOC_REPLICAS = ["127.0.0.1:3001", "127.0.0.1:3002", "127.0.0.1:3003"]


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("soak")
    out = workdir / "soak.json"
    run = subprocess.Popen(
        [*pizza_command(), "soak", "--minutes", "2", "--replicas", "2", "--out", str(out)],
        cwd=workdir,
        env=isolated_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = run.communicate(timeout=SOAK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        run.terminate()  # the soak stops what it started on SIGTERM
        _, stderr = run.communicate(timeout=60)
        pytest.fail(f"pizza soak took over {SOAK_TIMEOUT_S} s\n{stderr[-3000:]}")
    assert out.exists(), f"pizza soak exited {run.returncode} without a report\n{stderr[-3000:]}"
    report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return report


@pytest.mark.slow
class TestTwoMinuteSoak:
    def test_every_kind_of_fault_was_injected(self, soak: dict[str, Any]) -> None:
        kinds = {fault["kind"] for fault in soak["faults"]}
        assert set(ESSENTIAL) <= kinds
        assert any(kind.startswith("chaos:") for kind in kinds)

    def test_no_accepted_order_is_lost(self, soak: dict[str, Any]) -> None:
        orders = soak["orders"]
        assert orders["accepted"] > 0
        assert orders["lost"] == 0
        assert orders["pending"] == 0  # every accepted order settled after the faults

    def test_one_pizza_per_fulfilled_order_and_none_for_a_failed_one(
        self, soak: dict[str, Any]
    ) -> None:
        orders = soak["orders"]
        assert orders["fulfilled"] > 0
        assert orders["fulfilled_not_one_pizza"] == {}
        assert orders["failed_with_pizza"] == {}

    def test_no_500_from_the_service_in_any_window(self, soak: dict[str, Any]) -> None:
        # A database restart is a 503 with Retry-After, never an internal error.
        assert "500" not in soak["answers"], soak["service_unhandled_errors"]


def test_the_schedule_starts_with_every_essential_fault_and_is_seeded() -> None:
    assert set(schedule(13, 4)) == set(ESSENTIAL)
    assert schedule(13, 20) == schedule(13, 20)
    assert schedule(13, 20) != schedule(14, 20)


def test_the_operations_page_shows_the_nginx_configuration_the_soak_runs() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    section = text.split("## Scale out", 1)[1]
    block = re.search(r"```nginx\n(.*?)```", section, re.DOTALL)
    assert block is not None, "no ```nginx block in docs/operations.md, Scale out"
    assert block.group(1) == site_conf("127.0.0.1:8080", DOC_REPLICAS)


def test_an_accepted_order_missing_from_the_database_is_lost() -> None:
    stored = {
        1: StoredOrder(1, "fulfilled", None, None),
        2: StoredOrder(2, "failed", "rejected", "factory rejected it"),
        4: StoredOrder(4, "fulfilled", None, None),
    }
    orders = orders_report({1, 2, 3, 4}, stored, {"1": 1, "4": 2})
    assert orders["lost"] == 1
    assert orders["failed_reasons"] == {"rejected: factory rejected it": 1}
    assert orders["fulfilled_not_one_pizza"] == {"4": 2}
    assert checks(orders, memory_report({"r": 100}, {"r": 105}, set()), {})["lost_0"] is False


def test_a_500_misses_a_check() -> None:
    memory = memory_report({"r": 100}, {"r": 101}, set())
    orders = orders_report(set(), {}, {})
    assert checks(orders, memory, {"200": 9, "503": 2})["no_500"] is True
    assert checks(orders, memory, {"200": 9, "500": 1})["no_500"] is False


def test_the_replicas_500s_are_counted_by_cause(tmp_path: Path) -> None:
    # What app/middleware.py and app/errors.py write for a 500: a handler's "internal
    # error" with its error id (counted without it), and an "unhandled error" once the
    # answer had started.
    lines = [
        {
            "message": f"internal error {error_id} on GET /api/order: InternalClientError",
            "error_id": error_id,
            "exception": "Traceback (most recent call last):\nInternalClientError: gone",
        }
        for error_id in ("1a2b", "3c4d")
    ]
    lines.append({"message": "unhandled error on POST /api/order", "exception": "E: gone"})
    lines.append({"message": "database unavailable on GET /api/order/menu: OSError"})
    log = "\n".join(json.dumps(line) for line in lines)
    (tmp_path / "replica-0.log").write_text(log + "\n", encoding="utf-8")

    assert SoakStack(tmp_path, 1).unhandled_errors() == {
        "internal error on GET /api/order: InternalClientError: InternalClientError: gone": 2,
        "unhandled error on POST /api/order: E: gone": 1,
    }


def test_memory_growth_is_judged_on_replicas_that_ran_the_whole_time() -> None:
    memory = memory_report({"a": 100, "b": 100}, {"a": 109, "b": 300}, restarted={"b"})
    assert memory["max_growth"] == 0.09
    assert memory["replicas"]["b"]["growth"] is None
    grown = memory_report({"a": 100}, {"a": 111}, set())
    judged = checks(orders_report(set(), {}, {}), grown, {})
    assert judged["memory_growth_under_10_percent"] is False


def test_a_window_counts_its_answers_and_the_time_to_the_next_pizza() -> None:
    window = Window("postgres:restart", start=10.0, end=20.0)
    answers = [
        Answer(11.0, "order", 503),
        Answer(15.0, "menu", 503),
        Answer(19.0, "menu", 200),
        Answer(21.0, "order", 503),
        Answer(22.5, "order_keyed", 200),
    ]
    report = window_report(window, answers, origin=0.0)
    assert report["answers"] == {"200": 1, "503": 2}
    assert report["errors"] == 2
    assert report["error_span_s"] == 4.0
    assert report["recovery_s"] == 2.5
