"""`pizza drill`: the incident replayed end to end (the short form CI runs), and the parts
that turn its records into a report: the alert replay through promtool, the timeline,
the postmortem hook."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from pizza_tools.bench.procs import isolated_env
from pizza_tools.drill.alerts import (
    EVALUATION_S,
    PREFIX_S,
    Window,
    alert_names,
    encode,
    parse_first_firings,
    replay,
    rules_text,
    series_values,
)
from pizza_tools.drill.plan import EXPECTED_ALERTS, QUICK, Phase
from pizza_tools.drill.runner import Drill
from pizza_tools.drill.samples import Recording, SeriesKey, parse_page
from pizza_tools.drill.timeline import build_timeline
from pizza_tools.drill.traffic import Answer
from tests.e2e.conftest import pizza_command
from tests.utils.tools import debian_tool

# The service's incidents (another module): the drill prints their postmortem draft.
HAS_INCIDENTS = importlib.util.find_spec("app.routes.incidents") is not None
DRILL_TIMEOUT_S = 120.0  # a hang guard: the quick drill takes about 40 s


@pytest.fixture(scope="module")
def promtool() -> str:
    return debian_tool("promtool", "prometheus")


# -- the drill itself ------------------------------------------------------------------


def _blocks(report: str) -> dict[str, str]:
    """Each phase's block of the report, by phase name."""
    parts = re.split(r"^== (.+) ==$", report, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _stages(block: str) -> dict[str, float | None]:
    stages: dict[str, float | None] = {}
    for line in block.split("timeline", 1)[1].split("orders:", 1)[0].splitlines()[1:]:
        if not line.strip():
            continue
        label, _, value = line.strip().rpartition(" ")
        stages[label.strip()] = None if value == "-" else float(value)
    return stages


def _alerts(block: str) -> dict[str, int]:
    found = re.findall(r"^\s+(Pizza\w+)\s+\+(\d+)( \*)?$", block, flags=re.MULTILINE)
    return {name: int(at) for name, at, _ in found}


@pytest.mark.slow
def test_quick_fail_drill(promtool: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [*pizza_command(), "drill", "--mode", "fail", "--quick"],
        cwd=tmp_path,
        env=isolated_env(),
        capture_output=True,
        text=True,
        timeout=DRILL_TIMEOUT_S,
        check=False,
    )
    report = done.stdout
    assert done.returncode == 0, report + done.stderr
    blocks = _blocks(report)
    manual, auto = blocks["fail, as it happened"], blocks["fail, auto-remediated"]

    for block in (manual, auto):
        counts = re.search(
            r"orders: accepted (\d+), fulfilled (\d+), pending 0, failed 0, lost 0", block
        )
        assert counts is not None, block
        assert int(counts[1]) == int(counts[2]) > 0

    # The incident as it happened: every stage, in the order it must come.
    stages = _stages(manual)
    failed = stages["first failed order (answered 202)"]
    link = stages["remediation link detected"]
    opened = stages["breaker opened (closed -> open)"]
    fixed = stages["remediation (manual, resolved)"]
    pizza = stages["first fulfilled order after remediation"]
    steady = stages["steady again (breaker closed, none pending)"]
    assert None not in (failed, link, opened, fixed, pizza, steady), stages
    assert 0 <= failed <= opened <= fixed <= pizza <= steady  # type: ignore[operator]
    assert 0 <= link <= fixed  # type: ignore[operator]

    # Auto-remediated: the service follows the link itself, before the breaker opens.
    stages = _stages(auto)
    fixed = stages["remediation (auto, resolved)"]
    assert stages["remediation link detected"] is not None and fixed is not None
    assert (
        stages["remediation link detected"]
        <= fixed
        <= stages["first fulfilled order after remediation"]
    )  # type: ignore[operator]

    # Alerts: the incident as it happened pages; auto-remediated, nothing that waits a minute.
    fired = _alerts(manual)
    assert EXPECTED_ALERTS["fail"] <= set(fired), manual
    assert fired["PizzaRemediationLinkWaiting"] <= min(fired.values())
    assert not {"PizzaOrderAvailabilityFastBurn", "PizzaSalesStopped"} & set(_alerts(auto)), auto

    assert "result: OK" in report
    assert "How the alerts were found" in report
    # It ends with the postmortem draft of the incident it caused (or says why it cannot).
    postmortem = report.split("== postmortem draft of the incident the drill caused", 1)[1]
    if HAS_INCIDENTS:
        assert "# Incident" in postmortem and "## Timeline" in postmortem
    else:
        assert "this service records no incidents (GET /factory/incidents: 404)" in postmortem


# -- the alert replay ------------------------------------------------------------------


def test_expanding_notation() -> None:
    micro = 10**6
    assert encode([0, micro, 2 * micro, 3 * micro]) == "0+1x3"
    assert encode([None, None, 5 * micro, 5 * micro]) == "_x2 5+0x1"
    assert encode([3 * micro, micro]) == "3-2x1"
    assert encode([1_500_000]) == "1.5"


def test_a_chaos_repeats_until_the_horizon() -> None:
    window = Window(chaos=2, cut=4, loop=(3, 4))
    u = 10**6
    # A counter: +1 a second before the chaos, +2 during it.
    counter = series_values(
        [0, u, 3 * u, 5 * u], cumulative=True, trending=False, window=window, prefix=3, extension=2
    )
    assert counter == [0, u, 2 * u, 3 * u, 4 * u, 6 * u, 8 * u, 10 * u, 12 * u]
    # A state gauge repeats its values; an age grows one second a second.
    state = series_values(
        [0, 0, u, u], cumulative=False, trending=False, window=window, prefix=2, extension=2
    )
    assert state == [0, 0, 0, 0, u, u, u, u]
    age = series_values(
        [0, 0, u // 2, 2 * u],
        cumulative=False,
        trending=True,
        age=True,
        window=window,
        prefix=1,
        extension=2,
    )
    assert age == [0, 0, 0, u // 2, 2 * u, 3 * u, 4 * u]
    # Born during the baseline (the first order's histogram series): there all along.
    born = series_values(
        [None, u, 2 * u, 3 * u],
        cumulative=True,
        trending=False,
        window=window,
        prefix=2,
        extension=1,
    )
    assert born == [0, u, 2 * u, 3 * u, 4 * u, 5 * u, 6 * u]
    # A series that appears with the chaos is absent before, as Prometheus would see it.
    late = series_values(
        [None, None, u, 2 * u],
        cumulative=True,
        trending=False,
        window=window,
        prefix=2,
        extension=1,
    )
    assert late == [None, None, None, None, u, 2 * u, 3 * u]


def test_promtool_failure_report_is_read() -> None:
    got = (
        '{alertname="PizzaOrderAvailabilityFastBurn", alertstate="firing", drill_window="after",'
        ' job="jwt-pizza", severity="page"} 6.61E+02, {alertname="PizzaRemediationLinkWaiting",'
        ' alertstate="firing", drill_window="after", job="jwt-pizza", severity="page"} 6E+02'
    )
    output = f"""Unit Testing:  drill.test.json
  FAILED:
    expr: "label_replace(...)", time: 25m,
        exp: nil
        got: {got}
"""
    assert parse_first_firings(output) == {
        "before": {},
        "after": {"PizzaOrderAvailabilityFastBurn": 661.0, "PizzaRemediationLinkWaiting": 600.0},
    }


def _page(pending_link: int, refused: int, breaker_open: int) -> str:
    scope = 'otel_scope_name="jwt-pizza"'
    return f"""# TYPE pizza_factory_remediation_pending gauge
pizza_factory_remediation_pending{{{scope}}} {pending_link}
# TYPE pizza_factory_breaker_state gauge
pizza_factory_breaker_state{{{scope},state="open"}} {breaker_open}
pizza_factory_breaker_state{{{scope},state="closed"}} {1 - breaker_open}
# TYPE pizza_factory_calls_refused_total counter
pizza_factory_calls_refused_total{{{scope}}} {refused}
# TYPE pizza_service_heartbeat gauge
pizza_service_heartbeat{{{scope}}} 1
# TYPE pizza_service_heartbeat_timestamp_seconds gauge
pizza_service_heartbeat_timestamp_seconds{{{scope}}} 1764633600.0
"""


@pytest.mark.slow  # runs promtool, a process of its own
async def test_replay_through_promtool(promtool: str) -> None:
    """A recorded link and open breaker, nobody clicking: the link pages at once, the
    breaker a minute later; nothing fires on the healthy baseline."""
    healthy = [parse_page(_page(0, 0, 0)) for _ in range(5)]
    chaos = [parse_page(_page(1, 5 * n, 1)) for n in range(5)]
    recording = Recording(started_at=datetime.now(UTC), scrapes=[*healthy, *chaos])
    assert SeriesKey("pizza_factory_remediation_pending", ()) in chaos[0].values
    times = await replay(recording, Window(chaos=5, cut=10, loop=(6, 10)))
    assert times.before_chaos == {}
    # Rules are evaluated every EVALUATION_S: a firing is seen at the next evaluation.
    assert 0 <= times.fired["PizzaRemediationLinkWaiting"] < EVALUATION_S
    assert 60 <= times.fired["PizzaFactoryBreakerOpen"] < 60 + EVALUATION_S
    assert times.repeated("PizzaFactoryBreakerOpen")
    assert set(times.alerts) == set(alert_names(rules_text()))
    assert "PizzaHeartbeatAbsent" in times.not_fired
    assert PREFIX_S >= 600  # the 10-minute windows start full


# -- the timeline and the postmortem hook ------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_timeline_from_the_service_records() -> None:
    t0 = datetime(2024, 12, 5, 18, 49, 3, tzinfo=UTC)

    def at(s: float) -> datetime:
        return t0 + timedelta(seconds=s)

    status = {
        "history": [
            {"at": _iso(at(-60)), "kind": "breaker", "detail": "closed -> open"},
            {
                "at": _iso(at(0.1)),
                "kind": "link_detected",
                "detail": "https://x (outcome unavailable)",
            },
            # SQLite gives naive UTC back.
            {
                "at": at(0.9).replace(tzinfo=None).isoformat(),
                "kind": "breaker",
                "detail": "closed -> open",
            },
        ],
        "remediation": {
            "attempts": [
                {"at": _iso(at(9)), "mode": "manual", "resolved": False},
                {"at": _iso(at(10)), "mode": "manual", "resolved": True},
            ]
        },
    }
    answers = [
        Answer(at(-1), at(-0.9), 200, 1),
        Answer(at(0.1), at(0.2), 202, 2),
        Answer(at(9.9), at(10.2), 200, 3),
    ]
    timeline = build_timeline(status, answers, t0, at(11))
    assert (timeline.first_failed, timeline.link_detected, timeline.breaker_opened) == (
        0.2,
        0.1,
        0.9,
    )
    assert (timeline.remediated, timeline.remediated_by) == (10.0, "manual")
    assert (timeline.first_fulfilled_after, timeline.steady) == (10.2, 11.0)


async def test_postmortem_hook_says_when_the_service_records_no_incidents(tmp_path: Path) -> None:
    def service(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"message": "unknown endpoint"})

    from pizza_tools.bench.procs import Processes

    drill = Drill(QUICK, [Phase("fail", auto=False)], Processes(tmp_path))
    notes: list[str] = []
    transport = httpx.MockTransport(service)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
        assert await drill._incident_report(http, {}, notes) is None
    assert notes == ["this service records no incidents (GET /factory/incidents: 404)"]
