"""The factory client: every answer classified as docs/resilience.md#outcomes says, nothing
raised."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from clients.client import FactoryClient, RemediationAnswer
from clients.jwks import JwksCache
from clients.remediation import followable_url, parse_link
from clients.schemas import DinerInfo, ItemInfo, OrderInfo, Outcome
from tests.clients.conftest import SIMULATOR_API_KEY, SIMULATOR_AUTH
from tests.clients.test_jwks import NOW, factory_key, key_set
from tests.utils.clock import ManualClock
from tests.utils.servers import free_port

FACTORY = "http://factory.test"
ORDER_URL = f"{FACTORY}/api/order"
VENDOR_URL = f"{FACTORY}/api/vendor"
API_KEY = "vk-secret-0123456789"
LINK = f"https://factory.test/api/support/{API_KEY}/report/fix-42"
DINER = DinerInfo(id=719, name="j", email="j@jwt.com")
ORDER = OrderInfo(id=278, franchise_id=4, store_id=5, items=(ItemInfo(1, "Veggie", 0.0038),))
SLOW_CALL_S = 2.0


def valid_pizza() -> str:
    return factory_key("k1").sign()


def expired_pizza() -> str:
    return factory_key("k1").sign(exp=NOW - 1)


@pytest.fixture
def router() -> respx.MockRouter:
    router = respx.MockRouter(assert_all_called=False)
    router.get(f"{FACTORY}/.well-known/jwks.json").mock(return_value=key_set(factory_key("k1")))
    return router


@pytest.fixture
def clock() -> ManualClock:
    """Both the client's duration clock and the key cache's wall clock."""
    return ManualClock(datetime.fromtimestamp(NOW, UTC))


@pytest.fixture
async def client(router: respx.MockRouter, clock: ManualClock) -> AsyncIterator[FactoryClient]:
    transport = httpx.MockTransport(router.async_handler)
    async with httpx.AsyncClient(base_url=FACTORY, transport=transport) as http:
        jwks = JwksCache(http, clock=clock)
        yield FactoryClient(http, api_key=API_KEY, jwks=jwks, slow_call_s=SLOW_CALL_S, clock=clock)


Answer = httpx.Response | Exception


def taking(
    seconds: float, clock: ManualClock, response: httpx.Response
) -> Callable[[httpx.Request], httpx.Response]:
    """A respx side effect: the factory answers after `seconds` of the fake clock."""

    def answer(request: httpx.Request) -> httpx.Response:
        clock.advance(seconds)
        return response

    return answer


def row(name: str, answer: Callable[[], Answer], outcome: Outcome, pizza: bool = False) -> object:
    """One row of docs/resilience.md#outcomes: `answer` builds a response or an exception."""
    return pytest.param(answer, outcome, pizza, id=name)


def status(code: int, message: str) -> Callable[[], httpx.Response]:
    return lambda: httpx.Response(code, json={"message": message})


def body(code: int, **kwargs: Any) -> Callable[[], httpx.Response]:
    return lambda: httpx.Response(code, **kwargs)


def pizza(code: int, token: Callable[[], str]) -> Callable[[], httpx.Response]:
    return lambda: httpx.Response(code, json={"jwt": token()})


