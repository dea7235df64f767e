"""The built-in handler types."""

from __future__ import annotations

from .base import HandlerRegistry
from .basic import ConditionalHandler, ExitHandler, StartHandler
from .codergen import CodergenHandler
from .fan_in import FanInHandler
from .human import WaitHumanHandler
from .manager import ManagerLoopHandler
from .parallel import ParallelHandler
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
        "stack.manager_loop": ManagerLoopHandler(),
    })
