"""Factory events carry their meaning in typed fields; the sentence in `detail` is for
people and is never parsed back. How the recorder reads them:
tests/app/incidents/test_recorder.py."""

from __future__ import annotations

import httpx
from sqlmodel import col, select

from app.models import EventKind, FactoryEvent
from tests.conftest import FACTORY_KEY
from tests.utils.builders import Api
from tests.utils.orders import pending_orders
from tests.utils.waiting import eventually


class TestFactoryOpsStoresFields:
    async def test_breaker_and_link_events_carry_their_states_and_the_redacted_link(
        self, manual_api: Api, factory: httpx.Client, factory_url: str
    ) -> None:
        api = manual_api
        shop = await api.shop()
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        await pending_orders(api, shop, 3)  # three failures open the breaker

        async def both() -> list[FactoryEvent]:
            # Written by the operators' bookkeeping after each answer, not awaited by it.
            async with api.services.sessions() as session:
                found = list(
                    await session.exec(select(FactoryEvent).order_by(col(FactoryEvent.id)))
                )
            kinds = {e.kind for e in found}
            return found if {EventKind.BREAKER, EventKind.LINK_DETECTED} <= kinds else []

        events = await eventually(both)
        (opened,) = [e for e in events if e.kind == EventKind.BREAKER]
        assert (opened.breaker_from, opened.breaker_to) == ("closed", "open")
        (found,) = [e for e in events if e.kind == EventKind.LINK_DETECTED]
        assert found.link is not None
        # As the service follows it (FACTORY_URL's scheme, host and port), not as the
        # factory wrote it (https, no port).
        assert found.link.startswith(f"{factory_url}/api/support/***/report/")
        assert FACTORY_KEY not in found.link
        # The sentence stays, for the history and the timeline.
        assert found.detail.startswith(found.link)
