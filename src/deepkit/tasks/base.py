"""A Task owns the loss and metrics and turns a batch into ``{"loss": ..., **logs}``.

Per-step logs are tensors; the Trainer sums them on the device and synchronizes only at log intervals.
A task that needs its own step (a GAN with two optimizers) overrides ``training_step``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from deepkit.data.preprocess import Preprocessing
from deepkit.errors import ConfigError

if TYPE_CHECKING:
    import torchmetrics


def check_label_smoothing(value: float) -> float:
    """``task.label_smoothing`` must lie in [0, 1): the weight moved from the true class to a uniform target."""
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"task.label_smoothing must be in [0, 1), got {value}")
    return value


class InferenceModule(nn.Module):
    """``task.postprocess(task.model(pre(x)))``: the path of ``predict`` as one module, for ``deepkit export``."""

    def __init__(self, pre: nn.Module, task: Task):
        super().__init__()
        self.pre, self.model = pre, task.model
        self.postprocess = task.postprocess

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.postprocess(self.model(self.pre(x)).float())


class Task:
    """Base class. Subclasses set ``name`` and implement ``loss``, ``make_metrics`` and ``postprocess``."""

    name = "task"
    monitor = "val_loss"  # default metric for the best checkpoint
    monitor_mode = "min"
    # True: training_step(batch, ctx) does its own backward/step with the optimizers named by optimizer_targets()
    # (ctx is a deepkit.train.manual.ManualStep); the Trainer only iterates, logs, checks and checkpoints.
    manual_optimization = False
    # deepkit doctor: whether the training loss is expected to fall over a run (an adversarial loss need not)
    loss_falls = True
    # deepkit doctor: whether a batch's model input identifies its example, so that the same input in two splits is
    # the same example (leakage). False where inputs repeat by nature: word2vec's (centre, context) pairs, the same
    # words said by many speakers (TTS), a recommender's user and item ids
    inputs_identify_examples = True

    def __init__(self, model: nn.Module, preprocessing: Preprocessing | None = None):
        self.model = model
        self.preprocessing = preprocessing or Preprocessing()
        self._metrics: torchmetrics.MetricCollection | None = None  # made on first use: predicting needs none
        self._device: torch.device | str | None = None
        self.train_transform: Any = None  # e.g. data augmentation: applied to training batches only, on the device

    # --- to override ---------------------------------------------------------------------------------------------
    def make_metrics(self) -> torchmetrics.MetricCollection:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def inference_module(self, pre: nn.Module) -> nn.Module:
        """Raw inputs -> post-processed outputs (``pre``: the input preprocessing as a module), for export."""
        return InferenceModule(pre, self)

    def postprocess(self, outputs: torch.Tensor) -> torch.Tensor:
        """Raw model outputs -> what a user wants (probabilities, values in original units)."""
        return outputs

    def step_logs(self, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cheap per-step training logs besides the loss (kept on the device)."""
        return {}

    def update_metrics(self, outputs: torch.Tensor, target: torch.Tensor) -> None:
        self.metrics.update(outputs, target)

    def optimizer_targets(self) -> dict[str, tuple[nn.Module, dict[str, Any]]]:
        """Manual optimization: ``{name: (module, optimizer-config overrides)}``, one optimizer per name."""
        return {}

    def check_training(self, step: int) -> None:
        """Manual optimization: called at every log interval and checkpoint; raise a DeepkitError to stop a run."""

    def example_labels(self, batch: Any) -> torch.Tensor | None:
        """Optional, for ``deepkit doctor``: the class label of each example of a batch ``(B,)`` (int), or None for
        tasks without classes (the default). Counts classes (imbalance) in the data scan."""
        return None

    def example_outputs(self, batch: Any) -> dict[str, torch.Tensor] | None:
        """Optional, for ``deepkit doctor``: per-example ``{"label": (B,), "loss": (B,), "probs": (B, K)}`` of a batch
        in eval mode (no gradients), or None (the default). Recorded on the validation split at the end of a run:
        out-of-sample probabilities for label-noise detection (confident learning) and per-class recall."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe task state beyond the weights (saved in resumable checkpoints), e.g. a GAN's collapse streaks."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    # --- used by the Trainer -------------------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.train_transform is not None:
            batch = self.train_transform(batch)
        x, y = batch
        out = self.model(x)
        return {"loss": self.loss(out, y), **self.step_logs(out.detach(), y)}

    @torch.no_grad()
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = batch
        out = self.model(x)
        self.update_metrics(out.float(), y)
        return {"loss": self.loss(out.float(), y)}

    @torch.no_grad()
    def predict_step(self, x: torch.Tensor) -> torch.Tensor:
        return self.postprocess(self.model(x).float())

    def compute_metrics(self) -> dict[str, float]:
        return {k: float(v.float().mean()) for k, v in self.metrics.compute().items()}

    def reset_metrics(self) -> None:
        self.metrics.reset()

    def to(self, device: torch.device | str) -> Task:
        self.model.to(device)
        self._device = device
        if self._metrics is not None:
            self._metrics.to(device)
        return self

    @property
    def metrics(self) -> torchmetrics.MetricCollection:
        """The metrics of evaluation (``make_metrics``), made on first use, on the task's device."""
        if self._metrics is None:
            self._metrics = self.make_metrics()
            if self._device is not None:
                self._metrics.to(self._device)
        return self._metrics

    @metrics.setter
    def metrics(self, value: torchmetrics.MetricCollection) -> None:
        self._metrics = value

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}
