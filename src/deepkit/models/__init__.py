"""Model families, one per file, each registered by name."""

from deepkit.models import (  # noqa: F401  (registers the models)
    alexnet,
    autoencoder,
    bert,
    cnn,
    deberta,
    deeplabv3,
    faster_rcnn,
    fcn,
    fcos,
    gan,
    gpt2,
    mlp,
    resnet,
    retinanet,
    rnn,
    roberta,
    seq2seq,
    t5,
    unet,
    vgg,
    word2vec,
)
from deepkit.models.base import Classifier
from deepkit.models.registry import create_model, get_entry, list_models, model_config, register_model

__all__ = ["Classifier", "create_model", "get_entry", "list_models", "model_config", "register_model"]

# create_model(name, weights=HF_DIR) reads Hugging Face checkpoint directories: the reader registers itself
from deepkit.interop import hf as _hf  # noqa: E402, F401
