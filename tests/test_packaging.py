"""`pip install .` ships every module of daemon/, protocol/ and clients/ under `ostinato.`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from .support import REPO

FOLDERS = {"daemon": "ostinato/daemon", "protocol": "ostinato/protocol",
           "clients": "ostinato/clients"}


def test_the_wheel_contains_every_source_module(tmp_path: Path) -> None:
    # Build from a clean copy: setuptools would reuse a stale build/ in the repository.
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".ostinato", ".*_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(tmp_path), str(source)], check=True, timeout=300,
                   capture_output=True)
    wheel = next(tmp_path.glob("ostinato-*.whl"))
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".py")}
    expected = {
        f"{target}/{path.relative_to(REPO / folder).as_posix()}"
        for folder, target in FOLDERS.items()
        for path in (REPO / folder).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert expected - shipped == set(), "add the missing packages to pyproject.toml"
    assert not any(name.startswith(("daemon/", "protocol/", "clients/")) for name in shipped)