OVEN_FULL = "Unable to satisfy pizza order. The oven is full."
ROWS = [
    row("401", status(401, "invalid authentication"), Outcome.UNAUTHORIZED),
    row("403", status(403, "forbidden"), Outcome.UNAUTHORIZED),
    row("401-not-json", body(401, text="nope"), Outcome.UNAUTHORIZED),
    row("400", status(400, "Missing required parameters"), Outcome.REJECTED),
    row("400-not-json", body(400, text="bad"), Outcome.REJECTED),
    row("503-oven-full", status(503, OVEN_FULL), Outcome.REJECTED),
    row("read-timeout", lambda: httpx.ReadTimeout("timed out"), Outcome.TIMEOUT),
    row("connect-timeout", lambda: httpx.ConnectTimeout("timed out"), Outcome.TIMEOUT),
    row("pool-timeout", lambda: httpx.PoolTimeout("no connection"), Outcome.TIMEOUT),
    row(
        "refused", lambda: httpx.ConnectError("[Errno 111] Connection refused"), Outcome.UNAVAILABLE
    ),
    row(
        "dns",
        lambda: httpx.ConnectError("[Errno -2] Name or service not known"),
        Outcome.UNAVAILABLE,
    ),
    row(
        "reset",
        lambda: httpx.ReadError("[Errno 104] Connection reset by peer"),
        Outcome.UNAVAILABLE,
    ),
    row("protocol", lambda: httpx.RemoteProtocolError("Server disconnected"), Outcome.UNAVAILABLE),
    row("500", status(500, "internal"), Outcome.UNAVAILABLE),
    row("502-html", body(502, text="<html>bad gateway</html>"), Outcome.UNAVAILABLE),
    row("503-other", status(503, "maintenance"), Outcome.UNAVAILABLE),
    row("503-not-json", body(503, text="oven is full"), Outcome.UNAVAILABLE),
    row("404", status(404, "unknown endpoint"), Outcome.UNAVAILABLE),  # beyond the table
    row("200-not-json", body(200, text="<html>pizza</html>"), Outcome.UNAVAILABLE),
    row("200-bad-utf8", body(200, content=b"\xff\xfe{"), Outcome.UNAVAILABLE),
    row("200-json-list", body(200, json=["a.b.c"]), Outcome.UNAVAILABLE),
    row("200-json-string", body(200, json="ok"), Outcome.UNAVAILABLE),
    row("200-no-jwt", body(200, json={}), Outcome.BAD_JWT),
    row("200-jwt-not-string", body(200, json={"jwt": 42}), Outcome.BAD_JWT),
    row("200-jwt-empty", body(200, json={"jwt": ""}), Outcome.BAD_JWT),
    row("200-jwt-garbage", body(200, json={"jwt": "a.b.c"}), Outcome.BAD_JWT),
    row("200-jwt-expired", pizza(200, expired_pizza), Outcome.BAD_JWT),
    row("200-pizza", pizza(200, valid_pizza), Outcome.SUCCESS, pizza=True),
    row("201-pizza", pizza(201, valid_pizza), Outcome.SUCCESS, pizza=True),
]


class TestClassification:
    @pytest.mark.parametrize(("answer", "outcome", "pizza"), ROWS)
    async def test_row(
        self,
        client: FactoryClient,
        router: respx.MockRouter,
        answer: Callable[[], Answer],
        outcome: Outcome,
        pizza: bool,
    ) -> None:
        router.post(ORDER_URL).mock(side_effect=[answer()])
        result = await client.create_pizza(DINER, ORDER, timeout_s=5.0)
        assert result.outcome is outcome, result.reason
        assert result.has_pizza is pizza
        assert result.report_url is None
        assert result.reason
        assert API_KEY not in result.reason

    async def test_status_code_is_recorded(
        self, client: FactoryClient, router: respx.MockRouter
    ) -> None:
        router.post(ORDER_URL).respond(500, json={"message": "chaos monkey"})
        result = await client.create_pizza(DINER, ORDER, timeout_s=5.0)
        assert result.status_code == 500
        assert result.reason == "factory failed: HTTP 500: chaos monkey"

    async def test_no_status_code_without_an_answer(
        self, client: FactoryClient, router: respx.MockRouter
    ) -> None:
        router.post(ORDER_URL).mock(side_effect=httpx.ConnectError("refused"))
        result = await client.create_pizza(DINER, ORDER, timeout_s=5.0)
        assert result.status_code is None


