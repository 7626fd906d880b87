"""Peer benchmark: the same three models trained by plain PyTorch, deepkit, Lightning and Keras 3 (torch backend).

Models: an MNIST CNN (``simple_cnn``: conv32-BN-ReLU-pool, conv64-BN-ReLU-pool, FC128, 10 classes), an LSTM text
classifier on SST-2 (embedding 128 → LSTM 128 → last state → 2 classes) and a small GPT on Tiny Shakespeare characters
(2 pre-LN blocks, 4 heads, width 128, context 128, tied head). Every framework trains each model for the same number of
steps on the same token ids / pixels, with Adam (lr 1e-3, eps 1e-8), the same batch size and 2 torch threads; one
process, frameworks alternating within each round (the order rotates every round). Every step boundary after
``--warmup`` steps is timestamped; a run's throughput is batch size / its median step time (robust to another job
taking the shared cores for a few steps; the table also shows the total-time mean), and the figures are medians over
``--rounds``. Each framework is used the way its documentation shows for the job:

- plain: a careful hand-written loop over in-memory tensors (shuffled index batches, ``zero_grad(set_to_none=True)``).
- deepkit: ``Trainer.fit(task, data)`` with its own loaders (``TensorLoader``, ``SequenceLoader`` without length
  bucketing so the batches hold the same work, ``LMWindowLoader``).
- Lightning: a ``LightningModule`` (``self.log`` of loss and accuracy) + ``Trainer`` over a ``DataLoader`` of a
  ``TensorDataset`` of the same tensors; default logger in a temp dir, no checkpointing, no progress bar.
- Keras 3: ``KERAS_BACKEND=torch``, a functional model of equivalent layers, ``compile(metrics=["accuracy"])`` and
  ``model.fit`` on NumPy arrays (default ``jit_compile``); timed from batch-begin hooks, which keep Keras'
  asynchronous batch-end callback dispatch. On CPU its LSTM runs Keras' generic step loop over all padded steps
  (masked), not ``torch.nn.LSTM``; its LSTM has one bias vector where torch's has two (4·hidden fewer parameters).

The peers are not deepkit dependencies: install them in a separate environment (benchmarks/requirements-peers.txt).

    python benchmarks/peers.py [--models cnn,lstm,gpt --frameworks plain,deepkit,lightning,keras
                                --steps 60 --warmup 15 --rounds 3]

Last lines, one per model: ``MODEL deepkit/plain=X.XX deepkit/lightning=Y.YY deepkit/keras=Z.ZZ`` (higher = deepkit
faster; ``n/a`` where a framework was not run).
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepkit import create_model
from deepkit.data import from_arrays
from deepkit.data.corpora import language_model_data, text_classification_data
from deepkit.data.sources import data_root, load_mnist
from deepkit.data.text import LMWindowLoader, SequenceLoader, TextConfig, TextData, TextDataConfig
from deepkit.errors import DataError
from deepkit.tasks import ClassificationTask
from deepkit.tasks.sequence import LanguageModelTask, TextClassificationTask
from deepkit.train import Callback, Trainer

FRAMEWORKS = ("plain", "deepkit", "lightning", "keras")
MODELS = ("cnn", "lstm", "gpt")
LR, EPS = 1e-3, 1e-8  # Adam everywhere (Keras' default epsilon is 1e-7; torch's 1e-8)
THREADS = 2

CNN = dict(channels=[32, 64], convs_per_stage=1, global_pool="flatten", input_size=[28, 28], hidden=128)
LSTM = dict(embed_dim=128, hidden_size=128)
SST2_MAX_LEN = 56  # the longest SST-2 training text has 56 word tokens: nothing is truncated
GPT_BLOCK = 128
GPT = dict(n_layer=2, n_head=4, n_embd=128, n_positions=GPT_BLOCK, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
BATCH = {"cnn": 128, "lstm": 64, "gpt": 32}


# --- workloads: one data set and one model definition per model, shared by all frameworks -----------------------------
@dataclass
class Workload:
    """The data every framework trains on, and how to build the torch model.

    ``x``/``y``: cnn (N, 1, 28, 28) normalized floats / (N,) labels; lstm (N, T) token ids right-padded with 0 /
    (N,) labels, with ``lengths`` (N,); gpt (N, T) input windows / (N, T) next-token targets.
    ``deepkit_data``: the same data as deepkit's own (a DataBundle or TextData).
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor | None
    batch_size: int
    num_classes: int  # classes, or the vocabulary size for the GPT
    model_kwargs: dict
    deepkit_data: Any
    source: str

    @property
    def tokens_per_sample(self) -> int:
        return self.x.shape[1] if self.name == "gpt" else 1

    def torch_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        if self.name == "cnn":
            return create_model("simple_cnn", in_channels=1, num_classes=self.num_classes, **self.model_kwargs)
        if self.name == "lstm":
            return create_model("lstm_classifier", num_classes=self.num_classes, **self.model_kwargs)
        return create_model("gpt2", **self.model_kwargs)


