"""Trainer overhead: the same CNN trained by a careful hand-written PyTorch loop and by deepkit's Trainer.

Both run in one process, alternating round by round, on the same data (MNIST if DEEPKIT_DATA has it, else
random tensors of MNIST's shape), the same model init, optimizer and batch size. Throughput is measured in
steady state (after warm-up steps). The plain loop is the fair baseline a careful user writes: tensors in
memory, shuffled index batches, no DataLoader collation.

    python benchmarks/overhead.py [--rounds 5 --steps 150 --warmup 20] [--set speed.channels_last=true ...]

Last line: ``trainer/plain throughput ratio: X.XX`` (target >= 0.98 on CPU).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
import yaml

from deepkit import create_model
from deepkit.data import from_arrays
from deepkit.data.sources import data_root, load_mnist
from deepkit.errors import DataError
from deepkit.tasks import ClassificationTask
from deepkit.train import Callback, Trainer

MODEL = dict(channels=[32, 64], convs_per_stage=1, global_pool="flatten", input_size=[28, 28], hidden=128)


def get_data(n: int):
    try:
        raw = load_mnist(data_root() / "mnist")
        return raw.x[:n], torch.from_numpy(raw.y[:n]), "MNIST"
    except DataError:
        g = torch.Generator().manual_seed(0)
        return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g), "random 28×28"


def make_model(seed: int):
    torch.manual_seed(seed)
    return create_model("simple_cnn", in_channels=1, num_classes=10, **MODEL)


def plain_loop(x, y, batch_size, steps, warmup, seed=0) -> float:
    """What a careful user writes by hand. Returns steady-state samples/s."""
    model = make_model(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=g)
    nb = len(x) // batch_size
    t0 = None
    for step in range(steps + warmup):
        if step == warmup:
            t0 = time.perf_counter()
        b = step % nb
        idx = perm[b * batch_size : (b + 1) * batch_size]
        xb, yb = x[idx], y[idx]
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    float(loss.detach())  # sync, as the trainer does at its end
    return steps * batch_size / (time.perf_counter() - t0)


class StepTimer(Callback):
    def __init__(self, warmup: int):
        self.warmup, self.t0, self.t1, self.samples0, self.samples1 = warmup, 0.0, 0.0, 0, 0

    def on_step_end(self, trainer):
        if trainer.state.step == self.warmup:
            self.t0, self.samples0 = time.perf_counter(), trainer.state.samples
        self.t1, self.samples1 = time.perf_counter(), trainer.state.samples

    def rate(self) -> float:
        return (self.samples1 - self.samples0) / (self.t1 - self.t0)


def trainer_loop(data, batch_size, steps, warmup, seed=0, settings: dict | None = None) -> float:
    model = make_model(seed)
    task = ClassificationTask(model, 10, data.preprocessing)
    timer = StepTimer(warmup)
    Trainer(
        epochs=1000,
        max_steps=steps + warmup,
        seed=seed,
        progress="none",
        log_every=50,
        optimizer={"name": "adamw", "lr": 1e-3},
        callbacks=[timer],
        **(settings or {}),
    ).fit(task, data)
    return timer.rate()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--set", nargs="*", default=[], help="Trainer settings, e.g. speed.channels_last=true")
    args = ap.parse_args()
    settings: dict = {}
    for item in args.set:  # dotted keys -> nested dicts, values parsed as YAML
        key, value = item.split("=", 1)
        *parents, leaf = key.split(".")
        node = settings
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    x, y, source = get_data(12_800)
    # normalize once for both loops, exactly as the Trainer's data pipeline does
    data = from_arrays(x, y.numpy(), val_split=0.0, test_split=0.0, batch_size=args.batch_size, normalize="channel")
    xn, yn = data.train
    print(
        f"data: {source}, {len(xn)} samples; model: simple_cnn {MODEL}; batch {args.batch_size}; "
        f"threads {torch.get_num_threads()}; torch {torch.__version__}"
    )
    plain, ours = [], []
    for r in range(args.rounds):
        plain.append(plain_loop(xn, yn, args.batch_size, args.steps, args.warmup, seed=r))
        ours.append(trainer_loop(data, args.batch_size, args.steps, args.warmup, seed=r, settings=settings))
        print(f"round {r + 1}: plain {plain[-1]:8.0f} samples/s   trainer {ours[-1]:8.0f} samples/s")
    p, t = statistics.median(plain), statistics.median(ours)
    print(f"median: plain {p:.0f} samples/s, trainer {t:.0f} samples/s")
    print(f"trainer/plain throughput ratio: {t / p:.2f}")


if __name__ == "__main__":
    main()
