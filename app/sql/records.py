"""The rows the order path's reads give back, by name, and the column lists they are read by.

Each read gives back one kind of record, a NamedTuple whose fields are named after the
columns it reads. The select list of a statement is written from the record's fields and
the SQLModel tables (app/models.py), once at import: a field that is not a column of its
table fails the import, and a record cannot be read in another order than its fields'.
Rows become records with `Record._make(row)`: one tuple per row, no copy by name.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from sqlalchemy import Table

from app.models import AuthSession, DinerOrder, MenuItem, OrderItem, User, UserRole


def table_of(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table


ORDERS = table_of(DinerOrder)
ITEMS = table_of(OrderItem)
MENU = table_of(MenuItem)
USERS = table_of(User)
SESSIONS = table_of(AuthSession)
ROLES = table_of(UserRole)

# Every column of a new order, in the models' order: an insert names them all, so a column
# added to the model without a value in the insert fails the first order (in the tests).
INSERTED_ORDER_COLUMNS = tuple(column.name for column in ORDERS.columns if not column.primary_key)


def select_list(record: type[tuple[Any, ...]], *sources: tuple[str, Table]) -> str:
    """``record``'s fields as the columns of ``sources`` (alias, table), in the record's
    order; each field is read from the first source that has a column of that name."""
    fields: tuple[str, ...] = record._fields  # type: ignore[attr-defined]
    return ", ".join(_qualified(field, sources, record.__name__) for field in fields)


def _qualified(field: str, sources: tuple[tuple[str, Table], ...], record: str) -> str:
    for alias, table in sources:
        if field in table.columns:
            return f"{alias}.{field}" if alias else field
    names = ", ".join(table.name for _, table in sources)
    raise LookupError(f"{record}.{field} is not a column of {names}")


class PrincipalFields(Protocol):
    """What a token check reads of a signed-in session: its user, and one of its roles."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def email(self) -> str: ...
    @property
    def expires_at(self) -> Any: ...
    @property
    def role(self) -> str | None: ...
    @property
    def object_id(self) -> int | None: ...


class PrincipalRecord(NamedTuple):
    """A session's user and one of its roles (the role's columns None when it has none)."""

    id: int
    name: str
    email: str
    expires_at: Any  # a time as the driver gives it back
    role: str | None
    object_id: int | None


PRINCIPAL_SOURCES = (("u", USERS), ("s", SESSIONS), ("r", ROLES))


class MenuRecord(NamedTuple):
    id: int
    title: str
    description: str
    image: str
    price: int  # money units (app/models.py)


class StateRecord(NamedTuple):
    status: str
    jwt: str | None


class PendingRecord(NamedTuple):
    """The pending orders: how many, the oldest one's date, when the next one is due."""

    orders: int
    oldest: Any
    next_due: Any


class StoredRecord(NamedTuple):
    """An order as a replay or a twin answers with it."""

    id: int
    diner_id: int
    franchise_id: int
    store_id: int
    date: Any
    status: str
    total: int
    jwt: str | None
    last_reason: str | None
    failure: str | None
    request_hash: str | None
    deferred_at: Any


class ItemRecord(NamedTuple):
    """One item of one order."""

    id: int
    menu_id: int
    description: str
    price: int


class LoadedRecord(NamedTuple):
    """A claimed order with its diner's name and email (None when the diner is gone)."""

    id: int
    diner_id: int
    franchise_id: int
    store_id: int
    date: Any
    total: int
    attempts: int
    deferred_at: Any
    name: str | None
    email: str | None
    trace_context: str | None


LOADED_SOURCES = (("o", ORDERS), ("u", USERS))


class LoadedItemRecord(NamedTuple):
    """One item of one of several orders."""

    id: int
    order_id: int
    menu_id: int
    description: str
    price: int


class InsertedRecord(NamedTuple):
    """What an insert of an order gives back on PostgreSQL (one statement)."""

    order_id: int | None  # None: nothing was inserted
    item_ids: list[int]
    store_found: bool


# The select lists, for both dialects.
PRINCIPAL_COLUMNS = select_list(PrincipalRecord, *PRINCIPAL_SOURCES)
MENU_COLUMNS = select_list(MenuRecord, ("", MENU))
STATE_COLUMNS = select_list(StateRecord, ("", ORDERS))
STORED_COLUMNS = select_list(StoredRecord, ("", ORDERS))
ITEM_COLUMNS = select_list(ItemRecord, ("", ITEMS))
LOADED_COLUMNS = select_list(LoadedRecord, *LOADED_SOURCES)
LOADED_ITEM_COLUMNS = select_list(LoadedItemRecord, ("", ITEMS))
