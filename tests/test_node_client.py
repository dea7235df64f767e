"""vscode-jsonrpc, the library VS Code's language clients use, against a real stdio daemon:
`shutdown` and `exit` sent with `null` params (on the wire `[null]`) end it with code 0."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .support import REPO

NODE_DIR = REPO / "tests" / "node"


def _tool(name: str) -> str:
    """The path of node or npm; skips without them, except in CI where they must be there."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing in CI: .ci/run installs Debian's nodejs and npm")
        pytest.skip(f"{name} is not installed (apt-get install nodejs npm); in CI (the CI "
                    "environment variable set) this test fails instead of skipping")
    return path


def _installed(package: str) -> bool:
    """Whether node_modules holds exactly the version package-lock.json pins."""
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    pinned = lock["packages"][f"node_modules/{package}"]["version"]
    manifest = NODE_DIR / "node_modules" / package / "package.json"
    return manifest.exists() and json.loads(manifest.read_text())["version"] == pinned


@pytest.fixture(scope="session")
def node_modules() -> None:
    """tests/node/node_modules (gitignored), installed from the lockfile once, then kept."""
    _tool("node")
    npm = _tool("npm")
    with open(NODE_DIR / ".install.lock", "w") as lock:  # xdist workers install only once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed("vscode-jsonrpc"):
            subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=NODE_DIR, check=True, timeout=300)


def test_vscode_jsonrpc_shutdown_and_exit_with_null_params_exit_0(
        node_modules: None, tmp_path: Path) -> None:
    done = subprocess.run([_tool("node"), str(NODE_DIR / "lsp_exit.js"), sys.executable,
                           str(tmp_path / "home")], capture_output=True, text=True, timeout=60)
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr
    report = json.loads(lines[-1])
    assert report == {"server": "ostinato", "shutdown": None, "code": 0, "signal": None,
                      "unexpected": []}, done.stderr
    assert done.returncode == 0
