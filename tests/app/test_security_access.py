"""Who may act and what never leaves, where this service is deliberately stricter than the
reference (docs/http-api.md#differences-from-the-reference-service): deleting a franchise
needs an admin (item 3), the factory key is in no answer (item 10). One class per item;
each test fails on the reference's behaviour."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import FACTORY_KEY
from tests.utils.builders import Api, fast_password_hashing  # noqa: F401
from tests.utils.orders import distinct
from tests.utils.simulator import end_chaos

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


class TestItem03DeletingAFranchiseNeedsAnAdmin:
    """The reference's DELETE /api/franchise/{id} required nothing."""

    async def test_nobody_else_can(self, api: Api) -> None:
        admin = await api.admin()
        owner = await api.register()
        diner = await api.register()
        franchise = await api.franchise(admin, admins=[owner.email])
        path = f"/api/franchise/{franchise['id']}"

        anonymous = await api.client.delete(path)
        by_diner = await api.client.delete(path, headers=diner.headers)
        by_owner = await api.client.delete(path, headers=owner.headers)

        assert anonymous.status_code == 401
        assert by_diner.status_code == by_owner.status_code == 403
        listed = (await api.client.get("/api/franchise")).json()["franchises"]
        assert [f["id"] for f in listed] == [franchise["id"]]


class TestItem10TheFactoryKeyNeverLeaves:
    async def test_no_answer_carries_it_even_during_chaos(
        self, api: Api, factory: httpx.Client
    ) -> None:
        shop = await api.shop()
        answers = [await api.order(shop)]
        for chaos in ("fail", "badjwt"):
            factory.put(f"/api/vendor/chaos/{chaos}").raise_for_status()
            # Each its own order: without a key, "Pay" again would meet the previous one
            # (made once the chaos ended) and be answered with its pizza.
            placed = await api.order(shop, headers=distinct())
            answers.append(placed)
            assert placed.status_code != 200, placed.text
            order_id = placed.json()["order"]["id"]
            answers.append(
                await api.client.get(f"/api/order/{order_id}", headers=shop.diner.headers)
            )
            end_chaos(factory)
        answers += [
            await api.client.get("/api/order", headers=shop.diner.headers),
            await api.client.get("/api/franchise", headers=shop.admin.headers),
            await api.client.get("/api/docs"),
            await api.client.get("/openapi.json"),
        ]

        for answer in answers:
            seen = answer.text + repr(answer.headers.raw)
            assert FACTORY_KEY not in seen, answer.request.url
            assert "reportUrl" not in seen and "followLinkToEndChaos" not in seen
