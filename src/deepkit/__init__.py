"""deepkit: a deep-learning toolkit on PyTorch. One CLI, one Trainer, every classic architecture.

>>> import deepkit
>>> result = deepkit.train("digits_cnn", "trainer.epochs=3")   # doctest: +SKIP
>>> deepkit.load(result.run_dir).predict(images)                # doctest: +SKIP
"""

from deepkit.api import RunResult, evaluate, load, train  # noqa: E402
from deepkit.errors import DeepkitError  # noqa: E402
from deepkit.families import Predictor, families, register_family  # noqa: E402
from deepkit.interop import hf as _hf  # noqa: E402, F401  (create_model reads Hugging Face checkpoint directories)
from deepkit.models import create_model, list_models, register_model  # noqa: E402
from deepkit.train import Trainer  # noqa: E402
from deepkit.version import __version__

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
