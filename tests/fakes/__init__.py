"""Fakes of external services for the tests."""
