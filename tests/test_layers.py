"""The floors of docs/architecture.md stay true: every import of every module under daemon/
and protocol/ (read from its source, TYPE_CHECKING imports included) points down."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import REPO

_ABOVE_HELPERS = {"engine", "store", "host", "runs", "regression", "services", "server", "main"}
# A floor (the package, or module, under ostinato.daemon) -> floors it must not import.
FORBIDDEN = {
    **dict.fromkeys(("disk", "ids", "access", "logs", "version", "home", "bridge"),
                    _ABOVE_HELPERS),
    # Neighbours on one floor: the engine knows no store, the store no engine.
    "engine": {"store", "services", "runs", "regression", "server", "host"},
    "store": {"engine", "services", "runs", "regression", "server", "host"},
    "host": {"services", "runs", "regression", "server"},
    # Workers execute runs for the run machinery, which knows them, not the other way.
    "workers": {"store", "runs", "services", "regression", "server", "host"},
    "runs": {"services", "regression", "server"},
    "regression": {"services", "server"},
    "services": {"server"},
}
ROOTS = {"daemon": "ostinato.daemon", "protocol": "ostinato.protocol"}


def _modules() -> Iterator[tuple[str, Path]]:
    """(dotted name, path) of every module under daemon/ and protocol/."""
    for folder, root in ROOTS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join((root, *parts)), path


def imported(module: str, path: Path) -> set[str]:
    """The dotted names `module` imports: a `from X import a` counts X and X.a."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def floor(name: str) -> str | None:
    """The floor of a dotted name under ostinato.daemon (`runs` of ostinato.daemon.runs.x)."""
    parts = name.split(".")
    return parts[2] if parts[:2] == ["ostinato", "daemon"] and len(parts) > 2 else None


MODULES = list(_modules())


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_imports_point_down(module: str, path: Path) -> None:
    names = imported(module, path)
    if module.startswith("ostinato.protocol"):
        ours = sorted(n for n in names if n.startswith("ostinato.")
                      and not n.startswith("ostinato.protocol"))
        assert not ours, f"protocol/ imports nothing of ours: {ours}"
        return
    forbidden = FORBIDDEN.get(floor(module) or "", set())
    upward = sorted(n for n in names if floor(n) in forbidden)
    assert not upward, f"{module} (floor {floor(module)}) must not import {upward}"


def test_every_floor_is_checked() -> None:
    # A new package under daemon/ is placed on a floor here before it lands.
    floors = {floor(module) for module, _ in MODULES} - {None}
    known = set(FORBIDDEN) | {"server", "main", "__main__"}
    assert floors <= known, f"floors not in FORBIDDEN: {sorted(floors - known)}"
