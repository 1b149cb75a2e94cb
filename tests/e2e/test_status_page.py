"""The operator's status page in a real browser (docs/http-api.md#operator-routes).

Issue acceptance: "The HTML status page opened in headless Chromium, the remediate
button clicked, the page then showing the breaker closed". The simulator and the
service run as separate `pizza` processes; auto-remediation is off, so a person
must act, and the breaker's reset timeout is long, so only remediation closes it.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from pizza_tools.bench.procs import isolated_env
from tests.e2e.conftest import CHROMIUM_ARGS, Proc, Processes, wait_until
from tests.utils.servers import free_port

VENDOR_KEY = "vendor-key-e2e-5ecr3t-c0ffee"
PASSWORD = "correct horse battery staple"
ADMIN_EMAIL = "opal@jwt.com"
ORDERS = 3
FAIL_MAX = 2
REMEDIATION_DEADLINE_S = 15.0


@dataclass
class Stack:
    url: str
    factory_url: str
    service: Proc


@pytest.fixture
def stack(processes: Processes, tmp_path: Path) -> Iterator[Stack]:
    """`pizza factory-sim` and `pizza serve` pointed at it, plus an admin."""
    chosen: dict[str, str] = {}

    def build_factory() -> tuple[list[str], dict[str, str], list[str]]:
        port = free_port()
        chosen["factory"] = f"http://127.0.0.1:{port}"
        args = ["factory-sim", "--port", str(port), "--api-key", VENDOR_KEY]
        return (
            [*args, "--throttle-delay-s", "1"],
            isolated_env(),
            [f"{chosen['factory']}/.well-known/jwks.json"],
        )

    processes.start_on_free_ports("factory-sim", build_factory)
    env = isolated_env(
        DATABASE_URL=f"sqlite:///{tmp_path}/pizza.db",
        FACTORY_URL=chosen["factory"],
        FACTORY_API_KEY=VENDOR_KEY,
        FACTORY_AUTO_REMEDIATE="false",
        BREAKER_FAIL_MAX=str(FAIL_MAX),
        BREAKER_RESET_S="300",
        RETRY_BASE_S="0.2",
        RETRY_MAX_S="1",
        WORKER_POLL_S="0.1",
    )
    processes.run(
        "admin", "create", "--name", "Opal Operator", "--email", ADMIN_EMAIL,
        "--password", PASSWORD, env=env,
    )  # fmt: skip

    def build_service() -> tuple[list[str], dict[str, str], list[str]]:
        port = free_port()
        chosen["url"] = f"http://127.0.0.1:{port}"
        return ["serve", "--port", str(port)], env, [f"{chosen['url']}/healthz"]

    service = processes.start_on_free_ports("pizza-serve", build_service)
    yield Stack(chosen["url"], chosen["factory"], service)


@contextmanager
def clients(stack: Stack) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """The service's API, and the factory's vendor API with its key."""
    with (
        httpx.Client(base_url=stack.url, timeout=15.0) as http,
        httpx.Client(
            base_url=stack.factory_url,
            headers={"Authorization": f"Bearer {VENDOR_KEY}"},
            timeout=5.0,
        ) as vendor,
    ):
        yield http, vendor


def wait_for_refreshes(page: Page, count: int) -> None:
    """Until the page has refreshed its data ``count`` more times (it counts them)."""
    seen = int(page.evaluate("Number(document.body.dataset.refreshes || 0)"))
    page.wait_for_function(
        f"Number(document.body.dataset.refreshes || 0) >= {seen + count}", timeout=30_000
    )


def sign_in(http: httpx.Client, email: str) -> dict[str, str]:
    answer = http.put("/api/auth", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def shop(http: httpx.Client, admin: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """A menu item, a franchise with a store, and a signed-in diner; the order body to send."""
    menu = http.put(
        "/api/order/menu",
        headers=admin,
        json={"title": "Veggie", "description": "A garden", "image": "p.png", "price": 0.0038},
    )
    assert menu.status_code == 200, menu.text
    franchise = http.post("/api/franchise", headers=admin, json={"name": "pizzaPocket"})
    assert franchise.status_code == 200, franchise.text
    franchise_id = franchise.json()["id"]
    store = http.post(f"/api/franchise/{franchise_id}/store", headers=admin, json={"name": "SLC"})
    assert store.status_code == 200, store.text
    diner = http.post(
        "/api/auth", json={"name": "Dee Diner", "email": "dee@jwt.com", "password": PASSWORD}
    )
    assert diner.status_code == 200, diner.text
    body = {
        "franchiseId": franchise_id,
        "storeId": str(store.json()["id"]),
        "items": [{"menuId": menu.json()[0]["id"], "description": "Veggie", "price": 0.0038}],
    }
    return body, {"Authorization": f"Bearer {diner.json()['token']}"}


@pytest.mark.slow
def test_remediate_from_the_status_page(
    chromium: Path, stack: Stack, tmp_path: Path, processes: Processes
) -> None:
    with clients(stack) as (http, vendor):
        # The page without auth is plain markup: no link, no key, no figures.
        page_html = http.get("/factory/status", headers={"Accept": "text/html"})
        assert page_html.status_code == 200
        assert page_html.headers["content-type"].startswith("text/html")
        assert VENDOR_KEY not in page_html.text
        assert "/api/support/" not in page_html.text
        assert "<form" in page_html.text
        # The JSON status without a token is refused.
        anonymous = http.get("/factory/status", headers={"Accept": "application/json"})
        assert anonymous.status_code == 401
        assert anonymous.json() == {"message": "unauthorized"}

        admin = sign_in(http, ADMIN_EMAIL)
        body, diner = shop(http, admin)

        # The factory fails; the diners' orders are kept (503 pending: no Prefer) and the
        # breaker opens. Each its own order (its own Idempotency-Key), not "Pay" again.
        assert vendor.put("/api/vendor/chaos/fail").status_code == 200
        order_ids: list[int] = []

        def order() -> None:
            key = {"Idempotency-Key": f"order-{len(order_ids)}"}
            answer = http.post("/api/order", headers={**diner, **key}, json=body)
            assert answer.status_code == 503, answer.text
            assert answer.json()["order"]["status"] == "pending"
            assert VENDOR_KEY not in answer.text
            order_ids.append(answer.json()["order"]["id"])

        def status() -> dict[str, Any]:
            answer = http.get("/factory/status", headers=admin)
            assert answer.status_code == 200, answer.text
            result: dict[str, Any] = answer.json()
            return result

        for _ in range(FAIL_MAX):
            order()
        wait_until(
            lambda: status()["breaker"]["state"] == "open" and status()["remediation"]["link"],
            timeout=10,
            what="the breaker open with a remediation link recorded",
        )
        # Open, it stops the bleeding: more orders are kept without calling the factory.
        calls = vendor.get("/api/sim/stats").json()["calls"]
        for _ in range(ORDERS - FAIL_MAX):
            order()
        assert vendor.get("/api/sim/stats").json()["calls"] == calls
        assert status()["pending"]["count"] == ORDERS

        # An operator opens the page in a browser, signs in, and remediates.
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                # Every load asked for a missing /favicon.ico once: no answer may be an error.
                page.on(
                    "response",
                    lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
                )
                page.goto(f"{stack.url}/factory/status")
                expect(page.locator("#status")).to_be_hidden()
                page.get_by_label("Email").fill(ADMIN_EMAIL)
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()

                state = page.locator("#breaker-state")
                expect(state).to_have_text("open", timeout=10_000)
                # A background tab says it; the mode in force is the pressed button.
                expect(page).to_have_title(re.compile(r"^open · "))
                expect(page.get_by_role("button", name="Automatic")).to_have_attribute(
                    "aria-pressed", "true"
                )
                expect(page.get_by_role("button", name="Force open")).to_have_attribute(
                    "aria-pressed", "false"
                )
                # The link shown is the one the server follows: the factory's own port (the
                # factory writes https and no port), in a new tab.
                link = page.locator("#remediation-link")
                expect(link).to_be_visible()
                href = link.get_attribute("href") or ""
                assert href.startswith(f"{stack.factory_url}/api/support/"), href
                assert link.get_attribute("target") == "_blank"
                assert link.get_attribute("rel") == "noopener noreferrer"
                # One line says what to do; the chaos the factory reports is named.
                expect(page.locator("#instruction")).to_contain_text("Remediate now")
                expect(page.locator("#chaos")).to_contain_text("chaos fail, running")
                expect(page.locator("#pending-count")).to_have_text(str(ORDERS))
                page.screenshot(path=str(tmp_path / "status-open.png"), full_page=True)

                # Only an absolute http(s) link is clickable; the factory's mangled scheme
                # (`https//`, docs/factory.md) is repaired instead of becoming a relative link.
                assert page.evaluate("linkHref('https//f.example/api/support/k/report/c')") == (
                    "https://f.example/api/support/k/report/c"
                )
                assert page.evaluate("linkHref('javascript:alert(1)')") is None
                assert page.evaluate("linkHref('/factory/remediate')") is None

                remediate = page.get_by_role("button", name="Remediate now")
                expect(remediate).to_be_enabled()
                remediate.click()
                result = page.locator("#remediate-result")
                expect(result).to_contain_text("Factory answered: HTTP 200: Problem resolved")
                answered = result.inner_text()
                # The click ended it: the factory keeps the chaos, fixed (type none).
                assert vendor.get("/api/vendor").json()["chaos"]["type"] == "none"
                # Half-open now; the retry worker's probe closes it, the page polls itself.
                expect(state).to_have_text("closed", timeout=REMEDIATION_DEADLINE_S * 1000)
                expect(page).to_have_title(re.compile(r"^closed · "))
                expect(page.locator("#remediation-link")).to_have_count(0)
                expect(remediate).to_be_disabled()  # nothing left to follow
                expect(page.locator("#instruction")).to_have_text(
                    "Nothing to do: the factory makes pizzas.", timeout=10_000
                )
                expect(page.locator("#chaos")).to_have_text("The factory reports no chaos.")
                expect(page.locator("#last-success")).not_to_have_text("—")
                # The factory's answer stays through the page's refreshes (every 3 s)...
                wait_for_refreshes(page, 2)
                expect(result).to_have_text(answered)
                # ...until the next action: the breaker forced open, then handed back.
                page.get_by_role("button", name="Force open").click()
                expect(result).to_have_text("")
                expect(page.locator("#breaker-result")).to_contain_text("forced_open, held by you")
                expect(page.get_by_role("button", name="Force open")).to_have_attribute(
                    "aria-pressed", "true"
                )
                expect(page).to_have_title(re.compile(r"^forced_open · "))
                page.get_by_role("button", name="Automatic").click()
                expect(page.get_by_role("button", name="Automatic")).to_have_attribute(
                    "aria-pressed", "true"
                )
                # The history names the operator who acted, not a user id.
                history = page.locator("#history")
                expect(history).to_contain_text("(by Opal Operator (user ")
                expect(history).not_to_contain_text("manual by")
                page.screenshot(path=str(tmp_path / "status-closed.png"), full_page=True)
                assert errors == [], errors
            finally:
                browser.close()

        # Every order kept while the factory failed is made in the end.
        def fulfilled() -> bool:
            states = [
                http.get(f"/api/order/{order_id}", headers=diner).json()["status"]
                for order_id in order_ids
            ]
            assert "failed" not in states, states
            return states == ["fulfilled"] * ORDERS

        wait_until(fulfilled, timeout=REMEDIATION_DEADLINE_S, what="the pending orders made")
        assert status()["pending"]["count"] == 0

    # SIGTERM (what a service manager sends) is a graceful stop too, and a success.
    assert processes.stop(stack.service, signal.SIGTERM) == 0


PHONE = {"width": 390, "height": 844}
REFUSED = "Signed in, but not as an admin: these pages are for admins only."


def assert_fits(page: Page, where: str) -> None:
    """Nothing is wider than the screen: not the page, not a table in its card."""
    sizes = page.evaluate(
        """() => ({
            page: document.documentElement.scrollWidth,
            screen: window.innerWidth,
            cards: [...document.querySelectorAll('.card')]
                .filter(card => card.offsetParent !== null)
                .map(card => [card.querySelector('h2, p')?.textContent, card.scrollWidth,
                              card.clientWidth]),
        })"""
    )
    assert sizes["page"] <= sizes["screen"], f"{where}: {sizes}"
    spilled = [card for card in sizes["cards"] if card[1] > card[2]]
    assert sizes["cards"] and not spilled, f"{where}: {spilled}"


def page_sign_in(page: Page, email: str) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


@pytest.mark.slow
def test_the_operator_pages_fit_a_phone_and_refuse_a_diner(chromium: Path, stack: Stack) -> None:
    with clients(stack) as (http, vendor):
        admin = sign_in(http, ADMIN_EMAIL)
        body, diner = shop(http, admin)
        # An outage the operator ends: an incident with a timeline, an attempt, a history.
        assert vendor.put("/api/vendor/chaos/fail").status_code == 200
        for number in range(FAIL_MAX + 1):
            key = {"Idempotency-Key": f"phone-{number}"}
            assert http.post("/api/order", headers={**diner, **key}, json=body).status_code == 503
        wait_until(
            lambda: http.get("/factory/status", headers=admin).json()["remediation"]["link"],
            timeout=10,
            what="the remediation link",
        )
        done = http.post("/factory/remediate", headers=admin)
        assert done.json()["attempt"]["resolved"] is True, done.text

        def closed() -> bool:
            listed = http.get("/factory/incidents", headers=admin).json()["incidents"]
            return bool(listed) and listed[0]["status"] == "closed"

        wait_until(closed, timeout=REMEDIATION_DEADLINE_S, what="the incident to close")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport=PHONE, is_mobile=True)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{stack.url}/factory/status")
            page_sign_in(page, ADMIN_EMAIL)
            expect(page.locator("#breaker-state")).to_have_text("closed", timeout=10_000)
            expect(page.locator("#history")).to_contain_text("by Opal Operator")
            expect(page.locator("#attempts")).to_contain_text("Problem resolved")
            assert_fits(page, "/factory/status")

            # The incident, from the status page's list, on its own page.
            page.locator("#incidents").get_by_role("link", name="#1").click()
            expect(page).to_have_url(f"{stack.url}/factory/incidents/1")
            expect(page.locator("#incident-title")).to_have_text("Incident 1 · closed")
            expect(page).to_have_title("Incident 1 (closed) · JWT Pizza")
            expect(page.locator("#incident-timeline")).to_contain_text("link detected")
            expect(page.locator("#incident-attempts")).to_contain_text("Opal Operator")
            expect(page.locator("#incident-impact")).to_contain_text("Fulfilled late")
            page.get_by_role("button", name="Show the postmortem draft").click()
            report = page.locator("#incident-report")
            expect(report).to_contain_text("# Incident 1: ")
            heading = report.inner_text().splitlines()[0]
            assert re.fullmatch(r"# Incident 1: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", heading)
            assert_fits(page, "/factory/incidents/1")

            page.get_by_role("navigation").get_by_role("link", name="Incidents").click()
            expect(page).to_have_url(f"{stack.url}/factory/incidents")
            expect(page.locator("#incident-list")).to_contain_text("closed")
            assert_fits(page, "/factory/incidents")
            page.go_back()
            expect(page.locator("#incident-title")).to_have_text("Incident 1 · closed")
            assert errors == [], errors

            # Opened straight from a link (a notification, another tab): sign in, then it.
            direct = browser.new_page(viewport=PHONE, is_mobile=True)
            direct.goto(f"{stack.url}/factory/incidents/1")
            expect(direct.locator("#incident-view")).to_be_hidden()
            page_sign_in(direct, ADMIN_EMAIL)
            expect(direct.locator("#incident-title")).to_have_text("Incident 1 · closed")

            # A diner signs in: refused, and shown nothing of the incidents.
            refused = browser.new_page(viewport=PHONE, is_mobile=True)
            refused.goto(f"{stack.url}/factory/incidents")
            page_sign_in(refused, "dee@jwt.com")
            expect(refused.locator("#error")).to_have_text(REFUSED)
            for view in ("#incidents-view", "#incident-view", "#status"):
                expect(refused.locator(view)).to_be_hidden()
            expect(refused.locator("#incident-list tr")).to_have_count(0)
            expect(refused).to_have_title("Admins only · JWT Pizza")
        finally:
            browser.close()
