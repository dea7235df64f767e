"""Renderings of a stored test run (TestRunSummary's fields): JUnit XML, Markdown and one
self-contained HTML page. Pure: a dict in, text out. Everything in a test run came from the
store, where runs are already redacted; no report shows a run's settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import html, junit, markdown

RENDERERS: dict[str, tuple[Callable[[dict[str, Any]], str], str]] = {
    "junit": (junit.render, junit.MEDIA_TYPE),
    "markdown": (markdown.render, markdown.MEDIA_TYPE),
    "html": (html.render, html.MEDIA_TYPE),
}


def render(test_run: dict[str, Any], format: str) -> tuple[str, str]:
    """(content, media_type) of a test run in `format`: junit, markdown or html."""
    renderer, media_type = RENDERERS[format]
    return renderer(test_run), media_type
