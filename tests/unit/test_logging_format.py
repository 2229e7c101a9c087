"""The JSON log format: Gunicorn access fields, request ids, secrets, levels."""

import io
import json
import logging
import logging.config

import pytest

from saga_orchestrator import logging as log_setup
from saga_orchestrator.request_context import reset_request_id, set_request_id


def json_logger(name: str, monkeypatch, **secrets: str) -> tuple[logging.Logger, io.StringIO]:
    for variable, value in secrets.items():
        monkeypatch.setenv(variable, value)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(log_setup.UtcJsonFormatter("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(log_setup.RequestIdFilter())
    handler.addFilter(log_setup.SecretFilter())
    logger = logging.Logger(name)
    logger.addHandler(handler)
    return logger, stream


def test_access_record_becomes_request_fields(monkeypatch):
    logger, stream = json_logger("gunicorn.access", monkeypatch)
    atoms = {
        "m": "POST",
        "U": "/api/sagas/",
        "q": "x=1",
        "s": "202",
        "D": 12345,
        "B": 321,
        "h": "10.0.0.1",
        "a": 'curl\t"quoted"\\',
        "{x-request-id}o": "req-1",
        "{x-api-key}i": "a-secret-key-value",
    }
    logger.info("%(m)s %(U)s %(s)s", atoms)
    line = json.loads(stream.getvalue())
    assert line["message"] == "POST /api/sagas/ 202"
    assert line["method"] == "POST"
    assert line["path"] == "/api/sagas/"
    assert line["status"] == 202
    assert line["duration_ms"] == 12.345
    assert line["request_id"] == "req-1"
    assert line["user_agent"] == 'curl\t"quoted"\\'
    assert "a-secret-key-value" not in stream.getvalue()


def test_lines_carry_the_current_request_id(monkeypatch):
    logger, stream = json_logger("sagas.api", monkeypatch)
    token = set_request_id("abc-123")
    try:
        logger.warning("something %s", "happened")
    finally:
        reset_request_id(token)
    line = json.loads(stream.getvalue())
    assert line["request_id"] == "abc-123"
    assert line["level"] == "WARNING"
    assert line["message"] == "something happened"
    assert line["time"].endswith("+00:00")


def test_a_configured_key_never_reaches_a_line(monkeypatch):
    logger, stream = json_logger("sagas", monkeypatch, SAGA_API_KEY="client-key-0123456789")
    logger.error("headers were %r", {"X-API-Key": "client-key-0123456789"})
    assert "client-key-0123456789" not in stream.getvalue()
    assert log_setup.REDACTED in json.loads(stream.getvalue())["message"]


def test_the_webhook_secret_never_reaches_a_line(monkeypatch):
    logger, stream = json_logger("sagas", monkeypatch, SAGA_WEBHOOK_SECRET="whsec-0123456789")
    logger.error("signing with %s", "whsec-0123456789")
    assert "whsec-0123456789" not in stream.getvalue()


def test_level_comes_from_log_level():
    config = log_setup.logging_config("warning", "")
    assert config["root"]["level"] == "WARNING"
    assert config["loggers"]["gunicorn.error"]["level"] == "WARNING"
    assert config["loggers"]["gunicorn.access"]["level"] == "WARNING"
    assert log_setup.logging_config("DEBUG", "")["loggers"]["gunicorn.access"]["level"] == "INFO"
    with pytest.raises(ValueError, match="LOG_LEVEL must be one of"):
        log_setup.logging_config("verbose", "")


def test_file_handler_is_watched(tmp_path):
    config = log_setup.logging_config("INFO", str(tmp_path / "logs" / "app.log"))
    assert config["handlers"]["file"]["class"] == "logging.handlers.WatchedFileHandler"
    assert (tmp_path / "logs").is_dir()
    assert config["root"]["handlers"] == ["stdout", "file"]


def test_a_malformed_log_call_does_not_raise_from_the_filter(monkeypatch):
    logger, stream = json_logger("sagas", monkeypatch, SAGA_API_KEY="client-key-0123456789")
    logger.error("two %s %s", "args-missing")  # logging reports it on stderr, no exception
    assert stream.getvalue() == ""


def test_a_record_is_formatted_once_for_both_handlers_and_times_are_utc_iso():
    import logging
    from datetime import UTC, datetime

    from saga_orchestrator.logging import UtcJsonFormatter, _utc_iso

    formatter = UtcJsonFormatter("%(levelname)s %(name)s %(message)s %(process)d")
    record = logging.LogRecord("sagas.engine", logging.INFO, "f", 1, "SAGA x", None, None)
    record.saga_id = "s-1"
    first = formatter.format(record)
    record.saga_id = "changed"  # a second handler gets the same text, not a re-format
    assert formatter.format(record) == first
    other = logging.LogRecord("sagas.engine", logging.INFO, "f", 1, "SAGA y", None, None)
    assert '"SAGA y"' in formatter.format(other)
    for created in (0.0, 1764520496.123456, 1764520496.999999):
        expected = datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="microseconds")
        assert _utc_iso(created)[:23] == expected[:23]  # to the millisecond (float rounding)
        assert _utc_iso(created).endswith("+00:00")


def test_same_fields_in_the_same_order_as_python_json_loggers_own_formatter():
    """The one-pass `add_fields` keeps the library's semantics: defaults first, then the
    format's fields, static fields, a dict message, the record's extras; renames applied."""
    from pythonjsonlogger.json import JsonFormatter

    options = {
        "defaults": {"service": "saga", "step": "overridden by the extra"},
        "static_fields": {"env": "test"},
        "rename_fields": {"levelname": "level", "name": "logger", "saga_id": "saga"},
        "timestamp": "time",
    }
    fmt = "%(levelname)s %(name)s %(message)s %(process)d"
    ours = log_setup.UtcJsonFormatter(fmt, **options)
    stock = JsonFormatter(fmt, **options)
    for message in ("SAGA step", {"event": "as a dict", "attempt": 2}):
        record = logging.LogRecord("sagas.engine", logging.INFO, "f", 1, message, None, None)
        record.saga_id, record.step, record._private = "s-1", "reserve", "never logged"
        mine, theirs = json.loads(ours.format(record)), json.loads(stock.format(record))
        assert mine.pop("time")[:19] == theirs.pop("time")[:19]
        assert list(mine.items()) == list(theirs.items())
        assert mine["saga"] == "s-1" and mine["step"] == "reserve" and "_private" not in mine


def test_the_formatter_reads_no_private_attribute_of_a_library():
    """Only python-json-logger's public API (issue 13): no `obj._name` in logging.py."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(log_setup))
    private = [
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.endswith("__")
    ]
    assert private == []
