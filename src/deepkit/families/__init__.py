"""Task families: the seam every family plugs into (see ``base.py``) and where they are found (``registry.py``)."""

from deepkit.families.base import Family, Finish, Predictor, Saved, VerbError
from deepkit.families.registry import families, family_of, register_family, tasks

__all__ = ["Family", "Finish", "Predictor", "Saved", "VerbError", "families", "family_of", "register_family", "tasks"]
