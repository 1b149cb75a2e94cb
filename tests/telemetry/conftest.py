"""Telemetry fixtures: providers built per test and shut down after it, no OTLP
endpoint from the machine's environment, and the logging setup restored."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from telemetry.logging import UVICORN_LOGGERS
from telemetry.setup import Telemetry, setup_telemetry
from tests.telemetry.otlp import Received, otlp_receiver

MakeTelemetry = Callable[..., Telemetry]


@pytest.fixture(autouse=True)
def _no_otlp_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_EXPORTER_OTLP_") or name == "OTEL_SERVICE_NAME":
            monkeypatch.delenv(name)


@pytest.fixture
def receiver() -> Iterator[Received]:
    """A real OTLP/HTTP receiver on a free port of 127.0.0.1 (tests/telemetry/otlp.py)."""
    with otlp_receiver() as received:
        yield received


@pytest.fixture
def make_telemetry() -> Iterator[MakeTelemetry]:
    made: list[Telemetry] = []

    def make(**kwargs: Any) -> Telemetry:
        kwargs.setdefault("service_version", "1.2.3")
        kwargs.setdefault("environment", "test")
        telemetry = setup_telemetry(**kwargs)
        made.append(telemetry)
        return telemetry

    yield make
    for telemetry in made:
        telemetry.shutdown()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back for other tests."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    loggers = [logging.getLogger(name) for name in UVICORN_LOGGERS]
    uvicorn = [(lg, list(lg.handlers), lg.propagate, lg.level) for lg in loggers]
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for logger, handlers, propagate, level in uvicorn:
        logger.handlers[:] = handlers
        logger.propagate = propagate
        logger.setLevel(level)


def record_one_of_each(telemetry: Telemetry) -> None:
    """Touch every instrument of PizzaMetrics once."""
    m = telemetry.metrics
    m.creation("success", 0.3)
    m.creation_failure("unavailable")
    m.sold(2, 0.0084)
    m.order_accepted()
    m.order_made(0.2)
    m.call_refused()
    m.order_twin("fulfilled")
    m.remediation_attempt("auto", "resolved")
    m.auth_attempt(True)
    m.auth_attempt(False)
    m.auth_refused("account")
    m.auth_attacked()
    m.user_seen(7)
    m.log_record("ERROR")
    m.set_pending(3, 42.0)
    m.set_breaker_state("open")
    m.set_remediation_pending(True)
    m.task_crashed("retry-worker")
    m.read_heartbeats(lambda: {"retry-worker": 1.5})


def sample_names(body: bytes) -> set[str]:
    """The metric names of every sample line of a Prometheus text page."""
    names = set()
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names


def value(page: str, name: str, **labels: str) -> float:
    for line in page.splitlines():
        named = line.startswith((name + "{", name + " "))
        if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not on the page")


@pytest.fixture
async def metrics_page(make_telemetry: MakeTelemetry) -> set[str]:
    """Sample names on a real /metrics render: one of each instrument recorded,
    and one request through an instrumented FastAPI app."""
    import httpx
    from fastapi import FastAPI

    from telemetry.setup import instrument_app

    telemetry = make_telemetry()
    record_one_of_each(telemetry)
    app = FastAPI()

    @app.post("/api/order", status_code=202)
    async def order() -> dict[str, str]:
        return {"status": "pending"}

    instrument_app(app, telemetry)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.post("/api/order")).status_code == 202
    body, _ = telemetry.render_prometheus()
    return sample_names(body)
