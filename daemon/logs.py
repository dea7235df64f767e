"""Logging: to stderr and to {home}/daemon.log; never to stdout, which may carry the protocol."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(home: Path, level: str = "INFO") -> None:
    """Send the `ostinato` loggers to stderr and to the daemon log file."""
    formatter = logging.Formatter(FORMAT)
    formatter.default_msec_format = "%s.%03d"
    handlers: list[logging.Handler] = [
        logging.StreamHandler(sys.stderr),
        logging.FileHandler(home / "daemon.log", encoding="utf-8")]
    for handler in handlers:
        handler.setFormatter(formatter)
    # asyncio reports transport and callback failures on its own logger: keep them too.
    for name, logger_level in (("ostinato", level.upper()), ("asyncio", "WARNING")):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.setLevel(logger_level)
        logger.propagate = False
        for handler in handlers:
            logger.addHandler(handler)
