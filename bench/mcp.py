"""The daemon's MCP face against its JSON-RPC, same transport, same run (issue 16).

    .venv/bin/python bench/mcp.py [--rounds 3] [--sequential 2000] [--pipelined 5000]
        [--warmup 500] [--chunk 256] [--cold 10] [--pin same|split|none]

Two daemons are spawned with pipes on stdin/stdout, newline-delimited JSON both ways, each on
a home of its own, in a fresh process every round:

* daemon:     `python -m ostinato.daemon --stdio`, opened with Ostinato's `initialize`,
              answering `daemon.status` over JSON-RPC;
* daemon-mcp: the same command, opened with MCP's `initialize` (revision 2025-11-25),
              answering `tools/call` of the read-only tool `status`, which calls the same
              handler and wraps its result as MCP's (a summary, the JSON, structuredContent).

The method, the checks and the options are bench/mcp_sdk.py's (it measures the official
SDK's servers the same way). The last line gives the MCP face's ratios to the JSON-RPC
measured in the same run, against issue 16's targets: tools/call p50 <= 1.3x the JSON-RPC
p50, and pipelined throughput >= 0.7x.
"""

from __future__ import annotations

import sys

from mcp_sdk import DAEMON_MCP, main  # bench/ is on sys.path when a bench runs

if __name__ == "__main__":
    sys.exit(main(servers=("daemon", DAEMON_MCP), name="mcp"))