def cnn_workload(n: int, synthetic: bool = False, batch_size: int = BATCH["cnn"]) -> Workload:
    source = "random 28×28"
    x, y = None, None
    if not synthetic:
        try:
            raw = load_mnist(data_root() / "mnist")
            x, y, source = raw.x[:n], torch.from_numpy(raw.y[:n]), "MNIST"
        except DataError:
            pass
    if x is None:
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)
    # normalized once, exactly as deepkit's data pipeline does; every framework gets these tensors
    data = from_arrays(x, y.numpy(), val_split=0.0, test_split=0.0, batch_size=batch_size, normalize="channel")
    xn, yn = data.train
    return Workload("cnn", xn, yn, None, batch_size, 10, CNN, data, f"{source}, {len(xn)} images")


def _train_only(make: Callable, n: int, **kw) -> TextData:
    """Data with just a train split (no validation pass after the timed steps)."""
    return TextData(lambda split, shuffle, seed: make(shuffle, seed), {"train": n}, **kw)


def lstm_workload(
    n: int, synthetic: bool = False, max_len: int = SST2_MAX_LEN, batch_size: int = BATCH["lstm"]
) -> Workload:
    seqs, y, vocab, source = None, None, 10_000, "synthetic tokens"
    if not synthetic:
        try:
            cfg = TextDataConfig(name="sst2", val_split=0.05, text=TextConfig(vocab_size=vocab, max_len=max_len))
            bundle = text_classification_data(cfg)
            ld = bundle.loader("train", shuffle=False)
            seqs = [ld.flat[ld.offsets[i] : ld.offsets[i + 1]].tolist() for i in range(min(n, len(ld.lengths)))]
            y, vocab, source = ld.targets[: len(seqs)], bundle.tokenizer.vocab_size, "SST-2 (word tokens)"
        except DataError:
            pass
    if seqs is None:
        g = torch.Generator().manual_seed(0)
        lens = torch.randint(1, max_len + 1, (n,), generator=g).tolist()
        seqs = [torch.randint(4, vocab, (k,), generator=g).tolist() for k in lens]
        y = torch.randint(0, 2, (n,), generator=g)
    lengths = torch.tensor([len(s) for s in seqs])
    tokens = torch.zeros(len(seqs), max_len, dtype=torch.long)  # (N, T), pad id 0 (deepkit's and Keras' mask value)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.tensor(s)
    bs = batch_size
    data = _train_only(
        lambda shuffle, seed: SequenceLoader(seqs, y, bs, shuffle=shuffle, bucket=False, seed=seed),
        len(seqs),
        class_names=["negative", "positive"],
    )
    kw = dict(LSTM, vocab_size=vocab)
    return Workload("lstm", tokens, y, lengths, bs, 2, kw, data, f"{source}, {len(seqs)} texts padded to {max_len}")


