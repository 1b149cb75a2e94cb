"""One settings object, read once at start (docs/operations.md#settings)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from factory_sim.state import DEV_ADMIN_KEY

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./pizza.db"
# Shown in the README so a person can inject chaos into the bundled simulator with curl
# (and end it as the factory's admin, DEV_ADMIN_KEY).
DEV_SIM_API_KEY = "dev-factory-key"
MIN_SECRET_BYTES = 32

CsvList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    pizza_env: Literal["development", "production"] = "development"
    database_url: str = DEFAULT_DATABASE_URL
    jwt_secret: SecretStr | None = None
    admin_email: str | None = None
    admin_password: SecretStr | None = None
    public_url: str | None = None
    trusted_proxies: CsvList = Field(default_factory=list)
    token_ttl_s: int = Field(86400, gt=0)
    cors_origins: CsvList = Field(default_factory=lambda: ["http://localhost:5173"])

    factory_url: str | None = None
    factory_api_key: SecretStr | None = None
    factory_sim_port: int = Field(3100, ge=0, le=65535)
    factory_sim_api_key: SecretStr = SecretStr(DEV_SIM_API_KEY)
    factory_sim_admin_key: SecretStr = SecretStr(DEV_ADMIN_KEY)
    factory_timeout_s: float = Field(5.0, gt=0)
    factory_call_max_s: float = Field(60.0, gt=0)
    # How long an attempted order stays leased to a replica without renewal: how soon
    # another replica retries the orders of one that died (docs/resilience.md#claim-leases).
    claim_lease_s: float = Field(15.0, gt=0)
    factory_slow_call_s: float = Field(2.0, gt=0)
    breaker_fail_max: int = Field(5, ge=1)
    breaker_reset_s: float = Field(30.0, gt=0)
    factory_auto_remediate: bool = True
    factory_remediation_hosts: CsvList = Field(default_factory=list)
    order_max_age_s: float = Field(14400.0, gt=0)
    redis_url: str | None = None
    alert_webhook_url: str | None = None

    metrics_prometheus: bool = True
    metrics_token: SecretStr | None = None

    # Sign-in throttling (app/users/logins.py): attempts not yet found right, within
    # LOGIN_WINDOW_S, from one client address, and for one account from one address;
    # an account tried from this many addresses in a window is logged as attacked.
    login_max_per_client: int = Field(30, ge=1)
    login_max_per_account: int = Field(5, ge=1)
    login_window_s: float = Field(300.0, gt=0)
    login_attack_sources: int = Field(10, ge=2)
    # Retry worker pacing (docs/resilience.md#pending-orders-and-the-retry-worker); small
    # values in tests.
    retry_base_s: float = Field(1.0, gt=0)
    retry_max_s: float = Field(60.0, gt=0)
    worker_poll_s: float = Field(0.5, gt=0)
    # How often an idle worker looks for work (orders another replica left, leases of a
    # replica that died): IDLE_POLL_S unless set (tests use small values).
    worker_idle_poll_s: float = Field(5.0, gt=0)
    worker_batch: int = Field(32, ge=1)
    remediation_retry_s: float = Field(2.0, gt=0)
    max_body_bytes: int = Field(64 * 1024, gt=0)

    @field_validator("trusted_proxies", "cors_origins", "factory_remediation_hosts", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        # A proxy that is not an address would be ignored without a word, and every
        # customer behind it would share the proxy's sign-in limits.
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return value

    @field_validator("factory_url", "public_url", "alert_webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("needs an http:// or https:// URL with a host")
        return value.rstrip("/")

    @field_validator("factory_url", "public_url")
    @classmethod
    def _no_credentials(cls, value: str | None) -> str | None:
        # These addresses are shown (/api/docs, logs, pages); the factory's key has its
        # own variable. ALERT_WEBHOOK_URL may carry credentials: it is kept secret.
        if value is not None and (urlsplit(value).username or urlsplit(value).password):
            raise ValueError("must not carry credentials (user:password@)")
        return value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        """Map plain URLs to the async drivers the service uses."""
        for plain, driver in (
            ("sqlite://", "sqlite+aiosqlite://"),
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
            ("postgresql+psycopg://", "postgresql+asyncpg://"),
        ):
            if value.startswith(plain):
                return driver + value[len(plain) :]
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("needs a sqlite:// or postgresql:// URL")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.factory_url and not self.factory_api_key:
            raise ValueError("FACTORY_API_KEY: required when FACTORY_URL is set")
        if self.factory_call_max_s < self.factory_timeout_s:
            raise ValueError("FACTORY_CALL_MAX_S: must be at least FACTORY_TIMEOUT_S")
        if self.production:
            secret = self.jwt_secret.get_secret_value() if self.jwt_secret else ""
            if len(secret.encode()) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"JWT_SECRET: production needs a random secret of at least "
                    f"{MIN_SECRET_BYTES} bytes"
                )
            if not self.factory_url:
                raise ValueError("FACTORY_URL: required in production (no bundled simulator)")
        return self

    @property
    def production(self) -> bool:
        return self.pizza_env == "production"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def uses_simulator(self) -> bool:
        return self.factory_url is None

    def secrets(self) -> list[str]:
        """Every configured secret, for the log redaction filter."""
        values = [self.jwt_secret, self.factory_api_key, self.metrics_token, self.admin_password]
        values += [self.factory_sim_api_key, self.factory_sim_admin_key]
        found = [v.get_secret_value() for v in values if v and v.get_secret_value()]
        # A webhook URL is often a credential itself (Slack's are): httpx logs every URL.
        return found + ([self.alert_webhook_url] if self.alert_webhook_url else [])


def describe_errors(error: ValidationError) -> list[str]:
    """One line per mistake, naming the variable and what it needs."""
    lines = []
    for item in error.errors():
        name = "_".join(str(p) for p in item["loc"]).upper()
        message = str(item["msg"]).removeprefix("Value error, ")
        if name and not message.startswith(name):
            lines.append(f"{name}: {message}")
        else:
            lines.append(message)
    return lines
