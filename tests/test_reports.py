"""tests.report on a real test run of every outcome (passed, failed, error, budget exceeded,
skipped): the JUnit XML read back by junitparser (a library we did not write), the Markdown
tables, and the HTML page opened in a real headless browser (Debian's chromium), whose
matrix is read from the DOM the browser built, and a screenshot taken of it."""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped

from .inprocess import InProcessDaemon
from .support import DaemonProcess
from .tests_run_support import (
    CALL_USD,
    PASSES,
    priced,
    run_tests,
    snapshot,
    snapshot_of_run,
)

HOSTILE = "<b>bold</b><img src=x>"  # what a model said, to be shown as text only
LIMIT = 4.5


async def every_outcome(daemon: DaemonProcess) -> dict[str, Any]:
    """A live test run of five snapshots: passed (a snapshot of a run: it has reference
    metrics), failed, error, budget exceeded (its second call crosses the $4.50 limit),
    skipped."""
    wire = await daemon.connect()
    failing = [*PASSES, {"type": "contains", "value": "a phrase nobody wrote",
                         "description": "<script>alert(1)</script>"}]
    erring = [*PASSES, {"type": "contains", "value": "x", "path": "node.ghost"}]
    made = [await snapshot_of_run(wire, "r-pass", priced("rpass", 1)),
            await snapshot(wire, "r-fail", priced("rfail", 1, say=HOSTILE),
                           invariants=failing),
            await snapshot(wire, "r-error", priced("rerror", 1), invariants=erring),
            await snapshot(wire, "r-budget", priced("rbudget", 3)),
            await snapshot(wire, "r-skipped", priced("rskipped", 1))]
    # One at a time: the budget runs out in the fourth, and the fifth never starts.
    result = await run_tests(wire, snapshot_ids=[s["id"] for s in made], mode="live",
                             cost_limit_usd=LIMIT, concurrency=1)
    assert [s["status"] for s in result["snapshots"]] == [
        "passed", "failed", "error", "budget_exceeded", "skipped"]
    result["reports"] = {}
    for form in ("junit", "markdown", "html"):
        report = await wire.result("tests.report", {"test_run_id": result["test_run_id"],
                                                    "format": form})
        result["reports"][form] = report
    return result


@pytest.mark.in_process
async def test_junit_read_back_by_junitparser(daemon: InProcessDaemon, tmp_path: Path) -> None:
    result = await every_outcome(daemon)
    report = result["reports"]["junit"]
    assert report["media_type"] == "application/xml"
    path = tmp_path / "junit.xml"
    path.write_text(report["content"])
    xml = JUnitXml.fromfile(str(path))
    [suite] = list(xml)
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (5, 1, 1, 2)
    cases = {case.classname: case for case in suite}
    assert list(cases) == ["r-pass", "r-fail", "r-error", "r-budget", "r-skipped"]
    assert [case.name for case in suite] == [f"{name} v1" for name in cases]
    assert cases["r-pass"].is_passed
    [failure] = cases["r-fail"].result
    assert isinstance(failure, Failure) and "a phrase nobody wrote" in failure.text
    assert "<script>alert(1)</script>" in failure.text  # escaped in the file, read back
    [error] = cases["r-error"].result
    assert isinstance(error, Error) and "ghost" in error.message
    [budget] = cases["r-budget"].result
    assert isinstance(budget, Skipped) and budget.message.startswith("budget_exceeded")
    [skipped] = cases["r-skipped"].result
    assert isinstance(skipped, Skipped) and "budget" in skipped.message
    properties = {p.name: p.value for p in suite.properties()}
    assert float(properties["total_cost_usd"]) == pytest.approx(5 * CALL_USD)
    assert float(properties["cost_limit_usd"]) == LIMIT
    assert properties["status"] == "budget_exceeded"
    assert "settings" not in report["content"] and "pricing" not in report["content"]


