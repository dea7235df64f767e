"""Regression testing: snapshot replays, their checks and judge, test runs (suites), the
invariant library, stored runs as the invariants read them, and test run reports."""