def gpt_workload(n: int, synthetic: bool = False, block: int = GPT_BLOCK, batch_size: int = BATCH["gpt"]) -> Workload:
    stream, vocab, source = None, 69, "synthetic characters"
    if not synthetic:
        try:
            cfg = TextDataConfig(
                name="tinyshakespeare",
                val_split=0.1,
                text=TextConfig(tokenizer="char", vocab_size=None, lowercase=False, block_size=block),
            )
            bundle = language_model_data(cfg)
            stream = bundle.loader("train", shuffle=False).stream
            vocab, source = bundle.tokenizer.vocab_size, "Tiny Shakespeare (characters)"
        except DataError:
            pass
    if stream is None:
        stream = torch.randint(4, vocab, ((n + 1) * block + 1,), generator=torch.Generator().manual_seed(0))
    stream = stream[: n * block + 1]
    starts = torch.arange(0, len(stream) - block, block)  # non-overlapping windows, (N, T + 1)
    w = stream[starts[:, None] + torch.arange(block + 1)]
    bs = batch_size
    data = _train_only(lambda shuffle, seed: LMWindowLoader(stream, block, bs, shuffle=shuffle, seed=seed), len(w))
    kw = dict(GPT, vocab_size=vocab, n_positions=block)
    return Workload("gpt", w[:, :-1], w[:, 1:], None, bs, vocab, kw, data, f"{source}, {len(w)} windows of {block}")


WORKLOADS = {"cnn": cnn_workload, "lstm": lstm_workload, "gpt": gpt_workload}


def torch_loss(wl: Workload, model: nn.Module, x, y, lengths=None) -> torch.Tensor:
    if wl.name == "lstm":
        return F.cross_entropy(model(x, lengths), y)
    out = model(x)
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class Result:
    """One timed run: the timestamps of the step boundaries after warm-up, and the model's trainable parameters."""

    times: list[float]  # perf_counter at the end of step warmup, warmup + 1, ..., the last step
    batch_size: int
    params: int

    @property
    def rate(self) -> float:
        """Steady-state samples/s: batch size / median step time. The median shrugs off the bursts of a shared
        machine (another job taking the cores for a few steps) that a total-time mean would charge to one framework."""
        steps = np.diff(self.times)
        return self.batch_size / float(np.median(steps))

    @property
    def mean_rate(self) -> float:
        """samples/s over the whole timed span (total time; includes periodic work such as logging every N steps)."""
        return self.batch_size * (len(self.times) - 1) / (self.times[-1] - self.times[0])


# --- (a) plain PyTorch ------------------------------------------------------------------------------------------------
def run_plain(wl: Workload, steps: int, warmup: int, seed: int = 0) -> Result:
    """What a careful user writes by hand: tensors in memory, shuffled index batches, no DataLoader collation."""
    model = wl.torch_model(seed)
    opt = torch.optim.Adam(model.parameters(), lr=LR, eps=EPS)
    model.train()
    g = torch.Generator().manual_seed(seed)
    bs, nb = wl.batch_size, len(wl.x) // wl.batch_size
    perm, times = torch.randperm(len(wl.x), generator=g), []
    for step in range(steps + warmup):
        if step == warmup:
            times.append(time.perf_counter())
        b = step % nb
        if b == 0 and step:
            perm = torch.randperm(len(wl.x), generator=g)
        idx = perm[b * bs : (b + 1) * bs]
        lengths = wl.lengths[idx] if wl.lengths is not None else None
        loss = torch_loss(wl, model, wl.x[idx], wl.y[idx], lengths)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if times:
            times.append(time.perf_counter())  # the CPU runs each op synchronously: no device sync needed
    float(loss.detach())
    return Result(times, bs, params(model))


# --- (b) deepkit ------------------------------------------------------------------------------------------------------
class StepTimer(Callback):
    """Timestamps at the end of every step from step ``warmup`` on."""

    def __init__(self, warmup: int):
        self.warmup, self.times = warmup, []

    def on_step_end(self, trainer):
        if trainer.state.step >= self.warmup:
            self.times.append(time.perf_counter())


