"""Option helpers shared by the CLI and the families' verbs."""

from __future__ import annotations

from typing import Any

DEBUG_EPILOG = "Add --debug for a full traceback on errors."


def flag(*names: str, help: str) -> Any:
    """A boolean option shown as a flag (``--json``), not as ``--json <bool>``."""
    import typer

    return typer.Option(*names, help=help, metavar="")
