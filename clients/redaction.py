"""The one secret-masking primitive of the code base (clients/, telemetry/ and app/ use it).

It lives in clients/, the lowest layer: the factory client masks its API key in links and
errors with `redact_factory_key`, telemetry/redaction.py builds the log redactor on
`mask_secrets` and LINK_SHAPES (telemetry may import clients, never the other way), and
app/ uses either. One MASK, one minimum length.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from urllib.parse import quote

MASK = "***"

# A secret shorter than this would mask ordinary words everywhere (an ADMIN_PASSWORD
# that is a dictionary word would garble every log line and the postmortem draft).
MIN_SECRET_LENGTH = 6

# Where the factory puts its key in a remediation link (docs/factory.md): masked even when
# the key itself is not known (another tenant's, or not configured).
LINK_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # /api/support/{key}/report/{fixCode}, also without a scheme or host.
    (re.compile(r"(/api/support/)[^/\s?#\"']+(/report)"), rf"\g<1>{MASK}\g<2>"),
    (re.compile(r"(apiKey=)[^&#\s\"',;]+", re.IGNORECASE), rf"\g<1>{MASK}"),
)


@functools.lru_cache(maxsize=16)
def _secret_forms(secrets: tuple[str | None, ...]) -> tuple[str, ...]:
    """Each secret as it may appear (as is, and URL-encoded), longest first; computed once
    per set of secrets (every log record asks)."""
    forms: set[str] = set()
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            forms.update((secret, quote(secret, safe="")))
    return tuple(sorted(forms, key=len, reverse=True))


def mask_secrets(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with each secret (and its URL-encoded form) masked, longest first."""
    for form in _secret_forms(tuple(secrets)):
        if form in text:
            text = text.replace(form, MASK)
    return text


def redact_factory_key(text: str, api_key: str | None) -> str:
    """`text` without the factory's API key: the key itself wherever it stands (as is and
    URL-encoded), and any key where a remediation link carries one, ours or not."""
    text = mask_secrets(text, (api_key,))
    for pattern, replacement in LINK_SHAPES:
        text = pattern.sub(replacement, text)
    return text