def run_deepkit(wl: Workload, steps: int, warmup: int, seed: int = 0) -> Result:
    model = wl.torch_model(seed)
    if wl.name == "cnn":
        task = ClassificationTask(model, wl.num_classes, wl.deepkit_data.preprocessing)
    elif wl.name == "lstm":
        task = TextClassificationTask(model, wl.num_classes)
    else:
        task = LanguageModelTask(model, wl.num_classes)
    timer = StepTimer(warmup)
    trainer = Trainer(
        epochs=1000,
        max_steps=steps + warmup,
        seed=seed,
        progress="none",
        optimizer={"name": "adam", "lr": LR, "eps": EPS},
        callbacks=[timer],
    )
    trainer.fit(task, wl.deepkit_data)
    return Result(timer.times, wl.batch_size, params(model))


# --- (c) Lightning ----------------------------------------------------------------------------------------------------
def run_lightning(wl: Workload, steps: int, warmup: int, seed: int = 0, num_workers: int = 0) -> Result:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    class LitModel(L.LightningModule):
        def __init__(self, model: nn.Module):
            super().__init__()
            self.model = model

        def training_step(self, batch, batch_idx):
            if wl.name == "lstm":
                x, lengths, y = batch
                out = self.model(x, lengths)
            else:
                (x, y), lengths = batch, None
                out = self.model(x)
            loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
            acc = (out.detach().argmax(-1) == y).float().mean()
            self.log("train_loss", loss)
            self.log("train_acc", acc)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=LR, eps=EPS)

    class Timer(L.Callback):
        def __init__(self):
            self.times: list[float] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step >= warmup:  # global_step counts optimizer steps done
                self.times.append(time.perf_counter())

    L.seed_everything(seed, verbose=False)
    model = wl.torch_model(seed)
    tensors = (wl.x, wl.lengths, wl.y) if wl.name == "lstm" else (wl.x, wl.y)
    loader = DataLoader(TensorDataset(*tensors), batch_size=wl.batch_size, shuffle=True, num_workers=num_workers)
    timer = Timer()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            max_steps=steps + warmup,
            max_epochs=-1,
            default_root_dir=tmp,  # default logger (CSVLogger without tensorboard) writes here
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[timer],
        )
        trainer.fit(LitModel(model), loader)
    return Result(timer.times, wl.batch_size, params(model))


# --- (d) Keras 3 on the torch backend ---------------------------------------------------------------------------------
def import_keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    if keras.backend.backend() != "torch":
        raise RuntimeError(f"Keras runs on the {keras.backend.backend()} backend; set KERAS_BACKEND=torch")
    return keras


