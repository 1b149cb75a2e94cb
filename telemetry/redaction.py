"""Secret-free text: what the log filter and the HTTP client spans both apply.

The vendor API key sits inside the factory's remediation links (docs/factory.md), so
the link shapes are redacted structurally, even where the key itself is not known.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from clients.redaction import LINK_SHAPES, MASK, MIN_SECRET_LENGTH, mask_secrets

__all__ = ["MASK", "MIN_SECRET_LENGTH", "SENSITIVE_KEYS", "redact_text", "redact_value"]

_SENSITIVE_KEY = r"(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|token|jwt)"
# Keys whose whole value goes, whatever it looks like (extras given as dicts).
SENSITIVE_KEYS = re.compile(rf"^[\w-]*(?:{_SENSITIVE_KEY}|authorization|cookie)$", re.IGNORECASE)

_SUBSTITUTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    *LINK_SHAPES,
    # Authorization: Bearer xxx (header lines, dict reprs, JSON). The scheme is kept.
    (
        re.compile(
            r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)"
            r"((?:bearer|basic|token)\s+)?[^\s\"',;}]+"
        ),
        rf"\g<1>\g<2>{MASK}",
    ),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{3,}"), rf"\g<1>{MASK}"),
    # A JWT: three base64url parts, the first one a JSON object ('{"' is 'eyJ').
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), MASK),
    # "password": "..." / 'password': '...' / password=... / apiKey=... (query strings).
    (
        re.compile(rf"(?i)([\"']?\b[\w-]*{_SENSITIVE_KEY}[\"']?\s*[:=]\s*)\"(?:[^\"\\]|\\.)*\""),
        rf'\g<1>"{MASK}"',
    ),
    (
        re.compile(rf"(?i)([\"']?\b[\w-]*{_SENSITIVE_KEY}[\"']?\s*[:=]\s*)'(?:[^'\\]|\\.)*'"),
        rf"\g<1>'{MASK}'",
    ),
    (re.compile(rf"(?i)(\b[\w-]*{_SENSITIVE_KEY}=)[^\s&#\"',;]+"), rf"\g<1>{MASK}"),
)


# Every pattern above needs one of these words: text without any (most log lines, an
# access line) skips the seven substitutions, one search instead of seven passes.
_MAY_HOLD_A_SECRET = re.compile(
    r"(?i)/api/support/|authorization|bearer|eyj|passw|pwd|secret|api[_-]?key|token|jwt"
)


def redact_text(text: str, secrets: Collection[str] = ()) -> str:
    """``text`` with every known secret and every secret-shaped token masked."""
    text = mask_secrets(text, secrets)
    if _MAY_HOLD_A_SECRET.search(text):
        for pattern, replacement in _SUBSTITUTIONS:
            text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any, secrets: Collection[str] = ()) -> Any:
    """A copy of ``value`` (a log extra) that is safe to print or export.

    Strings are redacted, containers are walked, values under sensitive keys go
    entirely; numbers, booleans and None pass unchanged; anything else becomes its
    redacted text, since a formatter would print it anyway.
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"), secrets)
    if isinstance(value, Mapping):
        return {
            str(k): MASK if SENSITIVE_KEYS.match(str(k)) else redact_value(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v, secrets) for v in value]
    return redact_text(str(value), secrets)
