"""A worker's log records, sent up its channel (`log`) for the daemon to log as its own: a Ray
actor's stderr goes to Ray's files, and a worker process's carries no record below WARNING."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

Send = Callable[..., None]  # the channel's `log` message, given its fields


class ForwardedLog(logging.Handler):
    """Sends each record's level, logger and text (with its traceback) through `send`, on the
    loop's thread."""

    def __init__(self, send: Send) -> None:
        super().__init__(logging.INFO)
        self.send = send
        self.loop = asyncio.get_running_loop()
        self.thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        """Send the record (from another thread, through the loop)."""
        try:
            fields: dict[str, Any] = {"level": record.levelno, "logger": record.name,
                                      "text": self.format(record)}
            if threading.get_ident() == self.thread:
                self.send(**fields)
            else:
                self.loop.call_soon_threadsafe(lambda: self.send(**fields))
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def forwarded_logs(send: Send) -> Iterator[None]:
    """While it lasts, the `ostinato` loggers' records from INFO up go to `send` only."""
    logger = logging.getLogger("ostinato")
    handler, level, propagate = ForwardedLog(send), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
