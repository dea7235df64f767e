"""`python -m ostinato.daemon`: run the daemon (same options as `ostinato serve`)."""

import gc
import sys

# Every spawn of the daemon waits for its start (the CLI's first command, a bridge's). Its
# imports make some 75,000 objects that live as long as the process and almost no garbage:
# no collection runs during them, and no later full collection walks them (frozen).
gc.disable()

from .main import main  # noqa: E402

gc.freeze()
gc.enable()
sys.exit(main())
