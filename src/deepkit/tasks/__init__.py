"""What is optimized: loss, metrics, training/validation steps, predict + postprocess.

Which task a recipe's ``task.name`` builds is its family's business (``deepkit.families``).
"""

from deepkit.tasks.autoencoder import AutoencoderTask
from deepkit.tasks.base import Task
from deepkit.tasks.classification import BinaryClassificationTask, ClassificationTask
from deepkit.tasks.gan import GANTask
from deepkit.tasks.regression import RegressionTask
from deepkit.tasks.vae import VAETask

__all__ = [
    "AutoencoderTask",
    "BinaryClassificationTask",
    "ClassificationTask",
    "GANTask",
    "RegressionTask",
    "Task",
    "VAETask",
]
