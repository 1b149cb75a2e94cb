"""The order path's own database access: prepared statements and group commit.

SQLModel stays the schema (app/models.py, the Alembic migrations) and the rest of the API
reads and writes through SQLAlchemy sessions. The order path (the token check, the menu,
storing an order, recording its pizza, the retry worker's claims) is the product's inner
loop, so it talks to the driver directly, with statements prepared once:

- `OrderStore.insert_order` and every order update go through one writer that commits
  the writes waiting at that moment in one transaction ("natural batching": the next
  flush starts as soon as the previous one is done, with no fixed delay, so a lone order
  pays nothing). Each caller still awaits its own durable commit: an order is stored
  before its factory call, a pizza is recorded before the customer is answered.
- SQLite (`app/sql/sqlite.py`): one writer connection owned by one thread, so the
  service's order writes never contend for SQLite's lock, and a reader connection of its
  own (WAL: readers never wait for the writer).
- PostgreSQL (`app/sql/postgres.py`): asyncpg; one writer connection, the pending
  statements of a flush pipelined, and a small pool for reads.

How it is put together (each module imports only those above it, and `failures.py`
and `group_commit.py`, which import `rows.py` only, and `app/db.py` for `failures.py`):

- `rows.py`: what the store takes and gives back (`NewOrder`, `StoredOrder`, ...).
- `records.py`: the rows each read gives back, as NamedTuples named after the columns,
  and their select lists, written from the SQLModel tables at import.
- `commands.py`: each write is a typed command (`Fulfil(order_id, jwt, now)`) that
  binds its own parameters by name.
- `dialect.py`: what a database brings (`Dialect`: its `Reads`, a statement per command,
  its connections); `sqlite.py` and `postgres.py` are the two.
- `store.py`: `OrderStore`, the logic once for both, over a `Dialect`;
  `open_store(database_url)` picks the dialect.
"""

from __future__ import annotations

from app.sql.rows import (
    ClaimedOrder,
    InsertRefused,
    MenuRow,
    NewOrder,
    PendingStats,
    PrincipalRow,
    StoredOrder,
)
from app.sql.store import OrderStore, open_store

__all__ = [
    "ClaimedOrder",
    "InsertRefused",
    "MenuRow",
    "NewOrder",
    "OrderStore",
    "PendingStats",
    "PrincipalRow",
    "StoredOrder",
    "open_store",
]
