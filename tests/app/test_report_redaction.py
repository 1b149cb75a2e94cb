"""The postmortem draft is redacted by the one redactor: a configured secret that is an
ordinary word does not garble it, the real secrets still never show (issue 9)."""

from __future__ import annotations

import httpx

from tests.conftest import FACTORY_KEY, make_settings, running_api
from tests.utils.incidents import closed_incident
from tests.utils.orders import all_fulfilled, pending_orders
from tests.utils.waiting import eventually

# An operator's weak choice, and a word every factory incident report contains.
ORDINARY_WORD = "chaos"


class TestReportRedaction:
    async def test_a_short_admin_password_does_not_mask_words_of_the_report(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> None:
        settings = make_settings(
            database_url,
            factory_url,
            factory_auto_remediate=False,
            breaker_fail_max=3,
            breaker_reset_s=600,
            admin_email="first-admin@jwt.pizza",
            admin_password=ORDINARY_WORD,
        )
        async with running_api(settings) as api:
            shop = await api.shop()
            factory.put("/api/vendor/chaos/fail").raise_for_status()
            ids = await pending_orders(api, shop, 3)
            await api.client.post("/factory/remediate", headers=shop.admin.headers)
            await eventually(lambda: all_fulfilled(api, shop, ids))
            body = await closed_incident(api, shop)
            answer = await api.client.get(
                f"/factory/incidents/{body['id']}/report", headers=shop.admin.headers
            )
        assert answer.status_code == 200
        report = answer.text
        # The factory's words, as recorded: "chaos monkey", not "*** monkey".
        assert "chaos monkey" in report
        assert "*** monkey" not in report
        # What must be masked still is.
        assert FACTORY_KEY not in report
        assert "/api/support/***/report/" in report
