"""Gunicorn settings: the guide's values, each overridable by a GUNICORN_* variable.

`gunicorn -c gunicorn.conf.py saga_orchestrator.wsgi`; `--print-config` shows the values
in force, `--check-config` loads the config and the app and exits. docs/operations.md
explains the tuning (workers: 2 × cores + 1).
"""

import os

from saga_orchestrator import prometheus
from saga_orchestrator.logging import log_level, logging_config_from_env


def _env(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = _env(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SystemExit(f"{name} must be at least {minimum}, got {value}")
    return value


def _env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _env(name, default)
    if value not in choices:
        raise SystemExit(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


bind = [address.strip() for address in _env("GUNICORN_BIND", "0.0.0.0:8008").split(",")]
workers = _env_int("GUNICORN_WORKERS", 4, minimum=1)
# The app is synchronous Django; gthread is the alternative for slow clients.
worker_class = _env_choice("GUNICORN_WORKER_CLASS", "sync", ("sync", "gthread"))
# A request past `timeout` is a killed worker and a 500: participant calls never run in a
# request (the saga workers make them), so 120 s is a wide margin.
timeout = _env_int("GUNICORN_TIMEOUT", 120, minimum=1)
# Time a worker gets to finish its requests on SIGTERM/restart. docker-compose's
# stop_grace_period (45 s) must stay above it, or Docker kills mid-request.
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 30, minimum=1)
# The guide's value. The sync worker ignores it (it answers `Connection: close`); it takes
# effect with GUNICORN_WORKER_CLASS=gthread.
keepalive = _env_int("GUNICORN_KEEPALIVE", 2, minimum=0)
# Recycle workers now and then (bounds any leak); the jitter keeps them from all
# restarting at once.
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 1000, minimum=0)
max_requests_jitter = _env_int("GUNICORN_MAX_REQUESTS_JITTER", 100, minimum=0)

# Gunicorn 27 opens ~/.gunicorn/gunicorn.ctl by default; a second instance on the host
# would take the path over and delete it on exit. We do not use it.
control_socket_disable = True

# Logs: JSON lines through saga_orchestrator/logging.py (python-json-logger), the same
# stdout + LOG_FILE handlers as Django's. The formatter turns each access record's atoms
# into fields (method, path, status, duration_ms, request_id); the format below is only
# the human-readable `message`. Never JSON built here: a tab in a User-Agent breaks it.
try:
    loglevel = log_level(os.environ.get("LOG_LEVEL", "INFO")).lower()
except ValueError as error:
    raise SystemExit(str(error)) from None
logconfig_dict = logging_config_from_env()
access_log_format = "%(m)s %(U)s %(s)s"

# Prometheus multiprocess mode: every worker counts into files in one directory, which
# /metrics sums. The variable is exported here so that the forked workers inherit it.
_metrics_dir = prometheus.multiproc_dir_prepare()


def on_starting(server):
    """Compact metric files left by this host's dead processes (a previous run): their
    counts move into the archive, so counters do not reset with a restart."""
    if _metrics_dir:
        merged = prometheus.multiproc_dir_clean(_metrics_dir)
        server.log.info(
            "metrics directory %s ready (%d stale files compacted)", _metrics_dir, len(merged)
        )


def post_fork(server, worker):
    """A new worker: marked `api` for the memory and CPU metrics."""
    if _metrics_dir:
        prometheus.process_mark("api")


def child_exit(server, worker):
    """A worker exited (crash, timeout, max_requests recycle): its live gauges go and its
    counts move into the archive, so a recycled worker leaves no files behind."""
    try:
        prometheus.process_finished(worker.pid)
    except Exception:  # never take the master down for a metrics file
        server.log.exception("metrics files of worker %s not compacted", worker.pid)
