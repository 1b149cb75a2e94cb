"""The drill's printed report: per phase its timeline, orders and alerts; a summary; the
method; the verdict; and the postmortem draft of the incident it caused."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from pizza_tools.drill.alerts import EVALUATION_S, HORIZON_S, PREFIX_S
from pizza_tools.drill.plan import SERVICE_SETTINGS, THROTTLE_DELAY_S, PhaseResult, Plan

if TYPE_CHECKING:
    from pizza_tools.drill import Mode

WIDTH = 92

METHOD = textwrap.fill(
    "How the alerts were found: the service's /metrics was recorded once a second during"
    " each phase, and the samples were replayed through `promtool test rules` against"
    f" the shipped rules (telemetry/alerts/*.rules.yaml), evaluated every {EVALUATION_S} s."
    " One recorded"
    " second is one second of rule time (nothing is sped up); because the rules' windows"
    " are minutes long, the recording is framed: first"
    f" {PREFIX_S // 60} minutes of the recorded healthy baseline repeated (the windows"
    " start full, as for a service that has been running; an alert firing there would be"
    " a false alarm), then the recording. For 'as it happened' the recording is cut at the"
    " click, and the last whole breaker cycle recorded before it (the steady chaos) is"
    f" repeated until {HORIZON_S // 60} minutes after the chaos started, as if nobody ever"
    " clicked: counters and the pending-order count keep growing by the recorded"
    " increments, the oldest order's age by a second a second, other gauges repeat their"
    " recorded values. Times marked * fall in that repetition, not in seconds the drill"
    " lived through. An auto-remediated phase is replayed in full and its healthy tail"
    " repeated to the same horizon. A real Prometheus that scrapes every 15 s and"
    " evaluates every minute adds up to a minute or so to each time.",
    WIDTH,
)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"+{value:.2f}"


def _phase_block(result: PhaseResult) -> list[str]:
    t, c = result.timeline, result.counts
    chaos = t.chaos_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    lines = [f"== {result.phase.name} ==", f"chaos {result.phase.chaos} started {chaos}"]
    lines.append("  timeline, seconds from chaos start (the service's records, orders' answers):")
    # As a timeline: by time, stages that did not happen last.
    ordered = sorted(t.stages(), key=lambda stage: (stage[2] is None, stage[2] or 0.0))
    for key, label, value in ordered:
        shown = label
        if key == "remediated" and t.remediated_by:
            shown = f"remediation ({t.remediated_by}, resolved)"
        lines.append(f"    {shown:<44} {_seconds(value)}")
    lines.append(
        f"  orders: accepted {c.accepted}, fulfilled {c.fulfilled}, pending {c.pending},"
        f" failed {c.failed}, lost {c.lost}" + (f", errors {c.errors}" if c.errors else "")
    )
    alerts = result.alerts
    if alerts is None:
        lines.append(f"  alerts: not replayed ({result.alert_error})")
    else:
        lines.append(
            f"  alerts, first firing in seconds from chaos start"
            f" (* after the recorded {alerts.recorded_s} s of chaos):"
        )
        for name, at in sorted(alerts.fired.items(), key=lambda item: (item[1], item[0])):
            mark = " *" if alerts.repeated(name) else ""
            lines.append(f"    {name:<44} +{at}{mark}")
        for name, at in sorted(alerts.before_chaos.items()):
            lines.append(f"    {name:<44} {at} (BEFORE the chaos: a false alarm)")
        if alerts.not_fired:
            quiet = ", ".join(alerts.not_fired)
            lines += textwrap.wrap(
                f"did not fire within {HORIZON_S // 60} min: {quiet}",
                WIDTH,
                initial_indent="    ",
                subsequent_indent="      ",
            )
    lines += [f"  note: {note}" for note in result.notes]
    return lines


def _first_alert(result: PhaseResult) -> str:
    if result.alerts is None:
        return "not replayed"
    if not result.alerts.fired:
        return "none"
    name, at = min(result.alerts.fired.items(), key=lambda item: (item[1], item[0]))
    return f"{name} +{at} s{' *' if result.alerts.repeated(name) else ''}"


def _summary(results: list[PhaseResult]) -> list[str]:
    head = (
        f"{'phase':<26} {'failed':>7} {'link':>7} {'breaker':>8} {'fixed':>7}"
        f" {'pizza':>7} {'lost':>4}  first alert"
    )
    lines = ["== summary (seconds from chaos start) ==", head]
    for r in results:
        t = r.timeline
        lines.append(
            f"{r.phase.name:<26} {_seconds(t.first_failed):>7} {_seconds(t.link_detected):>7}"
            f" {_seconds(t.breaker_opened):>8} {_seconds(t.remediated):>7}"
            f" {_seconds(t.first_fulfilled_after):>7} {r.counts.lost:>4}  {_first_alert(r)}"
        )
    return lines


def render(
    results: list[PhaseResult], plan: Plan, *, mode: Mode, seconds: float
) -> tuple[str, bool]:
    """The report, and whether the drill passed (exit code 0)."""
    settings = " ".join(f"{k}={v}" for k, v in SERVICE_SETTINGS.items())
    lines = [
        f"JWT Pizza drill: the 2024-12-05 incident replayed (mode {mode.value}"
        f"{', quick' if plan.quick else ''}; {seconds:.0f} s)",
        *textwrap.wrap(
            f"A simulator (throttle answers after {THROTTLE_DELAY_S:g} s) and a fresh service per"
            f" phase on SQLite: {settings} BREAKER_RESET_S={plan.breaker_reset_s:g};"
            f" {plan.rate_per_s:g} orders/s from {plan.diners} signed-in diners, "
            f"{plan.baseline_s:g} s before the chaos. 'As it happened': "
            f"FACTORY_AUTO_REMEDIATE=false, nobody clicks for {plan.hold_s:g} s and"
            " until the breaker has been through a whole cycle (open, a probe, open again;"
            f" in the throttle once the late answers, {THROTTLE_DELAY_S:g} s, are in), then"
            " one click on remediate. 'Auto-remediated': FACTORY_AUTO_REMEDIATE=true.",
            WIDTH,
        ),
        "",
    ]
    for result in results:
        lines += [*_phase_block(result), ""]
    lines += [*_summary(results), "", METHOD, ""]
    problems = [f"{r.phase.name}: {p}" for r in results for p in r.problems()]
    if problems:
        lines.append("result: FAILED")
        lines += [f"  - {p}" for p in problems]
    else:
        lines.append(
            "result: OK: no order lost, every phase recovered, 'as it happened' paged as"
            " expected, auto-remediation ended each chaos before a page"
        )
    lines.append("")
    lines += _postmortem(results)
    return "\n".join(lines), not problems


def _postmortem(results: list[PhaseResult]) -> list[str]:
    chosen = next((r for r in results if not r.phase.auto), results[0] if results else None)
    if chosen is None:
        return []
    title = f"== postmortem draft of the incident the drill caused ({chosen.phase.name}) =="
    if chosen.incident is None:
        why = "; ".join(chosen.notes) or "the service gave no report"
        return [title, f"(no postmortem draft: {why})"]
    return [title, chosen.incident.rstrip()]
