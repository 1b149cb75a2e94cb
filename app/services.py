"""Everything the lifespan builds, in one typed place (request.app.state.services)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.sql import OrderStore
from app.supervisor import Supervisor
from clients.breaker import FactoryBreaker
from clients.client import FactoryClient
from clients.clock import Clock
from telemetry.metrics import PizzaMetrics
from telemetry.setup import Telemetry

if TYPE_CHECKING:
    from app.factory import FactoryOps
    from app.incidents import IncidentRecorder
    from app.orders.worker import RetryWorker
    from app.orders.workflow import OrderWorkflow


@dataclass(slots=True)
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    store: OrderStore
    jwt_secret: str
    telemetry: Telemetry
    factory_http: httpx.AsyncClient
    factory: FactoryClient
    breaker: FactoryBreaker
    ops: FactoryOps
    orders: OrderWorkflow
    worker: RetryWorker
    incidents: IncidentRecorder
    supervisor: Supervisor
    clock: Clock  # everything time-dependent reads this one (clients/clock.py)
    quiet_factory_log: logging.Filter  # on httpx's logger while the app runs

    @property
    def metrics(self) -> PizzaMetrics:
        return self.telemetry.metrics
