"""Base classes shared by every method's params and result models."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, RootModel

from .bounds import Integer

ProgressToken = Integer | str
T = TypeVar("T")


class Model(BaseModel):
    """Every model of the protocol. Its validator and serializer are built when it is first
    used rather than when it is defined: a daemon or client then pays only for the methods
    it serves or calls (the daemon answers `initialize` sooner)."""

    model_config = ConfigDict(defer_build=True)


class Root(RootModel[T], Generic[T]):
    """A protocol model that is one value (a union, say), built on first use as Model is."""

    model_config = ConfigDict(defer_build=True)


class Params(Model):
    """Params of a method: unknown fields are refused so that typos surface as -32602.

    Frozen, so that the daemon can share one validated instance between calls; strict, so
    that JSON types are taken as sent (`"3"` is not an integer, `true` not an id)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    workDoneToken: ProgressToken | None = Field(
        default=None,
        description="Client-chosen token; the daemon reports progress of this request as "
                    "`$/progress` notifications carrying it.",
    )


class Result(Model):
    """Result of a method."""

    model_config = ConfigDict(extra="forbid")


class Strict(Model):
    """A part of a method's result: unknown fields are refused, as in Result."""

    model_config = ConfigDict(extra="forbid")


class NullResult(Root[None]):
    """A result that is JSON `null` (LSP's `shutdown` answers so)."""

    root: None = None


class AnyParams(Params):
    """Params that are accepted and ignored (`exit`, `initialized`: never refuse a goodbye)."""

    model_config = ConfigDict(extra="ignore")


def cancel_needs_wait(params: BaseModel) -> None:
    """`cancel_with_request` and `return_on_question` speak of a waiting request: refused
    without `wait`."""
    if getattr(params, "wait", False):
        return
    for name in ("cancel_with_request", "return_on_question"):
        if getattr(params, name, False):
            raise ValueError(f"`{name}` applies to a request that waits: give `wait: true` "
                             "too")
