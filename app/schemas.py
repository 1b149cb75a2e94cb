"""Request bodies and the JSON shapes the front end reads (api.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator

from app.models import DinerOrder, OrderItem, User, UserRole

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]


class Body(BaseModel):
    # Unknown fields are ignored (the front end sends extras), wrong types are 400s.
    model_config = ConfigDict(extra="ignore")


class RegisterBody(Body):
    name: Name
    email: EmailStr
    password: Password

    @field_validator("password")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class LoginBody(Body):
    email: Annotated[str, StringConstraints(max_length=254)]
    password: Annotated[str, StringConstraints(max_length=128)]


class UserUpdateBody(Body):
    name: Name | None = None
    email: EmailStr | None = None
    password: Password | None = None

    @field_validator("password")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value


class MenuItemBody(Body):
    title: Name
    description: Text
    image: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = ""
    price: Annotated[Decimal, Field(gt=0, le=Decimal(1_000_000), decimal_places=8)]


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
    email: EmailStr


class FranchiseBody(Body):
    name: Name
    admins: Annotated[list[AdminEmail], Field(max_length=20)] = []


class StoreBody(Body):
    name: Name


def money(value: Decimal) -> float:
    """Money leaves the service as a JSON number: the front end sums it."""
    return float(value)


def role_json(role: UserRole) -> dict[str, Any]:
    data: dict[str, Any] = {"role": role.role}
    if role.object_id is not None:
        data["objectId"] = role.object_id
    return data


def user_json(user: User, roles: list[UserRole]) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "roles": [role_json(r) for r in roles],
    }


def order_json(order: DinerOrder, items: list[OrderItem]) -> dict[str, Any]:
    return {
        "id": order.id,
        "franchiseId": order.franchise_id,
        "storeId": order.store_id,
        "date": order.date.isoformat().replace("+00:00", "Z"),
        "items": [
            {"id": i.id, "menuId": i.menu_id, "description": i.description, "price": money(i.price)}
            for i in items
        ],
        "status": order.status,
        "jwt": order.jwt,
    }


IdPath = Annotated[int, Path(ge=1, le=2**31 - 1)]
Page0 = Annotated[int, Query(ge=0, le=100_000)]
Limit = Annotated[int, Query(ge=1, le=100)]
NameFilter = Annotated[str, Query(max_length=100)]


def like_pattern(name: str) -> str:
    """`*` is the API's wildcard; SQL's own wildcards in a name are matched literally."""
    escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")