class TestChaosAndPrecedence:
    """Every answer's link is recorded; the label is the first row that fits."""

    @pytest.mark.parametrize(
        ("status", "body", "outcome"),
        [
            (401, {"message": "invalid authentication"}, Outcome.UNAUTHORIZED),
            (400, {"message": "Missing required parameters"}, Outcome.REJECTED),
            (500, {"message": "chaos monkey"}, Outcome.UNAVAILABLE),  # chaos "fail"
            (200, {"jwt": "not.a.pizza"}, Outcome.BAD_JWT),  # chaos "badjwt"
            (200, {}, Outcome.BAD_JWT),
        ],
    )
    async def test_link_recorded_whatever_the_label(
        self,
        client: FactoryClient,
        router: respx.MockRouter,
        status: int,
        body: dict[str, object],
        outcome: Outcome,
    ) -> None:
        router.post(ORDER_URL).respond(status, json={**body, "reportUrl": LINK})
        result = await client.create_pizza(DINER, ORDER, timeout_s=5.0)
        assert (result.outcome, result.report_url, result.jwt) == (outcome, LINK, None)

    @pytest.mark.parametrize(
        "link",
        [
            LINK,
            f"https://support.example/resolve?apiKey={API_KEY}&fixCode=fix-42",
            f"https//factory.test/api/support/{API_KEY}/report/fix-42",
            "something the factory made up",  # recorded raw even if no known shape
        ],
        ids=["path", "query", "mangled", "unknown"],
    )
    async def test_verified_pizza_with_a_link_is_chaos_and_still_a_pizza(
        self, client: FactoryClient, router: respx.MockRouter, link: str
    ) -> None:
        pizza = valid_pizza()
        router.post(ORDER_URL).respond(200, json={"jwt": pizza, "reportUrl": link})
        result = await client.create_pizza(DINER, ORDER, timeout_s=5.0)
        assert (result.outcome, result.report_url, result.jwt) == (Outcome.CHAOS, link, pizza)
        assert API_KEY not in result.reason

    async def test_throttled_pizza_is_chaos_not_slow(
        self, client: FactoryClient, router: respx.MockRouter, clock: ManualClock
    ) -> None:
        answer = httpx.Response(200, json={"jwt": valid_pizza(), "reportUrl": LINK})
        router.post(ORDER_URL).mock(side_effect=taking(3.0, clock, answer))
        result = await client.create_pizza(DINER, ORDER, timeout_s=60.0)
        assert result.outcome is Outcome.CHAOS
        assert result.duration_s == 3.0

    async def test_empty_link_is_no_link(
        self, client: FactoryClient, router: respx.MockRouter
    ) -> None:
        router.post(ORDER_URL).respond(200, json={"jwt": valid_pizza(), "reportUrl": ""})
        result = await client.create_pizza(DINER, ORDER, timeout_s=5.0)
        assert (result.outcome, result.report_url) == (Outcome.SUCCESS, None)


class TestDuration:
    async def test_fast_pizza_is_success(
        self, client: FactoryClient, router: respx.MockRouter, clock: ManualClock
    ) -> None:
        answer = httpx.Response(200, json={"jwt": valid_pizza()})
        router.post(ORDER_URL).mock(side_effect=taking(SLOW_CALL_S, clock, answer))
        result = await client.create_pizza(DINER, ORDER, timeout_s=5.0)
        assert (result.outcome, result.duration_s) == (Outcome.SUCCESS, SLOW_CALL_S)

    async def test_slow_pizza_is_slow_and_still_a_pizza(
        self, client: FactoryClient, router: respx.MockRouter, clock: ManualClock
    ) -> None:
        pizza = valid_pizza()
        answer = httpx.Response(200, json={"jwt": pizza})
        router.post(ORDER_URL).mock(side_effect=taking(2.5, clock, answer))
        result = await client.create_pizza(DINER, ORDER, timeout_s=5.0)
        assert (result.outcome, result.jwt, result.duration_s) == (Outcome.SLOW, pizza, 2.5)
        assert result.reason == "pizza took 2.5 s (slow above 2 s)"

    async def test_slow_failure_keeps_its_failure_label(
        self, client: FactoryClient, router: respx.MockRouter, clock: ManualClock
    ) -> None:
        answer = httpx.Response(500, json={"message": "chaos monkey"})
        router.post(ORDER_URL).mock(side_effect=taking(9.0, clock, answer))
        result = await client.create_pizza(DINER, ORDER, timeout_s=60.0)
        assert (result.outcome, result.duration_s) == (Outcome.UNAVAILABLE, 9.0)


