"""The simulated factory's data, kept as the real factory keeps it: vendors with their
keys, one chaos per vendor (kept after a fix, with type `none` and a fix date), the
signing key, and (simulator only) counters for tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

VENDOR_ID = "jwt-pizza-simulator"  # the vendor whose key is SimulatorConfig.api_key
VENDOR_NAME = "JWT Pizza Simulator"
ADMIN_ID = "factory-admin"  # the factory's admin, whose key is SimulatorConfig.admin_key
DEV_ADMIN_KEY = "dev-factory-admin-key"
ISSUER = "cs329.click"
PIZZA_LIFETIME_S = 24 * 3600

REAL_CHAOS = ("fail", "throttle", "badjwt")
SIMULATOR_ONLY_CHAOS = ("notjson", "hang")  # a proxy's HTML page; a factory that never answers
LinkStyle = Literal["path", "query", "mangled"]
Clock = Callable[[], float]

RESOLVED = "Problem resolved. Pizza is back on the menu!"
NO_CHAOS = "No chaos currently executing"
BAD_KEY = "invalid authentication"

# The real factory's badjwt answer, character for character (devops329/jwt-pizza-factory,
# MIT): a header that is not even JSON, so nothing can verify it.
BAD_JWT = (
    "deadxe6MTcb33f3ODgzOTgsImV4cCI6MTcxNzg3NDc5OCwiaXNzIjoiY3MzMjkuY2xpY2siLCJhbGciOiJSUzI1"
    "NiIsImtpZCI6IjE0bk5YT21jaWt6emlWZWNIcWE1UmMzOENPM1BVSmJuT2MzazJJdEtDZlEifQ.eyJ2ZW5kb3Ii"
    "OnsiaWQiOiJ0YWNvTGVlIiwibmFtZSI6IlRlc3QgdmVuZG9yIiwiY2hhb3MiOiJ0aHJvdHRsZSJ9LCJkaW5lciI6"
    "eyJpZCI6MSwibmFtZSI6IuW4uOeUqOWQjeWtlyIsImVtYWlsIjoiYUBqd3QuY29tIn0sIm9yZGVyIjp7ImZyYW5j"
    "aGlzZUlkIjoxLCJzdG9yZUlkIjoxLCJpdGVtcyI6W3sibWVudUlkIjoxLCJkZXNjcmlwdGlvbiI6IlZlZ2dpZSIs"
    "InByaWNlIjowLjA1fV0sImlkIjoyMTI2fX0.uFu8dJZ7hpW-XiHTatzFqERAdjRBVKuHFr1ZzrvqBGXO6YN5ZG_Q"
    "DeEttjJrGmUxTCwuNtoar-O1ccWQl5_bbdKSgHROdam8Wcz3kgj-TiV4EWDJMOxkNFBqTKWlXmzYgZeazDwpxImE"
    "1MfjV3oXHpkaM9_lStnT2Cgw1GDwz5MG5zXtGvQWp_8vfXt2cSccrX7ph8Eqm-7vW7dbZ-auUciO-qmUoEE_lbBh"
    "lcWjrajp0rzn-ZvDH4GjyG4liDrVpoafVqwdSASbBO-t1l_xc2YDCdLBvtCFhf6ZafM6IOOP1xCFigsV6LXY0g3n"
    "PfVmBsnEE9p935cCrNwk650B5HhwlzlGZEaNxFhe5s1P-cSNJ-panpLTRwg9b-To0MV2qHJcWARA3Z8B-v2dm73a"
    "XoEaATGAiPC3-W1MuMsX3hJDcge8hIsp91xC0-9aOrAOmCSv-zSykTtq6YoG95XRRB87Wq8nD7Ykm1JNC27pv0QF"
    "WXkkVvXHUTNcJcUE3VeVesLPks2AfInulzbArbNsYnoAqdr42x4Hw3Y54dy1FFLf1JObAqwD6cZR57Q7zOwLX7Aw"
    "K8S3hMOMTlwWz1sajXD7umCxVORZ3Gl6B1ubEt66u394Ws9g76FA_2AR5-PdJgf6zBDnXxe81lBCrHjvN7RM4N6i"
    "IzPhcTfvTqbeef4"
)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def iso(seconds: float) -> str:
    """A time as the real factory writes it (JavaScript's `toISOString`)."""
    at = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return at.replace("+00:00", "Z")


@dataclass
class SimulatorConfig:
    api_key: str  # the vendor's key
    admin_key: str = DEV_ADMIN_KEY  # the factory admin's key (it removes a vendor's chaos)
    throttle_delay_s: float = 32.0  # throttle chaos: a valid pizza after this delay
    oven_full_delay_s: float = 32.0  # 503 oven-full answer (0 or >20 items) comes after this
    link_style: LinkStyle = "path"  # simulator only, but for "path"
    # Simulator only, for link_style "query": the base; default https://{host}/api/support/resolve
    resolve_url: str | None = None


@dataclass
class Chaos:
    """A vendor's chaos as the real factory stores it (one per vendor, kept after a fix)."""

    type: str
    fix_code: str | None
    initiated_at: float
    starts_at: float
    fixed_at: float | None = None
    throttle_delay_s: float = 32.0  # simulator only
    link_style: LinkStyle = "path"  # simulator only

    def running(self, now: float) -> bool:
        """As the real factory's order route decides: any type but `none`, once started."""
        return self.type != "none" and now >= self.starts_at

    def record(self) -> dict[str, str]:
        """The chaos in the vendor record: never its fix code; a fix date once fixed."""
        shown = {
            "type": self.type,
            "initiatedDate": iso(self.initiated_at),
            "startDate": iso(self.starts_at),
        }
        if self.fixed_at is not None:
            shown["fixDate"] = iso(self.fixed_at)
        return shown


@dataclass
class Vendor:
    id: str
    name: str
    email: str
    api_key: str
    created: str | None = None  # the factory's own admin has none
    admin: bool = False
    chaos: Chaos | None = None

    def record(self) -> dict[str, object]:
        """`GET /api/vendor`: the stored vendor, its chaos, roles and connections."""
        record: dict[str, object] = {"id": self.id, "name": self.name, "email": self.email}
        record["apiKey"] = self.api_key
        if self.created is not None:
            record["created"] = self.created
        if self.chaos is not None:
            record["chaos"] = self.chaos.record()
        record["roles"] = ["admin", "vendor"] if self.admin else ["vendor"]
        record["connections"] = {}
        return record


class Simulator:
    """The state of one simulated factory: its signing key, its vendors, its counters."""

    def __init__(self, config: SimulatorConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwk = _public_jwk(self.key)
        self.vendor = Vendor(
            VENDOR_ID, VENDOR_NAME, "vendor@simulator.example", config.api_key, iso(clock())
        )
        admin = Vendor(ADMIN_ID, "Factory admin", "admin@simulator.example", config.admin_key)
        admin.admin = True
        self.vendors = [self.vendor, admin]
        self.pizzas: Counter[str] = Counter()  # simulator only: pizzas per order id
        self.calls = 0  # simulator only: every POST /api/order received

    def by_key(self, candidate: str) -> Vendor | None:
        found = None
        for vendor in self.vendors:  # every key compared, in constant time
            if hmac.compare_digest(candidate.encode(), vendor.api_key.encode()):
                found = vendor
        return found

    def by_id(self, vendor_id: object) -> Vendor | None:
        return next((v for v in self.vendors if v.id == vendor_id), None)

    def make_pizza(self, vendor: Vendor, diner: object, order: dict[str, Any]) -> str:
        iat = int(self.clock())
        header = {
            "typ": None,  # the real factory's header has no "typ"
            "kid": self.jwk["kid"],
            "iat": iat,
            "exp": iat + PIZZA_LIFETIME_S,
            "iss": ISSUER,
        }
        payload = {"vendor": {"id": vendor.id, "name": vendor.name}, "diner": diner}
        payload["order"] = order
        self.pizzas[str(order.get("id"))] += 1
        return jwt.encode(payload, self.key, algorithm="RS256", headers=header)

    def verify(self, token: str) -> dict[str, Any] | None:
        """The pizza's payload if this factory signed it.

        Like the real factory, only the signature is checked: an expired pizza is still
        its own (the service checks the header's `exp` itself).
        """
        try:
            signed = jwt.PyJWS().decode_complete(token, self.key.public_key(), algorithms=["RS256"])
            payload = json.loads(signed["payload"])
        except (jwt.InvalidTokenError, ValueError):
            return None
        return payload if isinstance(payload, dict) else None

    def report_url(self, vendor: Vendor, chaos: Chaos, host: str) -> str:
        """The remediation link, built from the host name the client asked for (`host`,
        without its port): like the real factory's, always https, never a port."""
        key, code = vendor.api_key, chaos.fix_code or ""
        if chaos.link_style == "query":  # simulator only
            base = self.config.resolve_url or f"https://{host}/api/support/resolve"
            return f"{base}?{urlencode({'apiKey': key, 'fixCode': code})}"
        scheme = "https//" if chaos.link_style == "mangled" else "https://"  # simulator only
        return f"{scheme}{host}/api/support/{quote(key, safe='')}/report/{code}"

    def report(self, api_key: str, fix_code: str) -> tuple[int, str]:
        """The report link followed: the real factory's status and message, word for word."""
        vendor = self.by_key(api_key)
        chaos = vendor.chaos if vendor is not None else None
        if chaos is None or chaos.type == "none":
            return 200, NO_CHAOS  # also for a key the factory does not know
        if not hmac.compare_digest(fix_code.encode(), (chaos.fix_code or "").encode()):
            return 400, "Problem unresolved"
        chaos.type, chaos.fix_code, chaos.fixed_at = "none", None, self.clock()
        return 200, RESOLVED


def _public_jwk(key: rsa.RSAPrivateKey) -> dict[str, str]:
    """The key as the real factory publishes it: kty, kid (its RFC 7638 thumbprint), n, e."""
    numbers = key.public_key().public_numbers()
    n = _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"))
    canonical = json.dumps({"e": "AQAB", "kty": "RSA", "n": n}, separators=(",", ":"))
    kid = _b64url(hashlib.sha256(canonical.encode()).digest())
    return {"kty": "RSA", "kid": kid, "n": n, "e": "AQAB"}
