"""The postmortem draft: every section of its template, the recorded facts in UTC, prompts
where a person must judge, and no secret; redacted by the one redactor, which leaves
ordinary words alone. It is written at the time of the clock it is given."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

import httpx
import pytest
from typer.testing import CliRunner

from app import db
from app.cli import cli
from app.incidents import Conditions, IncidentRecorder
from app.incidents.report import SECTIONS, TO_FILL, duration, latest_report, utc
from app.models import FactoryEvent
from clients.breaker import BreakerState
from tests.conftest import FACTORY_KEY, JWT_SECRET, make_settings, running_api
from tests.utils.builders import PASSWORD, Api
from tests.utils.clock import ManualClock
from tests.utils.incidents import async_url, closed_incident, listed, when
from tests.utils.orders import all_fulfilled, pending_orders
from tests.utils.waiting import eventually


def sections(report: str) -> list[str]:
    return re.findall(r"^## (.+)$", report, flags=re.MULTILINE)


def section(report: str, name: str) -> str:
    return report.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]


class TestReportOfADrilledIncident:
    async def test_every_section_the_recorded_times_in_utc_and_no_secret(
        self, manual_api: Api, factory: httpx.Client, factory_url: str
    ) -> None:
        api = manual_api
        shop = await api.shop()
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        ids = await pending_orders(api, shop, 5)
        answer = await api.client.post("/factory/remediate", headers=shop.admin.headers)
        assert answer.json()["attempt"]["resolved"] is True
        await eventually(lambda: all_fulfilled(api, shop, ids))
        body = await closed_incident(api, shop)

        answer = await api.client.get(
            f"/factory/incidents/{body['id']}/report", headers=shop.admin.headers
        )
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/markdown")
        report = answer.text

        # The heading writes the time as the rest of the report does, with colons.
        opened = when(body["openedAt"]).strftime("%Y-%m-%d %H:%M:%S")
        assert report.startswith(f"# Incident {body['id']}: {opened} UTC\n")
        assert sections(report) == list(SECTIONS)
        # Every recorded event, at its recorded instant, in the one UTC format.
        timeline = section(report, "Timeline")
        for entry in body["timeline"]:
            assert f"_{utc(when(entry['at']))}_" in timeline, entry
        for field in ("startedAt", "openedAt", "closedAt"):
            assert utc(when(body[field])) in report
        assert "MST" not in report and "+00:00" not in report
        assert f"time to detect **{duration(body['timeToDetectS'])}**" in report
        assert f"time to mitigate **{duration(body['timeToMitigateS'])}**" in report
        impact = section(report, "Impact")
        assert "| orders affected (answered pending) | 5 |" in impact
        # The front end sends no Prefer: its customers were answered 503, not 202.
        assert "answered 503 (pending" in section(report, "Detection")
        assert "answered 202" not in report
        assert "| fulfilled late | 5 |" in impact
        assert "| revenue delayed (made late or pending) | 0.019 ₿ |" in impact
        assert f"{shop.admin.name} (user {shop.admin.id})" in section(report, "Response")
        assert "chaos monkey" in section(report, "Root cause")
        # What only a person can judge is a prompt, never an invented answer.
        for name in ("Summary", "Detection", "Root cause", "Action items"):
            assert TO_FILL in section(report, name), name
        assert section(report, "Action items").strip().startswith(f"> {TO_FILL}")

        orders = [
            (await api.client.get(f"/api/order/{i}", headers=shop.diner.headers)).json()
            for i in ids
        ]
        secrets = [
            FACTORY_KEY,
            JWT_SECRET,
            PASSWORD,
            shop.admin.token,
            shop.diner.token,
            *(order["jwt"] for order in orders),
        ]
        for secret in secrets:
            assert secret and secret not in report
        # The link as the service followed it, not as the factory wrote it (https, no port).
        assert f"{factory_url}/api/support/***/report/" in section(report, "Root cause")
        assert "https://127.0.0.1/api/support/" not in report

    async def test_an_open_incident_says_so_and_gives_figures_so_far(
        self, manual_api: Api, factory: httpx.Client
    ) -> None:
        api = manual_api
        shop = await api.shop()
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        await pending_orders(api, shop, 2)
        # Its id, not 1: on PostgreSQL the link and the chaos, racing to open it, may
        # spend a sequence number on the insert that loses.
        [opened] = await listed(api, shop)
        answer = await api.client.get(
            f"/factory/incidents/{opened['id']}/report", headers=shop.admin.headers
        )
        report = answer.text
        assert "**still open**" in report
        assert "| still pending | 2 |" in report
        assert "time to mitigate **" not in report
        assert "No direct page was recorded" in report


def seed_incident(database_url: str) -> None:
    """One closed incident, recorded as the service records it."""

    async def seed() -> None:
        engine = db.create_engine(async_url(database_url))
        try:
            await db.migrate(engine)
            sessions = db.session_factory(engine)
            recorder = IncidentRecorder(sessions=sessions)
            for event, conditions in (
                (
                    FactoryEvent.link_detected("https://f/api/support/***/report/x", "fail"),
                    BreakerState.CLOSED,
                ),
                (
                    FactoryEvent(kind="remediation", detail="auto by service: Problem resolved"),
                    BreakerState.CLOSED,
                ),
            ):
                event.at = datetime.now(UTC)
                async with sessions() as session:
                    session.add(event)
                    await session.commit()
                await recorder.on_event(event, Conditions(breaker=conditions))
        finally:
            await engine.dispose()

    asyncio.run(seed())


class TestIncidentReportCommand:
    def test_the_latest_report_by_default_and_exit_2_for_an_unknown_id(
        self, database_url: str
    ) -> None:
        runner = CliRunner()
        env = {"DATABASE_URL": database_url}
        none = runner.invoke(cli, ["incident", "report"], env=env)
        assert none.exit_code == 2
        assert none.output.strip() == "no incident is recorded in this database"

        seed_incident(database_url)
        done = runner.invoke(cli, ["incident", "report"], env=env)
        assert done.exit_code == 0, done.output
        assert done.output.startswith("# Incident 1: ")
        assert sections(done.output) == list(SECTIONS)
        by_id = runner.invoke(cli, ["incident", "report", "1"], env=env)
        assert by_id.exit_code == 0 and by_id.output.startswith("# Incident 1: ")

        unknown = runner.invoke(cli, ["incident", "report", "7"], env=env)
        assert unknown.exit_code == 2
        assert len(unknown.output.strip().splitlines()) == 1
        assert "no incident 7" in unknown.output


def test_the_draft_says_it_was_written_at_the_time_of_its_clock(database_url: str) -> None:
    seed_incident(database_url)
    clock = ManualClock(datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC))

    async def draft() -> str:
        engine = db.create_engine(async_url(database_url))
        try:
            text = await latest_report(db.session_factory(engine), clock=clock)
        finally:
            await engine.dispose()
        assert text is not None
        return text

    assert "from its own records at 2031-05-06 07:08:09.000 UTC." in asyncio.run(draft())
    clock.advance(3600)
    assert "from its own records at 2031-05-06 08:08:09.000 UTC." in asyncio.run(draft())


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0123, "0.012 s"), (12.34, "12.3 s"), (187.4, "3 min 7 s"), (9960, "2 h 46 min 0 s")],
)
def test_durations_read_like_a_person_wrote_them(seconds: float, text: str) -> None:
    assert duration(seconds) == text


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