class TestRequest:
    async def test_one_post_with_bearer_key_order_and_timeout(
        self, client: FactoryClient, router: respx.MockRouter
    ) -> None:
        route = router.post(ORDER_URL).respond(200, json={"jwt": valid_pizza()})
        await client.create_pizza(DINER, ORDER, timeout_s=7.5)
        assert route.call_count == 1
        request = route.calls.last.request
        assert request.headers["Authorization"] == f"Bearer {API_KEY}"
        assert json.loads(request.content) == {
            "diner": {"id": 719, "name": "j", "email": "j@jwt.com"},
            "order": {
                "id": 278,
                "franchiseId": 4,
                "storeId": 5,
                "items": [{"menuId": 1, "description": "Veggie", "price": 0.0038}],
            },
        }
        assert request.extensions["timeout"] == {
            "connect": 7.5,
            "read": 7.5,
            "write": 7.5,
            "pool": 7.5,
        }

    async def test_redirect_is_not_followed(
        self, client: FactoryClient, router: respx.MockRouter
    ) -> None:
        router.post(ORDER_URL).respond(307, headers={"Location": "http://elsewhere.test/"})
        elsewhere = router.post("http://elsewhere.test/").respond(200, json={})
        result = await client.create_pizza(DINER, ORDER, timeout_s=5.0)
        assert result.outcome is Outcome.UNAVAILABLE
        assert elsewhere.call_count == 0

    async def test_whole_call_is_bounded_by_the_timeout(
        self, client: FactoryClient, router: respx.MockRouter
    ) -> None:
        # httpx's own timeouts are per phase; a factory that never answers is
        # still cut off at timeout_s overall.
        async def hang(request: httpx.Request) -> httpx.Response:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        router.post(ORDER_URL).mock(side_effect=hang)
        result = await client.create_pizza(DINER, ORDER, timeout_s=0.01)
        assert result.outcome is Outcome.TIMEOUT

    async def test_cancellation_propagates(
        self, client: FactoryClient, router: respx.MockRouter
    ) -> None:
        entered = asyncio.Event()

        async def hang(request: httpx.Request) -> httpx.Response:
            entered.set()
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        router.post(ORDER_URL).mock(side_effect=hang)
        call = asyncio.create_task(client.create_pizza(DINER, ORDER, timeout_s=60.0))
        await entered.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call


