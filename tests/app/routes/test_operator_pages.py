"""The operator URLs: /factory/status, /factory/incidents and /factory/incidents/{id} are
the operator page for a browser (no token needed to load it, no data in it) and JSON for
an admin's token; everyone else is refused, before anything is looked up. The history
names the person who acted."""

from __future__ import annotations

import httpx
import pytest

from tests.utils.builders import Api
from tests.utils.incidents import closed_incident
from tests.utils.orders import all_fulfilled, pending_orders, status
from tests.utils.waiting import eventually

PAGES = ["/factory/status", "/factory/incidents", "/factory/incidents/1"]
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.mark.parametrize("path", PAGES)
async def test_a_browser_gets_the_operator_page_without_a_token(manual_api: Api, path: str) -> None:
    answer = await manual_api.client.get(path, headers=BROWSER)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["cache-control"] == "no-store"
    assert "Accept" in answer.headers["vary"]
    assert "<form" in answer.text and 'id="signin"' in answer.text


@pytest.mark.parametrize("path", PAGES)
async def test_json_is_for_admins_only(manual_api: Api, path: str) -> None:
    api = manual_api
    shop = await api.shop()
    anonymous = await api.client.get(path)
    assert anonymous.status_code == 401
    assert anonymous.json() == {"message": "unauthorized"}
    diner = await api.client.get(path, headers=shop.diner.headers)
    assert diner.status_code == 403
    admin = await api.client.get(path, headers=shop.admin.headers)
    if path.endswith("/1"):
        # No incident recorded yet: only an admin learns that incident 1 does not exist.
        assert admin.status_code == 404, admin.text
    else:
        assert admin.status_code == 200, admin.text
        assert admin.headers["cache-control"] == "no-store"


async def test_the_history_names_the_operator(manual_api: Api, factory: httpx.Client) -> None:
    api = manual_api
    shop = await api.shop()
    factory.put("/api/vendor/chaos/fail").raise_for_status()
    ids = await pending_orders(api, shop, 3)
    done = await api.client.post("/factory/remediate", headers=shop.admin.headers)
    assert done.json()["attempt"]["resolved"] is True
    forced = await api.client.put(
        "/factory/breaker", headers=shop.admin.headers, json={"state": "auto"}
    )
    assert forced.status_code == 200
    await eventually(lambda: all_fulfilled(api, shop, ids))

    history = (await status(api, shop))["history"]
    operator = f"{shop.admin.name} (user {shop.admin.id})"
    [remediation] = [e for e in history if e["kind"] == "remediation"]
    assert remediation["by"] == operator
    assert remediation["detail"].startswith("manual: HTTP 200: Problem resolved")
    [handed_back] = [e for e in history if e["kind"] == "operator"]
    assert handed_back == {**handed_back, "by": operator, "detail": "breaker set to auto"}
    # The service's own events name nobody.
    assert all(e["by"] is None for e in history if e["kind"] in ("breaker", "link_detected"))
    # The incident's timeline and attempts say it the same way.
    body = await closed_incident(api, shop)
    [attempt] = body["remediationAttempts"]
    assert attempt["by"] == operator
