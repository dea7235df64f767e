"""`pip install .` ships every module of daemon/, protocol/ and clients/ under `ostinato.`."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from .support import REPO

FOLDERS = {"daemon": "ostinato/daemon", "protocol": "ostinato/protocol",
           "clients": "ostinato/clients"}


def test_the_wheel_contains_every_source_module(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(tmp_path), str(REPO)], check=True, timeout=300,
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
