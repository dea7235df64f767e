"""Fixtures: short temporary directories and a daemon listening on a socket and TCP, or,
for a test marked `in_process`, the same daemon in the test's own process."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ostinato.clients.home import stop_daemon
from ostinato.protocol.home import RECORD_FILE

from . import node_support
from .inprocess import InProcessDaemon, in_process_daemon
from .support import TEST_EXTENSION, DaemonProcess, start_daemon

# Every daemon the tests start holds the handlers' dict results to their result models.
os.environ["OSTINATO_STRICT_RESULTS"] = "1"


def pytest_configure(config: pytest.Config) -> None:
    """Declare the markers: the fast layer's, and Ray's."""
    config.addinivalue_line(
        "markers", "in_process: the `daemon` fixture runs the daemon's services, dispatcher "
        "and connections in the test's process (tests/inprocess.py), not as a subprocess")
    config.addinivalue_line(
        "markers", "ray: runs on a real local Ray cluster; needs the `ray` extra, which "
        ".ci/run installs (`make test EXTRAS=test,ray`)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A Ray test without Ray skips, except in CI, where it must run."""
    if item.get_closest_marker("ray") is not None and importlib.util.find_spec("ray") is None:
        what = "Ray is not installed (pip install -e '.[ray]')"
        if os.environ.get("CI"):
            pytest.fail(f"{what}; in CI it must be: .ci/run installs the ray extra")
        pytest.skip(f"{what}; in CI (the CI environment variable set) this fails instead")


def stop_daemons_under(root: Path) -> None:
    """Stop the background daemons that commands started for homes under `root` (every
    command starts its home's daemon when none runs, and it outlives the command)."""
    # Homes sit near the top of a test's directory; a walk of a whole tree of runs would
    # cost seconds.
    for pattern in (RECORD_FILE, f"*/{RECORD_FILE}", f"*/*/{RECORD_FILE}"):
        for record in root.glob(pattern):
            stop_daemon(record.parent)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temporary directory: unix socket paths must stay under ~100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ost-"))
    yield path
    stop_daemons_under(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_daemon_left_in_tmp_path(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test's home daemons in tmp_path end with the test (short_tmp does its own)."""
    yield
    if (tmp_path := request.node.funcargs.get("tmp_path")) is not None:
        stop_daemons_under(tmp_path)


@pytest.fixture(params=["inline", "processes"])
def executor(request: pytest.FixtureRequest) -> str:
    """Where the `daemon` fixture's runs execute: a test that asks for this runs once on
    each backend (decision 0007)."""
    return str(request.param)


@pytest.fixture(autouse=True)
def _executor_chosen_by_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's $OSTINATO_EXECUTOR reaches no daemon a test starts: a test says where
    its runs execute (`executor`, `every_daemon_on`), else they execute inline."""
    monkeypatch.delenv("OSTINATO_EXECUTOR", raising=False)


@pytest.fixture
def every_daemon_on(executor: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The daemons a test starts itself execute their runs on `executor` too (the default
    of `serve --executor` is $OSTINATO_EXECUTOR)."""
    monkeypatch.setenv("OSTINATO_EXECUTOR", executor)
    return executor


@pytest.fixture
async def daemon(request: pytest.FixtureRequest,
                 short_tmp: Path) -> AsyncIterator[DaemonProcess | InProcessDaemon]:
    """A daemon with the test-only methods: a subprocess on a unix socket and loopback TCP,
    or in process when the test is marked `in_process`; its runs execute where the test's
    `executor` says (inline when it takes none)."""
    executor = (request.getfixturevalue("executor") if "executor" in request.fixturenames
                else "inline")
    if request.node.get_closest_marker("in_process") is not None:
        async with in_process_daemon(short_tmp / "home", TEST_EXTENSION,
                                     executor=executor) as local:
            yield local
        return
    process = await start_daemon(short_tmp / "home", "--socket", str(short_tmp / "d.sock"),
                                 "--tcp", "127.0.0.1:0", "--extension", TEST_EXTENSION,
                                 "--executor", executor)
    yield process
    assert await process.stop() == 0, "".join(process.log)


@pytest.fixture(scope="session")
def node_modules() -> None:
    """tests/node's packages, installed from its lockfile once (tests/node_support.py)."""
    node_support.install()
