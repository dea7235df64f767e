"""`python -m ostinato.daemon`: run the daemon (same options as `ostinato serve`)."""

import gc
import sys

# Every spawn of the daemon waits for its start (the CLI's first command, a bridge's). Its
# imports make some 75,000 objects that live as long as the process and almost no garbage:
# no collection runs during them (main.run freezes them out of every later one and turns
# the collector on).
gc.disable()

from .main import main  # noqa: E402

sys.exit(main())
