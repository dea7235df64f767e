"""The built-in handler types."""

from __future__ import annotations

from .base import HandlerRegistry
from .basic import ConditionalHandler, ExitHandler, StartHandler
from .codergen import CodergenHandler
from .human import WaitHumanHandler
from .parallel import FanInHandler, ParallelHandler
from .tool import ToolHandler


def default_handlers() -> HandlerRegistry:
    """A registry with every built-in type; callers may register custom ones on it."""
    return HandlerRegistry({
        "start": StartHandler(),
        "exit": ExitHandler(),
        "codergen": CodergenHandler(),
        "conditional": ConditionalHandler(),
        "wait.human": WaitHumanHandler(),
        "parallel": ParallelHandler(),
        "parallel.fan_in": FanInHandler(),
        "tool": ToolHandler(),
    })
