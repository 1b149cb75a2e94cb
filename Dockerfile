# JWT Pizza service. Build: docker build -t jwt-pizza .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv/pizza
COPY pyproject.toml README.md ./
COPY app ./app
COPY clients ./clients
COPY telemetry ./telemetry
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /srv/pizza pizza \
    && mkdir -p /srv/pizza/data \
    && chown pizza /srv/pizza/data

USER pizza
# SQLite lands in the data directory unless DATABASE_URL names PostgreSQL.
ENV DATABASE_URL=sqlite+aiosqlite:////srv/pizza/data/pizza.db
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=2)"
CMD ["pizza", "serve", "--host", "0.0.0.0", "--port", "3000"]
