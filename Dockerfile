# JWT Pizza service. Build: docker build -t jwt-pizza .   (or: bash scripts/build-image)
#
# BASE_IMAGE: any Debian-like image with Python 3.11 as `python3` and its `venv` module:
# python:3.11-slim (the default), or Debian bookworm with python3, python3-venv and
# python3-pip (what scripts/build-image makes locally, and CI builds this file on).
#
# Behind a proxy that inspects TLS with a certificate authority of its own, pass that
# authority's bundle as the build secret `ca-certificates` (docker build / buildah bud
# --secret id=ca-certificates,src=FILE): the downloads use it, the image does not keep it.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1
# uv installs from uv.lock (every version and hash); it lives in a venv of its own, never
# in the system Python (Debian's refuses pip there: externally managed).
RUN --mount=type=secret,id=ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then \
      export PIP_CERT=/run/secrets/ca-certificates; fi \
    && python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --quiet "uv==0.13.9"
WORKDIR /src
COPY pyproject.toml uv.lock ./
# The dependencies first, as a layer of their own: a change to the code reuses it.
RUN --mount=type=secret,id=ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then \
      export SSL_CERT_FILE=/run/secrets/ca-certificates; fi \
    && /opt/uv/bin/uv sync --locked --no-install-project --no-editable --python python3
COPY README.md ./
COPY app ./app
COPY clients ./clients
COPY factory_sim ./factory_sim
COPY telemetry ./telemetry
RUN --mount=type=secret,id=ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then \
      export SSL_CERT_FILE=/run/secrets/ca-certificates; fi \
    && /opt/uv/bin/uv sync --locked --no-editable --python python3

FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH
COPY --from=build /opt/venv /opt/venv
RUN useradd --uid 10001 --home-dir /srv/pizza --create-home --no-log-init pizza \
    && mkdir -p /srv/pizza/data \
    && chown pizza /srv/pizza/data
WORKDIR /srv/pizza
USER pizza
# SQLite lands in the data directory unless DATABASE_URL names PostgreSQL. PORT is where
# the service listens and the health check asks (platforms that assign one set it).
ENV DATABASE_URL=sqlite+aiosqlite:////srv/pizza/data/pizza.db \
    PORT=3000
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['PORT'], timeout=2)"]
CMD ["sh", "-c", "exec pizza serve --host 0.0.0.0 --port \"$PORT\""]
