"""JSON log lines to stdout and to LOG_FILE, for Django, the saga workers and Gunicorn.

The file uses WatchedFileHandler: several Gunicorn workers and saga workers append to one
file, and rotation is external (logrotate moves the file, every process notices the new
inode at its next line and reopens; `deploy/logrotate.conf`). A RotatingFileHandler would
rotate per process and scatter lines (ECOSYSTEM.md).

No Django import here: gunicorn.conf.py configures the master process with it too.
"""

import json
import logging
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pythonjsonlogger.json import JsonFormatter

from saga_orchestrator.request_context import current_request_id

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_LOG_FILE = str(BASE_DIR / "logs" / "saga_orchestrator.log")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SECRET_VARIABLES = (
    "SECRET_KEY",
    "SAGA_API_KEY",
    "INTERNAL_API_KEY",
    "SAGA_WEBHOOK_SECRET",
    "DB_PASSWORD",
    "REDIS_PASSWORD",
)
REDACTED = "[redacted]"


class RequestIdFilter(logging.Filter):
    """Stamps every record with the X-Request-ID of the request or saga call in progress."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            # django.request logs a 5xx after the request's context ended; its record
            # carries the request, which carries the id.
            request = getattr(record, "request", None)
            record.request_id = getattr(request, "request_id", None) or current_request_id()
        return True


class SecretFilter(logging.Filter):
    """Last line of defence: a configured key that reaches a message is replaced.

    Code never logs keys or headers on purpose; this catches an accidental `%r` of a
    request or settings object.
    """

    def __init__(self, name: str = ""):
        super().__init__(name)
        self.secrets = [
            value
            for value in (os.environ.get(variable, "").strip() for variable in SECRET_VARIABLES)
            if len(value) >= 8
        ]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets and record.name != "gunicorn.access":
            try:
                message = record.getMessage()
            except (TypeError, ValueError):  # a bad format: the handler reports it
                return True
            if any(secret in message for secret in self.secrets):
                for secret in self.secrets:
                    message = message.replace(secret, REDACTED)
                record.msg, record.args = message, None
        return True


class UtcJsonFormatter(JsonFormatter):
    """One JSON object per line; Gunicorn access records get their request's fields.

    Same fields as python-json-logger's own `add_fields` (its documented hook), gathered in
    one pass (it is on the hot path: several lines per saga), and a record is formatted
    once even when both handlers (stdout and LOG_FILE) write it. Only the library's public
    API is used: `parse()`, the constructor's options (`rename_fields`, `reserved_attrs`,
    `timestamp`, …) and the hooks `add_fields` and `jsonify_log_record`.
    """

    def __init__(self, fmt: str | Sequence[str] | None = None, *args, **kwargs):
        kwargs.setdefault("timestamp", "time")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        super().__init__(fmt, *args, **kwargs)
        # The fields `fmt` names, each with its output name, looked up once, not per line.
        fields = self.parse() if fmt is None or isinstance(fmt, str) else list(fmt)
        self.format_fields = [(field, self.renamed(field)) for field in fields]
        self.not_extra = set(fields) | set(self.reserved_attrs)
        self.time_field = self.renamed(
            self.timestamp if isinstance(self.timestamp, str) else "timestamp"
        )
        self.last_formatted: tuple[logging.LogRecord | None, str] = (None, "")
        # One encoder for every line (json.dumps(cls=…) builds one per call).
        self.encoder = (self.json_encoder or json.JSONEncoder)(
            default=self.json_default, indent=self.json_indent, ensure_ascii=self.json_ensure_ascii
        )

    def renamed(self, field: str) -> str:
        return self.rename_fields.get(field, field)

    def jsonify_log_record(self, log_data: dict) -> str:
        return self.encoder.encode(log_data)

    def format(self, record: logging.LogRecord) -> str:
        last_record, text = self.last_formatted
        if last_record is record:
            return text  # the same record, for the next handler
        text = super().format(record)
        self.last_formatted = (record, text)
        return text

    def add_fields(self, log_data: dict, record: logging.LogRecord, message_dict: dict) -> None:
        fields = record.__dict__
        rename, not_extra = self.rename_fields, self.not_extra
        for key, value in self.defaults.items():  # first: every later field overrides them
            log_data[rename.get(key, key)] = value
        for field, name in self.format_fields:
            log_data[name] = fields.get(field)
        for data in (self.static_fields, message_dict):
            for key, value in data.items():
                log_data[rename.get(key, key)] = value
        for key, value in fields.items():
            if key not in not_extra and not (isinstance(key, str) and key.startswith("_")):
                log_data[rename.get(key, key)] = value
        if self.timestamp:
            log_data[self.time_field] = _utc_iso(record.created)
        if self.rename_fields_keep_missing:
            for name in rename.values():
                log_data.setdefault(name, None)
        if record.name == "gunicorn.access" and isinstance(record.args, Mapping):
            log_data.update(access_fields(record.args))


_second: tuple[int | None, str] = (None, "")  # the last whole second formatted, its text


def _utc_iso(created: float) -> str:
    """`datetime.fromtimestamp(created, UTC).isoformat()` (microseconds truncated), with
    the date and time text computed once per second."""
    global _second
    second = int(created)
    cached, text = _second
    if cached != second:
        text = datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (second, text)
    return f"{text}.{int((created - second) * 1_000_000):06d}+00:00"


def access_fields(atoms: Mapping) -> dict:
    """The fields of an access line, picked from Gunicorn's atoms.

    Picked, never dumped: the atoms also hold every request header, X-API-Key included.
    """
    return {
        "event": "http_request",
        "method": atoms.get("m"),
        "path": atoms.get("U"),
        "query": atoms.get("q") or "",
        "status": _int_or_none(atoms.get("s")),
        "duration_ms": round(int(atoms.get("D") or 0) / 1000, 3),
        "bytes": _int_or_none(atoms.get("B")),
        "remote_addr": atoms.get("h"),
        "user_agent": atoms.get("a"),
        # The response header RequestIdMiddleware set: the id of this request's other lines.
        "request_id": atoms.get("{x-request-id}o") or "",
    }


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def log_level(value: str) -> str:
    level = (value or "INFO").strip().upper()
    if level not in LEVELS:
        raise ValueError(f"LOG_LEVEL must be one of {', '.join(LEVELS)}, got {value!r}")
    return level


def logging_config(level: str, log_file: str) -> dict:
    """dictConfig for Django (settings.LOGGING) and Gunicorn (logconfig_dict)."""
    level = log_level(level)
    filters = ["request_id", "secrets"]
    handlers = {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "json",
            "filters": filters,
        },
    }
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers["file"] = {
            "class": "logging.handlers.WatchedFileHandler",
            "filename": log_file,
            "formatter": "json",
            "filters": filters,
        }
    names = list(handlers)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}, "secrets": {"()": SecretFilter}},
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
            # Access lines are INFO: shown at LOG_LEVEL DEBUG or INFO, hidden above.
            "gunicorn.access": {
                "level": "INFO" if level == "DEBUG" else level,
                "handlers": names,
                "propagate": False,
            },
        },
    }


def logging_config_from_env() -> dict:
    """The same configuration from LOG_LEVEL and LOG_FILE, for processes without Django."""
    return logging_config(
        os.environ.get("LOG_LEVEL", "INFO"), os.environ.get("LOG_FILE", DEFAULT_LOG_FILE).strip()
    )
