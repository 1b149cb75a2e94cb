"""The remediation link: found, parsed, redacted, and fetched only where it is safe."""

from __future__ import annotations

import pytest

from clients.redaction import redact_factory_key
from clients.remediation import (
    RemediationLink,
    find_report_url,
    followable_url,
    parse_link,
)

KEY = "vk-9f8e7d6c5b4a"
PATH_LINK = f"https://127.0.0.1/api/support/{KEY}/report/fix-42"
QUERY_LINK = f"https://support.example.com/api/support/resolve?apiKey={KEY}&fixCode=fix-42"
MANGLED_LINK = f"https//127.0.0.1/api/support/{KEY}/report/fix-42"
FACTORY_URL = "http://127.0.0.1:3100"


class TestFindReportUrl:
    def test_found_in_any_json_object(self) -> None:
        assert find_report_url({"message": "chaos monkey", "reportUrl": PATH_LINK}) == PATH_LINK
        assert find_report_url({"jwt": "x.y.z", "reportUrl": QUERY_LINK}) == QUERY_LINK

    @pytest.mark.parametrize(
        "body",
        [{"jwt": "x.y.z"}, {"reportUrl": ""}, {"reportUrl": 42}, [PATH_LINK], PATH_LINK, None],
    )
    def test_absent_or_not_a_link(self, body: object) -> None:
        assert find_report_url(body) is None


class TestParseLink:
    def test_path_shape(self) -> None:
        assert parse_link(PATH_LINK) == RemediationLink(
            raw=PATH_LINK, shape="path", host="127.0.0.1", fix_code="fix-42"
        )

    def test_query_shape_on_another_host(self) -> None:
        assert parse_link(QUERY_LINK) == RemediationLink(
            raw=QUERY_LINK, shape="query", host="support.example.com", fix_code="fix-42"
        )

    def test_query_shape_without_fix_code(self) -> None:
        link = parse_link(f"https://f.example/resolve?apiKey={KEY}")
        assert link is not None
        assert (link.shape, link.fix_code) == ("query", None)

    def test_mangled_scheme(self) -> None:
        assert parse_link(MANGLED_LINK) == RemediationLink(
            raw=MANGLED_LINK, shape="mangled", host="127.0.0.1", fix_code="fix-42"
        )

    def test_mangled_query_shape(self) -> None:
        link = parse_link(f"https//Support.Example.com/r?apiKey={KEY}&fixCode=abc")
        assert link is not None
        assert (link.shape, link.host, link.fix_code) == ("mangled", "support.example.com", "abc")

    def test_surrounding_whitespace_is_ignored(self) -> None:
        link = parse_link(f"  {PATH_LINK}\n")
        assert link is not None
        assert link.fix_code == "fix-42"

    @pytest.mark.parametrize(
        "raw",
        [
            "",
            "not a link",
            "https://127.0.0.1/",  # no key, no code: none of the shapes
            "https://127.0.0.1/api/order",
            f"ftp://127.0.0.1/api/support/{KEY}/report/fix",
            f"file:///api/support/{KEY}/report/fix",
            f"https:/127.0.0.1/api/support/{KEY}/report/fix",
            f"https://127.0.0.1:port/api/support/{KEY}/report/fix",
            f"https://evil.example@127.0.0.1/api/support/{KEY}/report/fix",
            f"/api/support/{KEY}/report/fix",
        ],
    )
    def test_garbage(self, raw: str) -> None:
        assert parse_link(raw) is None