def keras_model(wl: Workload, data_format: str = "channels_first"):
    """The same architectures in Keras layers (same sizes, same trainable parameter count except the LSTM bias)."""
    keras = import_keras()
    layers, ops = keras.layers, keras.ops
    if wl.name == "cnn":
        first = data_format == "channels_first"
        axis = 1 if first else -1
        inp = keras.Input((1, 28, 28) if first else (28, 28, 1))
        h = inp
        for c in CNN["channels"]:
            h = layers.Conv2D(c, 3, padding="same", use_bias=False, data_format=data_format)(h)
            h = layers.BatchNormalization(axis=axis, momentum=0.9, epsilon=1e-5)(h)  # torch's BatchNorm2d settings
            h = layers.ReLU()(h)
            h = layers.MaxPooling2D(2, data_format=data_format)(h)
        h = layers.Flatten(data_format=data_format)(h)
        h = layers.Dense(CNN["hidden"], activation="relu")(h)
        return keras.Model(inp, layers.Dense(wl.num_classes)(h))
    if wl.name == "lstm":
        inp = keras.Input((wl.x.shape[1],), dtype="int32")
        h = layers.Embedding(wl.model_kwargs["vocab_size"], LSTM["embed_dim"], mask_zero=True)(inp)
        h = layers.LSTM(LSTM["hidden_size"])(h)  # last state at each text's true length (mask)
        return keras.Model(inp, layers.Dense(wl.num_classes)(h))

    # GPT: token + position embeddings (as in the Keras "miniature GPT" example), pre-LN blocks, tied head
    class TokenAndPosition(layers.Layer):
        def __init__(self, vocab: int, block: int, width: int, **kw):
            super().__init__(**kw)
            self.tok = layers.Embedding(vocab, width)
            self.pos = layers.Embedding(block, width)

        def call(self, ids):
            return self.tok(ids) + self.pos(ops.arange(0, ops.shape(ids)[-1]))

    class TiedHead(layers.Layer):
        def __init__(self, embedding, **kw):
            super().__init__(**kw)
            self.embedding = embedding

        def call(self, h):
            return ops.matmul(h, ops.transpose(self.embedding.embeddings))  # (B, T, V)

    c, heads, block = GPT["n_embd"], GPT["n_head"], wl.x.shape[1]
    inp = keras.Input((block,), dtype="int32")
    emb = TokenAndPosition(wl.num_classes, block, c)
    h = emb(inp)
    for _ in range(GPT["n_layer"]):
        a = layers.LayerNormalization(epsilon=1e-5)(h)
        a = layers.MultiHeadAttention(heads, c // heads)(a, a, use_causal_mask=True)
        h = h + a
        m = layers.LayerNormalization(epsilon=1e-5)(h)
        m = layers.Dense(4 * c, activation=lambda t: keras.activations.gelu(t, approximate=True))(m)
        h = h + layers.Dense(c)(m)
    h = layers.LayerNormalization(epsilon=1e-5)(h)
    return keras.Model(inp, TiedHead(emb.tok)(h))


def keras_params(model) -> int:
    return sum(math.prod(v.shape) for v in model.trainable_weights)


def run_keras(wl: Workload, steps: int, warmup: int, seed: int = 0, data_format: str = "channels_first") -> Result:
    keras = import_keras()
    keras.utils.set_random_seed(seed)
    model = keras_model(wl, data_format)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=LR, epsilon=EPS),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    x = wl.x.numpy()
    if wl.name == "cnn" and data_format == "channels_last":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    elif wl.name != "cnn":
        x = x.astype(np.int32)
    y = wl.y.numpy()
    need = (warmup + steps) * wl.batch_size  # Keras' iterator stops training when it runs out of data
    if len(x) < need:  # repeat the data, as more epochs would
        reps = math.ceil(need / len(x))
        x, y = np.concatenate([x] * reps), np.concatenate([y] * reps)

    class StepTimer(keras.callbacks.Callback):
        # Timestamps at the start of every batch from step `warmup` on (= the end of the previous step) and at the
        # end of training. Batch-begin and epoch hooks keep Keras' asynchronous batch-end callback dispatch, which a
        # batch-end hook would switch off; on_epoch_end runs after Keras has flushed that pending work.
        def __init__(self):
            super().__init__()
            self.times: list[float] = []

        def on_train_batch_begin(self, batch, logs=None):
            if batch >= warmup:
                self.times.append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter())

    timer = StepTimer()
    model.fit(x, y, batch_size=wl.batch_size, epochs=1, steps_per_epoch=warmup + steps, verbose=0, callbacks=[timer])
    return Result(timer.times, wl.batch_size, keras_params(model))


RUNNERS: dict[str, Callable[..., Result]] = {
    "plain": run_plain,
    "deepkit": run_deepkit,
    "lightning": run_lightning,
    "keras": run_keras,
}


# --- report -----------------------------------------------------------------------------------------------------------
def ratio(results: dict[str, list[Result]], other: str) -> str:
    if not results.get("deepkit") or not results.get(other):
        return "n/a"
    return f"{median_rate(results['deepkit']) / median_rate(results[other]):.2f}"


def median_rate(rs: list[Result]) -> float:
    return statistics.median(r.rate for r in rs)


def final_line(model: str, results: dict[str, list[Result]]) -> str:
    return f"{model} " + " ".join(f"deepkit/{o}={ratio(results, o)}" for o in ("plain", "lightning", "keras"))


