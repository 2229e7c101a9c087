"""JSON log lines to stdout and to LOG_FILE.

The file uses WatchedFileHandler: several Gunicorn workers and saga workers append to one
file, and rotation is external (logrotate, copy-free `mv` + reopen), because a
RotatingFileHandler would rotate per process and scatter lines (ECOSYSTEM.md).
"""

import logging
from pathlib import Path

from pythonjsonlogger.json import JsonFormatter

from saga_orchestrator.request_context import current_request_id


class RequestIdFilter(logging.Filter):
    """Stamps every record with the X-Request-ID of the request or saga call in progress."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            # django.request logs a 5xx after the request's context ended; its record
            # carries the request, which carries the id.
            request = getattr(record, "request", None)
            record.request_id = getattr(request, "request_id", None) or current_request_id()
        return True


class UtcJsonFormatter(JsonFormatter):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("timestamp", "time")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        super().__init__(*args, **kwargs)


def logging_config(level: str, log_file: str) -> dict:
    handlers = {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "json",
            "filters": ["request_id"],
        },
    }
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers["file"] = {
            "class": "logging.handlers.WatchedFileHandler",
            "filename": log_file,
            "formatter": "json",
            "filters": ["request_id"],
        }
    names = list(handlers)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {
            "json": {
                "()": UtcJsonFormatter,
                "format": "%(levelname)s %(name)s %(message)s %(process)d",
            }
        },
        "handlers": handlers,
        "root": {"handlers": names, "level": level},
        "loggers": {
            "django": {"level": level, "propagate": True},
            # A 4xx is the client's business, not a server warning.
            "django.request": {"level": "ERROR", "propagate": True},
            "gunicorn.error": {"level": level, "handlers": names, "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": names, "propagate": False},
        },
    }
