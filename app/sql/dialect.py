"""What a database gives the order store (app/sql/store.py): its statements and how it runs them.

`OrderStore` holds the order path's logic once for both databases: it turns rows into
the objects of app/sql/rows.py and group-commits the writes. A `Dialect` (SQLite,
PostgreSQL) brings the rest: the SQL of each read (`Reads`) and of each typed write
(app/sql/commands.py), how values travel (`Codec`), and the connections. The store
works on this protocol; the dialects implement it and never import the store (only
`open_store` names them, to pick one), so there is no import circle between them.

Statements name their parameters (`:order_id`). `Sql` keeps a statement as its driver
takes it and the names in the driver's order, so arguments are always picked by name,
never by position.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from app.sql.commands import Codec, Write
from app.sql.records import (
    ItemRecord,
    LoadedItemRecord,
    LoadedRecord,
    MenuRecord,
    PendingRecord,
    PrincipalFields,
    StateRecord,
    StoredRecord,
)

# `:name`, but not the second colon of a PostgreSQL cast (`::smallint`) nor a time's text.
_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@dataclass(frozen=True, slots=True)
class Sql:
    """A statement as its driver takes it, and its parameters' names in the driver's order."""

    text: str
    names: tuple[str, ...]

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        """The positional arguments of a driver that numbers its parameters."""
        return [values[name] for name in self.names]


def named(text: str) -> Sql:
    """A statement for a driver that binds `:name` itself (sqlite3, from a dict)."""
    return Sql(text, tuple(dict.fromkeys(_PARAMETER.findall(text))))


def numbered(text: str) -> Sql:
    """A statement for a driver that takes `$1, $2, ...` (asyncpg): each name becomes the
    number of its first use, and every use of it the same number."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    return Sql(_PARAMETER.sub(number, text), tuple(names))


R = TypeVar("R", covariant=True)


@dataclass(frozen=True, slots=True)
class Read(Generic[R]):
    """A read statement and the record each of its rows becomes."""

    sql: Sql
    record: Callable[[Iterable[Any]], R]


@dataclass(frozen=True, slots=True)
class Reads:
    """The order path's reads, one attribute each (the token check is `principal_rows`)."""

    menu: Read[MenuRecord]
    menu_items: Read[MenuRecord]  # :ids, as `Codec.ids` passes a list
    pending: Read[PendingRecord]
    state: Read[StateRecord]  # :order_id
    load: Read[LoadedRecord]  # :ids
    load_items: Read[LoadedItemRecord]  # :ids
    items_of: Read[ItemRecord]  # :order_id
    find_id: Read[StoredRecord]  # :order_id
    find_key: Read[StoredRecord]  # :diner_id, :key
    find_twin: Read[StoredRecord]  # :diner_id, :twin_hash (an open twin)
    find_last_twin: Read[StoredRecord]  # :diner_id, :twin_hash (the newest, any status)


def same(value: Any) -> Any:
    """A value the driver takes, and gives back, as it is."""
    return value


class Dialect(Protocol):
    """One database's side of the order store."""

    reads: Reads
    codec: Codec

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def flush(self, writes: list[Write]) -> list[Any]:
        """Apply ``writes`` in order; one result each (or a `WriteFailed`), or raise."""

    async def read(self, sql: Sql, values: Mapping[str, Any]) -> Sequence[Sequence[Any]]: ...

    async def principal_rows(self, jti: str, user_id: int) -> Sequence[PrincipalFields]:
        """The session's user and roles, a row per role (the roles' columns None if none)."""
