"""The load generator: one measurement, driven from its own process.

``python -m pizza_tools.bench.load`` reads `LoadSpec` lines (JSON) on stdin; for each it sends
``POST`` requests with a fixed number of concurrent workers (closed loop: each sends its
next request when its last one is answered) and prints one `LoadResult` line on stdout.

Two shapes: a timed window after a warm-up (throughput and latency at a steady load), or
a fixed number of requests (the breaker-open latency, the drain's backlog). Both are
bounded in count and in time. The CPU time of the processes named in ``pids`` (and of
this one) is read at the window's edges, so that a starved server shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import psutil

REQUEST_TIMEOUT_S = 30.0
MAX_ERROR_SAMPLES = 5
WORKERS_PER_CLIENT = 4
# A timed window still stops after this many requests: a bound if a target answers at once.
MAX_TIMED_REQUESTS = 1_000_000


@dataclass(frozen=True)
class LoadSpec:
    """One measurement: where to send what, how hard, for how long or how many times."""

    url: str
    body: dict[str, Any]
    headers: list[dict[str, str]]  # cycled over the workers (several diners)
    concurrency: int
    # A timed window after the warm-up, both stretched until each holds `answers_per_worker`
    # answers per worker: at 128 callers an answer may take longer than a short window ...
    window_s: float | None = None
    warmup_s: float = 0.0
    answers_per_worker: int = 2
    requests: int | None = None  # ... or exactly this many requests, no warm-up
    max_s: float = 300.0  # each phase stops after this long whatever happens
    pids: dict[str, list[int]] = field(default_factory=dict)  # CPU measured per group
    method: str = "POST"  # GET sends no body
    # Each request its own Idempotency-Key: distinct orders, never "Pay" pressed again
    # (a diner's identical pending order would answer for it, docs/http-api.md#post-apiorder).
    distinct_orders: bool = False

    def __post_init__(self) -> None:
        if (self.window_s is None) == (self.requests is None):
            raise ValueError("a LoadSpec needs either window_s or requests")
        if self.concurrency < 1 or not self.headers:
            raise ValueError("a LoadSpec needs a concurrency of at least 1 and headers")


@dataclass
class LoadResult:
    """What one measurement saw. Latencies are of the requests answered in the window."""

    requests: int
    elapsed_s: float
    latencies_ms: list[float]
    statuses: dict[str, int]  # HTTP status (or transport error name) -> count
    errors: int  # anything but a 2xx answer
    error_samples: list[str]
    client_cpu_s: float
    cpu_s: dict[str, float]

    @property
    def per_s(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes; one that has exited counts nothing."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _cpu_snapshot(pids: dict[str, list[int]]) -> dict[str, float]:
    return {name: cpu_seconds(group) for name, group in pids.items()}


@dataclass
class _Record:
    ended: float
    latency_s: float
    status: str
    ok: bool
    detail: str = ""


class _Load:
    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.body = (
            json.dumps(spec.body, separators=(",", ":")).encode() if spec.method != "GET" else b""
        )
        self.records: list[_Record] = []
        self.issued = 0
        self.stop = asyncio.Event()
        self.answered = asyncio.Event()  # `wanted` answers are in
        self.wanted = 0
        self.limit = spec.requests if spec.requests is not None else MAX_TIMED_REQUESTS
        self.run_id = secrets.token_hex(6)

    async def worker(self, client: httpx.AsyncClient, index: int) -> None:
        headers = {**self.spec.headers[index % len(self.spec.headers)]}
        headers["content-type"] = "application/json"
        while not self.stop.is_set() and self.issued < self.limit:
            self.issued += 1
            if self.spec.distinct_orders:
                headers["idempotency-key"] = f"bench-{self.run_id}-{self.issued}"
            started = time.perf_counter()
            try:
                response = await client.request(
                    self.spec.method, self.spec.url, content=self.body or None, headers=headers
                )
                status, ok = str(response.status_code), response.is_success
                detail = "" if ok else f"HTTP {status}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                status, ok, detail = type(exc).__name__, False, f"{type(exc).__name__}: {exc}"
            ended = time.perf_counter()
            self.records.append(_Record(ended, ended - started, status, ok, detail))
            if len(self.records) >= self.wanted:
                self.answered.set()

    async def until(self, seconds: float, answers: int) -> None:
        """Wait ``seconds``, and longer until ``answers`` more requests are answered
        (at most ``max_s``)."""
        self.wanted = len(self.records) + answers
        self.answered.clear()
        await asyncio.sleep(seconds)
        if len(self.records) < self.wanted:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.answered.wait(), self.spec.max_s - seconds)

    async def run(self) -> LoadResult:
        spec = self.spec
        me = psutil.Process()
        async with contextlib.AsyncExitStack() as stack:
            # A few workers per client: httpcore scans its whole pool on every request, so
            # one pool of 128 connections would cost the client more CPU than the server.
            clients = [
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        limits=httpx.Limits(
                            max_connections=WORKERS_PER_CLIENT,
                            max_keepalive_connections=WORKERS_PER_CLIENT,
                        ),
                        timeout=REQUEST_TIMEOUT_S,
                    )
                )
                for _ in range(0, spec.concurrency, WORKERS_PER_CLIENT)
            ]
            workers = [
                asyncio.create_task(self.worker(clients[i // WORKERS_PER_CLIENT], i))
                for i in range(spec.concurrency)
            ]
            try:
                if spec.window_s is not None:
                    # Warm: connections open and every caller answered once (steady state).
                    await self.until(spec.warmup_s, spec.concurrency)
                start, cpu0, me0 = time.perf_counter(), _cpu_snapshot(spec.pids), me.cpu_times()
                if spec.window_s is not None:
                    await self.until(spec.window_s, spec.answers_per_worker * spec.concurrency)
                else:
                    await asyncio.wait(workers, timeout=spec.max_s)
                end, cpu1, me1 = time.perf_counter(), _cpu_snapshot(spec.pids), me.cpu_times()
            finally:
                self.stop.set()
                # Requests in flight at the window's end finish (bounded by the timeout).
                await asyncio.gather(*workers, return_exceptions=True)
        counted = [r for r in self.records if start <= r.ended <= end]
        statuses: dict[str, int] = {}
        for record in counted:
            statuses[record.status] = statuses.get(record.status, 0) + 1
        failed = [r for r in counted if not r.ok]
        return LoadResult(
            requests=len(counted),
            elapsed_s=end - start,
            latencies_ms=[round(r.latency_s * 1000, 3) for r in counted],
            statuses=statuses,
            errors=len(failed),
            error_samples=[r.detail for r in failed[:MAX_ERROR_SAMPLES]],
            client_cpu_s=(me1.user + me1.system) - (me0.user + me0.system),
            cpu_s={name: cpu1[name] - cpu0[name] for name in cpu0},
        )


def parse_result(text: str) -> LoadResult:
    """The `LoadResult` a load generator printed."""
    data = json.loads(text)
    return LoadResult(**data)


def main() -> None:
    """One `LoadSpec` per line on stdin, one `LoadResult` per line on stdout, until EOF."""
    for line in sys.stdin:
        if line.strip():
            result = asyncio.run(_Load(LoadSpec(**json.loads(line))).run())
            sys.stdout.write(json.dumps(asdict(result)) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
