"""What every part of the factory's operator side works with (ops.py, links.py)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from clients.breaker import FactoryBreaker
from clients.client import FactoryClient
from clients.clock import SYSTEM_CLOCK, Clock
from telemetry.metrics import PizzaMetrics


@dataclass(frozen=True, slots=True)
class FactoryContext:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    client: FactoryClient
    breaker: FactoryBreaker
    metrics: PizzaMetrics
    factory_url: str
    api_key: str
    clock: Clock = SYSTEM_CLOCK
