# Saga Orchestrator: the API (default CMD) and, with another command, the saga worker.
# Build: docker-compose build (or docker build -t saga-orchestrator .). Needs no secrets.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEBUG=False \
    LOG_FILE=/app/logs/saga_orchestrator.log \
    PROMETHEUS_MULTIPROC_DIR=/app/run/prometheus

WORKDIR /app

# psql for `manage.py dbshell`, the guide's troubleshooting command. Debian's current
# client (it reads any supported server version); not pinned, it follows security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*

# Dependencies before the source: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .

# Swagger UI / ReDoc assets for whitenoise (no CDN on a closed network). collectstatic
# needs no secrets. Runtime directories belong to the unprivileged user.
RUN python manage.py collectstatic --noinput -v 0 \
    && groupadd --system --gid 10001 saga \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /app saga \
    && mkdir -p /app/logs /app/run/prometheus /app/data \
    && chown -R 10001:10001 /app/logs /app/run /app/data

USER 10001:10001
EXPOSE 8008

# slim has no curl: ask /health/ with the standard library (same command in compose).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8008/health/', timeout=4).status == 200 else 1)"]

CMD ["gunicorn", "-c", "gunicorn.conf.py", "saga_orchestrator.wsgi"]
