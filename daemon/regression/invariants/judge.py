"""`judge`: an LLM grades an output against a rubric, k votes, strict majority.

`Judge` wraps a providers object (anything with `async complete(ModelRequest)` and
`resolve`: the engine's ProviderPool, or ReplayProviders(pool, replayer) so that recorded
votes are served again) and keeps every call it made as a trace-shaped record (node
`$judge`, attempt = vote number) in `calls`, with their total cost in `cost_usd`. Callers
persist them (regression/stored.py's record_judge_calls; a snapshot's cassette).
"""

from __future__ import annotations

import re
import time
from typing import Any

from ostinato.protocol.invariants import JudgeInvariant

from ...engine.providers.base import Message, ModelRequest, ProviderError
from ...engine.replay import ReplayDivergence
from ...ids import utc_now, uuid7
from .evaluate import evaluator
from .model import JUDGE_NODE, StoredRun, Unavailable, output_text

SYSTEM = ("You are a strict evaluator. You receive a rubric and an output. Decide whether "
          "the output satisfies the rubric. Explain briefly, then end with a last line that "
          "is exactly `VERDICT: PASS` or `VERDICT: FAIL`.")
# The last PASS or FAIL word of the answer decides (models reason first, then conclude);
# an explicit `VERDICT:` line wins over words elsewhere.
_VERDICT_LINE = re.compile(r"verdict\W{0,8}(pass|fail)", re.IGNORECASE)
_WORD = re.compile(r"\b(pass(?:ed|es)?|fail(?:ed|s|ure)?)\b", re.IGNORECASE)


def parse_vote(text: str) -> str | None:
    """`PASS`, `FAIL`, or None when the answer says neither."""
    found = _VERDICT_LINE.findall(text) or _WORD.findall(text)
    if not found:
        return None
    return "PASS" if found[-1].lower().startswith("pass") else "FAIL"


def prompt(rubric: str, text: str) -> str:
    """The user message of a vote."""
    return f"## Rubric\n{rubric}\n\n## Output\n{text}\n\nDoes the output satisfy the rubric?"


class Judge:
    """Asks the model for votes; keeps the calls it made and what they cost."""

    def __init__(self, providers: Any) -> None:
        self.providers = providers
        self.calls: list[dict[str, Any]] = []
        self.cost_usd = 0.0
        self._served: list[bool] = []  # per call: served from a recording (not new)

    @property
    def new_calls(self) -> list[dict[str, Any]]:
        """The calls that were made live (not served from a recording)."""
        return [c for c, served in zip(self.calls, self._served, strict=True) if not served]

    def secrets(self) -> list[str]:
        """The provider keys in use, to redact the calls before they are stored."""
        secrets = getattr(self.providers, "secrets", None)
        return list(secrets()) if callable(secrets) else []

    async def vote(self, invariant: JudgeInvariant, text: str, number: int) -> str | None:
        """One vote (`number` is its attempt); raises ProviderError when the call fails."""
        request = ModelRequest(provider=invariant.provider or "", model=invariant.model or "",
                               messages=[Message(role="system", content=SYSTEM),
                                         Message(role="user",
                                                 content=prompt(invariant.rubric, text))],
                               node_id=JUDGE_NODE, attempt=number)
        request = self.providers.resolve(request)
        replayer = getattr(self.providers, "replayer", None)
        served_before = replayer.served if replayer is not None else 0
        started = time.monotonic()
        try:
            response = await self.providers.complete(request)
        except ProviderError as exc:
            self._keep(request, None, error=str(exc),
                       latency_ms=(time.monotonic() - started) * 1000, served=False)
            raise
        served = replayer is not None and replayer.served > served_before
        self._keep(request, response, latency_ms=response.latency_ms, served=served)
        self.cost_usd += response.cost_usd
        return parse_vote(response.text)

    def _keep(self, request: ModelRequest, response: Any, *, latency_ms: float,
              served: bool, error: str | None = None) -> None:
        usage = response.usage if response is not None else None
        self.calls.append({
            "id": uuid7(), "node_id": JUDGE_NODE, "attempt": request.attempt, "kind": "model",
            "request": request.to_dict(),
            "response": response.to_dict() if response is not None else None,
            "error": error,
            "usage": {"input_tokens": usage.input_tokens if usage else 0,
                      "output_tokens": usage.output_tokens if usage else 0},
            "input_tokens": usage.input_tokens if usage else 0,
            "output_tokens": usage.output_tokens if usage else 0,
            "cost_usd": response.cost_usd if response is not None else 0.0,
            "latency_ms": round(latency_ms, 3),
            "finish_reason": response.finish_reason if response is not None else "error",
            "created_at": utc_now()})
        self._served.append(served)


@evaluator("judge")
async def judge_check(invariant: JudgeInvariant, run: StoredRun,
                      judge: Judge | None) -> dict[str, Any]:
    """k votes on the output; passes on a strict majority of PASS."""
    if judge is None:
        raise Unavailable("no judge is available here (no providers to ask)")
    where, text = output_text(invariant.path, run)
    votes: list[str | None] = []
    for number in range(1, invariant.k + 1):
        try:
            votes.append(await judge.vote(invariant, text, number))
        except (ProviderError, ReplayDivergence) as exc:  # a recorded replay without it
            raise Unavailable(f"judge vote {number} of {invariant.k} failed: {exc}") from None
    passes = votes.count("PASS")
    ok = passes * 2 > invariant.k
    unclear = votes.count(None)
    return {"status": "passed" if ok else "failed",
            "expected": {"rubric": invariant.rubric, "k": invariant.k, "majority": "PASS"},
            "actual": {"votes": [v or "UNCLEAR" for v in votes], "pass": passes,
                       "fail": invariant.k - passes},
            "message": f"{passes} of {invariant.k} vote(s) say {where} meets the rubric"
                       + (f" ({unclear} unclear, counted as FAIL)" if unclear else "")
                       + ("" if ok else ": no majority for PASS")}
