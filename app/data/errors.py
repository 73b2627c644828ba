"""Errors the user fixes: bad input data or an unusable dataset artifact (the CLI prints them as one line)."""

from __future__ import annotations


class DataError(ValueError):
    """Input data or a dataset artifact is unusable; the message names the file (and row/field where known)."""


class RowError(ValueError):
    """One input row is invalid: carries the field and the reason; the row goes to quarantine, the run goes on."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
