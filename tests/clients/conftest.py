"""Fixtures for factory-client tests: a real simulated factory on a real port."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI

from factory_sim import SimulatorConfig, create_simulator_app
from tests.utils.servers import serve_in_thread
from tests.utils.simulator import end_chaos_async

SIMULATOR_API_KEY = "sim-vendor-key-0123"
SIMULATOR_AUTH = {"Authorization": f"Bearer {SIMULATOR_API_KEY}"}


class FakeClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def simulator_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def simulator_app(simulator_clock: FakeClock) -> FastAPI:
    config = SimulatorConfig(api_key=SIMULATOR_API_KEY, throttle_delay_s=0.2, oven_full_delay_s=0.1)
    return create_simulator_app(config, clock=simulator_clock)


@pytest.fixture(scope="module")
def simulator_url(simulator_app: FastAPI) -> Iterator[str]:
    """One simulator per test module: starting uvicorn costs a few tenths of a second."""
    with serve_in_thread(simulator_app) as url:
        yield url


@pytest.fixture
async def simulator(simulator_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the module's simulator, which starts each test without chaos."""
    async with httpx.AsyncClient(base_url=simulator_url, timeout=5.0) as client:
        await end_chaos_async(client)
        yield client
