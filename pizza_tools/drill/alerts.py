"""Which shipped alerts fire, and when: a drill phase's recorded ``/metrics`` replayed
through ``promtool test rules`` against the shipped rule files (telemetry/alerts/: the
hand-written rules and the SLO rules generated from telemetry/slo/slos.yaml).

The rules' windows are minutes long and a drill phase lasts seconds, so the samples are
placed on rule time like this (one recorded second is one second of rule time; nothing
is sped up):

1. ``PREFIX_S`` of healthy service first: the recorded baseline (before the chaos)
   repeated, so that the 5- to 15-minute windows start full, as for a service that has
   been running, and a rule that fires here is a false alarm on a healthy service;
2. the recording itself, up to the cut (for the "as it happened" phase: the click);
3. then until ``HORIZON_S`` after the chaos started, the recording's loop window
   repeated: for "as it happened" the last whole breaker cycle (open, a probe, open
   again) of the steady chaos before the click (nobody clicks: the chaos goes on as
   recorded), for an auto-remediated phase its healthy tail. Counters, and the
   pending-order count, go on growing by the increments recorded in that window, the
   oldest order's age by a second a second; every other gauge repeats its values.

Every alert's first firing is read back from promtool's ``ALERTS`` series. A firing
later than the recorded chaos is marked as coming from the repetition in step 3.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from importlib.resources import as_file, files
from itertools import cycle, islice
from pathlib import Path

from pizza_tools.drill.samples import Recording

# Long enough for the 10-minute windows of the cause and symptom rules to start full, and
# after the chaos for the slowest of them to fire. The SLOs' windows are longer (an hour
# and more): on this baseline the fast burn's hour holds the 10 minutes, which is what a
# service that just started has.
PREFIX_S = 600
HORIZON_S = 1080
JOB = "jwt-pizza"
# Rules evaluated every 5 s over samples 1 s apart: a fifth of the cost of every second, and
# still finer than a real Prometheus (scrapes every 15 s, evaluates every 15 s to 1 min).
EVALUATION_S = 5
PROMTOOL_TIMEOUT_S = 300.0
# Gauges that grow while orders wait (their count, the oldest one's age) keep growing in
# step 3. An age grows by exactly one second a second: the few recorded samples would
# carry the jitter of when the service measured it relative to the scrape.
TRENDING_GAUGES = ("pizza_orders_pending",)
AGE_SUFFIX = "_age_seconds"
# A Unix timestamp the rules compare with time() (only instances heard from in 120 s
# count): on rule time the recorded process is live throughout, its heartbeat keeps time.
HEARTBEAT_TIMESTAMP = "pizza_service_heartbeat_timestamp_seconds"
_UNITS = 10**6  # values are replayed with six decimals, so that increments add up exactly
# Read at each rule evaluation (EVALUATION_S), when ALERTS can change: promtool loads at
# most 10,000 samples per query, and a step of 1 s crossed that once ten alerts fired.
_FIRST_FIRING = (
    'label_replace(min_over_time(timestamp(ALERTS{{alertstate="firing"}})'
    f"[{{range_s}}s:{EVALUATION_S}s]),"
    ' "drill_window", "{window}", "", "")'
)
_GOT = re.compile(r"\{([^{}]*)\}\s+([^\s,]+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_ALERT_NAME = re.compile(r"^\s*-\s*alert:\s*([A-Za-z_][\w]*)\s*$", re.MULTILINE)


class ReplayError(Exception):
    """promtool is missing, or refused the generated test, or said something unexpected."""


@dataclass(frozen=True)
class Window:
    """Where a phase's recording is cut and which part of it repeats (sample indices)."""

    chaos: int  # first sample taken after the chaos began
    cut: int  # samples [0, cut) are replayed as recorded
    loop: tuple[int, int]  # samples [from, to) repeat after the cut


@dataclass
class AlertTimes:
    """What the replay found, in seconds of rule time from the chaos start."""

    alerts: list[str]
    fired: dict[str, int] = field(default_factory=dict)
    before_chaos: dict[str, int] = field(default_factory=dict)
    recorded_s: int = 0  # the chaos seconds that were recorded; later ones are repeated

    def repeated(self, alert: str) -> bool:
        return self.fired.get(alert, -1) >= self.recorded_s

    @property
    def not_fired(self) -> list[str]:
        return [a for a in self.alerts if a not in self.fired]


