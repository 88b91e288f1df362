"""Logging setup: structlog, JSON in production, readable in development.

Event names are past tense (`leader_elected`). Standard-library loggers (pysyncobj,
aiohttp) are routed through the same renderer.
"""

from __future__ import annotations

import logging
import sys

import structlog


_configured: tuple[str, str, dict] | None = None


def configure(fmt: str = "auto", level: str = "info", **context) -> None:
    """`fmt`: json, console, or auto (console on a terminal, JSON otherwise)."""
    global _configured
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    _configured = (fmt, level, dict(context))
    renderer = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info if fmt == "json" else structlog.dev.set_exc_info,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**context)


def settings() -> tuple[str, str, dict]:
    """(format, level, context) as this process configured them, for a child process that
    logs to the same stderr (the Raft process); unconfigured: the root logger's level."""
    if _configured is not None:
        return _configured
    return "auto", logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower(), {}
