"""Property-based run of the app against its own OpenAPI schema (Schemathesis).

Every operation gets generated requests, valid and invalid, signed in as an admin; no
answer may be a 5xx, and every answer must match what /openapi.json declares (status,
content type, body schema). Derandomized and bounded, so CI sees the same run every time.
The operator surface (/factory/...) belongs to another part of the service and is left out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi

from app import db
from app.config import Settings
from app.main import create_app
from app.models import Role, User, UserRole
from app.security import hash_password
from tests.conftest import make_settings
from tests.utils.builders import PASSWORD, fast_password_hashing  # noqa: F401

pytestmark = [
    pytest.mark.usefixtures("fast_password_hashing"),
    # Schemathesis's own strategies use `random`; not ours to fix, and derandomized anyway.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

EXAMPLES_PER_OPERATION = 25
# Far from the small ids the generators favour, so that fuzzed PUT/DELETE /api/user/{id}
# do not sign out or delete the admin the run signs in as.
FUZZ_ADMIN_ID = 987_654
FUZZ_ADMIN_EMAIL = "fuzz-admin@jwt.com"
CONFIG = SchemathesisConfig.from_dict(
    {
        "generation": {
            # Unknown query parameters are ignored, as by most web APIs: not a contract.
            "allow-extra-parameters": False,
            # The admin's token is sent with every request instead.
            "with-security-parameters": False,
        },
        "operations": [
            {
                # api.md: a well-formed order naming a store or a menu item that does not
                # exist is a 400 "that says which field is wrong".
                "include-path": "/api/order",
                "include-method": "POST",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "400", "401", "403", "404", "409"]
                    }
                },
            }
        ],
    }
)


async def _seed_admin(settings: Settings) -> None:
    engine = db.create_engine(settings.database_url)
    try:
        await db.migrate(engine)
        async with db.session_factory(engine)() as session:
            session.add(
                User(
                    id=FUZZ_ADMIN_ID,
                    name="fuzz admin",
                    email=FUZZ_ADMIN_EMAIL,
                    password_hash=await hash_password(PASSWORD),
                )
            )
            session.add(UserRole(user_id=FUZZ_ADMIN_ID, role=Role.ADMIN))
            await session.commit()
    finally:
        await engine.dispose()


@pytest.fixture
def fuzz_app(
    database_url: str, factory_url: str, factory: httpx.Client
) -> Iterator[tuple[Any, dict[str, str]]]:
    """The app, started by Schemathesis in its own event loop, with an admin and a shop."""
    settings = make_settings(database_url, factory_url)
    asyncio.run(_seed_admin(settings))
    app = create_app(settings)
    try:
        with asgi.get_client(app) as client:
            signed_in = client.put(
                "/api/auth", json={"email": FUZZ_ADMIN_EMAIL, "password": PASSWORD}
            )
            assert signed_in.status_code == 200, signed_in.text
            headers = {"Authorization": f"Bearer {signed_in.json()['token']}"}
            menu = client.put(
                "/api/order/menu",
                headers=headers,
                json={"title": "Veggie", "description": "d", "image": "i.png", "price": 0.0038},
            )
            franchise = client.post(
                "/api/franchise", headers=headers, json={"name": "fuzz", "admins": []}
            )
            store = client.post(
                f"/api/franchise/{franchise.json()['id']}/store",
                headers=headers,
                json={"name": "fuzz store"},
            )
            assert menu.ok and store.ok, store.text
        yield app, headers
    finally:
        asgi.shutdown_lifespans()


def _order(operation: Any) -> tuple[int, str]:
    # Destructive operations last, signing out very last: the rest keep a working admin.
    method = operation.method.upper()
    if operation.path == "/api/auth" and method == "DELETE":
        return (2, operation.label)
    return (1 if method == "DELETE" else 0, operation.label)


def test_every_operation_matches_its_schema(fuzz_app: tuple[Any, dict[str, str]]) -> None:
    app, headers = fuzz_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    operations = sorted(
        (
            op
            for op in (r.ok() for r in schema.get_all_operations())
            if not op.path.startswith("/factory")
        ),
        key=_order,
    )
    assert len(operations) == 22, [op.label for op in operations]

    failures = []
    for operation in operations:
        for mode in _modes(operation):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                derandomize=True,
                database=None,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: Any) -> None:
                case.call_and_validate(headers=dict(headers))

            try:
                check()
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} {mode.value}: {exc}")
    assert not failures, "\n\n".join(failures)


def _modes(operation: Any) -> list[GenerationMode]:
    """Negative data needs something to negate: a parameter or a body."""
    inputs = [operation.path_parameters, operation.query, operation.headers, operation.body]
    if any(len(list(group)) for group in inputs):
        return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return [GenerationMode.POSITIVE]