# The shipped rule files, as package data of `telemetry`.
RULE_FILES = ("alerts/pizza.rules.yaml", "alerts/slo.rules.yaml")


def rules_text() -> str:
    """Every shipped rule file's text, one after the other."""
    return "\n".join(
        files("telemetry").joinpath(path).read_text(encoding="utf-8") for path in RULE_FILES
    )


def alert_names(text: str) -> list[str]:
    return _ALERT_NAME.findall(text)


def _units(value: float) -> int:
    return round(value * _UNITS)


def _number(units: int) -> str:
    text = format(Decimal(units) / _UNITS, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def encode(values: Sequence[int | None]) -> str:
    """promtool's expanding notation (``a+bxn``, ``_xn``) for values in micro-units."""
    parts: list[str] = []
    i, n = 0, len(values)
    while i < n:
        first = values[i]
        if first is None:
            j = i
            while j < n and values[j] is None:
                j += 1
            parts.append(f"_x{j - i}")
            i = j
            continue
        following = values[i + 1] if i + 1 < n else None
        if following is None:
            parts.append(_number(first))
            i += 1
            continue
        step, j, current = following - first, i + 1, following
        while j + 1 < n:
            upcoming = values[j + 1]
            if upcoming is None or upcoming - current != step:
                break
            j, current = j + 1, upcoming
        sign = "+" if step >= 0 else "-"
        parts.append(f"{_number(first)}{sign}{_number(abs(step))}x{j - i}")
        i = j + 1
    return " ".join(parts)


def _held(raw: list[float | None]) -> list[int | None]:
    """Micro-units; a gap after the series appeared holds the previous value."""
    out: list[int | None] = []
    last: int | None = None
    for value in raw:
        if value is not None:
            last = _units(value)
        out.append(last)
    return out


def _monotone(values: list[int | None]) -> list[int | None]:
    """A counter's values with process restarts (drops) turned into increments."""
    out: list[int | None] = []
    total: int | None = None
    previous: int | None = None
    for value in values:
        if value is None:
            out.append(None)
            continue
        if total is None or previous is None:
            total = value
        else:
            total += value - previous if value >= previous else value
        previous = value
        out.append(total)
    return out


def _steps(values: list[int | None], lo: int, hi: int) -> list[int]:
    return [
        b - a
        for a, b in zip(values[max(lo - 1, 0) : hi - 1], values[max(lo, 1) : hi], strict=True)
        if a is not None and b is not None
    ]


def _loop(items: list[int], count: int) -> list[int]:
    return list(islice(cycle(items), count)) if items else [0] * count


def _grow(start: int, increments: list[int], *, floor: int | None = None) -> list[int]:
    out, value = [], start
    for step in increments:
        value += step
        if floor is not None:
            value = max(value, floor)
        out.append(value)
    return out


def series_values(
    values: list[int | None],
    *,
    cumulative: bool,
    trending: bool,
    window: Window,
    age: bool = False,
    prefix: int,
    extension: int,
) -> list[int | None]:
    """One series on rule time: prefix, recording up to the cut, repetition (module doc)."""
    recorded = values[: window.cut]
    appears = next((i for i, v in enumerate(recorded) if v is not None), None)
    if appears is not None and 0 < appears < window.chaos:
        # Born during the baseline (the first order's histogram series, say): a service
        # running for minutes would have had it all along, at 0 for a counter.
        first = recorded[appears]
        recorded = [0 if cumulative else first] * appears + recorded[appears:]
    if cumulative:
        recorded = _monotone(recorded)
    lo, hi = window.loop
    if recorded and recorded[0] is not None and window.chaos > 0:
        if cumulative:
            increments = _loop(_steps(recorded, 1, window.chaos), prefix)
            head: list[int | None] = [0, *_grow(0, increments[: prefix - 1])]
            shift = (head[-1] or 0) + increments[prefix - 1] - recorded[0]
            recorded = [None if v is None else v + shift for v in recorded]
        else:
            baseline = [v for v in recorded[: window.chaos] if v is not None]
            head = list(islice(cycle(baseline), prefix))
    else:
        head = [None] * prefix
    last = next((v for v in reversed(recorded) if v is not None), None)
    if last is None:
        tail: list[int | None] = [None] * extension
    elif age and sum(_steps(recorded, lo, hi)) > 0:
        tail = list(_grow(last, [_UNITS] * extension))
    elif cumulative or trending:
        increments = _loop(_steps(recorded, lo, hi), extension)
        tail = list(_grow(last, increments, floor=None if cumulative else 0))
    else:
        repeated = [v for v in recorded[lo:hi] if v is not None] or [last]
        tail = list(islice(cycle(repeated), extension))
    return [*head, *recorded, *tail]


def promtool_test_file(
    recording: Recording, window: Window, rules_paths: Sequence[Path], *, rules: str
) -> tuple[dict[str, object], int, int]:
    """The promtool test file; the rule times (s) of the chaos start and of the end."""
    used = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rules))
    cumulative = recording.cumulative
    scrapes = recording.scrapes[: window.cut]
    keys = sorted({k for s in scrapes if s is not None for k in s.values if k.name in used})
    chaos_at = PREFIX_S + window.chaos
    extension = max(chaos_at + HORIZON_S - (PREFIX_S + window.cut), 0)
    end = PREFIX_S + window.cut + extension - 1
    series = []
    for key in keys:
        if key.name == HEARTBEAT_TIMESTAMP:
            beats = [second * _UNITS for second in range(end + 1)]
            series.append({"series": key.selector(job=JOB), "values": encode(beats)})
            continue
        raw = [None if s is None else s.values.get(key) for s in scrapes]
        values = series_values(
            _held(raw),
            cumulative=key.name in cumulative,
            trending=key.name.startswith(TRENDING_GAUGES),
            age=key.name.endswith(AGE_SUFFIX),
            window=window,
            prefix=PREFIX_S,
            extension=extension,
        )
        series.append({"series": key.selector(job=JOB), "values": encode(values)})
    tests = [
        {
            "expr": _FIRST_FIRING.format(range_s=chaos_at, window="before"),
            "eval_time": f"{chaos_at - 1}s",
            "exp_samples": [],
        },
        {
            "expr": _FIRST_FIRING.format(range_s=end - chaos_at + 1, window="after"),
            "eval_time": f"{end}s",
            "exp_samples": [],
        },
    ]
    document: dict[str, object] = {
        "rule_files": [str(path) for path in rules_paths],
        "evaluation_interval": f"{EVALUATION_S}s",
        "tests": [{"interval": "1s", "input_series": series, "promql_expr_test": tests}],
    }
    return document, chaos_at, end


