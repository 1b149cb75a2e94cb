"""The factory's remediation link: find it, parse it, redact it, decide if it may be fetched.

The shapes seen in the wild (docs/factory.md#the-remediation-link):

- path:    ``https://{host}/api/support/{apiKey}/report/{fixCode}``
- query:   ``{resolveUrl}?apiKey={apiKey}&fixCode={fixCode}`` (any host)
- mangled: either of those with ``https//`` (no colon) for a scheme.

The link carries the vendor API key, so it is a secret: `redact_factory_key`
(clients/redaction.py) before it goes anywhere but an authenticated operator's screen,
and `followable_url` before the service fetches it on its own (only the factory's host
or an allowed one: no SSRF).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit, urlunsplit

LinkShape = Literal["path", "query", "mangled"]

_MANGLED_SCHEME = re.compile(r"^(https?)//(?!/)", re.IGNORECASE)
_SUPPORT_PATH = re.compile(r"/api/support/[^/]+/report/([^/]+)/?$")
# A host name, an IPv4 address or an IPv6 literal (urlsplit drops the brackets).
_HOST_NAME = re.compile(r"[a-z0-9._-]+|[0-9a-f:.]+")


@dataclass(frozen=True)
class RemediationLink:
    """A parsed remediation link. `raw` still holds the API key: treat it as a secret."""

    raw: str
    shape: LinkShape
    host: str
    fix_code: str | None


def find_report_url(body: object) -> str | None:
    """The `reportUrl` of a decoded JSON answer (any status), if it carries one."""
    if not isinstance(body, dict):
        return None
    url = body.get("reportUrl")
    return url if isinstance(url, str) and url.strip() else None


def parse_link(raw: str) -> RemediationLink | None:
    """The link's shape, host and fix code; None when it is none of the known shapes."""
    parsed = _parse(raw)
    return parsed[0] if parsed is not None else None


def followable_url(raw: str, *, factory_url: str, allowed_hosts: Iterable[str]) -> str | None:
    """The URL the service may GET on its own for this link, or None (record it, don't fetch).

    The factory's own host is rebuilt at FACTORY_URL's scheme, host and port (the
    factory writes `https` and no port whatever it is reached at). A host in
    `allowed_hosts` is followed as given, a mangled scheme taking FACTORY_URL's.
    """
    parsed = _parse(raw)
    if parsed is None:
        return None
    link, split = parsed
    factory = urlsplit(factory_url.strip())
    if factory.hostname and link.host == factory.hostname:
        # Drop any userinfo of FACTORY_URL: only scheme, host and port travel.
        netloc = factory.netloc.rpartition("@")[2]
        return urlunsplit((factory.scheme, netloc, split.path, split.query, ""))
    allowed = {h.strip().lower() for h in allowed_hosts if h.strip()}
    if link.host in allowed:
        scheme = factory.scheme if link.shape == "mangled" else split.scheme
        return urlunsplit((scheme, split.netloc, split.path, split.query, ""))
    return None


def _parse(raw: str) -> tuple[RemediationLink, SplitResult] | None:
    """The parsed link and its parts with the scheme repaired; None for no known shape."""
    parsed = _split(raw)
    if parsed is None:
        return None
    split, mangled = parsed
    path_match = _SUPPORT_PATH.search(split.path)
    query = parse_qs(split.query)
    if path_match is not None:
        shape: LinkShape = "path"
        fix_code: str | None = unquote(path_match.group(1))
    elif "apiKey" in query or "fixCode" in query:
        shape = "query"
        fix_code = query.get("fixCode", [None])[0]
    else:
        return None
    if mangled:
        shape = "mangled"
    return RemediationLink(
        raw=raw, shape=shape, host=split.hostname or "", fix_code=fix_code
    ), split


def _split(raw: str) -> tuple[SplitResult, bool] | None:
    """The link split into parts (scheme repaired) and whether its scheme was mangled."""
    text = raw.strip()
    mangled = _MANGLED_SCHEME.match(text)
    if mangled is not None:
        text = f"{mangled.group(1)}://{text[mangled.end() :]}"
    try:
        split = urlsplit(text)
        _ = split.port  # raises ValueError for a port that is not a number
    except ValueError:
        return None
    host = split.hostname
    if (
        split.scheme.lower() not in ("http", "https")
        or not host
        or not _HOST_NAME.fullmatch(host)
        # A link with userinfo is no shape the factory sends, and it is a
        # classic way to make a URL read as one host and go to another.
        or split.username is not None
    ):
        return None
    return split, mangled is not None
