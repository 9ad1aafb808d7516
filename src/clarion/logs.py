"""Structured JSON logs (structlog), with request and notification ids bound
through contextvars, and a last line of defence that scrubs anything that
looks like a secret before a line is written."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# sk_/pk_/adm_ keys, bearer credentials, JWTs, PEM blocks, 64-hex APNs tokens.
SECRET_PATTERNS = re.compile(
    r"(?:\b(?:sk|pk|adm)_[A-Za-z0-9_\-]{8,})"
    r"|(?:(?i:bearer)\s+\S+)"
    r"|(?:eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*)"
    r"|(?:-----BEGIN [A-Z ]+-----[\s\S]*?-----END [A-Z ]+-----)"
    r"|(?:\b[0-9a-fA-F]{64}\b)"
)
REDACTED = "[redacted]"


def scrub(value: Any) -> Any:
    if isinstance(value, str):
        return SECRET_PATTERNS.sub(REDACTED, value)
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def _scrub_event(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    return {key: scrub(value) for key, value in event_dict.items()}


def configure_logging(level: str = "INFO", stream: Any = None) -> None:
    """JSON lines on stderr (or `stream`) for our logs and the libraries'."""
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _scrub_event,
        structlog.processors.JSONRenderer(),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                _scrub_event,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.contextvars.merge_contextvars],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
