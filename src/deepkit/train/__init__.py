"""Trainer, callbacks, optimizers and schedules, checkpoints."""

from deepkit.train.callbacks import Callback, CSVLogger, EarlyStopping, ModelCheckpoint, ProgressLogger
from deepkit.train.optim import OptimizerConfig, Schedule, ScheduleConfig, build_optimizer
from deepkit.train.trainer import EarlyStoppingConfig, LoopState, Trainer, TrainerConfig, TrainingDiverged

__all__ = [
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "EarlyStoppingConfig",
    "LoopState",
    "ModelCheckpoint",
    "OptimizerConfig",
    "ProgressLogger",
    "Schedule",
    "ScheduleConfig",
    "Trainer",
    "TrainerConfig",
    "TrainingDiverged",
    "build_optimizer",
]
