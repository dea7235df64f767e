"""Errors of the load half of the engine (parse, transform, validate)."""

from __future__ import annotations

from ostinato.protocol.pipelines import Diagnostic


class PipelineSyntaxError(Exception):
    """A pipeline source that cannot be parsed: a message and its 1-based line:col."""

    def __init__(self, message: str, line: int | None = None, col: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.col = col

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        return f"{self.line}:{self.col}: {self.message}"

    def to_diagnostic(self) -> Diagnostic:
        """The error as a `syntax` diagnostic."""
        return Diagnostic(rule="syntax", severity="error", message=self.message,
                          line=self.line, col=self.col)


class ValidationError(Exception):
    """A pipeline with error-severity diagnostics (raised by `validate_or_raise`)."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        errors = [d for d in diagnostics if d.severity == "error"]
        super().__init__("; ".join(f"{d.rule}: {d.message}" for d in errors))
        self.diagnostics = diagnostics
