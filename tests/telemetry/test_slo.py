"""The SLOs as code: telemetry/slo/slos.yaml is the one declaration, the checked-in
rules are exactly what it generates, and the generator refuses what it cannot honour."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from telemetry.metrics import ORDER_MADE_WITHIN_S
from telemetry.slo import generate
from telemetry.slo.generate import DeclarationError, load, render, rules
from tests.telemetry.promql import SLO_RULES


def test_the_checked_in_rules_are_what_the_declaration_generates() -> None:
    assert SLO_RULES.read_text(encoding="utf-8") == render(load()), (
        "telemetry/alerts/slo.rules.yaml is stale: run python -m telemetry.slo"
    )


def test_check_mode_says_when_the_file_is_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert generate.main(["--check"]) == 0
    stale = tmp_path / "slo.rules.yaml"
    stale.write_text(SLO_RULES.read_text(encoding="utf-8").replace("14.4", "14"))
    monkeypatch.setattr(generate, "OUTPUT", stale)
    assert generate.main(["--check"]) == 1
    assert generate.main([]) == 0  # writes it again
    assert generate.main(["--check"]) == 0


def test_the_two_slos_and_their_bound() -> None:
    declaration = load()
    slos = {slo.name: slo for slo in declaration.slos}
    assert set(slos) == {"order-availability", "order-latency"}
    assert slos["order-availability"].budget == 0.005
    assert declaration.period == "30d"
    raw = yaml.safe_load(generate.DECLARATION.read_text())
    [availability] = [s for s in raw["slos"] if s["name"] == "order-availability"]
    # The service counts an order as made in time against this same bound.
    assert availability["made_within_s"] == ORDER_MADE_WITHIN_S


def test_the_workbooks_burn_rates() -> None:
    pairs = {
        severity: [(r.factor, r.long, r.short) for r in rates]
        for severity, rates in load().burn_rates.items()
    }
    assert pairs == {
        "page": [(14.4, "1h", "5m"), (6.0, "6h", "30m")],
        "ticket": [(3.0, "1d", "2h"), (1.0, "3d", "6h")],
    }


def test_every_alert_reads_windows_that_are_recorded() -> None:
    groups = rules(load())["groups"]
    every = [rule for group in groups for rule in group["rules"]]
    recorded = {(r["record"], r["labels"]["slo"]) for r in every if "record" in r}
    alerts = [r for r in every if "alert" in r]
    assert {a["alert"] for a in alerts} == {
        "PizzaOrderAvailabilityFastBurn",
        "PizzaOrderAvailabilitySlowBurn",
        "PizzaOrderLatencyFastBurn",
        "PizzaOrderLatencySlowBurn",
    }
    for alert in alerts:
        slo = alert["labels"]["slo"]
        for window in ("5m", "30m", "1h", "6h", "2h", "1d", "3d"):
            if f"ratio_rate{window}{{" in alert["expr"]:
                assert (f"slo:sli_error:ratio_rate{window}", slo) in recorded
    assert ("slo:error_budget_remaining:ratio", "order-availability") in recorded


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("objective: 99.5", "objective: 100"), "not a percentage"),
        (("short: 5m}", "short: 2h}"), "shorter than the long one"),
        (("long: 1h,", "long: 1w,"), "a duration is"),
        (("[{window}]))\n    total", "[5m]))\n    total"), "must read [{window}]"),
        (("    alert: PizzaOrderAvailability\n", ""), "missing or malformed"),
    ],
)
def test_a_wrong_declaration_is_refused_with_a_reason(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    text = generate.DECLARATION.read_text(encoding="utf-8")
    assert change[0] in text
    path = tmp_path / "slos.yaml"
    path.write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(DeclarationError, match=message.replace("[", r"\[")):
        load(path)
