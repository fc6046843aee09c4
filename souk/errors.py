"""Errors souk raises: each names the problem and says what to do about it.

Catch `SoukError` to handle any of them; the CLI turns them into a one-line message and exit code 2.
"""
from __future__ import annotations


class SoukError(Exception):
    """Base class of every error souk raises on purpose."""


class ConfigError(SoukError):
    """A config or schema file is malformed; the message names the key."""


class Unavailable(ConfigError):
    """A part cannot run on this index yet (no vector field, no fitted model); optional parts are skipped."""


class SchemaError(ConfigError):
    """A schema declares something impossible (unknown kind, two id fields, ...)."""


class DocumentError(SoukError):
    """One or more records were rejected; `problems` lists (line, field, message)."""

    def __init__(self, message: str, problems: list[tuple[int, str, str]] | None = None):
        super().__init__(message)
        self.problems = problems or []


class QueryError(SoukError):
    """A query, filter or sort expression cannot be understood."""


class IndexStateError(SoukError):
    """The index directory is missing, locked, of another format, or inconsistent."""


class DatasetError(SoukError):
    """A dataset (BEIR directory, qrels, run file) is missing or malformed."""


class ModelError(SoukError):
    """A model is missing, of the wrong kind, or cannot run on this machine."""


class ModelUnavailable(ModelError, Unavailable):
    """A model exists but cannot be used (damaged, unsealed, refused by its loader): its stage is off; optional
    stages are skipped with a note and keyword search is unaffected. The message names the model, never a path."""
