"""Model families, one per file, each registered by name."""

from deepkit.models import autoencoder, cnn, gan, mlp  # noqa: F401  (registers the models)
from deepkit.models.base import Classifier
from deepkit.models.registry import create_model, get_entry, list_models, model_config, register_model

__all__ = ["Classifier", "create_model", "get_entry", "list_models", "model_config", "register_model"]
