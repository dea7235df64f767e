"""vscode-jsonrpc, the library VS Code's language clients use, against a real stdio daemon:
`shutdown` and `exit` sent with `null` params (on the wire `[null]`) end it with code 0."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .node_support import NODE_DIR, tool


def test_vscode_jsonrpc_shutdown_and_exit_with_null_params_exit_0(
        node_modules: None, tmp_path: Path) -> None:
    done = subprocess.run([tool("node"), str(NODE_DIR / "lsp_exit.js"), sys.executable,
                           str(tmp_path / "home")], capture_output=True, text=True, timeout=60)
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr
    report = json.loads(lines[-1])
    assert report == {"server": "ostinato", "shutdown": None, "code": 0, "signal": None,
                      "unexpected": []}, done.stderr
    assert done.returncode == 0
