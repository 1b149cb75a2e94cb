"""Typed values exchanged with the pizza factory (docs/factory.md, docs/resilience.md)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    """What one factory call came to, in the order of precedence (docs/resilience.md#outcomes)."""

    UNAUTHORIZED = "unauthorized"
    REJECTED = "rejected"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    BAD_JWT = "bad_jwt"
    CHAOS = "chaos"
    SLOW = "slow"
    SUCCESS = "success"

    @property
    def counts_as_failure(self) -> bool:
        """Whether the circuit breaker counts this outcome as a factory failure."""
        return self not in (Outcome.SUCCESS, Outcome.REJECTED)

    @property
    def counts_as_success(self) -> bool:
        """Only a clean, fast, verified pizza closes a half-open breaker."""
        return self is Outcome.SUCCESS


@dataclass(frozen=True, slots=True)
class DinerInfo:
    id: int
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class ItemInfo:
    menu_id: int
    description: str
    price: float


@dataclass(frozen=True, slots=True)
class OrderInfo:
    id: int
    franchise_id: int
    store_id: int
    items: tuple[ItemInfo, ...]

    def to_wire(self) -> dict[str, object]:
        return {
            "id": self.id,
            "franchiseId": self.franchise_id,
            "storeId": self.store_id,
            "items": [
                {"menuId": i.menu_id, "description": i.description, "price": i.price}
                for i in self.items
            ],
        }


@dataclass(frozen=True, slots=True)
class FactoryResult:
    """One classified factory answer.

    ``jwt`` is set only when the pizza's signature verified against the factory's
    key set: a pizza that did not verify never reaches a customer.
    ``report_url`` is the raw remediation link (a secret: it carries the API key).
    ``reason`` is a short human text, already free of secrets.
    """

    outcome: Outcome
    duration_s: float
    reason: str
    jwt: str | None = None
    report_url: str | None = None
    status_code: int | None = None

    @property
    def has_pizza(self) -> bool:
        return self.jwt is not None
