"""Logging: to stderr and to {home}/daemon.log; never to stdout, which may carry the protocol."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogFile(logging.FileHandler):
    """{home}/daemon.log. Every record also goes to stderr (the other handler), so a record
    this file cannot take (a full disk) is said once on stderr, not with a traceback per
    record, and the file is tried again with the next record."""

    failing = False

    def emit(self, record: logging.LogRecord) -> None:
        """Append the record; on failure drop it here (stderr has it)."""
        try:
            if self.stream is None:
                self.stream = self._open()
            self.stream.write(self.format(record) + self.terminator)
            self.stream.flush()
        except Exception as exc:
            if self.stream is not None:  # what it buffered would come out torn later
                with contextlib.suppress(Exception):
                    self.stream.close()
                self.stream = None  # type: ignore[assignment]
            if not self.failing:
                self.failing = True
                sys.stderr.write(f"ostinato: cannot write {self.baseFilename} ({exc}); "
                                 "the log goes on on stderr only until it can\n")
            return
        if self.failing:
            self.failing = False
            sys.stderr.write(f"ostinato: {self.baseFilename} is written again\n")


def configure(home: Path, level: str = "INFO") -> None:
    """Send the `ostinato` loggers to stderr and to the daemon log file."""
    formatter = logging.Formatter(FORMAT)
    formatter.default_msec_format = "%s.%03d"
    handlers: list[logging.Handler] = [
        logging.StreamHandler(sys.stderr),
        LogFile(home / "daemon.log", encoding="utf-8")]
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
