"""Gunicorn settings: the guide's values, each overridable by a GUNICORN_* variable."""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8008")
workers = int(os.environ.get("GUNICORN_WORKERS", "4"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "2"))
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "1000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "100"))
# Gunicorn 27 opens ~/.gunicorn/gunicorn.ctl; a second instance would take it over.
control_socket_disable = True
