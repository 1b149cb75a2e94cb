"""The values a request may hold, each checked once and described exactly (docs/http-api.md).

Each input type below is checked by one function and described to /openapi.json by a
schema that accepts exactly the same values, so a client (and the schema fuzz test) can
tell from the schema alone what will be a 400. Request bodies (app/schemas.py) and the
routes' path and query parameters are built from them.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from fastapi import Path, Query
from pydantic import AfterValidator, PlainValidator, StringConstraints, WithJsonSchema

# What str.strip() removes (every such character is below U+3001): a name made only of
# these is blank.
_SPACE_CLASS = "".join(f"\\u{ord(c):04x}" for c in map(chr, range(0x3001)) if c.isspace())
_NO_NUL = "^[^\\u0000]*$"
_NOT_BLANK = f"^[^\\u0000]*[^\\u0000{_SPACE_CLASS}][^\\u0000]*$"
# A name is shown to other people (lists, pages, a terminal's log): no control character
# (C0, DEL, C1: ANSI escapes start with ESC), and at least one character that shows.
# Invisible: white space, Unicode's format characters (zero-width space and joiners, the
# bidi marks, the byte order mark...) and the blank fillers. Only the Basic Multilingual
# Plane is checked, so that /openapi.json can say the same in a pattern.
_CONTROLS = "\\u0000-\\u001f\\u007f-\\u009f"
_FILLERS = "\u115f\u1160\u2800\u3164\uffa0"
_INVISIBLE = frozenset(
    c
    for c in map(chr, range(0x10000))
    if c.isspace() or unicodedata.category(c) == "Cf" or c in _FILLERS
)
_INVISIBLE_CLASS = "".join(f"\\u{ord(c):04x}" for c in sorted(_INVISIBLE))
_VISIBLE_NAME = f"^[^{_CONTROLS}]*[^{_CONTROLS}{_INVISIBLE_CLASS}][^{_CONTROLS}]*$"


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded at all:
    # both are a 400 here rather than a database error.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def _not_blank(value: str) -> str:
    if not _storable(value).strip():
        raise ValueError("must not be blank")
    return value


def _visible_name(value: str) -> str:
    if any(unicodedata.category(c) == "Cc" for c in _storable(value)):
        raise ValueError("must not contain control characters")
    if all(c in _INVISIBLE for c in value):
        raise ValueError("must not be blank or invisible")
    return value


def _string_schema(pattern: str, min_length: int, max_length: int) -> WithJsonSchema:
    schema: dict[str, Any] = {"type": "string", "maxLength": max_length, "pattern": pattern}
    if min_length:
        schema["minLength"] = min_length
    return WithJsonSchema(schema)


# Lengths count what the client sent; surrounding spaces are then dropped.
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100),
    AfterValidator(_visible_name),
    AfterValidator(str.strip),
    _string_schema(_VISIBLE_NAME, 1, 100),
]
Text = Annotated[
    str,
    StringConstraints(min_length=1, max_length=500),
    AfterValidator(_not_blank),
    AfterValidator(str.strip),
    _string_schema(_NOT_BLANK, 1, 500),
]
OptionalText = Annotated[
    str,
    StringConstraints(max_length=500),
    AfterValidator(_storable),
    AfterValidator(str.strip),
    _string_schema(_NO_NUL, 0, 500),
]
Password = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128),
    AfterValidator(_not_blank),
    _string_schema(_NOT_BLANK, 1, 128),
]
# Sign-in takes what it is given (a wrong value is a 404, as for a wrong password).
LoginText = Annotated[
    str,
    StringConstraints(max_length=254),
    AfterValidator(_storable),
    _string_schema(_NO_NUL, 0, 254),
]

# email-validator refuses special-use domains even where the email format allows them.
_SPECIAL_USE = ("arpa", "invalid", "local", "localhost", "onion", "test")
_EMAIL_PATTERN = "^(?!.*\\.(?:{})$)".format(
    "|".join("".join(f"[{c}{c.upper()}]" for c in name) for name in _SPECIAL_USE)
)


def _email(value: str) -> str:
    try:
        return validate_email(_storable(value), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"value is not a valid email address: {exc}") from None


def email_key(value: str) -> str:
    """An email as accounts are stored and looked up: email-validator's normal form (NFC,
    the domain in lower case) in lower case, then NFC again (lower case can decompose).

    The same text typed at registration and at sign-in, composed or decomposed, gives
    the same key; a text that is not an email gets the same treatment and matches none.
    """
    text = value.strip()
    try:
        text = validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError:
        text = unicodedata.normalize("NFC", text)
    return unicodedata.normalize("NFC", text.lower())


Email = Annotated[
    str,
    StringConstraints(max_length=254),
    AfterValidator(_email),
    WithJsonSchema(
        {"type": "string", "format": "email", "maxLength": 254, "pattern": _EMAIL_PATTERN}
    ),
]

MAX_ID = 2**31 - 1
_PLAIN_ID = re.compile("[1-9][0-9]{0,9}")


def plain_id(text: str) -> int | None:
    """The id ``text`` names when written plainly (ASCII digits, no sign, no leading zero,
    no space or underscore, 1 to MAX_ID); None for anything else."""
    if _PLAIN_ID.fullmatch(text) and (value := int(text)) <= MAX_ID:
        return value
    return None


# 1 to 2147483647 written plainly: the front end sends ids as it has them, e.g. "1".
_ID_DIGITS = (
    "^(?:[1-9][0-9]{0,8}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}"
    "|2147[0-3][0-9]{5}|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}"
    "|21474836[0-3][0-9]|214748364[0-7])$"
)


def _id(value: object) -> int:
    if isinstance(value, str) and re.fullmatch(_ID_DIGITS, value):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID:
        return value
    raise ValueError(f"must be a whole number from 1 to {MAX_ID}")


Id = Annotated[
    int,
    PlainValidator(_id),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                {"type": "string", "pattern": _ID_DIGITS},
            ]
        }
    ),
]

# BTC has eight decimals: a price is rounded to them, and must stay above zero.
PRICE_STEP = Decimal("0.00000001")
MAX_PRICE = Decimal(1_000_000)


def _price(value: object) -> Decimal:
    if isinstance(value, int | float) and not isinstance(value, bool):
        price = Decimal(str(value))  # str(): 0.0038 stays 0.0038, not its binary expansion
        if price.is_finite() and PRICE_STEP <= price <= MAX_PRICE:
            return price.quantize(PRICE_STEP, rounding=ROUND_HALF_EVEN)
    raise ValueError(f"must be a number from {PRICE_STEP} to {MAX_PRICE}")


Price = Annotated[
    Decimal,
    PlainValidator(_price),
    WithJsonSchema({"type": "number", "minimum": float(PRICE_STEP), "maximum": float(MAX_PRICE)}),
]


def _path_id(value: object) -> int:
    found = plain_id(value) if isinstance(value, str) else None
    if found is None:
        raise ValueError(f"no such id: ids are whole numbers from 1 to {MAX_ID}, plain digits")
    return found


# An id in a path names one row or none: `1.0`, `+1`, `01`, ` 1` or `1_0` name none (int()
# and pydantic's lax mode would read them as 1 or 10). A path parameter that does not
# validate is a 404 (app/errors.py): the path names nothing.
IdPath = Annotated[
    int,
    Path(),
    PlainValidator(_path_id),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_ID}),
]
Page0 = Annotated[int, Query(ge=0, le=100_000)]
Limit = Annotated[int, Query(ge=1, le=100)]
NameFilter = Annotated[
    str, Query(max_length=100), AfterValidator(_storable), _string_schema(_NO_NUL, 0, 100)
]


def like_pattern(name: str) -> str:
    """`*` is the API's wildcard; SQL's own wildcards in a name are matched literally.

    Used with ILIKE: the reference (MySQL) matched without regard to case, and so must
    both of our databases (PostgreSQL's LIKE alone is case-sensitive, SQLite's is not)."""
    escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")
