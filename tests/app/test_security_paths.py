"""Ids in paths are plain decimal integers (docs/http-api.md#differences-from-the-reference-service,
item 15).

`int()` and pydantic's lax integers read `1.0`, `+1`, `01`, ` 1`, a full-width
digit one as 1 and `1_0` as 10: a path must name its row exactly or nothing. Each test fails
on that reading (`DELETE /api/franchise/1.0` deleted franchise 1)."""

from __future__ import annotations

import pytest

from tests.utils.builders import Api, fast_password_hashing  # noqa: F401

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


def loose(id_: int) -> list[str]:
    """Ways to write ``id_`` that are not its plain decimal form."""
    plain = str(id_)
    full_width = "".join(f"%EF%BC%{0x90 + int(d):02X}" for d in plain)  # U+FF10..U+FF19
    return [
        f"{plain}.0",
        f"+{plain}",
        f"0{plain}",
        f"%20{plain}",
        f"{plain}%20",
        f"{plain}%0A",
        full_width,
        f"{plain}e0",
    ]


NOT_IDS = ["0", "-1", "abc", "2147483648", "99999999999999999999", "0x1", "1;1"]


class TestItem15IdsInPathsArePlainDecimal:
    async def test_a_loose_id_names_nothing_on_any_route(self, api: Api) -> None:
        shop = await api.shop()
        admin, diner = shop.admin, shop.diner
        order = (await api.order(shop)).json()["order"]
        franchise, store = shop.franchise["id"], shop.store["id"]
        routes = [
            ("GET", "/api/order/{}", order["id"], diner, None),
            ("GET", "/api/franchise/{}", diner.id, diner, None),
            ("PUT", "/api/user/{}", diner.id, diner, {"name": "renamed"}),
            ("DELETE", "/api/user/{}", diner.id, admin, None),
            ("POST", "/api/franchise/{}/store", franchise, admin, {"name": "extra"}),
            ("DELETE", f"/api/franchise/{franchise}/store/{{}}", store, admin, None),
            ("DELETE", f"/api/franchise/{{}}/store/{store}", franchise, admin, None),
            ("DELETE", "/api/franchise/{}", franchise, admin, None),
        ]
        for method, template, id_, caller, body in routes:
            for written in [*loose(id_), *NOT_IDS]:
                path = template.format(written)
                answer = await api.client.request(method, path, headers=caller.headers, json=body)

                assert answer.status_code == 404, (method, path, answer.text)
                assert set(answer.json()) == {"message"}, answer.text

        # Nothing was changed, deleted or added on the way.
        assert (await api.client.get(f"/api/order/{order['id']}", headers=diner.headers)).is_success
        me = await api.client.get("/api/user/me", headers=diner.headers)
        assert me.json()["name"] == diner.name
        listed = await api.client.get("/api/franchise", headers=admin.headers)
        assert [(f["id"], [s["id"] for s in f["stores"]]) for f in listed.json()["franchises"]] == [
            (franchise, [store])
        ]

    async def test_an_underscore_is_not_read_as_another_id(self, api: Api) -> None:
        admin = await api.admin()
        made = [await api.franchise(admin) for _ in range(10)]
        tenth = next(f for f in made if f["id"] == 10)

        answer = await api.client.delete("/api/franchise/1_0", headers=admin.headers)

        assert answer.status_code == 404, answer.text
        listed = await api.client.get("/api/franchise?limit=20", headers=admin.headers)
        assert tenth["id"] in [f["id"] for f in listed.json()["franchises"]]

    async def test_the_plain_form_still_names_its_row(self, api: Api) -> None:
        admin = await api.admin()
        franchise = await api.franchise(admin)

        answer = await api.client.delete(f"/api/franchise/{franchise['id']}", headers=admin.headers)

        assert answer.status_code == 200, answer.text
