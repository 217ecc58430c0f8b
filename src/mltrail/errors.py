"""The one exception type users see: what went wrong, and what to do about it."""

from __future__ import annotations


class MltrailError(Exception):
    """An error caused by input or environment, reported without a traceback by the CLI.

    ``hint`` says what the user can do about it (set a param, point at a local copy, ...).
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\n  hint: {self.hint}"


class ParamsError(MltrailError):
    """params.yaml (or a --set override) is invalid."""


class DataError(MltrailError):
    """A dataset could not be fetched, verified or read."""
