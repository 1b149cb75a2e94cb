"""Every record passes the redaction filter: message, args, extras, tracebacks."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from telemetry.logging import RedactionFilter, configure_logging

KEY = "factory-key-d3adb33f-s3cr3t"
SIGNING = "jwt-signing-secret-kkkkkkkkkkkkkkkk"
TOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6MSwibmFtZSI6ImEifQ.Zm9vYmFyYmF6cXV4"
LINK_PATH = f"https://127.0.0.1/api/support/{KEY}/report/fix-1234"


def secrets() -> list[str]:
    return [KEY, SIGNING]


@pytest.fixture
def lines(restore_logging: None) -> io.StringIO:
    out = io.StringIO()
    configure_logging(secrets=secrets, stream=out)
    return out


def logged(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


class TestKnownShapes:
    @pytest.mark.parametrize(
        ("message", "gone", "kept"),
        [
            ("headers: Authorization: Bearer abc123xyz", "abc123xyz", "Authorization: Bearer ***"),
            ("{'authorization': 'Basic dXNlcjpwYXNz'}", "dXNlcjpwYXNz", "Basic ***"),
            ('{"Authorization": "sk-live-999"}', "sk-live-999", '"Authorization": "***"'),
            ("retrying with bearer q1w2e3r4t5", "q1w2e3r4t5", "bearer ***"),
            (f"token {TOKEN} accepted", TOKEN.split(".")[2], "token *** accepted"),
            ('{"email": "a@jwt.com", "password": "hunter22"}', "hunter22", '"password": "***"'),
            ("{'password': 'hunter22', 'name': 'a'}", "hunter22", "'password': '***'"),
            ("form password=hunter22&email=a", "hunter22", "password=***&email=a"),
            ('{"newPassword":"hunter22"}', "hunter22", '"newPassword":"***"'),
        ],
    )
    def test_masked(self, lines: io.StringIO, message: str, gone: str, kept: str) -> None:
        logging.getLogger("t").warning(message)
        [entry] = logged(lines)
        assert gone not in entry["message"]
        assert kept in entry["message"]

    def test_ordinary_text_is_left_alone(self, lines: io.StringIO) -> None:
        text = "opentelemetry.instrumentation.fastapi ready; basic authentication off; 3 tokens"
        logging.getLogger("t").info(text)
        assert logged(lines)[0]["message"] == text


class TestSecrets:
    def test_each_secret_wherever_it_appears(self, lines: io.StringIO) -> None:
        logging.getLogger("t").info("key=%s;signing(%s)", KEY, SIGNING)
        message = logged(lines)[0]["message"]
        assert KEY not in message and SIGNING not in message

    def test_url_encoded_secret(self, lines: io.StringIO) -> None:
        secret_with_specials = "s3cr3t/with+plus=="
        out = io.StringIO()
        configure_logging(secrets=lambda: [secret_with_specials], stream=out)
        logging.getLogger("t").info("url=https://x/?k=s3cr3t%2Fwith%2Bplus%3D%3D")
        assert "s3cr3t" not in logged(out)[0]["message"]

    def test_secrets_are_read_when_logging(self, lines: io.StringIO) -> None:
        current: list[str] = []
        out = io.StringIO()
        configure_logging(secrets=lambda: current, stream=out)
        current.append("rotated-secret-42")
        logging.getLogger("t").info("now rotated-secret-42")
        assert "rotated-secret-42" not in logged(out)[0]["message"]

    def test_very_short_secrets_are_ignored(self, lines: io.StringIO) -> None:
        # A 3-character "secret" would mask ordinary words in every line.
        out = io.StringIO()
        configure_logging(secrets=lambda: ["abc"], stream=out)
        logging.getLogger("t").info("abcdef")
        assert logged(out)[0]["message"] == "abcdef"


class TestRemediationLinks:
    @pytest.mark.parametrize(
        ("link", "expected"),
        [
            (LINK_PATH, "https://127.0.0.1/api/support/***/report/fix-1234"),
            (
                f"https//factory.example/api/support/{KEY}/report/77",
                "https//factory.example/api/support/***/report/77",
            ),
            (
                f"https://resolve.example/fix?apiKey={KEY}&fixCode=77",
                "https://resolve.example/fix?apiKey=***&fixCode=77",
            ),
        ],
    )
    def test_key_masked_fix_code_kept(self, lines: io.StringIO, link: str, expected: str) -> None:
        logging.getLogger("t").warning("factory link %s", link)
        assert logged(lines)[0]["message"] == f"factory link {expected}"

    @pytest.mark.parametrize(
        ("link", "expected"),
        [
            ("https://h/api/support/unknown-key-1/report/9", "https://h/api/support/***/report/9"),
            (
                "https://r.example/?apiKey=unknown-key-1&fixCode=9",
                "https://r.example/?apiKey=***&fixCode=9",
            ),
        ],
    )
    def test_masked_even_with_a_key_we_do_not_know(
        self, lines: io.StringIO, link: str, expected: str
    ) -> None:
        logging.getLogger("t").warning(link)
        assert logged(lines)[0]["message"] == expected


class TestRecordParts:
    def test_args(self, lines: io.StringIO) -> None:
        logging.getLogger("t").info("call %s with %r", LINK_PATH, {"password": "hunter22"})
        message = logged(lines)[0]["message"]
        assert KEY not in message and "hunter22" not in message
        assert "/api/support/***/report/fix-1234" in message

    def test_extras(self, lines: io.StringIO) -> None:
        extra = {
            "link": LINK_PATH,
            "request": {"headers": {"Authorization": f"Bearer {TOKEN}"}, "path": "/api/order"},
            "body": {"email": "a@jwt.com", "password": "hunter22"},
            "items": [SIGNING, 3],
            "attempt": 2,
            "password": "hunter22",
            "newApiKey": "unknown-key-9",
        }
        logging.getLogger("t").info("factory call", extra=extra)
        [entry] = logged(lines)
        text = json.dumps(entry)
        for secret in (KEY, SIGNING, TOKEN, "hunter22"):
            assert secret not in text
        assert entry["request"] == {"headers": {"Authorization": "***"}, "path": "/api/order"}
        assert entry["items"] == ["***", 3]
        assert entry["attempt"] == 2
        assert entry["password"] == entry["newApiKey"] == "***"

    def test_traceback(self, lines: io.StringIO) -> None:
        try:
            raise RuntimeError(f"GET {LINK_PATH} failed")
        except RuntimeError:
            logging.getLogger("t").exception("remediation failed")
        [entry] = logged(lines)
        assert KEY not in entry["exception"]
        assert "RuntimeError: GET https://127.0.0.1/api/support/***/report/" in entry["exception"]

    def test_broken_format_string_is_still_logged_and_redacted(self, lines: io.StringIO) -> None:
        logging.getLogger("t").info("two %s %s", KEY)
        [entry] = logged(lines)
        assert KEY not in entry["message"] and "two" in entry["message"]


def test_other_handlers_get_the_redacted_record(
    lines: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    """pytest's handler was on the root logger first; ours still runs before it."""
    with caplog.at_level(logging.INFO):
        configure_logging(secrets=secrets, stream=io.StringIO())
        logging.getLogger("t").info("key %s", KEY)
    assert KEY not in caplog.text
    assert "key ***" in caplog.text


def test_filter_on_its_own_rewrites_the_record_once() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "k=%s", (KEY,), None)
    flt = RedactionFilter(secrets)
    assert flt.filter(record) and flt.filter(record)
    assert record.getMessage() == "k=***"
