"""Request bodies and the JSON shapes the front end reads (docs/http-api.md); the values in them
are app/fields.py's."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from app.fields import Email, Id, LoginText, Name, OptionalText, Password, Price, Text
from app.times import iso


class Body(BaseModel):
    # Unknown fields are ignored (the front end sends extras), wrong types are 400s.
    model_config = ConfigDict(extra="ignore")


class RegisterBody(Body):
    name: Name
    email: Email
    password: Password


class LoginBody(Body):
    email: LoginText
    password: LoginText


class UserUpdateBody(Body):
    name: Name | None = None
    email: Email | None = None
    password: Password | None = None


class MenuItemBody(Body):
    title: Name
    description: Text
    image: OptionalText = ""
    price: Price


class OrderItemBody(Body):
    menuId: Id
    # Description and price come from the menu; what a client sends here is ignored.
    description: str | None = None
    price: Any = None


class OrderBody(Body):
    franchiseId: Id
    storeId: Id
    items: Annotated[list[OrderItemBody], Field(min_length=1, max_length=20)]


class AdminEmail(Body):
    # Only looked up: an address nobody has is a 404 that names it.
    email: LoginText


class FranchiseBody(Body):
    name: Name
    admins: Annotated[list[AdminEmail], Field(max_length=20)] = []


class StoreBody(Body):
    name: Name


class Out(BaseModel):
    """An answer's shape, for /openapi.json and for checking what a route returns.

    Routes still build plain dicts; fields a dict leaves out stay out of the answer
    (routes use `response_model_exclude_unset`), so optional means "may be absent".
    """

    model_config = ConfigDict(extra="forbid")


class RoleOut(Out):
    role: Literal["diner", "franchisee", "admin"]
    objectId: int | None = Field(None, description="the franchise, for a franchisee")


class UserOut(Out):
    id: int
    name: str
    email: str
    roles: list[RoleOut]


class AuthOut(Out):
    user: UserOut
    token: str


class MessageOut(Out):
    message: str


class UserListOut(Out):
    users: list[UserOut]
    more: bool


class MenuItemOut(Out):
    id: int
    title: str
    image: str
    price: float
    description: str


class OrderItemOut(Out):
    id: int
    menuId: int
    description: str
    price: float


class OrderOut(Out):
    id: int
    franchiseId: int
    storeId: int
    date: str
    items: list[OrderItemOut]
    status: Literal["pending", "fulfilled", "failed"]
    jwt: str | None = Field(description="the pizza; null until it is made")


class OrderHistoryOut(Out):
    dinerId: int
    orders: list[OrderOut]
    page: int
    more: bool


class OrderAnswerOut(Out):
    order: OrderOut
    jwt: str | None
    message: str | None = Field(None, description="why the pizza is not made yet (202, 502)")


class AdminOut(Out):
    id: int
    name: str
    email: str


class StoreOut(Out):
    id: int
    name: str
    totalRevenue: float | None = Field(None, description="fulfilled orders; admins only")


class FranchiseOut(Out):
    id: int
    name: str
    admins: list[AdminOut] | None = Field(None, description="admins and the franchise's own")
    stores: list[StoreOut]


class FranchiseListOut(Out):
    franchises: list[FranchiseOut]
    more: bool


class NewFranchiseOut(Out):
    id: int
    name: str
    admins: list[AdminOut]


class NewStoreOut(Out):
    id: int
    franchiseId: int
    name: str


def money(value: Decimal) -> float:
    """Money leaves the service as a JSON number: the front end sums it."""
    return float(value)


class UserFields(Protocol):
    @property
    def id(self) -> int | None: ...
    @property
    def name(self) -> str: ...
    @property
    def email(self) -> str: ...


class RoleFields(Protocol):
    @property
    def role(self) -> str: ...
    @property
    def object_id(self) -> int | None: ...


def role_json(role: RoleFields) -> dict[str, Any]:
    data: dict[str, Any] = {"role": role.role}
    if role.object_id is not None:
        data["objectId"] = role.object_id
    return data


def user_json(user: UserFields, roles: Sequence[RoleFields]) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "roles": [role_json(r) for r in roles],
    }


class OrderFields(Protocol):
    """An order as the answers show it: a stored row (`DinerOrder`) or the order path's
    own `app.orders.workflow.PlacedOrder`."""

    @property
    def id(self) -> int | None: ...
    @property
    def franchise_id(self) -> int: ...
    @property
    def store_id(self) -> int: ...
    @property
    def date(self) -> datetime: ...
    @property
    def status(self) -> str: ...
    @property
    def jwt(self) -> str | None: ...


class ItemFields(Protocol):
    @property
    def id(self) -> int | None: ...
    @property
    def menu_id(self) -> int: ...
    @property
    def description(self) -> str: ...
    @property
    def price(self) -> Decimal: ...


def order_json(order: OrderFields, items: Sequence[ItemFields]) -> dict[str, Any]:
    return {
        "id": order.id,
        "franchiseId": order.franchise_id,
        "storeId": order.store_id,
        "date": iso(order.date),
        "items": [
            {"id": i.id, "menuId": i.menu_id, "description": i.description, "price": money(i.price)}
            for i in items
        ],
        "status": order.status,
        "jwt": order.jwt,
    }
