"""Model families, one per file, each registered by name."""

from deepkit.models import (  # noqa: F401  (registers the models)
    alexnet,
    audio_cnn,
    audio_crnn,
    autoencoder,
    autorec,
    bert,
    cnn,
    ctc_conformer,
    ctc_lstm,
    deberta,
    deeplabv3,
    duration_tts,
    faster_rcnn,
    fcn,
    fcos,
    gan,
    gcmc,
    gpt2,
    mf,
    mlp,
    ncf,
    resnet,
    retinanet,
    rnn,
    roberta,
    sasrec,
    seq2seq,
    t5,
    two_tower,
    unet,
    vgg,
    wav2vec2,
    word2vec,
)
from deepkit.models.base import Classifier, Recommender
from deepkit.models.registry import create_model, get_entry, list_models, model_config, register_model

__all__ = ["Classifier", "Recommender", "create_model", "get_entry", "list_models", "model_config", "register_model"]

# create_model(name, weights=HF_DIR) reads Hugging Face checkpoint directories: the reader registers itself
from deepkit.interop import hf as _hf  # noqa: E402, F401
