"""The service's ``/metrics``, recorded once a second while a drill phase runs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from prometheus_client.parser import text_string_to_metric_families

SAMPLE_PERIOD_S = 1.0
SCRAPE_TIMEOUT_S = 5.0
# Families whose samples only ever grow (a process restart aside): replayed by increments.
CUMULATIVE_TYPES = frozenset({"counter", "histogram", "summary"})
# Per-exporter noise the rules never select on.
DROPPED = "otel_scope_"

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, order=True)
class SeriesKey:
    """One time series as Prometheus would store it: a sample name and its labels."""

    name: str
    labels: Labels

    def selector(self, **extra: str) -> str:
        """``name{label="value",...}`` with ``extra`` labels added, for promtool's input."""
        pairs = sorted({**dict(self.labels), **extra}.items())
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
        return f"{self.name}{{{inner}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass
class Scrape:
    """One page of ``/metrics``: each sample's value, and which samples are cumulative."""

    values: dict[SeriesKey, float]
    cumulative: set[str]


def parse_page(text: str) -> Scrape:
    """A Prometheus text page as series values (``otel_scope_*`` labels dropped)."""
    values: dict[SeriesKey, float] = {}
    cumulative: set[str] = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(
                sorted(kv for kv in sample.labels.items() if not kv[0].startswith(DROPPED))
            )
            values[SeriesKey(sample.name, labels)] = float(sample.value)
            if family.type in CUMULATIVE_TYPES:
                cumulative.add(sample.name)
    return Scrape(values, cumulative)


@dataclass
class Recording:
    """Scrapes one second apart: ``scrapes[i]`` is the page at ``started_at + i`` seconds
    (None where that scrape failed or came too late)."""

    started_at: datetime
    scrapes: list[Scrape | None] = field(default_factory=list)

    def index_at(self, moment: datetime) -> float:
        """Seconds from the first scrape to ``moment`` (a sample index, fractional)."""
        return (moment - self.started_at).total_seconds() / SAMPLE_PERIOD_S

    @property
    def cumulative(self) -> set[str]:
        names: set[str] = set()
        for scrape in self.scrapes:
            if scrape is not None:
                names |= scrape.cumulative
        return names


class MetricsRecorder:
    """Scrapes ``url`` every second until stopped; the ticks do not drift with slow scrapes."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self._client = client
        self._url = url
        self.recording = Recording(started_at=datetime.now(UTC))
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="drill-metrics-recorder")

    async def stop(self) -> Recording:
        self._stop.set()
        if self._task is not None:
            await self._task
        return self.recording

    async def _scrape(self) -> Scrape | None:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            answer = await self._client.get(self._url, timeout=SCRAPE_TIMEOUT_S)
            if answer.status_code == 200:
                return parse_page(answer.text)
        return None

    async def _run(self) -> None:
        began = time.monotonic()
        self.recording.started_at = datetime.now(UTC)
        tick = 0
        while not self._stop.is_set():
            scrape = await self._scrape()
            # A scrape that took past its second is kept for the second it started in;
            # the seconds it overran stay empty (held over in the replay).
            while len(self.recording.scrapes) < tick:
                self.recording.scrapes.append(None)
            self.recording.scrapes.append(scrape)
            tick = max(tick + 1, int((time.monotonic() - began) / SAMPLE_PERIOD_S) + 1)
            delay = began + tick * SAMPLE_PERIOD_S - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(delay, 0.0))
