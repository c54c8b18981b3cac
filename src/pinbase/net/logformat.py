"""How log lines look: a timestamp on every line, as text for people or JSON for log shippers.

Text: `2025-01-31T12:00:00.123Z INFO pinbase.access: GET /healthz 200 0.4 ms 127.0.0.1 -`.
JSON: one object per line, `{"ts": ..., "level": ..., "logger": ..., "message": ...}` and the
record's structured fields (those a caller passes as `extra={"fields": {...}}`, e.g. the access
log's `method`, `path`, `status`), plus `exception` when there is a traceback.

Lines are formatted by the handler, so a record below the logger's level costs nothing but
the level check; the access log checks `isEnabledFor` before it gathers its fields.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from pinbase.config import LogFormat

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _utc(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT` with an ISO 8601 UTC timestamp to the millisecond."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _utc(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(level: str, format: LogFormat = "text") -> None:
    """Every log line of the process (pinbase's, uvicorn's, asyncio's) to stderr in `format`."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # uvicorn's own handlers off
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
