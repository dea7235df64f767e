"""`python -m ostinato.daemon`: run the daemon (same options as `ostinato serve`)."""

import sys

from .main import main

sys.exit(main())
