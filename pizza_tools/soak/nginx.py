"""The nginx configuration in front of the replicas: one source for the soak and the docs.

`site_conf` is what an operator puts in nginx's `http` block (docs/operations.md,
"Scale out", shows it, and a test checks the two are the same); `nginx_conf` wraps
it with the paths of the soak's own nginx (its temporary prefix, no daemon, no root).
"""

from __future__ import annotations

from pathlib import Path

# A replica that fails this many connections/timeouts in FAIL_TIMEOUT is left alone for
# FAIL_TIMEOUT (passive health checks); a 503 is an answer and never counts.
MAX_FAILS = 2
FAIL_TIMEOUT = "5s"


def site_conf(listen: str, replicas: list[str]) -> str:
    """The upstream and server blocks for replicas at ``host:port`` each."""
    servers = "\n".join(
        f"    server {address} max_fails={MAX_FAILS} fail_timeout={FAIL_TIMEOUT};"
        for address in replicas
    )
    return f"""upstream jwt_pizza {{
{servers}
    keepalive 32;
}}

server {{
    listen {listen};

    location / {{
        proxy_pass http://jwt_pizza;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_connect_timeout 2s;
        # Longer than FACTORY_CALL_MAX_S: a replica answers an order within
        # FACTORY_TIMEOUT_S (pending, 503) but some reads may wait on the database.
        proxy_read_timeout 90s;
        # A replica down or silent: the request goes to the next one, but only if it is
        # idempotent (nginx never resends a POST unless told `non_idempotent`; a POST with
        # an Idempotency-Key is the client's to resend). A 503 (an order pending, the
        # database away) is an answer, not a dead replica: it is not retried elsewhere.
        proxy_next_upstream error timeout;
        proxy_next_upstream_tries 2;
    }}
}}
"""


def nginx_conf(prefix: Path, listen: str, replicas: list[str], user: str | None) -> str:
    """A whole nginx.conf for the soak's own nginx, everything under ``prefix``."""
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / 'tmp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    site = "\n".join(
        f"    {line}" if line else "" for line in site_conf(listen, replicas).split("\n")
    )
    user_line = f"user {user};\n" if user else ""
    return f"""{user_line}worker_processes 1;
daemon off;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log {prefix / "access.log"};
{temp}
{site}
}}
"""
