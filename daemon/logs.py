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
    logger = logging.getLogger("ostinato")
    logger.handlers.clear()
    logger.setLevel(level.upper())
    logger.propagate = False
    for handler in (logging.StreamHandler(sys.stderr),
                    logging.FileHandler(home / "daemon.log", encoding="utf-8")):
        handler.setFormatter(formatter)
        logger.addHandler(handler)
