"""User-facing errors.

Every mistake a user can make (bad path, bad key, shape mismatch, corrupt file) raises a subclass of
:class:`DeepkitError` whose message names what was received and what was expected. The CLI prints the
message on one line and exits with status 2; ``assert`` is kept for internal invariants only.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DeepkitError(Exception):
    """Base class of every error caused by user input."""

    exit_code = 2


class ConfigError(DeepkitError):
    """A recipe, override or argument is unknown or has the wrong type."""


class DataError(DeepkitError):
    """A data file is missing, truncated, corrupt, empty or holds values the model cannot use."""


class ShapeError(DeepkitError):
    """Data and model do not fit together (channels, image size, number of features or classes)."""


class CheckpointError(DeepkitError):
    """A checkpoint or weights file is missing, unsafe to load, or does not fit the model."""


class ExportError(DeepkitError):
    """A run cannot be exported in the format asked for (its family does not support it yet, or the exporter
    failed), or an exported model disagrees with the eager one."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or a list of valid choices."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    if close:
        return f" (did you mean '{close[0]}'?)"
    shown = ", ".join(choices[:12]) + (", ..." if len(choices) > 12 else "")
    return f" (valid: {shown})"
