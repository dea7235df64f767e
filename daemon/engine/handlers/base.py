"""What a handler is given and must return, and the registry that resolves node types."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..context import Context
from ..edges import normalize_label
from ..graph import Edge, Graph, Node
from ..outcome import Outcome

if TYPE_CHECKING:
    from ..executor import Executor


QUESTION_TYPES = ("multiple_choice", "yes_no", "confirmation", "freeform")  # §6.2
YES_NO_TYPES = frozenset({"yes_no", "confirmation"})
YES_ANSWERS = ("yes", "y", "true")
NO_ANSWERS = ("no", "n", "false")
ACCEPTED_YES_NO = "yes, y, true or no, n, false (any case)"
AUTO_APPROVED = "auto-approved"  # what auto-approve answers a freeform question (§6.4)


def yes_or_no(answer: str) -> str | None:
    """"yes" or "no" for an answer to a yes/no question (any case, `[Y] ` prefix ignored),
    else None."""
    word = normalize_label(answer)
    if word in YES_ANSWERS:
        return "yes"
    if word in NO_ANSWERS:
        return "no"
    return None


@dataclass
class Question:
    """A human gate's question (attractor §6.2): multiple choice, yes/no, confirmation or
    freeform."""

    id: str
    run_id: str
    node_id: str
    text: str
    options: list[dict[str, str | None]]  # {key, label, target}; empty for freeform
    default: str | None = None
    type: str = "multiple_choice"

    def to_dict(self) -> dict[str, Any]:
        """JSON form for events and `run.get`."""
        return {"question_id": self.id, "run_id": self.run_id, "node_id": self.node_id,
                "text": self.text, "type": self.type, "options": self.options,
                "default": self.default}

    def refusal(self, answer: str) -> str | None:
        """Why `answer` cannot answer this question, or None. Only yes/no questions refuse:
        a multiple-choice answer that matches nothing takes the first option (§4.6), and
        any text answers a freeform question."""
        if self.type in YES_NO_TYPES and yes_or_no(answer) is None:
            return f"{answer!r} is not an answer to a yes/no question: accepted are " \
                   f"{ACCEPTED_YES_NO}"
        return None

    def auto_answer(self) -> str:
        """What auto-approve answers (§6.4): yes, the first option, or `auto-approved`."""
        if self.type in YES_NO_TYPES:
            return "yes"
        if self.options:
            return str(self.options[0]["key"])
        return AUTO_APPROVED


class Interviewer(Protocol):
    """Answers human gates (attractor §6.1); the daemon's asks connected clients."""

    async def ask(self, question: Question) -> str | None:
        """The chosen option key, label or target; None when skipped."""
        ...


@dataclass
class NodeRun:
    """One execution of one node: everything a handler may use."""

    node: Node
    graph: Graph
    context: Context
    attempt: int
    executor: Executor
    branch: str | None = None
    via: Edge | None = None  # the edge that led here; None after a jump or in a DAG
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def call(self) -> int:
        """This attempt's place among all attempts of the node in the run (1-based): the
        scripted provider's n-th answer, and its draws, follow it across visits."""
        return self.context.calls.get(self.node.id, self.attempt)

    def value(self, key: str, default: Any = None) -> Any:
        """A context value, read back from artifacts/ when it was too large to keep inline."""
        value = self.context.get(key, default)
        if isinstance(value, dict) and "artifact_ref" in value:
            return self.executor.run_dir.read_artifact(value["artifact_ref"])
        return value

    def write_file(self, name: str, text: str) -> None:
        """Write prompt.md, response.md, … into this node's stage directory."""
        self.executor.run_dir.write_stage_file(self.node.id, name, text)


class Handler(Protocol):
    """A node type's behaviour (attractor §4.1)."""

    async def execute(self, run: NodeRun) -> Outcome:
        """Do the node's work and say how it went."""
        ...


HandlerFactory = Callable[[], Handler]


class FunctionHandler:
    """A handler from a plain async function, for custom types registered in a few lines."""

    def __init__(self, function: Callable[[NodeRun], Awaitable[Outcome]]) -> None:
        self.function = function

    async def execute(self, run: NodeRun) -> Outcome:
        """Call the function."""
        return await self.function(run)


class HandlerRegistry:
    """Type string → handler (attractor §4.2); registering a type again replaces it."""

    def __init__(self, handlers: dict[str, Handler] | None = None,
                 default: str = "codergen") -> None:
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.default = default

    def register(self, type_name: str, handler: Handler) -> None:
        """Serve nodes of `type_name` with `handler`."""
        self.handlers[type_name] = handler

    def resolve(self, node: Node) -> tuple[str, Handler]:
        """The handler type and handler for `node`: explicit type, then shape, then default."""
        type_name = node.type
        handler = self.handlers.get(type_name)
        if handler is None:
            type_name = self.default
            handler = self.handlers[self.default]
        return type_name, handler

    def known_types(self) -> set[str]:
        """Every registered type (for the `type_known` lint rule)."""
        return set(self.handlers)


def preset_answer(settings: Any, context: Context, question: Question) -> str | None:
    """The run settings' answer to `question` (their preset answers in order, then
    auto-approve); None when only a person can answer it."""
    human = settings.human
    used = int(context.get("internal.human.answers_used", 0))
    if used < len(human.answers):
        context.set("internal.human.answers_used", used + 1)
        return str(human.answers[used])
    return question.auto_answer() if human.auto_approve else None
