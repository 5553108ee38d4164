"""Exceptions whose messages a user can act on; the CLI maps them to exit codes."""

from __future__ import annotations


class LriharError(Exception):
    """A failure the user should read about (exit code 1)."""

    exit_code = 1


class BadInputError(LriharError):
    """Bad input: a missing file, an invalid project file, an unknown name (exit code 2)."""

    exit_code = 2


class ModelLoadError(BadInputError):
    """A model id or directory that cannot be loaded on this machine."""