class TestRedact:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            (PATH_LINK, "https://127.0.0.1/api/support/***/report/fix-42"),
            (
                QUERY_LINK,
                "https://support.example.com/api/support/resolve?apiKey=***&fixCode=fix-42",
            ),
            (MANGLED_LINK, "https//127.0.0.1/api/support/***/report/fix-42"),
        ],
    )
    def test_each_link_shape(self, raw: str, expected: str) -> None:
        assert redact_factory_key(raw, KEY) == expected

    def test_without_knowing_the_key(self) -> None:
        # A key that is not ours (or not configured) is still masked in its usual places.
        assert (
            redact_factory_key(PATH_LINK, None) == "https://127.0.0.1/api/support/***/report/fix-42"
        )
        assert "apiKey=***&" in redact_factory_key(QUERY_LINK, "")

    def test_free_text(self) -> None:
        text = f"factory said: bad key {KEY}; see {PATH_LINK} (key={KEY})"
        redacted = redact_factory_key(text, KEY)
        assert KEY not in redacted
        assert redacted == (
            "factory said: bad key ***; see https://127.0.0.1/api/support/***/report/fix-42"
            " (key=***)"
        )

    def test_url_encoded_key(self) -> None:
        # Six characters at least: the one redactor's minimum for any secret.
        key = "a/b+c/d"
        assert (
            redact_factory_key("?apiKey=a%2Fb%2Bc%2Fd&x=1 and a%2Fb%2Bc%2Fd", key)
            == "?apiKey=***&x=1 and ***"
        )

    def test_text_without_secrets_is_unchanged(self) -> None:
        assert redact_factory_key("HTTP 500: chaos monkey", KEY) == "HTTP 500: chaos monkey"


class TestFollowableUrl:
    def test_factory_host_rebuilt_at_factory_scheme_host_and_port(self) -> None:
        assert (
            followable_url(PATH_LINK, factory_url=FACTORY_URL, allowed_hosts=())
            == f"http://127.0.0.1:3100/api/support/{KEY}/report/fix-42"
        )

    def test_factory_host_match_ignores_case(self) -> None:
        raw = f"https://PIZZA-Factory.example/api/support/{KEY}/report/7"
        assert (
            followable_url(raw, factory_url="https://pizza-factory.example:8443", allowed_hosts=())
            == f"https://pizza-factory.example:8443/api/support/{KEY}/report/7"
        )

    def test_factory_query_shape_keeps_query(self) -> None:
        raw = f"https://127.0.0.1/api/support/resolve?apiKey={KEY}&fixCode=fix-42"
        assert (
            followable_url(raw, factory_url=FACTORY_URL, allowed_hosts=())
            == f"http://127.0.0.1:3100/api/support/resolve?apiKey={KEY}&fixCode=fix-42"
        )

    def test_mangled_factory_link(self) -> None:
        assert (
            followable_url(MANGLED_LINK, factory_url=FACTORY_URL, allowed_hosts=())
            == f"http://127.0.0.1:3100/api/support/{KEY}/report/fix-42"
        )

    def test_factory_url_userinfo_does_not_travel(self) -> None:
        assert (
            followable_url(PATH_LINK, factory_url="http://u:p@127.0.0.1:3100", allowed_hosts=())
            == f"http://127.0.0.1:3100/api/support/{KEY}/report/fix-42"
        )

    def test_allowed_host_followed_as_given(self) -> None:
        assert (
            followable_url(
                QUERY_LINK, factory_url=FACTORY_URL, allowed_hosts=[" Support.Example.com "]
            )
            == QUERY_LINK
        )

    def test_allowed_host_with_mangled_scheme_takes_factory_scheme(self) -> None:
        raw = f"https//support.example.com:8443/r?apiKey={KEY}&fixCode=1"
        assert (
            followable_url(raw, factory_url=FACTORY_URL, allowed_hosts=["support.example.com"])
            == f"http://support.example.com:8443/r?apiKey={KEY}&fixCode=1"
        )

    @pytest.mark.parametrize(
        "raw",
        [
            QUERY_LINK,  # another host, not allowed
            f"https://127.0.0.1.evil.example/api/support/{KEY}/report/1",
            f"https://169.254.169.254/api/support/{KEY}/report/1",
            f"https//evil.example/api/support/{KEY}/report/1",
        ],
    )
    def test_foreign_host_is_not_followed(self, raw: str) -> None:
        assert followable_url(raw, factory_url=FACTORY_URL, allowed_hosts=["other.example"]) is None

    @pytest.mark.parametrize(
        "raw",
        ["", "garbage", "https://127.0.0.1/", f"javascript://127.0.0.1/?apiKey={KEY}"],
    )
    def test_garbage_is_not_followed(self, raw: str) -> None:
        assert followable_url(raw, factory_url=FACTORY_URL, allowed_hosts=["127.0.0.1"]) is None
