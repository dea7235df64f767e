"""`python -m ostinato.clients.cli`: the `ostinato` command."""

import sys

from . import main

sys.exit(main())
