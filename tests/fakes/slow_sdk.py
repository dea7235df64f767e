"""Imported in place of a provider's module by a test of slow SDK imports
(tests/fakes/slow_import.py says how it waits)."""

from .slow_import import importing

importing()
