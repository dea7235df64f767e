"""The method registry: name → params model, result model, summary."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """One method of the contract; `result` is None for notifications."""

    name: str
    params: type[BaseModel]
    result: type[BaseModel] | None
    summary: str

    @property
    def is_notification(self) -> bool:
        """True when the method is never answered."""
        return self.result is None


class Registry:
    """An ordered, name-unique collection of method specs."""

    def __init__(self, specs: Iterable[MethodSpec] = ()) -> None:
        self._specs: dict[str, MethodSpec] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: MethodSpec) -> None:
        """Register one method; a name may be registered only once."""
        if spec.name in self._specs:
            raise ValueError(f"method {spec.name!r} is already registered")
        self._specs[spec.name] = spec

    def get(self, name: str) -> MethodSpec | None:
        """The spec of `name`, or None."""
        return self._specs.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[MethodSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

