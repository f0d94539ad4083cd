"""Where log records go: stderr for every command, and for ``elastic serve`` also the
seed's ``logs/elastic_orchestrator.log`` (rotated), as text or one JSON object a line.

Libraries that speak on every call (Alembic on every database opened, urllib3, httpx
and httpcore on every request) are heard only at DEBUG.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from datetime import UTC, datetime
from pathlib import Path

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CHATTY_LOGGERS = ("alembic", "urllib3", "httpx", "httpcore")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC ISO-8601), level, logger, message, and the
    traceback under ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def make_formatter(log_format: str) -> logging.Formatter:
    """The formatter for ``text`` or ``json``."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(level: str, log_format: str) -> None:
    """Send records at ``level`` and above to stderr in ``log_format`` (as
    ``logging.basicConfig``: not when the root logger already has handlers); quiet the
    chatty libraries unless ``level`` is DEBUG."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler])
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)


def add_log_file(path: Path, *, log_format: str, max_bytes: int,
                 backup_count: int) -> logging.Handler:
    """Also write every record to ``path`` (its folder created), rotated at ``max_bytes``
    keeping ``backup_count`` old files; returns the handler (``remove_log_file`` undoes it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes,
                                                   backupCount=backup_count, encoding="utf-8")
    handler.setFormatter(make_formatter(log_format))
    logging.getLogger().addHandler(handler)
    return handler


def remove_log_file(handler: logging.Handler) -> None:
    """Stop writing to a file ``add_log_file`` opened, and close it."""
    logging.getLogger().removeHandler(handler)
    handler.close()