def parse_first_firings(output: str) -> dict[str, dict[str, float]]:
    """``{"before"|"after": {alertname: first firing, s}}`` from promtool's failure report.

    Each test expects nothing, so promtool prints what it got instead: one
    ``{labels} value`` per alert that fired in that window.
    """
    found: dict[str, dict[str, float]] = {"before": {}, "after": {}}
    for line in output.splitlines():
        if not line.strip().startswith("got:"):
            continue
        for labels_text, value in _GOT.findall(line):
            labels = dict(_LABEL.findall(labels_text))
            window, alert = labels.get("drill_window"), labels.get("alertname")
            if window in found and alert:
                found[window][alert] = float(value)
    return found


async def replay(recording: Recording, window: Window) -> AlertTimes:
    """Run the shipped rules over the phase's samples; every alert's first firing."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise ReplayError("promtool not found (apt-get install prometheus): alerts not replayed")
    rules = rules_text()
    names = alert_names(rules)
    with ExitStack() as stack:
        paths = [stack.enter_context(as_file(files("telemetry").joinpath(p))) for p in RULE_FILES]
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="pizza-drill-rules-"))
        document, chaos_at, _end = promtool_test_file(recording, window, paths, rules=rules)
        test_file = Path(tmp) / "drill.test.json"
        test_file.write_text(json.dumps(document), encoding="utf-8")
        process = await asyncio.create_subprocess_exec(
            promtool,
            "test",
            "rules",
            str(test_file),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp,
        )
        try:
            out, _ = await asyncio.wait_for(process.communicate(), PROMTOOL_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise ReplayError(f"promtool took longer than {PROMTOOL_TIMEOUT_S:g} s") from None
    output = out.decode(errors="replace")
    found = parse_first_firings(output)
    if process.returncode != 0 and not (found["before"] or found["after"]):
        raise ReplayError(f"promtool test rules failed:\n{output[-3000:]}")
    return AlertTimes(
        alerts=names,
        fired={a: round(t) - chaos_at for a, t in found["after"].items()},
        before_chaos={a: round(t) - chaos_at for a, t in found["before"].items()},
        recorded_s=window.cut - window.chaos,
    )
