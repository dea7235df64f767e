"""Logging: to stderr and to {home}/daemon.log; never to stdout, which may carry the protocol."""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024  # daemon.log rotates past this size
DEFAULT_LOG_FILES = 5  # rotated files kept beside it: daemon.log.1 (newest) … daemon.log.5


class LogFile(logging.handlers.RotatingFileHandler):
    """{home}/daemon.log, rotated by size. Every record also goes to stderr (the other
    handler), so a record this file cannot take (a full disk) is said once on stderr, not
    with a traceback per record, and the file is tried again with the next record."""

    failing = False

    def emit(self, record: logging.LogRecord) -> None:
        """Append the record (rotating first when it would pass the size); on failure drop
        it here (stderr has it)."""
        try:
            if self.stream is None:
                self.stream = self._open()
            if self.shouldRollover(record):
                self.doRollover()
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


def configure(home: Path, level: str = "INFO", max_bytes: int = DEFAULT_LOG_MAX_BYTES,
              files: int = DEFAULT_LOG_FILES) -> None:
    """Send the `ostinato` loggers to stderr and to the daemon log file, which rotates past
    `max_bytes` and keeps `files` rotated files."""
    formatter = logging.Formatter(FORMAT)
    formatter.default_msec_format = "%s.%03d"
    log_file = LogFile(home / "daemon.log", maxBytes=max_bytes, backupCount=files,
                       encoding="utf-8")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr), log_file]
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