@pytest.mark.in_process
async def test_markdown_has_the_tables(daemon: InProcessDaemon) -> None:
    result = await every_outcome(daemon)
    report = result["reports"]["markdown"]
    assert report["media_type"] == "text/markdown"
    lines = report["content"].splitlines()
    assert "| total | passed | failed | errors | skipped | budget_exceeded |" in lines
    assert "| 5 | 1 | 1 | 1 | 1 | 1 |" in lines
    rows = [line for line in lines if line.startswith("| ") and "| r-" in line]
    assert [row.split(" | ")[1] for row in rows] == [
        "r-pass", "r-fail", "r-error", "r-budget", "r-skipped"]
    assert rows[0].startswith("| 1 | r-pass | 1 | ✅ passed | 1/1 | $1.000000 |")
    assert rows[3].startswith("| 4 | r-budget | 1 | 💸 budget_exceeded | ")
    assert "| contains | &lt;script&gt;alert(1)&lt;/script&gt; | ❌ failed | " \
           "a phrase nobody wrote |" in report["content"]
    assert "<script>" not in report["content"] and "<img" not in report["content"]
    assert "### r-pass v1 — ✅ passed" in lines
    assert "| metric | baseline | replay | delta |" in lines  # r-pass has a reference
    assert "| cost_usd | 1 | 1 | 0 |" in lines


def chromium() -> str | None:
    """Debian's chromium (what .ci/run installs), or another Chromium build on the PATH."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


async def browse(page: Path, *args: str) -> str:
    """Run headless chromium on `page`; its stdout."""
    browser = chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium); in CI (the CI "
                    "environment variable set) this test fails instead of skipping")
    process = await asyncio.create_subprocess_exec(
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        f"--user-data-dir={page.parent / 'chromium-profile'}", *args, page.as_uri(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0
    return out.decode()


class Matrix(HTMLParser):
    """The matrix cells of a DOM: {(snapshot, invariant): (data-status, symbol)}."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], tuple[str, str]] = {}
        self.tags: list[str] = []
        self.attributes: set[str] = set()
        self.bars: list[str] = []  # data-metric of each chart bar
        self._row: str | None = None
        self._cell: tuple[str, str] | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        self.attributes |= set(values)
        if tag == "rect" and values.get("data-metric"):
            self.bars.append(str(values["data-metric"]))
        if tag == "tr" and "data-snapshot" in values:
            self._row = values["data-snapshot"]
        elif tag == "td" and values.get("class") == "cell" and self._row is not None:
            self._cell = (str(values["data-invariant"]), str(values["data-status"]))
            self._text = ""

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._row is not None:
            self.cells[(self._row, self._cell[0])] = (self._cell[1], self._text.strip())
            self._cell = None
        elif tag == "tr":
            self._row = None


@pytest.mark.in_process
async def test_the_html_page_in_a_headless_browser(daemon: InProcessDaemon,
                                                   tmp_path: Path) -> None:
    result = await every_outcome(daemon)
    report = result["reports"]["html"]
    assert report["media_type"] == "text/html"
    page = tmp_path / "report.html"
    page.write_text(report["content"], encoding="utf-8")
    content = report["content"]
    for needle in ("<script", "<link", "url(", "@import", "https://"):
        assert needle not in content, needle
    dom = Matrix()
    dom.feed(await browse(page, "--dump-dom"))
    # Self-contained: nothing loaded from anywhere; what runs said stayed text.
    assert not {"script", "img", "link", "iframe", "object"} & set(dom.tags)
    assert not {"src", "href", "srcset", "onerror"} & dom.attributes
    expected = {}
    for snap in result["snapshots"]:
        for check in snap["invariants"]:
            label = check["type"] + (f": {check['description']}" if check["description"]
                                     else "")
            expected[(snap["name"], label)] = check["status"]
    shown = {key: status for key, (status, _) in dom.cells.items() if status != "none"}
    assert shown == expected
    assert dom.cells[("r-pass", "run_status")] == ("passed", "✓")
    assert dom.cells[("r-fail", "contains: <script>alert(1)</script>")] == ("failed", "✗")
    assert dom.cells[("r-error", "contains")] == ("error", "!")
    assert dom.cells[("r-skipped", "run_status")] == ("skipped", "-")
    assert dom.cells[("r-pass", "contains")] == ("none", "·")  # not its invariant
    # r-pass's metric deltas, charted in inline SVG: one bar per numeric metric.
    deltas = result["snapshots"][0]["metrics_delta"]
    assert {"cost_usd", "tokens", "duration_ms"} <= set(deltas)
    assert dom.bars == [name for name, d in deltas.items() if d["delta"] is not None]
    shot = tmp_path / "report.png"
    await browse(page, f"--screenshot={shot}", "--window-size=1280,900")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (1280, 900)
