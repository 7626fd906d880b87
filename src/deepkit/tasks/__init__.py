"""What is optimized: loss, metrics, training/validation steps, predict + postprocess."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from deepkit.data.preprocess import Preprocessing
from deepkit.errors import ConfigError, suggest
from deepkit.tasks.autoencoder import AutoencoderTask, AutoencoderTaskConfig
from deepkit.tasks.base import Task
from deepkit.tasks.classification import BinaryClassificationTask, ClassificationTask
from deepkit.tasks.gan import GANTask, GANTaskConfig
from deepkit.tasks.regression import RegressionTask
from deepkit.tasks.vae import VAETask, VAETaskConfig

TASKS = {
    "classification": "multi-class classification: cross-entropy, accuracy, macro-F1, confusion matrix",
    "binary": "binary classification: BCE with logits, accuracy, F1, ROC-AUC",
    "regression": "regression: MSE/MAE/Huber loss, RMSE, MAE, R²",
    "gan": "GAN (dcgan/cdcgan): non-saturating, hinge or WGAN-GP loss, two optimizers, generator EMA",
    "vae": "variational autoencoder (vae/conv_vae): ELBO = reconstruction + KL, KL warm-up, IW log-likelihood",
    "autoencoder": "autoencoder (autoencoder/conv_autoencoder): reconstruction, denoising, anomaly detection",
}
GENERATIVE_MODELS = {
    "gan": ("dcgan", "cdcgan"),
    "vae": ("vae", "conv_vae"),
    "autoencoder": ("autoencoder", "conv_autoencoder"),
}


@dataclass
class TaskConfig:
    name: str = "classification"  # classification, binary, regression
    loss: str = "mse"  # regression: mse, mae, huber
    huber_delta: float = 1.0
    label_smoothing: float = 0.0  # classification; token prediction (LM, MLM, translation): training loss only
    pos_weight: float | None = None  # binary: weight of the positive class in the loss
    gan: GANTaskConfig | None = None  # gan: loss, learning rates, stabilizers (None: defaults)
    vae: VAETaskConfig | None = None  # vae: likelihood, binarization, KL warm-up
    autoencoder: AutoencoderTaskConfig | None = None  # autoencoder: loss, denoising noise, anomaly class


def task_options(cfg: TaskConfig):
    """The options section of a generative task (``cfg.gan``/``cfg.vae``/``cfg.autoencoder``), defaults if unset."""
    defaults = {"gan": GANTaskConfig, "vae": VAETaskConfig, "autoencoder": AutoencoderTaskConfig}[cfg.name]
    return getattr(cfg, cfg.name) or defaults()


def build_task(cfg: TaskConfig, model: nn.Module, preprocessing: Preprocessing) -> Task:
    """The task named by ``cfg.name`` around ``model``."""
    if cfg.name == "classification":
        return ClassificationTask(model, len(preprocessing.class_names or []), preprocessing, cfg.label_smoothing)
    if cfg.name == "binary":
        return BinaryClassificationTask(model, preprocessing, cfg.pos_weight)
    if cfg.name == "regression":
        n = len(preprocessing.target_mean) if preprocessing.target_mean else 1
        return RegressionTask(model, n, preprocessing, cfg.loss, cfg.huber_delta)
    if cfg.name in GENERATIVE_MODELS:
        name = getattr(model, "model_name", None)
        if name is not None and name not in GENERATIVE_MODELS[cfg.name]:
            raise ConfigError(
                f"task '{cfg.name}' needs model {' or '.join(GENERATIVE_MODELS[cfg.name])}, got model.name={name}"
            )
        cls = {"gan": GANTask, "vae": VAETask, "autoencoder": AutoencoderTask}[cfg.name]
        return cls(model, preprocessing, task_options(cfg))
    raise ConfigError(f"unknown task '{cfg.name}'{suggest(cfg.name, TASKS)}")


__all__ = [
    "TASKS",
    "AutoencoderTask",
    "GANTask",
    "VAETask",
    "BinaryClassificationTask",
    "ClassificationTask",
    "RegressionTask",
    "Task",
    "TaskConfig",
    "build_task",
]
