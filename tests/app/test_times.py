"""One JSON form for every time the service answers with (app/times.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from app.times import iso


class TestIso:
    def test_utc_ends_in_z(self) -> None:
        assert iso(datetime(2024, 12, 5, 14, 3, 0, 123456, tzinfo=UTC)) == (
            "2024-12-05T14:03:00.123456Z"
        )

    def test_another_zone_is_converted_not_mislabelled(self) -> None:
        paris = timezone(timedelta(hours=1))
        assert iso(datetime(2024, 12, 5, 15, 3, tzinfo=paris)) == "2024-12-05T14:03:00Z"

    def test_a_naive_time_is_the_services_utc_and_none_stays_none(self) -> None:
        assert iso(datetime(2024, 12, 5, 14, 3)) == "2024-12-05T14:03:00Z"
        assert iso(None) is None
