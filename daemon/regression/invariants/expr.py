"""`expr`: a CEL expression (cel-python, never Python eval) over the run's metrics, final
context, status, outcome and visited nodes; it must evaluate to true."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ostinato.protocol.invariants import ExprInvariant

from .evaluate import evaluator
from .metrics import node_metrics, run_metrics
from .model import StoredRun, Unavailable, resolve, result
from .trajectory import visits


@lru_cache(maxsize=256)
def _program(expression: str) -> Any:
    """The compiled program (parsed once per expression; parse errors were refused when the
    invariant was validated)."""
    import celpy  # imported by the first expression evaluated: the daemon starts faster

    environment = celpy.Environment()
    return environment.program(environment.compile(expression))


def activation(run: StoredRun) -> dict[str, Any]:
    """What an expression sees: metrics (with `metrics.nodes`, each node's metrics by id),
    context, status, outcome, nodes (as CEL values)."""
    import celpy

    metrics = run_metrics(run)
    context = {key: resolve(value, run) for key, value in (run.context or {}).items()}
    # `nodes` is taken (the visited ids, a list): the per-node metrics sit under `metrics`,
    # where the metric path `nodes.<id>.turns` reads `metrics.nodes["<id>"].turns`.
    names = {"metrics": {**metrics, "nodes": node_metrics(run)}, "context": context,
             "status": metrics["status"],
             "outcome": metrics["outcome"], "nodes": list(dict.fromkeys(visits(run)))}
    return {name: celpy.json_to_cel(value) for name, value in names.items()}


@evaluator("expr")
def expr(invariant: ExprInvariant, run: StoredRun, _judge: Any) -> dict[str, Any]:
    """True passes, false fails; an error or a non-boolean cannot be evaluated."""
    import celpy

    try:
        value = _program(invariant.expression).evaluate(activation(run))
    except celpy.CELEvalError as exc:
        reason = exc.args[0] if exc.args else str(exc)
        raise Unavailable(f"the expression could not be evaluated: {reason}") from None
    if isinstance(value, celpy.CELEvalError):  # some errors are returned, not raised
        raise Unavailable(f"the expression could not be evaluated: {value.args[0]}")
    if not isinstance(value, celpy.celtypes.BoolType):  # an int subclass, not a bool
        raise Unavailable(f"the expression gave {value}, not true or false")
    ok = bool(value)
    return result(ok, invariant.expression, ok,
                  f"{invariant.expression} is {'true' if ok else 'false'}")