class TestRedaction:
    @pytest.mark.parametrize(
        "answer",
        [
            httpx.Response(401, json={"message": f"invalid authentication for {API_KEY}"}),
            httpx.Response(400, json={"message": f"bad order, key={API_KEY}"}),
            httpx.Response(500, json={"message": f"see {LINK}", "reportUrl": LINK}),
            httpx.ConnectError(f"cannot connect for apiKey={API_KEY}"),
            httpx.ReadTimeout(f"timed out {API_KEY}"),
        ],
        ids=["401", "400", "500-link", "connect-error", "timeout"],
    )
    async def test_reason_never_contains_the_key(
        self, client: FactoryClient, router: respx.MockRouter, answer: Answer
    ) -> None:
        router.post(ORDER_URL).mock(side_effect=[answer])
        result = await client.create_pizza(DINER, ORDER, timeout_s=5.0)
        assert API_KEY not in result.reason
        assert len(result.reason) <= 200

    async def test_long_message_is_cut_after_redaction(
        self, client: FactoryClient, router: respx.MockRouter
    ) -> None:
        prefix = "factory failed: HTTP 500: "
        # Unredacted, the cut would fall inside the key and leave half of it.
        message = "x" * (200 - len(prefix) - len(API_KEY) // 2) + API_KEY + "y" * 100
        router.post(ORDER_URL).respond(500, json={"message": message})
        result = await client.create_pizza(DINER, ORDER, timeout_s=5.0)
        assert API_KEY[:8] not in result.reason
        assert len(result.reason) == 200


class TestProbeVendor:
    async def test_key_accepted_with_chaos_scheduled(
        self, client: FactoryClient, router: respx.MockRouter
    ) -> None:
        record = {
            "id": "v1",
            "name": "pizza shop",
            "apiKey": API_KEY,
            "chaos": {
                "type": "throttle",
                "startDate": "2024-12-06T09:12:00Z",
                "fixCode": "fix-42",
                "apiKey": API_KEY,
                "note": f"link {LINK}",
            },
        }
        route = router.get(VENDOR_URL).respond(200, json=record)
        probe = await client.probe_vendor(timeout_s=3.0)
        assert route.calls.last.request.headers["Authorization"] == f"Bearer {API_KEY}"
        assert probe.outcome is Outcome.SUCCESS
        assert probe.vendor_name == "pizza shop"
        assert probe.chaos == {
            "type": "throttle",
            "startDate": "2024-12-06T09:12:00Z",
            "note": "link https://factory.test/api/support/***/report/fix-42",
        }
        assert API_KEY not in repr(probe)

    async def test_key_accepted_without_chaos(
        self, client: FactoryClient, router: respx.MockRouter
    ) -> None:
        router.get(VENDOR_URL).respond(200, json={"id": "v1", "name": "pizza shop", "chaos": None})
        probe = await client.probe_vendor()
        assert (probe.outcome, probe.vendor_name, probe.chaos) == (
            Outcome.SUCCESS,
            "pizza shop",
            None,
        )

    @pytest.mark.parametrize(
        ("answer", "outcome"),
        [
            (httpx.Response(401, json={"message": "invalid authentication"}), Outcome.UNAUTHORIZED),
            (httpx.Response(403, text="no"), Outcome.UNAUTHORIZED),
            (httpx.Response(500, json={"message": "down"}), Outcome.UNAVAILABLE),
            (httpx.Response(404, json={"message": "unknown"}), Outcome.UNAVAILABLE),
            (httpx.Response(200, text="<html>"), Outcome.UNAVAILABLE),
            (httpx.ConnectError("refused"), Outcome.UNAVAILABLE),
            (httpx.ConnectTimeout("slow"), Outcome.TIMEOUT),
        ],
        ids=["401", "403", "500", "404", "not-json", "refused", "timeout"],
    )
    async def test_other_answers(
        self, client: FactoryClient, router: respx.MockRouter, answer: Answer, outcome: Outcome
    ) -> None:
        router.get(VENDOR_URL).mock(side_effect=[answer])
        probe = await client.probe_vendor()
        assert (probe.outcome, probe.vendor_name, probe.chaos) == (outcome, None, None)
        assert probe.reason


class TestFollowLink:
    URL = f"http://factory.test/api/support/{API_KEY}/report/fix-42"

    @pytest.mark.parametrize(
        ("answer", "expected"),
        [
            (
                httpx.Response(
                    200, json={"message": "Problem resolved. Pizza is back on the menu!"}
                ),
                RemediationAnswer(200, "HTTP 200: Problem resolved. Pizza is back on the menu!",
                                  resolved=True),
            ),
            (
                httpx.Response(200, json={"message": "No chaos currently executing"}),
                RemediationAnswer(200, "HTTP 200: No chaos currently executing", resolved=True),
            ),
            (
                httpx.Response(400, json={"message": "Problem unresolved"}),
                RemediationAnswer(400, "HTTP 400: Problem unresolved", resolved=False),
            ),
            (
                httpx.Response(200, json={"message": "Problem unresolved"}),
                RemediationAnswer(200, "HTTP 200: Problem unresolved", resolved=False),
            ),
            (
                httpx.Response(500, json={"message": "Problem resolved"}),
                RemediationAnswer(500, "HTTP 500: Problem resolved", resolved=False),
            ),
            (
                httpx.Response(200, text="<html>Problem resolved</html>"),
                RemediationAnswer(200, "HTTP 200", resolved=False),
            ),
            (
                httpx.Response(302, headers={"Location": "http://169.254.169.254/"}),
                RemediationAnswer(302, "HTTP 302", resolved=False),
            ),
        ],
        ids=["resolved", "no-chaos", "unresolved", "200-unresolved", "500", "html", "redirect"],
    )  # fmt: skip
    async def test_answers(
        self,
        client: FactoryClient,
        router: respx.MockRouter,
        answer: httpx.Response,
        expected: RemediationAnswer,
    ) -> None:
        route = router.get(self.URL).mock(return_value=answer)
        assert await client.follow_link(self.URL) == expected
        # The link carries the key itself; our bearer header does not travel with it.
        assert "Authorization" not in route.calls.last.request.headers

    async def test_allowed_other_host(
        self, client: FactoryClient, router: respx.MockRouter
    ) -> None:
        url = f"https://support.example/resolve?apiKey={API_KEY}&fixCode=fix-42"
        router.get(url).respond(200, json={"message": "Problem resolved. Pizza is back!"})
        assert (await client.follow_link(url)).resolved

    @pytest.mark.parametrize(
        ("failure", "message"),
        [
            (httpx.ConnectError(f"refused {API_KEY}"), "cannot reach the factory: ConnectError"),
            (httpx.ReadTimeout("slow"), "no answer within 10 s (ReadTimeout)"),
        ],
    )
    async def test_network_failure(
        self, client: FactoryClient, router: respx.MockRouter, failure: Exception, message: str
    ) -> None:
        router.get(self.URL).mock(side_effect=failure)
        answer = await client.follow_link(self.URL)
        assert (answer.status_code, answer.resolved) == (None, False)
        assert answer.message.startswith(message)
        assert API_KEY not in answer.message

    async def test_message_is_redacted(
        self, client: FactoryClient, router: respx.MockRouter
    ) -> None:
        router.get(self.URL).respond(400, json={"message": f"Problem unresolved for {API_KEY}"})
        answer = await client.follow_link(self.URL)
        assert answer.message == "HTTP 400: Problem unresolved for ***"


@pytest.fixture
async def real_factory(
    simulator: httpx.AsyncClient, simulator_url: str
) -> AsyncIterator[FactoryClient]:
    """Our client of the module's simulator, over real HTTP (the fixture resets its chaos)."""
    async with httpx.AsyncClient(base_url=simulator_url) as http:
        yield FactoryClient(http, api_key=SIMULATOR_API_KEY, jwks=JwksCache(http))


class TestAgainstSimulator:
    """create_pizza, verify and the remediation link end to end over real HTTP."""

    async def chaos(self, simulator: httpx.AsyncClient, kind: str, **params: str) -> None:
        path = f"/api/vendor/chaos/{kind}"
        answer = await simulator.put(path, headers=SIMULATOR_AUTH, params=params)
        answer.raise_for_status()

    async def test_pizza_verifies_here_and_at_the_factory(
        self, real_factory: FactoryClient, simulator: httpx.AsyncClient
    ) -> None:
        result = await real_factory.create_pizza(DINER, ORDER, timeout_s=5.0)
        assert (result.outcome, result.status_code, result.report_url) == (
            Outcome.SUCCESS,
            200,
            None,
        )
        assert result.jwt is not None
        checked = await simulator.post("/api/order/verify", json={"jwt": result.jwt})
        assert checked.json()["payload"]["order"]["id"] == ORDER.id

    async def test_fail_chaos_link_followed_at_the_factory_port(
        self, real_factory: FactoryClient, simulator: httpx.AsyncClient, simulator_url: str
    ) -> None:
        await self.chaos(simulator, "fail")
        failed = await real_factory.create_pizza(DINER, ORDER, timeout_s=5.0)
        assert (failed.outcome, failed.status_code) == (Outcome.UNAVAILABLE, 500)
        assert failed.report_url is not None
        assert failed.report_url.startswith("https://127.0.0.1/api/support/")  # no port
        url = followable_url(failed.report_url, factory_url=simulator_url, allowed_hosts=())
        assert url is not None and url.startswith(f"{simulator_url}/api/support/")

        fixed = await real_factory.follow_link(url)
        assert fixed == RemediationAnswer(
            200, "HTTP 200: Problem resolved. Pizza is back on the menu!", resolved=True
        )
        assert (await real_factory.create_pizza(DINER, ORDER, timeout_s=5.0)).has_pizza
        again = await real_factory.follow_link(url)
        assert (again.message, again.resolved) == ("HTTP 200: No chaos currently executing", True)

    @pytest.mark.parametrize("style", ["query", "mangled"])
    async def test_other_link_shapes_are_followed_too(
        self,
        real_factory: FactoryClient,
        simulator: httpx.AsyncClient,
        simulator_url: str,
        style: str,
    ) -> None:
        await self.chaos(simulator, "badjwt", link_style=style)
        result = await real_factory.create_pizza(DINER, ORDER, timeout_s=5.0)
        assert (result.outcome, result.jwt) == (Outcome.BAD_JWT, None)
        assert result.report_url is not None
        link = parse_link(result.report_url)
        assert link is not None and link.shape == style
        url = followable_url(result.report_url, factory_url=simulator_url, allowed_hosts=())
        assert url is not None
        assert (await real_factory.follow_link(url)).resolved

    async def test_wrong_fix_code_is_unresolved(
        self, real_factory: FactoryClient, simulator: httpx.AsyncClient, simulator_url: str
    ) -> None:
        await self.chaos(simulator, "fail")
        url = f"{simulator_url}/api/support/{SIMULATOR_API_KEY}/report/not-the-code"
        answer = await real_factory.follow_link(url)
        assert answer == RemediationAnswer(400, "HTTP 400: Problem unresolved", resolved=False)

    async def test_throttled_pizza_in_time_is_chaos_with_a_pizza(
        self, real_factory: FactoryClient, simulator: httpx.AsyncClient
    ) -> None:
        await self.chaos(simulator, "throttle", throttle_delay_s="0.05")
        result = await real_factory.create_pizza(DINER, ORDER, timeout_s=5.0)
        assert result.outcome is Outcome.CHAOS
        assert result.has_pizza and result.report_url is not None

    async def test_hang_is_timeout(
        self, real_factory: FactoryClient, simulator: httpx.AsyncClient
    ) -> None:
        await self.chaos(simulator, "hang")
        result = await real_factory.create_pizza(DINER, ORDER, timeout_s=0.2)
        assert result.outcome is Outcome.TIMEOUT

    async def test_not_json_is_unavailable(
        self, real_factory: FactoryClient, simulator: httpx.AsyncClient
    ) -> None:
        await self.chaos(simulator, "notjson")
        result = await real_factory.create_pizza(DINER, ORDER, timeout_s=5.0)
        assert (result.outcome, result.status_code) == (Outcome.UNAVAILABLE, 200)

    async def test_oven_full_is_rejected(self, real_factory: FactoryClient) -> None:
        empty = OrderInfo(id=1, franchise_id=4, store_id=5, items=())
        result = await real_factory.create_pizza(DINER, empty, timeout_s=5.0)
        assert (result.outcome, result.status_code) == (Outcome.REJECTED, 503)

    async def test_wrong_key_is_unauthorized(
        self, simulator: httpx.AsyncClient, simulator_url: str
    ) -> None:
        async with httpx.AsyncClient(base_url=simulator_url) as http:
            wrong = FactoryClient(http, api_key="not-the-key", jwks=JwksCache(http))
            result = await wrong.create_pizza(DINER, ORDER, timeout_s=5.0)
            probe = await wrong.probe_vendor()
        assert (result.outcome, probe.outcome) == (Outcome.UNAUTHORIZED, Outcome.UNAUTHORIZED)
        assert "not-the-key" not in result.reason + probe.reason

    async def test_probe_sees_scheduled_chaos(
        self, real_factory: FactoryClient, simulator: httpx.AsyncClient
    ) -> None:
        await self.chaos(simulator, "throttle", start_delay_s="3600")
        probe = await real_factory.probe_vendor()
        assert (probe.outcome, probe.vendor_name) == (Outcome.SUCCESS, "JWT Pizza Simulator")
        assert probe.chaos is not None and probe.chaos["type"] == "throttle"
        # Scheduled, not running: pizzas still come clean.
        result = await real_factory.create_pizza(DINER, ORDER, timeout_s=5.0)
        assert result.outcome is Outcome.SUCCESS

    async def test_refused_connection_is_unavailable(self) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port()}") as http:
            client = FactoryClient(http, api_key=API_KEY, jwks=JwksCache(http))
            result = await client.create_pizza(DINER, ORDER, timeout_s=5.0)
            probe = await client.probe_vendor()
        assert (result.outcome, probe.outcome) == (Outcome.UNAVAILABLE, Outcome.UNAVAILABLE)
