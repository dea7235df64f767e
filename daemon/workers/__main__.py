"""`python -m ostinato.daemon.workers`: a worker process of the daemon's pool (worker.py)."""

from __future__ import annotations

import asyncio
import logging
import sys

from .worker import serve_stdio


def main() -> int:
    """Serve on stdin/stdout, logging to stderr, on uvloop when it is there (as the daemon)."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s worker %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve_stdio())
    else:
        uvloop.run(serve_stdio())
    return 0


if __name__ == "__main__":
    sys.exit(main())
