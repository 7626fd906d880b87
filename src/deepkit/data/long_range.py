"""Long-range synthetic tasks that expose vanishing gradients (Hochreiter & Schmidhuber 1997, experiment 4).

Adding problem: each step carries a random value in [0, 1) and a marker; exactly two steps are marked, one in
the first half and one in the second. The target is the sum of the two marked values. Predicting the mean (1.0)
gives MSE 1/6 ≈ 0.167; solving it needs information from ≥ length/2 steps back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from deepkit.data.loader import TensorLoader
from deepkit.data.module import LoaderData
from deepkit.errors import ConfigError

LONG_RANGE = {"adding": "the adding problem (synthetic): sum of two marked values in a long sequence"}

ADDING_BASELINE_MSE = 1 / 6  # variance of the sum of two U(0, 1) values


@dataclass
class LongRangeConfig:
    """The ``data.long_range`` recipe section."""

    length: int = 100  # time steps per sequence
    num_train: int = 20000
    num_val: int = 1000
    num_test: int = 2000
    tolerance: float = 0.04  # a prediction counts as correct within this absolute error


@dataclass
class LongRangeDataConfig:
    """The ``data`` section of a long-range recipe."""

    name: str = "adding"
    batch_size: int = 64
    eval_batch_size: int = 1024
    split_seed: int = 0  # fixes the sequences of every split, independently of the training seed
    long_range: LongRangeConfig = field(default_factory=LongRangeConfig)


@dataclass
class LongRangeData(LoaderData):
    """The splits' tensors: inputs (N, length, 2), targets (N, 1)."""

    tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


def long_range_data(cfg: LongRangeDataConfig) -> LongRangeData:
    lr = cfg.long_range
    sizes = {"train": lr.num_train, "val": lr.num_val, "test": lr.num_test}
    # fixed seeds per split (independent of the training seed), so every model sees the same sequences
    splits = {k: adding_problem(n, lr.length, seed=cfg.split_seed * 10 + i) for i, (k, n) in enumerate(sizes.items())}

    def make(split: str, shuffle: bool, seed: int) -> TensorLoader:
        x, y = splits[split]
        bs = cfg.batch_size if split == "train" else cfg.eval_batch_size
        return TensorLoader(x, y, bs, shuffle=shuffle, seed=seed)

    counts = {k: len(v[0]) for k, v in splits.items()}
    return LongRangeData(make, counts, cfg.batch_size, cfg.eval_batch_size, tensors=splits)


def adding_problem(n: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` sequences: inputs (n, length, 2) = (value, marker), targets (n, 1)."""
    if length < 4:
        raise ConfigError(f"data.long_range.length must be >= 4, got {length}")
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(n, length, generator=g)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=g)
    second = torch.randint(half, length, (n,), generator=g)
    marker = torch.zeros(n, length)
    rows = torch.arange(n)
    marker[rows, first] = 1.0
    marker[rows, second] = 1.0
    target = values[rows, first] + values[rows, second]
    return torch.stack([values, marker], -1), target[:, None]


def input_gradient_norms(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """‖∂L/∂x_t‖ averaged over the batch, for every time step t (T,).

    The loss depends on the last step only, so the gradient reaching step t has passed through T - t recurrent
    Jacobians: it decays exponentially in a vanilla RNN (vanishing gradient) and much less in an LSTM/GRU.
    The input gradient is used because torch's fused RNN kernels do not expose intermediate hidden states.
    """
    was_training = model.training
    model.eval()
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        loss = torch.nn.functional.mse_loss(model(x), y)
        (grad,) = torch.autograd.grad(loss, x)
    model.train(was_training)
    return grad.norm(dim=-1).mean(0).detach()  # (T,)