def table(workloads: dict[str, Workload], all_results: dict[str, dict[str, list[Result]]]) -> str:
    """samples/s and tokens/s: medians over rounds of batch / median step time; mean: of total-time throughput."""
    head = f"{'model':<6} {'framework':<10} {'params':>10} {'samples/s':>10} {'tokens/s':>10} {'mean':>10}"
    rows = [head + "  samples/s per round"]
    for name, res in all_results.items():
        wl = workloads[name]
        for fw, rs in res.items():
            if not rs:
                continue
            m = median_rate(rs)
            tok = f"{m * wl.tokens_per_sample:10.0f}" if wl.name == "gpt" else f"{'-':>10}"
            mean = statistics.median(r.mean_rate for r in rs)
            each = " ".join(f"{r.rate:.0f}" for r in rs)
            rows.append(f"{name:<6} {fw:<10} {rs[0].params:>10,} {m:>10.1f} {tok} {mean:>10.1f}  {each}")
    return "\n".join(rows)


def quiet_peers() -> None:
    """Progress bars are off by configuration; this silences the peers' start-up banners and advice warnings."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for text in ("does not have many workers", "tensorboardX", "logging interval", "LeafSpec"):
        warnings.filterwarnings("ignore", message=f".*{text}.*")


def run_all(
    models: list[str],
    frameworks: list[str],
    steps: int,
    warmup: int,
    rounds: int,
    workloads: dict[str, Workload],
    out=print,
    threads: int = THREADS,
    **runner_kw,
) -> dict[str, dict[str, list[Result]]]:
    """Rounds × models × frameworks; the framework order rotates every round. Returns results[model][framework]."""
    results = {m: {f: [] for f in frameworks} for m in models}
    for r in range(rounds):
        for m in models:
            order = frameworks[r % len(frameworks) :] + frameworks[: r % len(frameworks)]
            line = []
            for fw in order:
                torch.set_num_threads(threads)
                gc.collect()
                res = RUNNERS[fw](workloads[m], steps, warmup, seed=r, **runner_kw.get(fw, {}))
                if torch.get_num_threads() != threads:
                    raise RuntimeError(f"{fw} changed torch's thread count to {torch.get_num_threads()}")
                results[m][fw].append(res)
                line.append(f"{fw} {res.rate:.0f}")
            out(f"round {r + 1} {m}: " + ", ".join(line) + " samples/s")
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    ap.add_argument("--steps", type=int, default=60, help="timed steps per run (after warm-up)")
    ap.add_argument("--warmup", type=int, default=15, help="untimed steps first")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=12_800, help="training samples per model (GPT: windows)")
    ap.add_argument("--synthetic", action="store_true", help="random data of the same shapes (no data sets needed)")
    ap.add_argument("--keras-data-format", default="channels_first", choices=["channels_first", "channels_last"])
    ap.add_argument("--lightning-workers", type=int, default=0, help="DataLoader worker processes for Lightning")
    args = ap.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    frameworks = [f for f in args.frameworks.split(",") if f]
    bad = [m for m in models if m not in MODELS] + [f for f in frameworks if f not in FRAMEWORKS]
    if bad:
        ap.error(f"unknown model/framework {bad}; expected models {MODELS} and frameworks {FRAMEWORKS}")
    torch.set_num_threads(THREADS)
    workloads = {m: WORKLOADS[m](args.samples, args.synthetic) for m in models}
    versions = [f"torch {torch.__version__}"]
    if "lightning" in frameworks:
        import lightning

        versions.append(f"lightning {lightning.__version__}")
    if "keras" in frameworks:
        versions.append(f"keras {import_keras().__version__} (torch backend)")
    print(f"{', '.join(versions)}; {THREADS} threads; Adam lr {LR}; {args.warmup} warm-up + {args.steps} timed steps")
    for m, wl in workloads.items():
        print(f"{m}: {wl.source}; batch {wl.batch_size}")
    quiet_peers()  # after the peers' imports, which set their own log levels
    kw = {"keras": {"data_format": args.keras_data_format}, "lightning": {"num_workers": args.lightning_workers}}
    results = run_all(models, frameworks, args.steps, args.warmup, args.rounds, workloads, **kw)
    print(table(workloads, results))
    for m in models:
        print(final_line(m, results[m]))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
