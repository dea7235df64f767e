"""Usage → cost through a versioned price table (pricing.json, shipped with the package).

Cost: uncached input at `input_per_mtok`, cache reads at `cached_input_per_mtok` and cache
writes at `cache_write_per_mtok` (either absent: the input rate), output at `output_per_mtok`.

Lookup order for a call on `provider`/`model`: the exact key, the key with a trailing release
date removed (vendors report `gpt-4o-mini-2024-07-18` for `gpt-4o-mini`), then `provider/*`.
A model without a rate costs 0.0 and is remembered in `unknown()` so callers can warn.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .base import ModelRequest, ModelResponse, Usage

log = logging.getLogger(__name__)

_TABLE_FIELDS = frozenset({"version", "currency", "comment"})
_DATE_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True, slots=True)
class Rate:
    """USD per million input and output tokens, and per million cached-input tokens read or
    written (None: the input rate)."""

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Rate:
        """A rate from a table entry; ValueError or KeyError or TypeError if malformed."""
        def optional(name: str) -> float | None:
            value = entry.get(name)
            return None if value is None else float(value)
        return cls(float(entry["input_per_mtok"]), float(entry["output_per_mtok"]),
                   optional("cached_input_per_mtok"), optional("cache_write_per_mtok"))


_UNSEEN: Any = object()


def _usd(rate: Rate, usage: Usage) -> float:
    # input_tokens includes the cached ones; each part at its own rate.
    read = min(usage.cache_read_tokens, usage.input_tokens)
    write = min(usage.cache_write_tokens, usage.input_tokens - read)
    read_rate = rate.input_per_mtok if rate.cached_input_per_mtok is None \
        else rate.cached_input_per_mtok
    write_rate = rate.input_per_mtok if rate.cache_write_per_mtok is None \
        else rate.cache_write_per_mtok
    total = ((usage.input_tokens - read - write) * rate.input_per_mtok
             + read * read_rate + write * write_rate
             + usage.output_tokens * rate.output_per_mtok) / 1_000_000
    # Rounded so that sums in snapshots do not drift in the last float digits.
    return round(total, 10)


def shipped_table() -> dict[str, Any]:
    """The pricing.json that ships with the package (a copy: callers may change it)."""
    return copy.deepcopy(_shipped())


def _checked_rates(models: Mapping[str, Any]) -> dict[str, Rate]:
    """The rates of a table's models, checked."""
    rates = {}
    for key, entry in models.items():
        if "/" not in key:
            raise ValueError(f"pricing: model key {key!r} must be 'provider/model'")
        try:
            rates[key] = Rate.from_entry(entry)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"pricing: {key!r} needs numeric input_per_mtok and "
                             f"output_per_mtok (and cached_input_per_mtok and "
                             f"cache_write_per_mtok, if given)") from exc
    return rates


@functools.cache
def _shipped_rates() -> dict[str, Rate]:
    """The shipped table's rates (never changed: a Pricing only reads its rates)."""
    return _checked_rates(_shipped()["models"])


@functools.cache
def _shipped() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("pricing.json").read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


class Pricing:
    """A price table; immutable after load except for the unknown-model record."""

    def __init__(self, table: Mapping[str, Any], *, owned: bool = False) -> None:
        # `owned`: a table nobody else holds or changes (load's), kept without a copy.
        self._table = dict(table) if owned else copy.deepcopy(dict(table))
        models = self._table.get("models", {})
        # Every pool without overrides shares the shipped rates, read once.
        self._rates: dict[str, Rate] = _shipped_rates() if models is _shipped()["models"] \
            else _checked_rates(models)
        self._unknown: set[str] = set()
        self._found: dict[tuple[str, str], Rate | None] = {}  # lookups done, by provider/model

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | str | Path | None = None) -> Pricing:
        """The shipped table, its models replaced or extended by overrides (dict or JSON file)."""
        # Overrides are a full table ({"version"?, "currency"?, "models": {...}}) or just
        # the models mapping. Only top-level keys are replaced below, so a shallow copy of
        # the shipped table (parsed once per process) is enough.
        table = dict(_shipped())
        if overrides is None:
            return cls(table, owned=True)
        if isinstance(overrides, str | Path):
            overrides = json.loads(Path(overrides).read_text(encoding="utf-8"))
        if not isinstance(overrides, Mapping):
            raise ValueError("pricing overrides must be a JSON object")
        if "models" in overrides:
            models = overrides["models"]
        else:
            models = {k: v for k, v in overrides.items() if k not in _TABLE_FIELDS}
        if not isinstance(models, Mapping):
            raise ValueError("pricing overrides: 'models' must be an object")
        if models or "version" in overrides:
            table["models"] = {**table["models"], **{k: dict(v) for k, v in models.items()}}
            # A changed table must not pass for the shipped one in a run's snapshot.
            table["version"] = str(overrides.get("version", f"{table['version']}+overrides"))
        if "currency" in overrides:
            table["currency"] = str(overrides["currency"])
        return cls(table, owned=True)

    @property
    def version(self) -> str:
        """The table's version label."""
        return str(self._table.get("version", ""))

    def rate(self, provider: str, model: str) -> Rate | None:
        """The rate for provider/model by the lookup order above, or None."""
        found = self._found.get((provider, model), _UNSEEN)
        if found is _UNSEEN:  # every call is priced: the lookup is done once per model
            found = None
            for key in (f"{provider}/{model}", f"{provider}/{_DATE_SUFFIX.sub('', model)}",
                        f"{provider}/*"):
                if key in self._rates:
                    found = self._rates[key]
                    break
            self._found[(provider, model)] = found
        return found

    def known(self, provider: str, model: str) -> bool:
        """True when the table prices provider/model."""
        return self.rate(provider, model) is not None

    def cost(self, provider: str, model: str, usage: Usage) -> float:
        """USD for `usage`; 0.0 (and recorded in `unknown()`) for an unpriced model."""
        rate = self.rate(provider, model)
        if rate is None:
            key = f"{provider}/{model}"
            if key not in self._unknown:
                self._unknown.add(key)
                log.warning("pricing %s has no rate for %s: its calls are costed at 0",
                            self.version, key)
            return 0.0
        return _usd(rate, usage)

    def price(self, request: ModelRequest, response: ModelResponse) -> ModelResponse:
        """`response` with cost_usd and cost_known set, by requested then reported model."""
        for model in dict.fromkeys((request.model, response.model)):
            rate = self.rate(response.provider, model) if model else None
            if rate is not None:
                cost = _usd(rate, response.usage)
                if cost == response.cost_usd and response.cost_known:
                    return response  # a free model's answer needs no copy (every scripted call)
                return response.model_copy(update={"cost_usd": cost, "cost_known": True})
        self.cost(response.provider, request.model or response.model, response.usage)
        return response.model_copy(update={"cost_usd": 0.0, "cost_known": False})

    def unknown(self) -> list[str]:
        """provider/model keys that were costed at 0 for want of a rate."""
        return sorted(self._unknown)

    def to_dict(self) -> dict[str, Any]:
        """The whole table, for a run's config/pricing.json."""
        return copy.deepcopy(self._table)
