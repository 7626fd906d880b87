"""deepkit: a deep-learning toolkit on PyTorch. One CLI, one Trainer, every classic architecture.

>>> import deepkit
>>> result = deepkit.train("digits_cnn", "trainer.epochs=3")   # doctest: +SKIP
>>> deepkit.load(result.run_dir).predict(images)                # doctest: +SKIP

The names below are imported on first use (PEP 562), so ``import deepkit`` and ``deepkit --help`` stay quick.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from deepkit.version import __version__

_WHERE = {
    "train": "deepkit.api",
    "load": "deepkit.api",
    "evaluate": "deepkit.api",
    "RunResult": "deepkit.api",
    "DeepkitError": "deepkit.errors",
    "Predictor": "deepkit.families",
    "families": "deepkit.families",
    "register_family": "deepkit.families",
    "create_model": "deepkit.models",
    "list_models": "deepkit.models",
    "register_model": "deepkit.models",
    "Trainer": "deepkit.train",
}

if TYPE_CHECKING:
    from deepkit.api import RunResult, evaluate, load, train
    from deepkit.errors import DeepkitError
    from deepkit.families import Predictor, families, register_family
    from deepkit.models import create_model, list_models, register_model
    from deepkit.train import Trainer

__all__ = [
    "DeepkitError",
    "Predictor",
    "RunResult",
    "Trainer",
    "__version__",
    "create_model",
    "evaluate",
    "families",
    "list_models",
    "load",
    "register_family",
    "register_model",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
    else:
        try:  # a submodule: deepkit.weights, deepkit.data, ...
            value = importlib.import_module(f"deepkit.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module 'deepkit' has no attribute '{name}'") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


class _Package(types.ModuleType):
    """``deepkit.train`` is the function, although ``deepkit/train/`` is also a subpackage: importing the
    subpackage (``from deepkit.train import Trainer``) binds it as an attribute of its parent, and that binding is
    skipped here, so the function (imported on first use) keeps the name."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _WHERE and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
