"""The error a user can act on: the CLI prints its message as one line and exits non-zero."""

from __future__ import annotations


class ShardlineError(Exception):
    """A user-facing failure (bad input, missing file, refused download): say what and why."""
