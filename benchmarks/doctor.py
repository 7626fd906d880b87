"""The training doctor on planted faults (issue 19): does ``deepkit doctor`` name the fault that was planted?

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/doctor.py --set eval     # the held-out evaluation set (round 4)
    python benchmarks/doctor.py --set dev3                                    # development sets (tune, dev, dev2, dev3)
    python benchmarks/doctor.py --only tune/digits-mlp/lr_high,eval/healthy/digits_mlp --keep runs/doctor

Each case is a small real-data run (scikit-learn's digits, wine, breast-cancer and diabetes tables written as CSV
files, MNIST, SST-2, Tiny Shakespeare) with one fault planted: a learning rate far too high or too low, a deep
sigmoid MLP, an initialization that kills the ReLUs, unnormalized features, a model far too large for its data,
labels flipped on a fraction of examples, test rows copied into training, a 95/5 class split, a slow data loader.
Healthy cases are short versions of bundled recipes of every family. Every run trains with the defaults of
``trainer.record`` and is then read by :func:`deepkit.doctor.diagnose`.

Scoring, fixed before the evaluation runs: a planted case is right when its top finding has at least warning
severity and its kind is the planted fault (or, for the two faults whose mechanism is itself a named diagnosis,
the declared alternative: a deep sigmoid MLP's vanishing gradients come from saturated sigmoids). A healthy case
passes when it has no warning- or error-level finding. Per fault kind: precision (of the runs whose top finding is
that kind, how many were planted with it; healthy runs count) and recall. Label noise, separately: 5% of the
labels of MNIST's training and validation parts flipped; of the flipped validation labels, the share among the
examples the doctor flags, and the share of the validation split flagged.

Sets. ``tune`` (digits and the wine table, seed 0): the rules were first developed on it. ``dev`` (MNIST, SST-2,
Tiny Shakespeare, breast-cancer, diabetes, digits at seed 1): the first held-out evaluation (run once, commit
393547e); its results were seen, so it became a development set, and the rules' second round of fixes used it.
``dev2``: the second held-out set (round 2, run once at commit ea436dc under the name ``eval``); seen since, so a
development set too (its digits-mlp/unnormalized case is corrected: it planted nothing). ``dev3``: round 3's
held-out set (fresh seeds 5/6 and data subsets; fault magnitudes drawn by a written-down recipe with a seeded
generator; 33 planted runs of 10 kinds, 14 healthy runs, the 5% label-noise run), run once under the name ``eval``
(code of aab5f39); seen since. ``eval``: round 4's held-out set, defined and committed before it ran (round 3's
structure, fresh seeds 7/8, data subsets, class pairs and magnitudes drawn by the same recipe, see the comment
above ``eval_cases``; 33 planted runs of 10 kinds, 21 healthy runs of bundled recipes at their own epochs, the 5%
label-noise run), run once after round 4's fix.

Plants are checked: an unnormalized-input case must leave some feature's |mean| or std at least ``FAR`` (3) from
unit scale, in the planted data before training and in the inputs the run recorded, else the benchmark stops
with a ``PlantError`` (round 2's digits case planted nothing). ``--dry`` builds every case's data and model (and
checks the plants it can) without training.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import deepkit
from deepkit.train import Callback

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "out"

# the kinds a case counts as right, besides the planted one (declared before evaluating, see the docstring)
ALSO_RIGHT = {"vanishing_gradients": ("saturated_activations",), "saturated_activations": ("vanishing_gradients",)}


@dataclass
class Case:
    """One run: a recipe with overrides, optional planted data and callbacks, and the fault it carries."""

    name: str
    fault: str | None  # the doctor's kind that should come first; None: healthy
    recipe: str
    overrides: list[str] = field(default_factory=list)
    data: Callable[[Path], Any] | None = None  # planted data (a DataModule), built in a scratch folder
    callbacks: Callable[[], list] | None = None
    split: str = "eval"  # tune | dev | dev2 | dev3 | eval
    noise: dict[str, Any] = field(default_factory=dict)  # label-noise cases: the flipped validation indices
    scored: bool = True  # False: the 5% label-noise measurement, scored on its own (not a planted-fault case)

    @property
    def right(self) -> tuple[str, ...]:
        return (self.fault, *ALSO_RIGHT.get(self.fault, ())) if self.fault else ()


# --- planting ------------------------------------------------------------------------------------------------------
def bundle(name: str = "digits", task: str = "classification", **data: Any):
    """A table/image DataBundle as a recipe's data section would build it."""
    from deepkit.data.build import DataConfig
    from deepkit.families.supervised import build_data

    return build_data(DataConfig(name=name, **data), task)


def sklearn_csv(folder: Path, which: str) -> str:
    """One of scikit-learn's embedded tables (wine, breast_cancer, diabetes) as a CSV file (target last)."""
    import sklearn.datasets as ds

    d = {"wine": ds.load_wine, "breast_cancer": ds.load_breast_cancer}[which]() if which != "diabetes" else None
    if which == "diabetes":
        d = ds.load_diabetes(scaled=False)
    path = folder / f"{which}.csv"
    names = [str(n).replace(" ", "_") for n in d.feature_names]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*names, "target"])
        for row, t in zip(d.data, d.target, strict=True):
            w.writerow([*(f"{v:.6g}" for v in row), f"{t:.6g}" if which == "diabetes" else f"class_{int(t)}"])
    return str(path)


def plant_csv(path: str, plant: str, seed: int) -> str:
    """A planted copy of a CSV table (target last): ``dup`` appends copies of a quarter of the rows (duplicates
    that the random split scatters over train and test), ``imbalance`` keeps the first class and 5% as many of
    the second, ``noise`` gives a fifth of the rows another class, ``big`` multiplies the features by 1000."""
    rng = np.random.default_rng(seed)
    lines = Path(path).read_text().splitlines()
    header, rows = lines[0], [line.split(",") for line in lines[1:]]
    classes = sorted({r[-1] for r in rows})
    if plant == "dup":
        rows += [rows[i] for i in rng.choice(len(rows), len(rows) // 4, replace=False)]
        rows = [rows[i] for i in rng.permutation(len(rows))]
    elif plant == "imbalance":
        major = [r for r in rows if r[-1] == classes[1]]
        minor = [r for r in rows if r[-1] == classes[0]]
        keep = rng.choice(len(minor), round(len(major) * 0.05 / 0.95), replace=False)
        rows = [rows[i] for i in rng.permutation(len(rows)) if rows[i] in major or rows[i] in [minor[k] for k in keep]]
    elif plant == "noise":
        for i in rng.choice(len(rows), len(rows) // 5, replace=False):
            rows[i] = [*rows[i][:-1], rng.choice([c for c in classes if c != rows[i][-1]])]
    elif plant.startswith("big"):  # big: x1000; big122: x122
        factor = float(plant[3:] or 1000)
        rows = [[f"{float(v) * factor:.6g}" for v in r[:-1]] + [r[-1]] for r in rows]
    out = Path(path).with_name(f"{Path(path).stem}-{plant}.csv")
    out.write_text("\n".join([header, *(",".join(r) for r in rows)]) + "\n")
    return str(out)


def flip_labels(b, frac: float, seed: int, splits: tuple[str, ...] = ("train", "val")) -> dict[str, np.ndarray]:
    """Give ``frac`` of each split's examples a different, random class (in place); returns the flipped indices."""
    rng = np.random.default_rng(seed)
    k = len(b.preprocessing.class_names)
    flipped = {}
    for split in splits:
        x, y = getattr(b, split)
        n = len(y)
        idx = np.sort(rng.choice(n, round(frac * n), replace=False))
        shift = torch.from_numpy(rng.integers(1, k, len(idx)))
        y[torch.from_numpy(idx)] = (y[torch.from_numpy(idx)] + shift) % k
        flipped[split] = idx
    return flipped


def copy_test_into_train(b, frac: float, seed: int):
    """Append ``frac`` of the test rows (inputs and labels) to the training split."""
    xt, yt = b.test
    idx = torch.from_numpy(np.random.default_rng(seed).choice(len(yt), round(frac * len(yt)), replace=False))
    x, y = b.train
    b.train = (torch.cat([x, xt[idx]]), torch.cat([y, yt[idx]]))
    return b


def imbalance(b, minority: int, share: float, seed: int):
    """Keep all of the other classes and only enough of class ``minority`` to make it ``share`` of every split."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val", "test"):
        part = getattr(b, split)
        if part is None:
            continue
        x, y = part
        y_np = y.numpy()
        rest = np.flatnonzero(y_np != minority)
        mino = np.flatnonzero(y_np == minority)
        keep_n = max(2, round(len(rest) * share / (1 - share)))
        keep = np.sort(np.concatenate([rest, rng.choice(mino, min(keep_n, len(mino)), replace=False)]))
        setattr(b, split, (x[keep], y[keep]))
    return b


def scale_inputs(b, factor: float):
    """Multiply every split's inputs (pixels in [0, 1] -> 0..255, as when the division is forgotten)."""
    for split in ("train", "val", "test"):
        part = getattr(b, split)
        if part is not None:
            setattr(b, split, (part[0] * factor, part[1]))
    return b


class PlantError(RuntimeError):
    """A planted fault that did not change the data: the case is broken, not the doctor (stops the benchmark)."""


FAR = 3.0  # an unnormalized plant must leave some feature's |mean| or std at least this far from unit scale


def check_unnormalized_plant(name: str, mean: Any, std: Any, where: str) -> None:
    """Fail loudly unless the inputs are far from zero-mean/unit-scale: max(|mean|, std) over the features or
    channels at least ``FAR`` (round 2's dev2/digits-mlp/unnormalized planted nothing: the digits loader had
    already scaled its pixels to [0, 1])."""
    scale = float(np.nanmax(np.maximum(np.abs(np.asarray(mean, float)), np.asarray(std, float))))
    if not scale >= FAR:
        raise PlantError(
            f"{name}: the unnormalized plant left the inputs near unit scale ({where}: largest |mean| or std "
            f"{scale:.3g} < {FAR}); the case plants no fault"
        )


def bundle_input_stats(b) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (tables) or per-channel (images) mean and std of a bundle's training inputs."""
    x = b.train[0].float()
    dims = [0, *range(2, x.dim())] if x.dim() > 2 else [0]
    return x.mean(dims).numpy(), x.std(dims).numpy()


class SlowLoader:
    """A training loader that takes ``delay`` seconds more for every batch (decoding files, a slow transform)."""

    def __init__(self, inner: Any, delay: float):
        self.inner, self.delay = inner, delay

    def __iter__(self):
        for batch in self.inner:
            time.sleep(self.delay)
            yield batch

    def __len__(self) -> int:
        return len(self.inner)

    def to(self, device):
        self.inner = self.inner.to(device)
        return self

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def slow_loader(b, delay: float):
    """The bundle with a training loader that waits ``delay`` seconds per batch."""
    from deepkit.data.build import DataBundle

    @dataclasses.dataclass
    class SlowBundle(DataBundle):
        delay: float = 0.0

        def loader(self, name, shuffle=None, seed=0, drop_last=False):
            inner = super().loader(name, shuffle, seed, drop_last)
            return SlowLoader(inner, self.delay) if name == "train" else inner

    fields = {f.name: getattr(b, f.name) for f in dataclasses.fields(DataBundle)}
    return SlowBundle(**fields, delay=delay)


class KillReLUs(Callback):
    """A bad initialization: every hidden layer's bias set to ``-bias`` before the first step (the pre-activations
    of standardized inputs sit far below zero, so the ReLUs output 0 and pass no gradient)."""

    def __init__(self, bias: float = 4.0):
        self.bias = bias

    def on_fit_start(self, trainer):
        if trainer.state.step:
            return
        layers = [m for m in trainer.task.model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
        with torch.no_grad():
            for m in layers[:-1]:  # not the head
                if m.bias is not None:
                    m.bias.fill_(-self.bias)


def text_folder(folder: Path, plant: Callable[..., Any], seed: int, start: int = 0) -> str:
    """A copy of SST-2 (train.tsv, dev.tsv) with 8,000 of its training rows from ``start`` on, planted by
    ``plant(rows, rng, dev_rows)``. The tuning set uses rows 8,000-16,000; the evaluation set rows 0-8,000."""
    from deepkit.data.sources import data_root

    src = Path(data_root()) / "sst2"
    rows = [line.split("\t") for line in (src / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    rows = [(r[0], r[1].strip()) for r in rows if len(r) >= 2]
    dev = [line.split("\t") for line in (src / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    rng = np.random.default_rng(seed)
    rows = rows[start : start + 8000]  # a short run: 8,000 training sentences (the file's order is not sorted)
    out = plant(rows, rng, dev) or rows
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.tsv", "w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in out))
    (folder / "dev.tsv").write_text((src / "dev.tsv").read_text(encoding="utf-8"), encoding="utf-8")
    return str(folder)


def sst2_healthy(rows, rng, dev):
    return rows


def sst2_imbalance(rows, rng, dev):
    pos = [r for r in rows if r[1] == "1"]
    neg = [r for r in rows if r[1] == "0"]
    keep = rng.choice(len(neg), round(len(pos) * 0.05 / 0.95), replace=False)
    return pos + [neg[i] for i in sorted(keep)]


# --- the cases -----------------------------------------------------------------------------------------------------
QUIET = ["trainer.progress=none", "trainer.threads=1"]
DIGITS_MLP = ["trainer.epochs=15"]
MNIST_SMALL = ["data.limit=6000"]  # 6,000 MNIST training images (short runs)


def cases() -> list[Case]:
    c: list[Case] = []
    T = "tune"

    # ---- tuning set: digits MLP / CNN and the wine table, seed 0 -------------------------------------------------
    c += [
        Case("tune/digits_mlp", None, "digits_mlp", DIGITS_MLP, split=T),
        Case("tune/digits_cnn", None, "digits_cnn", ["trainer.epochs=8"], split=T),
        Case(
            "tune/digits-mlp/lr_high", "lr_too_high", "digits_mlp", [*DIGITS_MLP, "trainer.optimizer.lr=0.5"], split=T
        ),
        Case("tune/digits-mlp/lr_low", "lr_too_low", "digits_mlp", [*DIGITS_MLP, "trainer.optimizer.lr=1e-6"], split=T),
        Case(
            "tune/digits-mlp/sigmoid_deep",
            "vanishing_gradients",
            "digits_mlp",
            [*DIGITS_MLP, "model.act=sigmoid", "model.depth=8", "model.width=128", "model.dropout=0"],
            split=T,
        ),
        Case(
            "tune/digits-mlp/dead_relu",
            "dead_relus",
            "digits_mlp",
            DIGITS_MLP,
            callbacks=lambda: [KillReLUs()],
            split=T,
        ),
        Case(
            "tune/digits-mlp/unnormalized",
            "unnormalized_inputs",
            "digits_mlp",
            DIGITS_MLP,
            data=lambda d: scale_inputs(bundle("digits", normalize="none", batch_size=32), 255.0),
            split=T,
        ),
        Case(
            "tune/digits-mlp/too_large",
            "overfitting",
            "digits_mlp",
            [
                "trainer.epochs=60",
                "model.width=1024",
                "model.depth=3",
                "model.dropout=0",
                "trainer.optimizer.weight_decay=0",
            ],
            data=lambda d: bundle("digits", normalize="feature", batch_size=32, per_class=20, val_split=0.5),
            split=T,
        ),
        Case(
            "tune/digits-mlp/label_noise",
            "label_noise",
            "digits_mlp",
            DIGITS_MLP,
            data=lambda d: _noisy(bundle("digits", normalize="feature", batch_size=32, val_split=0.25), 0.2, 0),
            split=T,
        ),
        Case(
            "tune/digits-mlp/leakage",
            "leakage",
            "digits_mlp",
            DIGITS_MLP,
            data=lambda d: copy_test_into_train(bundle("digits", normalize="feature", batch_size=32), 0.3, 0),
            split=T,
        ),
        Case(
            "tune/digits-mlp/imbalance",
            "class_imbalance",
            "digits_mlp",
            DIGITS_MLP,
            data=lambda d: imbalance(bundle("digits", normalize="feature", batch_size=32, classes=[3, 8]), 1, 0.05, 0),
            split=T,
        ),
        Case(
            "tune/digits-mlp/slow_loader",
            "input_pipeline",
            "digits_mlp",
            ["trainer.epochs=3"],
            data=lambda d: slow_loader(bundle("digits", normalize="feature", batch_size=32), 0.01),
            split=T,
        ),
        Case("tune/wine", None, "csv_classification", [], data=None, split=T),
        Case("tune/cgan_digits", None, "mnist_cdcgan", ["data.name=digits", "trainer.epochs=3"], split=T),
        Case("tune/vae_digits", None, "mnist_vae", ["data.name=digits", "trainer.epochs=5"], split=T),
        Case("tune/airline", None, "airline_lstm", ["trainer.epochs=60"], split=T),
        Case("tune/lenet_mnist", None, "mnist_lenet5", ["data.limit=3000", "trainer.epochs=3"], split=T),
        Case("tune/word_lm", None, "text_lm", ["data.name=multi30k", "trainer.epochs=1", "data.limit=200000"], split=T),
        Case(
            "tune/sst2",
            None,
            "sst2_bilstm",
            ["trainer.epochs=2", "data.path={sst2}"],
            split=T,
            data=None,
        ),
        Case("tune/wine/unnormalized", "unnormalized_inputs", "csv_classification", ["data.normalize=none"], split=T),
    ]
    c += [dataclasses.replace(case, name=f"dev/{case.name}", split="dev") for case in dev_cases()]
    c += [dataclasses.replace(case, split="dev2") for case in dev2_cases()]
    c += [dataclasses.replace(case, split="dev3") for case in dev3_cases()]
    c += eval_cases()
    return c


BC = "data.path={csv:breast_cancer}"  # scikit-learn's breast-cancer table (569 rows, 30 features) as a CSV
MNIST_MLP = ["data.name=mnist", "data.limit=10000", "data.batch_size=64", "trainer.epochs=3", "model.dropout=0.1"]
SST2 = ["data.path={sst2}", "trainer.epochs=2"]
CHAR = ["data.limit=300000", "trainer.epochs=1", "model.hidden_size=128"]


def mnist(**data: Any):
    return bundle("mnist", **{"normalize": "channel", "batch_size": 64, "limit": 10000, **data})


def dev_cases() -> list[Case]:
    """The development set: MNIST, SST-2, Tiny Shakespeare, the breast-cancer and diabetes tables, and digits at
    other seeds and models. It was the first held-out evaluation (run once at commit 393547e, RESULTS.md); its
    results have been seen, so it is a development set since: the rules' second round of fixes used it."""
    sig = ["model.act=sigmoid", "model.depth=8", "model.width=128", "model.dropout=0"]
    big = ["model.width=1024", "model.depth=3", "model.dropout=0", "trainer.optimizer.weight_decay=0"]
    noise_plant = {"plant": sst2_noise}
    return [
        # learning rate too high
        Case(
            "mnist-cnn/lr_high",
            "lr_too_high",
            "mnist_cnn",
            ["data.limit=10000", "trainer.epochs=1", "trainer.optimizer.lr=1.0"],
        ),
        Case("sst2-bilstm/lr_high", "lr_too_high", "sst2_bilstm", [*SST2, "trainer.optimizer.lr=0.5"]),
        Case("shakespeare-lstm/lr_high", "lr_too_high", "char_shakespeare", [*CHAR, "trainer.optimizer.lr=0.5"]),
        Case("breast-cancer/lr_high", "lr_too_high", "csv_classification", [BC, "trainer.optimizer.lr=3.0"]),
        # learning rate too low
        Case(
            "mnist-cnn/lr_low",
            "lr_too_low",
            "mnist_cnn",
            ["data.limit=10000", "trainer.epochs=1", "trainer.optimizer.lr=1e-6"],
        ),
        Case("sst2-bilstm/lr_low", "lr_too_low", "sst2_bilstm", [*SST2, "trainer.optimizer.lr=1e-6"]),
        Case("shakespeare-lstm/lr_low", "lr_too_low", "char_shakespeare", [*CHAR, "trainer.optimizer.lr=1e-6"]),
        Case("breast-cancer/lr_low", "lr_too_low", "csv_classification", [BC, "trainer.optimizer.lr=1e-6"]),
        # a deep sigmoid MLP
        Case("mnist-mlp/sigmoid_deep", "vanishing_gradients", "digits_mlp", [*MNIST_MLP, *sig]),
        Case(
            "breast-cancer/sigmoid_deep", "vanishing_gradients", "csv_classification", [BC, *sig, "trainer.epochs=30"]
        ),
        Case(
            "digits-mlp-s1/sigmoid_deep",
            "vanishing_gradients",
            "digits_mlp",
            [*DIGITS_MLP, "trainer.seed=1", "model.act=sigmoid", "model.depth=10", "model.width=64", "model.dropout=0"],
        ),
        # an initialization that kills the ReLUs
        Case("mnist-mlp/dead_relu", "dead_relus", "digits_mlp", MNIST_MLP, callbacks=lambda: [KillReLUs(4.0)]),
        Case("breast-cancer/dead_relu", "dead_relus", "csv_classification", [BC], callbacks=lambda: [KillReLUs(4.0)]),
        Case(
            "digits-mlp-s1/dead_relu",
            "dead_relus",
            "digits_mlp",
            [*DIGITS_MLP, "trainer.seed=1", "model.width=128"],
            callbacks=lambda: [KillReLUs(3.0)],
        ),
        # unnormalized features
        Case(
            "mnist-mlp/unnormalized",
            "unnormalized_inputs",
            "digits_mlp",
            MNIST_MLP,
            data=lambda d: scale_inputs(mnist(normalize="none"), 255.0),
        ),
        Case("breast-cancer/unnormalized", "unnormalized_inputs", "csv_classification", [BC, "data.normalize=none"]),
        Case("diabetes/unnormalized", "unnormalized_inputs", "diabetes_regression", ["data.normalize=none"]),
        Case(
            "digits-cnn-s1/unnormalized",
            "unnormalized_inputs",
            "digits_cnn",
            ["trainer.epochs=8", "trainer.seed=1"],
            data=lambda d: scale_inputs(
                bundle("digits", normalize="none", batch_size=32, val_split=0.1, test_split=0.2), 255.0
            ),
        ),
        # a model far too large for its data
        Case(
            "mnist-mlp/too_large",
            "overfitting",
            "digits_mlp",
            ["data.name=mnist", "trainer.epochs=60", *big],
            data=lambda d: mnist(per_class=20, val_split=0.05, limit=None, batch_size=32),
        ),
        Case(
            "breast-cancer/too_large",
            "overfitting",
            "csv_classification",
            [BC, "data.limit=60", "data.val_split=0.3", "trainer.epochs=80", "trainer.early_stopping=null", *big],
        ),
        Case(
            "digits-cnn-s1/too_large",
            "overfitting",
            "digits_cnn",
            [
                "trainer.epochs=60",
                "trainer.seed=1",
                "model.channels=[64,128]",
                "model.hidden=512",
                "model.dropout=0",
                "task.label_smoothing=0",
            ],
            data=lambda d: bundle("digits", batch_size=32, per_class=15, val_split=0.5),
        ),
        # labels flipped on a fraction of the examples
        Case("mnist-mlp/label_noise", "label_noise", "digits_mlp", MNIST_MLP, data=lambda d: _noisy(mnist(), 0.2, 1)),
        # the label-noise bar: 5% of MNIST's training and validation labels flipped (scored on its own)
        Case(
            "mnist-mlp/label_noise_5pct",
            "label_noise",
            "digits_mlp",
            MNIST_MLP,
            data=lambda d: _noisy(mnist(), 0.05, 2),
            scored=False,
        ),
        Case("sst2-bilstm/label_noise", "label_noise", "sst2_bilstm", SST2, noise=noise_plant),
        Case(
            "breast-cancer/label_noise",
            "label_noise",
            "csv_classification",
            ["data.path={csv:breast_cancer:noise}", "data.val_split=0.25"],
        ),
        Case(
            "digits-cnn-s1/label_noise",
            "label_noise",
            "digits_cnn",
            ["trainer.epochs=8", "trainer.seed=1"],
            data=lambda d: _noisy(bundle("digits", batch_size=32, val_split=0.25, test_split=0.2), 0.2, 1),
        ),
        # test rows copied into training
        Case(
            "mnist-mlp/leakage",
            "leakage",
            "digits_mlp",
            MNIST_MLP,
            data=lambda d: copy_test_into_train(mnist(), 0.3, 1),
        ),
        Case("sst2-bilstm/leakage", "leakage", "sst2_bilstm", SST2, noise={"plant": sst2_leak}),
        Case("breast-cancer/leakage", "leakage", "csv_classification", ["data.path={csv:breast_cancer:dup}"]),
        # a 95/5 class split
        Case(
            "mnist-mlp/imbalance",
            "class_imbalance",
            "digits_mlp",
            MNIST_MLP,
            data=lambda d: imbalance(mnist(classes=[4, 9]), 1, 0.05, 1),
        ),
        Case("sst2-bilstm/imbalance", "class_imbalance", "sst2_bilstm", SST2, noise={"plant": sst2_imbalance}),
        Case(
            "breast-cancer/imbalance",
            "class_imbalance",
            "csv_classification",
            ["data.path={csv:breast_cancer:imbalance}"],
        ),
        # a slow data loader
        Case(
            "mnist-mlp/slow_loader",
            "input_pipeline",
            "digits_mlp",
            [*MNIST_MLP[:-2], "trainer.epochs=1"],
            data=lambda d: slow_loader(mnist(), 0.01),
        ),
        Case(
            "digits-cnn-s1/slow_loader",
            "input_pipeline",
            "digits_cnn",
            ["trainer.epochs=2", "trainer.seed=1"],
            data=lambda d: slow_loader(bundle("digits", batch_size=32, val_split=0.1, test_split=0.2), 0.03),
        ),
        Case(
            "breast-cancer/slow_loader",
            "input_pipeline",
            "csv_classification",
            [BC],
            data=lambda d: slow_loader(bundle("csv", path=sklearn_csv(d, "breast_cancer"), batch_size=32), 0.01),
        ),
        # healthy: short versions of bundled recipes of every family
        Case("healthy/digits_mlp-s1", None, "digits_mlp", [*DIGITS_MLP, "trainer.seed=1"]),
        Case("healthy/digits_cnn-s1", None, "digits_cnn", ["trainer.epochs=8", "trainer.seed=1"]),
        Case("healthy/mnist_cnn", None, "mnist_cnn", ["data.limit=10000", "trainer.epochs=2"]),
        Case("healthy/mnist_lenet5", None, "mnist_lenet5", ["data.limit=10000", "trainer.epochs=2"]),
        Case("healthy/breast_cancer", None, "csv_classification", [BC]),
        Case("healthy/diabetes", None, "diabetes_regression", []),
        Case("healthy/sst2_bilstm", None, "sst2_bilstm", SST2),
        Case("healthy/char_shakespeare", None, "char_shakespeare", CHAR),
        Case(
            "healthy/shakespeare_char_gpt",
            None,
            "shakespeare_char_gpt",
            ["data.limit=300000", "trainer.epochs=1", "model.n_layer=2"],
        ),
        Case("healthy/mnist_vae", None, "mnist_vae", ["data.limit=10000", "trainer.epochs=3"]),
        Case("healthy/mnist_dcgan", None, "mnist_dcgan", ["data.limit=5000", "trainer.epochs=2"]),
        Case("healthy/mnist_autoencoder", None, "mnist_autoencoder", ["data.limit=10000", "trainer.epochs=2"]),
        Case("healthy/sunspots_gru", None, "sunspots_gru", ["trainer.epochs=10"]),
        Case("healthy/multi30k_translation", None, "multi30k_translation", ["data.limit=8000", "trainer.epochs=1"]),
        Case("healthy/word2vec_multi30k", None, "word2vec_multi30k", ["data.limit=8000", "trainer.epochs=1"]),
        Case("healthy/multi30k_word_lm", None, "multi30k_word_lm", ["data.limit=8000", "trainer.epochs=1"]),
    ]


# --- the held-out evaluation set (defined and committed before it ran; run once) ------------------------------
# Other seeds (3, 4), other subsets (MNIST per_class draws with split_seed 3, SST-2 rows 16,000-24,000, other
# tables), other fault magnitudes (learning rates, noise fractions 10-30%, leaked shares, class ratios, delays)
# than the tune and dev sets, and healthy runs of every bundled family whose run fits in a few minutes on one
# CPU thread.
MNIST_E = ["data.name=mnist", "data.batch_size=64", "trainer.epochs=3", "model.dropout=0.1", "trainer.seed=3"]
SST2_E = ["data.path={sst2}", "trainer.epochs=3", "trainer.seed=3"]
DIGITS_E = ["trainer.epochs=15", "trainer.seed=3"]
DCNN_E = ["trainer.epochs=8", "trainer.seed=4"]
SST2_ROWS = 16000  # the SST-2 training rows the evaluation's text runs use (tune: 8,000-16,000; dev: 0-8,000)


def mnist_e(**data: Any):
    """8,000 MNIST training images drawn per class (800 each) with split_seed 3; the first evaluation took the
    first 10,000."""
    cfg = {"normalize": "channel", "batch_size": 64, "per_class": 800, "split_seed": 3, "val_split": 0.15}
    return bundle("mnist", **{**cfg, **data})


def digits_e(**data: Any):
    return bundle("digits", **{"normalize": "feature", "batch_size": 32, "split_seed": 3, **data})


def sst2_noise_e(frac: float):
    def plant(rows, rng, dev):
        for i in rng.choice(len(rows), round(frac * len(rows)), replace=False):
            rows[i] = (rows[i][0], "1" if rows[i][1] == "0" else "0")
        return rows

    return plant


def sst2_leak_e(frac: float):
    def plant(rows, rng, dev):
        dev_rows = [(r[0], r[1].strip()) for r in dev if len(r) >= 2]
        picked = rng.choice(len(dev_rows), round(frac * len(dev_rows)), replace=False)
        return rows + [dev_rows[i] for i in picked]

    return plant


sst2_noise = sst2_noise_e(0.2)  # the tune and dev sets: 20% of the labels flipped
sst2_leak = sst2_leak_e(0.3)  # the tune and dev sets: 30% of the dev rows copied into training


def sst2_imbalance_e(share: float):
    def plant(rows, rng, dev):
        pos = [r for r in rows if r[1] == "1"]
        neg = [r for r in rows if r[1] == "0"]
        keep = rng.choice(len(pos), round(len(neg) * share / (1 - share)), replace=False)
        return neg + [pos[i] for i in sorted(keep)]  # positives the minority this time

    return plant


def dev2_cases() -> list[Case]:
    """The second held-out set (round 2, run once at commit ea436dc; then called ``eval``): 34 planted runs of 10
    fault kinds, 17 healthy runs of the 12 families, and the 5% label-noise measurement on MNIST. Its results
    were seen, so it is a development set since (``dev2``); one case is corrected (digits-mlp/unnormalized, whose
    plant did nothing: the digits loader already scales pixels to [0, 1])."""
    sig = ["model.act=sigmoid", "model.dropout=0"]
    big = ["model.width=1024", "model.depth=3", "model.dropout=0", "trainer.optimizer.weight_decay=0"]
    sst = {"start": SST2_ROWS}
    d = "diabetes_regression"
    return [
        # learning rate too high: other rates and models
        Case(
            "dev2/mnist-mlp/lr_high",
            "lr_too_high",
            "digits_mlp",
            [*MNIST_E, "trainer.optimizer.lr=2.0"],
            data=lambda _: mnist_e(),
        ),  # fmt: skip
        Case(
            "dev2/digits-cnn/lr_high",
            "lr_too_high",
            "digits_cnn",
            [*DCNN_E, "trainer.optimizer.lr=0.8"],
            data=lambda _: digits_e(normalize="channel"),
        ),  # fmt: skip
        Case(
            "dev2/sst2-bilstm/lr_high", "lr_too_high", "sst2_bilstm", [*SST2_E, "trainer.optimizer.lr=1.0"], noise=sst
        ),  # fmt: skip
        Case("dev2/diabetes/lr_high", "lr_too_high", d, ["trainer.seed=3", "trainer.optimizer.lr=0.5"]),
        # learning rate too low
        Case(
            "dev2/mnist-mlp/lr_low",
            "lr_too_low",
            "digits_mlp",
            [*MNIST_E, "trainer.optimizer.lr=3e-6"],
            data=lambda _: mnist_e(),
        ),  # fmt: skip
        Case(
            "dev2/digits-cnn/lr_low",
            "lr_too_low",
            "digits_cnn",
            [*DCNN_E, "trainer.optimizer.lr=2e-6"],
            data=lambda _: digits_e(normalize="channel"),
        ),  # fmt: skip
        Case(
            "dev2/sst2-bilstm/lr_low", "lr_too_low", "sst2_bilstm", [*SST2_E, "trainer.optimizer.lr=3e-7"], noise=sst
        ),  # fmt: skip
        Case(
            "dev2/shakespeare-lstm/lr_low",
            "lr_too_low",
            "char_shakespeare",
            [
                "data.limit=200000",
                "trainer.epochs=1",
                "model.hidden_size=96",
                "trainer.seed=3",
                "trainer.optimizer.lr=3e-6",
            ],
        ),  # fmt: skip
        # deep sigmoid MLPs: other depths and widths
        Case(
            "dev2/mnist-mlp/sigmoid_deep",
            "vanishing_gradients",
            "digits_mlp",
            [*MNIST_E, *sig, "model.depth=10", "model.width=96"],
            data=lambda _: mnist_e(),
        ),  # fmt: skip
        Case(
            "dev2/digits-mlp/sigmoid_deep",
            "vanishing_gradients",
            "digits_mlp",
            [*DIGITS_E, *sig, "model.depth=7", "model.width=256"],
            data=lambda _: digits_e(),
        ),  # fmt: skip
        Case(
            "dev2/diabetes/sigmoid_deep",
            "vanishing_gradients",
            d,
            ["trainer.seed=3", *sig, "model.depth=9", "model.width=64"],
        ),  # fmt: skip
        # an initialization that kills the ReLUs: other biases
        Case(
            "dev2/mnist-mlp/dead_relu",
            "dead_relus",
            "digits_mlp",
            [*MNIST_E, "model.width=192"],
            data=lambda _: mnist_e(),
            callbacks=lambda: [KillReLUs(5.0)],
        ),  # fmt: skip
        Case(
            "dev2/digits-cnn/dead_relu",
            "dead_relus",
            "digits_cnn",
            DCNN_E,
            data=lambda _: digits_e(normalize="channel"),
            callbacks=lambda: [KillReLUs(3.0)],
        ),  # fmt: skip
        Case("dev2/diabetes/dead_relu", "dead_relus", d, ["trainer.seed=3"], callbacks=lambda: [KillReLUs(6.0)]),
        # unnormalized inputs: other scales
        Case(
            "dev2/mnist-cnn/unnormalized",
            "unnormalized_inputs",
            "mnist_cnn",
            ["trainer.epochs=1", "trainer.seed=3"],
            data=lambda _: scale_inputs(mnist_e(normalize="none", batch_size=128), 255.0),
        ),  # fmt: skip
        Case(
            "dev2/digits-mlp/unnormalized",
            "unnormalized_inputs",
            "digits_mlp",
            DIGITS_E,
            data=lambda _: scale_inputs(digits_e(normalize="none"), 16.0),
        ),  # fmt: skip  # the raw 0-16 pixel counts (the loader divides by 16; round 2 forgot to undo it)
        Case(
            "dev2/breast-cancer/unnormalized_x1000",
            "unnormalized_inputs",
            "csv_classification",
            ["data.path={csv:breast_cancer:big}", "data.normalize=none", "trainer.seed=3"],
        ),  # fmt: skip
        # a model far too large for its data (validation splits of 150-300 examples)
        Case(
            "dev2/mnist-mlp/too_large",
            "overfitting",
            "digits_mlp",
            ["data.name=mnist", "trainer.epochs=60", "trainer.seed=3", *big],
            data=lambda _: mnist_e(per_class=60, val_split=0.5, batch_size=32),
        ),  # fmt: skip
        Case(
            "dev2/digits-cnn/too_large",
            "overfitting",
            "digits_cnn",
            [
                "trainer.epochs=60",
                "trainer.seed=4",
                "model.channels=[64,128]",
                "model.hidden=512",
                "model.dropout=0",
                "task.label_smoothing=0",
            ],
            data=lambda _: digits_e(normalize="channel", per_class=30, val_split=0.5),
        ),  # fmt: skip
        Case(
            "dev2/digits-mlp/too_large",
            "overfitting",
            "digits_mlp",
            ["trainer.epochs=80", "trainer.seed=3", *big],
            data=lambda _: digits_e(per_class=25, val_split=0.5),
        ),  # fmt: skip
        # labels flipped: other fractions (10-30%)
        Case(
            "dev2/mnist-mlp/label_noise_10",
            "label_noise",
            "digits_mlp",
            MNIST_E,
            data=lambda _: _noisy(mnist_e(), 0.10, 3),
        ),  # fmt: skip
        Case(
            "dev2/digits-cnn/label_noise_15",
            "label_noise",
            "digits_cnn",
            DCNN_E,
            data=lambda _: _noisy(digits_e(normalize="channel", val_split=0.25), 0.15, 4),
        ),  # fmt: skip
        Case(
            "dev2/digits-mlp/label_noise_30",
            "label_noise",
            "digits_mlp",
            DIGITS_E,
            data=lambda _: _noisy(digits_e(val_split=0.25), 0.30, 3),
        ),  # fmt: skip
        Case(
            "dev2/sst2-bilstm/label_noise_10",
            "label_noise",
            "sst2_bilstm",
            SST2_E,
            noise={**sst, "plant": sst2_noise_e(0.10)},
        ),  # fmt: skip
        # the label-noise bar: 5% of MNIST's training and validation labels flipped (scored on its own)
        Case(
            "dev2/mnist-mlp/label_noise_5pct",
            "label_noise",
            "digits_mlp",
            [*MNIST_E, "trainer.epochs=4"],
            data=lambda _: _noisy(mnist_e(per_class=1200, val_split=0.25), 0.05, 4),
            scored=False,
        ),  # fmt: skip
        # test inputs copied into training: other shares
        Case(
            "dev2/mnist-mlp/leakage",
            "leakage",
            "digits_mlp",
            MNIST_E,
            data=lambda _: copy_test_into_train(mnist_e(), 0.15, 3),
        ),  # fmt: skip
        Case(
            "dev2/digits-cnn/leakage",
            "leakage",
            "digits_cnn",
            DCNN_E,
            data=lambda _: copy_test_into_train(digits_e(normalize="channel"), 0.1, 4),
        ),  # fmt: skip
        Case("dev2/sst2-bilstm/leakage", "leakage", "sst2_bilstm", SST2_E, noise={**sst, "plant": sst2_leak_e(0.15)}),
        Case("dev2/diabetes/leakage", "leakage", "csv_regression", ["data.path={csv:diabetes:dup}", "trainer.seed=3"]),
        # class imbalance: other ratios and classes
        Case(
            "dev2/mnist-mlp/imbalance",
            "class_imbalance",
            "digits_mlp",
            MNIST_E,
            data=lambda _: imbalance(mnist_e(classes=[3, 5], per_class=3000), 1, 0.07, 3),
        ),  # fmt: skip
        Case(
            "dev2/digits-cnn/imbalance",
            "class_imbalance",
            "digits_cnn",
            DCNN_E,
            data=lambda _: imbalance(digits_e(normalize="channel", classes=[1, 7]), 0, 0.06, 4),
        ),  # fmt: skip
        Case(
            "dev2/sst2-bilstm/imbalance",
            "class_imbalance",
            "sst2_bilstm",
            SST2_E,
            noise={**sst, "plant": sst2_imbalance_e(0.08)},
        ),  # fmt: skip
        # a slow data loader: other delays
        Case(
            "dev2/mnist-cnn/slow_loader",
            "input_pipeline",
            "mnist_cnn",
            ["trainer.epochs=1", "trainer.seed=3"],
            data=lambda _: slow_loader(mnist_e(batch_size=128), 0.05),
        ),  # fmt: skip
        Case(
            "dev2/digits-mlp/slow_loader",
            "input_pipeline",
            "digits_mlp",
            ["trainer.epochs=4", "trainer.seed=3"],
            data=lambda _: slow_loader(digits_e(), 0.005),
        ),  # fmt: skip
        Case(
            "dev2/diabetes/slow_loader",
            "input_pipeline",
            d,
            ["trainer.seed=3", "trainer.epochs=30"],
            data=lambda d_: slow_loader(bundle("diabetes", task="regression", batch_size=32, split_seed=3), 0.02),
        ),
        # healthy: every family (small, realistic runs)
        Case("dev2/healthy/digits_mlp", None, "digits_mlp", DIGITS_E, data=lambda _: digits_e()),
        Case(
            "dev2/healthy/mnist_cnn",
            None,
            "mnist_cnn",
            ["trainer.epochs=2", "trainer.seed=3"],
            data=lambda _: mnist_e(batch_size=128),
        ),  # fmt: skip
        Case("dev2/healthy/diabetes", None, d, ["trainer.seed=3", "data.split_seed=3"]),
        Case("dev2/healthy/breast_cancer", None, "csv_classification", [BC, "trainer.seed=3", "data.split_seed=3"]),
        Case("dev2/healthy/mnist_vae", None, "mnist_vae", ["data.limit=8000", "trainer.epochs=2", "trainer.seed=3"]),
        Case(
            "dev2/healthy/mnist_dcgan", None, "mnist_dcgan", ["data.limit=4000", "trainer.epochs=2", "trainer.seed=3"]
        ),
        Case("dev2/healthy/sst2_bilstm", None, "sst2_bilstm", SST2_E, noise=sst),
        Case(
            "dev2/healthy/char_shakespeare",
            None,
            "char_shakespeare",
            ["data.limit=200000", "trainer.epochs=1", "model.hidden_size=96", "trainer.seed=3"],
        ),  # fmt: skip
        Case(
            "dev2/healthy/multi30k_translation",
            None,
            "multi30k_translation",
            ["data.limit=6000", "trainer.epochs=1", "trainer.seed=3"],
        ),  # fmt: skip
        Case("dev2/healthy/airline_lstm", None, "airline_lstm", ["trainer.epochs=40", "trainer.seed=3"]),
        Case(
            "dev2/healthy/word2vec_multi30k",
            None,
            "word2vec_multi30k",
            ["data.limit=6000", "trainer.epochs=1", "trainer.seed=3"],
        ),  # fmt: skip
        Case("dev2/healthy/movielens_mf", None, "movielens_mf", ["trainer.epochs=4", "trainer.seed=3"]),
        Case(
            "dev2/healthy/fsdd_digits_cnn",
            None,
            "fsdd_digits_cnn",
            ["trainer.epochs=4", "data.max_clips=1000", "trainer.seed=3"],
        ),  # fmt: skip
        Case(
            "dev2/healthy/fsdd_strings_ctc",
            None,
            "fsdd_strings_ctc",
            [
                "trainer.epochs=2",
                "data.train_strings=400",
                "data.val_strings=100",
                "data.test_strings=100",
                "trainer.seed=3",
            ],
        ),  # fmt: skip
        Case("dev2/healthy/fsdd_tts", None, "fsdd_tts", ["trainer.epochs=3", "trainer.seed=3"]),
        Case(
            "dev2/healthy/scenes_unet",
            None,
            "scenes_unet",
            [
                "trainer.epochs=2",
                "data.scenes.train=600",
                "data.scenes.val=100",
                "data.scenes.test=100",
                "trainer.seed=3",
            ],
        ),  # fmt: skip
        Case(
            "dev2/healthy/scenes_fcos",
            None,
            "scenes_fcos",
            [
                "trainer.epochs=2",
                "data.scenes.train=400",
                "data.scenes.val=100",
                "data.scenes.test=100",
                "trainer.seed=3",
            ],
        ),  # fmt: skip
    ]


# ---- round 3's held-out set (dev3 since it was seen) -----------------------------------------------------------------
# Defined and committed before it ran. Fresh seeds (trainer.seed=5, split_seed=5), fresh data subsets (MNIST: 600
# training images per class drawn with split_seed 5; SST-2 training rows 24,000-32,000; digits split_seed 5).
# Fault magnitudes: round 2 took its magnitudes from the span of the tune and dev sets' values; here that recipe is
# written down and drawn by a seeded generator (numpy default_rng(20261128), in this order, before any run):
#   lr too high  log-uniform [0.3, 3.0]    -> 2.42, 1.42, 1.4, 0.78
#   lr too low   log-uniform [1e-7, 5e-6]  -> 5e-7, 4e-6, 1e-6, 7e-7
#   ReLU-killing bias  uniform [3, 6]      -> 4.1, 5.6, 5.3
#   unnormalized scale log-uniform [100, 1000] (inputs in [0, 1] or raw table values times it) -> 174, 292, 122
#   labels flipped uniform [0.10, 0.30]    -> 0.21, 0.30, 0.29, 0.11
#   test rows copied into training uniform [0.10, 0.30] -> 0.29, 0.19, 0.26
#   minority class share uniform [0.05, 0.08] -> 0.078, 0.074, 0.052
#   loader delay per batch log-uniform [5, 50] ms (default_rng(20261129)) -> 8.3, 7.2, 9.4 ms
# (a first draw of the delay as 1-3x the compute per batch was discarded unused: round 2 drew delays in ms.)
# The deep sigmoid MLPs and the too-large models follow round 2's shapes (depth 8-10; width 1024, 20-40 images
# per class, half of them for validation). Healthy runs: recipes at their own epochs where they fit in about a
# minute on one thread, else at a data size and epoch count where they converge (no truncated run). Families left
# out for time (each takes several minutes on one thread): DCGAN, translation, detection, segmentation, TTS.
# (Read after the run: fsdd_strings_ctc and char_shakespeare were still early in training, not converged; see
# RESULTS.md, third round.)
ROUND_3 = {
    "lr_high": ("2.42", "1.42", "1.4", "0.78"),
    "lr_low": ("5e-7", "4e-6", "1e-6", "7e-7"),
    "relu": (4.1, 5.6, 5.3),
    "scale": (174, 292, 122),
    "flip": (0.21, 0.30, 0.29, 0.11),
    "leak": (0.29, 0.19, 0.26),
    "minority": (([2, 9], 0.078), ([4, 6], 0.074), ([0, 8], 0.052)),
    "delay": (0.0083, 0.0072, 0.0094),
}
HEALTHY_3 = [
    Case(
        "dev3/healthy/digits_mlp",
        None,
        "digits_mlp",
        ["trainer.epochs=15", "trainer.seed=5"],
        data=lambda _: digits_at(5),
    ),
    Case("dev3/healthy/digits_cnn", None, "digits_cnn", ["trainer.epochs=15", "trainer.seed=5"]),
    Case("dev3/healthy/breast_cancer", None, "csv_classification", [BC, "trainer.seed=5", "data.split_seed=5"]),
    Case("dev3/healthy/wine", None, "csv_classification", ["trainer.seed=5", "data.split_seed=5"]),
    Case("dev3/healthy/diabetes", None, "diabetes_regression", ["trainer.seed=5", "data.split_seed=5"]),
    Case(
        "dev3/healthy/mnist_cnn",
        None,
        "mnist_cnn",
        ["trainer.epochs=2", "trainer.seed=5"],
        data=lambda _: mnist_at(5, batch_size=128),
    ),  # fmt: skip
    Case("dev3/healthy/mnist_vae", None, "mnist_vae", ["data.limit=3000", "trainer.epochs=6", "trainer.seed=5"]),
    Case(
        "dev3/healthy/sst2_bilstm",
        None,
        "sst2_bilstm",
        ["data.path={sst2}", "trainer.epochs=3", "trainer.seed=5"],
        noise={"start": 24000},
    ),
    Case(
        "dev3/healthy/char_shakespeare",
        None,
        "char_shakespeare",
        ["data.limit=200000", "trainer.epochs=1", "model.hidden_size=96", "trainer.seed=5"],
    ),  # fmt: skip
    Case("dev3/healthy/airline_lstm", None, "airline_lstm", ["trainer.seed=5"]),
    Case("dev3/healthy/word2vec_multi30k", None, "word2vec_multi30k", ["data.limit=6000", "trainer.seed=5"]),
    Case("dev3/healthy/movielens_mf", None, "movielens_mf", ["trainer.epochs=20", "trainer.seed=5"]),
    Case(
        "dev3/healthy/fsdd_digits_cnn",
        None,
        "fsdd_digits_cnn",
        ["data.max_clips=600", "trainer.seed=5"],
    ),  # fmt: skip
    Case(
        "dev3/healthy/fsdd_strings_ctc",
        None,
        "fsdd_strings_ctc",
        [
            "trainer.epochs=4",
            "data.train_strings=300",
            "data.val_strings=60",
            "data.test_strings=60",
            "trainer.seed=5",
        ],
    ),  # fmt: skip
]


def dev3_cases() -> list[Case]:
    """Round 3's held-out set (the comment above): 33 planted runs of 10 fault kinds, 14 healthy runs, and the 5%
    label-noise measurement on MNIST. Run once (code of commit aab5f39) under the name ``eval``; seen since, so
    ``dev3``."""
    return [*planted_round("dev3", 5, 6, 24000, ROUND_3), *HEALTHY_3]


# ---- round 4's held-out set -------------------------------------------------------------------------------------
# Defined and committed before it ran; round 3's structure (the same fault kinds, data sets and model shapes, 33
# planted runs) with everything drawn afresh: seeds (trainer.seed=7, split_seed=7; the second MNIST label-noise run
# 8), data subsets (MNIST: 600 training images per class drawn with split_seed 7; SST-2 training rows
# 32,000-40,000; digits split_seed 7), class pairs for the imbalance plants (MNIST 3/5, digits 1/7, digits-CNN 2/6)
# and fault magnitudes by round 3's written recipe with a fresh generator (numpy default_rng(2026112802), in this
# order, before any run):
#   lr too high  log-uniform [0.3, 3.0]    -> 0.61, 0.84, 0.64, 1.5
#   lr too low   log-uniform [1e-7, 5e-6]  -> 2e-6, 3e-7, 3e-6, 3e-7
#   ReLU-killing bias  uniform [3, 6]      -> 4.1, 3.2, 3.5
#   unnormalized scale log-uniform [100, 1000] -> 648, 348, 553
#   labels flipped uniform [0.10, 0.30]    -> 0.22, 0.22, 0.11, 0.13
#   test rows copied into training uniform [0.10, 0.30] -> 0.10, 0.26, 0.28
#   minority class share uniform [0.05, 0.08] -> 0.071, 0.068, 0.059
#   loader delay per batch log-uniform [5, 50] ms -> 16.7, 17.1, 5.3 ms
# Healthy runs (round 3's mistake was two runs stopped early in training): 21 runs of the bundled recipes at their
# own epochs, on their own data where that fits in about two minutes on one thread, else on a data subset (named
# per case) at the recipe's epochs; none shortened below the recipe's epochs. Families: tables (classification,
# regression), image CNNs, an MLP, a VAE, a conv autoencoder, text classification, a character LM, series and
# sequence tasks (LSTM, GRU), word2vec, explicit and implicit recommenders, spoken digits. Left out for time
# (pilot runs at other seeds, timing only: several minutes or more each on one thread at their own epochs, or not
# yet learning at a size that fits): GANs, translation, the word LM (about 3 min an epoch, 8 epochs), CTC speech
# recognition (300 strings for 20 epochs had not begun to emit digits), detection, segmentation, TTS, Transformers.
ROUND_4 = {
    "lr_high": ("0.61", "0.84", "0.64", "1.5"),
    "lr_low": ("2e-6", "3e-7", "3e-6", "3e-7"),
    "relu": (4.1, 3.2, 3.5),
    "scale": (648, 348, 553),
    "flip": (0.22, 0.22, 0.11, 0.13),
    "leak": (0.10, 0.26, 0.28),
    "minority": (([3, 5], 0.071), ([1, 7], 0.068), ([2, 6], 0.059)),
    "delay": (0.0167, 0.0171, 0.0053),
}
HEALTHY_4 = [
    Case("eval/healthy/digits_mlp", None, "digits_mlp", ["trainer.seed=7"], data=lambda _: digits_at(7)),
    Case("eval/healthy/digits_cnn", None, "digits_cnn", ["trainer.seed=7"]),
    Case("eval/healthy/breast_cancer", None, "csv_classification", [BC, "trainer.seed=7", "data.split_seed=7"]),
    Case("eval/healthy/wine", None, "csv_classification", ["trainer.seed=7", "data.split_seed=7"]),
    Case("eval/healthy/diabetes", None, "diabetes_regression", ["trainer.seed=7", "data.split_seed=7"]),
    Case(
        "eval/healthy/diabetes_csv",
        None,
        "csv_regression",
        ["data.path={csv:diabetes}", "trainer.seed=7", "data.split_seed=7"],
    ),  # fmt: skip
    Case(
        "eval/healthy/mnist_cnn",
        None,
        "mnist_cnn",
        ["trainer.seed=7"],
        data=lambda _: mnist_at(7, per_class=2000, batch_size=128),
    ),  # fmt: skip
    Case("eval/healthy/mnist_lenet5", None, "mnist_lenet5", ["data.limit=10000", "trainer.seed=7"]),
    Case("eval/healthy/mnist_vae", None, "mnist_vae", ["data.limit=2000", "trainer.seed=7"]),
    Case("eval/healthy/mnist_autoencoder", None, "mnist_autoencoder", ["data.limit=5000", "trainer.seed=7"]),
    Case(
        "eval/healthy/sst2_bilstm", None, "sst2_bilstm", ["data.path={sst2}", "trainer.seed=7"], noise={"start": 32000}
    ),
    Case(
        "eval/healthy/char_shakespeare",
        None,
        "char_shakespeare",
        ["data.limit=400000", "model.hidden_size=128", "trainer.seed=7"],
    ),  # fmt: skip
    Case("eval/healthy/airline_lstm", None, "airline_lstm", ["trainer.seed=7"]),
    Case("eval/healthy/sunspots_gru", None, "sunspots_gru", ["trainer.seed=7"]),
    Case("eval/healthy/adding_lstm", None, "adding_lstm", ["trainer.seed=7"]),
    Case("eval/healthy/adding_gru", None, "adding_gru", ["trainer.seed=7"]),
    Case("eval/healthy/word2vec_multi30k", None, "word2vec_multi30k", ["data.limit=10000", "trainer.seed=7"]),
    Case("eval/healthy/movielens_mf", None, "movielens_mf", ["trainer.seed=7"]),
    Case("eval/healthy/movielens_gmf", None, "movielens_gmf", ["trainer.seed=7"]),
    Case("eval/healthy/movielens_bpr", None, "movielens_bpr", ["trainer.seed=7"]),
    Case("eval/healthy/fsdd_digits_cnn", None, "fsdd_digits_cnn", ["data.max_clips=600", "trainer.seed=7"]),
]


def eval_cases() -> list[Case]:
    """Round 4's held-out set (the comment above): 33 planted runs of 10 fault kinds, 21 healthy runs, and the 5%
    label-noise measurement on MNIST."""
    return [*planted_round("eval", 7, 8, 32000, ROUND_4), *HEALTHY_4]


def mnist_at(seed: int, **data: Any):
    """Rounds 3 and 4's MNIST: 600 training images per class drawn with split_seed ``seed``, 20% for validation."""
    cfg = {"normalize": "channel", "batch_size": 64, "per_class": 600, "split_seed": seed, "val_split": 0.2}
    return bundle("mnist", **{**cfg, **data})


def digits_at(seed: int, **data: Any):
    return bundle("digits", **{"normalize": "feature", "batch_size": 32, "split_seed": seed, **data})


def planted_round(tag: str, seed: int, seed2: int, sst_start: int, m: dict[str, Any]) -> list[Case]:
    """Rounds 3 and 4's planted runs (33 of 10 fault kinds, and the 5% label-noise run): the same data sets and model
    shapes, with the round's seeds (``seed2`` for the second MNIST label-noise run), SST-2 rows from ``sst_start``
    and the magnitudes ``m`` drawn for it (the comments above each round)."""
    mnist_args = ["data.name=mnist", "trainer.epochs=3", f"trainer.seed={seed}", "model.dropout=0.1"]
    digits_args = ["trainer.epochs=15", f"trainer.seed={seed}"]
    dcnn_args = ["trainer.epochs=10", f"trainer.seed={seed}"]
    bc_args = [BC, f"trainer.seed={seed}", f"data.split_seed={seed}"]
    sst2_args = ["data.path={sst2}", "trainer.epochs=3", f"trainer.seed={seed}"]
    sig = ["model.act=sigmoid", "model.dropout=0"]
    big = ["model.width=1024", "model.depth=3", "model.dropout=0", "trainer.optimizer.weight_decay=0"]
    lr = "trainer.optimizer.lr="
    hi, lo, relu, scale = m["lr_high"], m["lr_low"], m["relu"], m["scale"]
    flip, leak, minority, delay = m["flip"], m["leak"], m["minority"], m["delay"]

    def mnist(**data: Any):
        return mnist_at(seed, **data)

    def digits(**data: Any):
        return digits_at(seed, **data)

    def n(name: str) -> str:
        return f"{tag}/{name}"

    one_epoch_cnn = ["trainer.epochs=1", f"trainer.seed={seed}"]
    return [
        # learning rate too high
        Case(n("digits-mlp/lr_high"), "lr_too_high", "digits_mlp", [*digits_args, lr + hi[0]], data=lambda _: digits()),
        Case(
            n("mnist-cnn/lr_high"),
            "lr_too_high",
            "mnist_cnn",
            [*one_epoch_cnn, lr + hi[1]],
            data=lambda _: mnist(batch_size=128),
        ),
        Case(n("breast-cancer/lr_high"), "lr_too_high", "csv_classification", [*bc_args, lr + hi[2]]),
        Case(
            n("shakespeare-lstm/lr_high"),
            "lr_too_high",
            "char_shakespeare",
            ["data.limit=150000", "trainer.epochs=1", "model.hidden_size=96", f"trainer.seed={seed}", lr + hi[3]],
        ),
        # learning rate too low
        Case(n("digits-mlp/lr_low"), "lr_too_low", "digits_mlp", [*digits_args, lr + lo[0]], data=lambda _: digits()),
        Case(n("breast-cancer/lr_low"), "lr_too_low", "csv_classification", [*bc_args, lr + lo[1]]),
        Case(
            n("sst2-bilstm/lr_low"), "lr_too_low", "sst2_bilstm", [*sst2_args, lr + lo[2]], noise={"start": sst_start}
        ),
        Case(
            n("mnist-cnn/lr_low"),
            "lr_too_low",
            "mnist_cnn",
            [*one_epoch_cnn, lr + lo[3]],
            data=lambda _: mnist(batch_size=128),
        ),
        # deep sigmoid MLPs
        Case(
            n("mnist-mlp/sigmoid_deep"),
            "vanishing_gradients",
            "digits_mlp",
            [*mnist_args, *sig, "model.depth=8", "model.width=128"],
            data=lambda _: mnist(),
        ),
        Case(
            n("breast-cancer/sigmoid_deep"),
            "vanishing_gradients",
            "csv_classification",
            [*bc_args, *sig, "model.depth=10", "model.width=64"],
        ),
        Case(
            n("digits-mlp/sigmoid_deep"),
            "vanishing_gradients",
            "digits_mlp",
            [*digits_args, *sig, "model.depth=9", "model.width=96"],
            data=lambda _: digits(),
        ),
        # an initialization that kills the ReLUs
        Case(
            n("digits-mlp/dead_relu"),
            "dead_relus",
            "digits_mlp",
            digits_args,
            data=lambda _: digits(),
            callbacks=lambda: [KillReLUs(relu[0])],
        ),
        Case(
            n("mnist-mlp/dead_relu"),
            "dead_relus",
            "digits_mlp",
            mnist_args,
            data=lambda _: mnist(),
            callbacks=lambda: [KillReLUs(relu[1])],
        ),
        Case(
            n("breast-cancer/dead_relu"),
            "dead_relus",
            "csv_classification",
            bc_args,
            callbacks=lambda: [KillReLUs(relu[2])],
        ),
        # unnormalized inputs
        Case(
            n("mnist-mlp/unnormalized"),
            "unnormalized_inputs",
            "digits_mlp",
            mnist_args,
            data=lambda _: scale_inputs(mnist(normalize="none"), float(scale[0])),
        ),
        Case(
            n("digits-cnn/unnormalized"),
            "unnormalized_inputs",
            "digits_cnn",
            dcnn_args,
            data=lambda _: scale_inputs(digits(normalize="none"), float(scale[1])),
        ),
        Case(
            n(f"breast-cancer/unnormalized_x{scale[2]}"),
            "unnormalized_inputs",
            "csv_classification",
            [
                f"data.path={{csv:breast_cancer:big{scale[2]}}}",
                "data.normalize=none",
                f"trainer.seed={seed}",
                f"data.split_seed={seed}",
            ],
        ),
        # a model far too large for its data
        Case(
            n("mnist-mlp/too_large"),
            "overfitting",
            "digits_mlp",
            ["data.name=mnist", "trainer.epochs=60", f"trainer.seed={seed}", *big],
            data=lambda _: mnist(per_class=40, val_split=0.5, batch_size=32),
        ),
        Case(
            n("digits-mlp/too_large"),
            "overfitting",
            "digits_mlp",
            ["trainer.epochs=80", f"trainer.seed={seed}", *big],
            data=lambda _: digits(per_class=20, val_split=0.5),
        ),
        Case(
            n("digits-cnn/too_large"),
            "overfitting",
            "digits_cnn",
            [
                "trainer.epochs=60",
                f"trainer.seed={seed}",
                "model.channels=[64,128]",
                "model.hidden=512",
                "model.dropout=0",
                "task.label_smoothing=0",
            ],
            data=lambda _: digits(normalize="channel", per_class=25, val_split=0.5),
        ),
        # labels flipped
        Case(
            n(f"digits-mlp/label_noise_{round(100 * flip[0])}"),
            "label_noise",
            "digits_mlp",
            digits_args,
            data=lambda _: _noisy(digits(val_split=0.25), flip[0], seed),
        ),
        Case(
            n(f"mnist-mlp/label_noise_{round(100 * flip[1])}"),
            "label_noise",
            "digits_mlp",
            mnist_args,
            data=lambda _: _noisy(mnist(), flip[1], seed),
        ),
        Case(
            n(f"digits-cnn/label_noise_{round(100 * flip[2])}"),
            "label_noise",
            "digits_cnn",
            dcnn_args,
            data=lambda _: _noisy(digits(normalize="channel", val_split=0.25), flip[2], seed),
        ),
        Case(
            n(f"mnist-mlp/label_noise_{round(100 * flip[3])}"),
            "label_noise",
            "digits_mlp",
            [*mnist_args, f"trainer.seed={seed2}"],
            data=lambda _: _noisy(mnist_at(seed2), flip[3], seed2),
        ),
        # the label-noise bar: 5% of MNIST's training and validation labels flipped (scored on its own)
        Case(
            n("mnist-mlp/label_noise_5pct"),
            "label_noise",
            "digits_mlp",
            [*mnist_args, "trainer.epochs=4"],
            data=lambda _: _noisy(mnist(per_class=1200, val_split=0.25), 0.05, seed),
            scored=False,
        ),
        # test inputs copied into training
        Case(
            n("mnist-mlp/leakage"),
            "leakage",
            "digits_mlp",
            mnist_args,
            data=lambda _: copy_test_into_train(mnist(), leak[0], seed),
        ),
        Case(
            n("digits-mlp/leakage"),
            "leakage",
            "digits_mlp",
            digits_args,
            data=lambda _: copy_test_into_train(digits(), leak[1], seed),
        ),
        Case(
            n("digits-cnn/leakage"),
            "leakage",
            "digits_cnn",
            dcnn_args,
            data=lambda _: copy_test_into_train(digits(normalize="channel"), leak[2], seed),
        ),
        # class imbalance
        Case(
            n("mnist-mlp/imbalance"),
            "class_imbalance",
            "digits_mlp",
            mnist_args,
            data=lambda _: imbalance(mnist(classes=minority[0][0], per_class=3000), 1, minority[0][1], seed),
        ),
        Case(
            n("digits-mlp/imbalance"),
            "class_imbalance",
            "digits_mlp",
            digits_args,
            data=lambda _: imbalance(digits(classes=minority[1][0]), 0, minority[1][1], seed),
        ),
        Case(
            n("digits-cnn/imbalance"),
            "class_imbalance",
            "digits_cnn",
            dcnn_args,
            data=lambda _: imbalance(digits(normalize="channel", classes=minority[2][0]), 1, minority[2][1], seed),
        ),
        # a slow data loader
        Case(
            n("digits-cnn/slow_loader"),
            "input_pipeline",
            "digits_cnn",
            ["trainer.epochs=4", f"trainer.seed={seed}"],
            data=lambda _: slow_loader(digits(normalize="channel"), delay[0]),
        ),
        Case(
            n("mnist-mlp/slow_loader"),
            "input_pipeline",
            "digits_mlp",
            mnist_args,
            data=lambda _: slow_loader(mnist(), delay[1]),
        ),
        Case(
            n("diabetes/slow_loader"),
            "input_pipeline",
            "diabetes_regression",
            [f"trainer.seed={seed}", "trainer.epochs=30"],
            data=lambda _: slow_loader(bundle("diabetes", task="regression", batch_size=32, split_seed=seed), delay[2]),
        ),
    ]


_NOISE: dict[int, dict[str, np.ndarray]] = {}


def _noisy(b, frac: float, seed: int):
    _NOISE[id(b)] = flip_labels(b, frac, seed)
    b.extras["flipped"] = _NOISE[id(b)]
    return b


def resolve_csv(override: str, scratch: Path) -> str:
    """``data.path={csv:breast_cancer}`` or ``{csv:breast_cancer:dup}``: the table written (and planted) here."""
    if "{csv:" not in override:
        return override
    key, spec = override.split("=", 1)
    which, *plant = spec.strip("{}").split(":")[1:]
    path = sklearn_csv(scratch, which)
    return f"{key}={plant_csv(path, plant[0], 0) if plant else path}"


# --- running ---------------------------------------------------------------------------------------------------------
def run_case(case: Case, root: Path, dry: bool = False) -> dict[str, Any]:
    """Train the case's run (a diverged run is a result too), diagnose it; returns the scored outcome. ``dry``:
    only build the case's data and model (checks the overrides and the plants without training)."""
    from deepkit.doctor import diagnose
    from deepkit.train import TrainingDiverged

    out = root / case.name.replace("/", "__")
    scratch = root / "scratch" / case.name.replace("/", "__")
    scratch.mkdir(parents=True, exist_ok=True)
    overrides = list(case.overrides)
    if case.recipe == "csv_classification" and not any(o.startswith("data.path=") for o in overrides):
        overrides.append(f"data.path={sklearn_csv(scratch, 'wine')}")
    overrides = [resolve_csv(o, scratch) for o in overrides]
    if any("{sst2}" in o for o in overrides):
        start = case.noise.get("start", {"tune": 8000, "dev": 0}.get(case.split, 0))
        folder = text_folder(scratch / "sst2", case.noise.get("plant", sst2_healthy), 0, start)
        overrides = [o.replace("{sst2}", folder) for o in overrides]
    data = case.data(scratch) if case.data else None
    if case.fault == "unnormalized_inputs" and data is not None:
        check_unnormalized_plant(case.name, *bundle_input_stats(data), "the planted training split")
    if dry:
        from deepkit.api import build, parse_overrides, resolve_recipe

        build(resolve_recipe(case.recipe, parse_overrides([*overrides, *QUIET], {})), given=data)
        return {"case": case.name, "built": True}
    t0 = time.perf_counter()
    error = None
    try:
        deepkit.train(
            case.recipe,
            *overrides,
            *QUIET,
            out=out,
            overwrite=True,
            data=data,
            callbacks=case.callbacks() if case.callbacks else (),
        )
    except TrainingDiverged as e:
        error = str(e)
    train_s = time.perf_counter() - t0
    if case.fault == "unnormalized_inputs":  # what the run actually saw (recipe-built tables included)
        seen = json.loads((out / "record" / "inputs.json").read_text())
        check_unnormalized_plant(case.name, seen.get("mean", [0]), seen.get("std", [1]), "record/inputs.json")
    t1 = time.perf_counter()
    diagnosis = diagnose(out)
    doctor_s = time.perf_counter() - t1
    found = [f for f in diagnosis.findings if f.severity in ("error", "warning")]
    top = found[0].kind if found else None
    result = {
        "case": case.name,
        "split": case.split,
        "fault": case.fault,
        "top": top,
        "findings": [(f.kind, f.severity) for f in diagnosis.findings],
        "right": (top in case.right) if case.fault else (top is None),
        "diverged": error is not None,
        "train_s": round(train_s, 1),
        "doctor_s": round(doctor_s, 2),
        "run_dir": str(out),
        "scored": case.scored,
    }
    flipped = getattr(data, "extras", {}).get("flipped") if data is not None else None
    if flipped is not None:
        result["label_noise"] = label_noise_score(diagnosis, flipped["val"], len(data.val[1]))
    return result


def label_noise_score(diagnosis, flipped_val: np.ndarray, n_val: int) -> dict[str, float]:
    """Of the flipped validation labels, the share the doctor flags; and the share of the split flagged."""
    flagged = set()
    for f in diagnosis.findings:
        if f.kind == "label_noise":
            flagged = set(f.evidence.get("flagged", []))
    hit = len(set(flipped_val.tolist()) & flagged)
    return {
        "flipped": len(flipped_val),
        "flagged": len(flagged),
        "recall": hit / max(1, len(flipped_val)),
        "flagged_share": len(flagged) / max(1, n_val),
    }


def score(results: list[dict[str, Any]]) -> dict[str, Any]:
    noise = [{"case": r["case"], "top": r["top"], **r["label_noise"]} for r in results if not r.get("scored", True)]
    results = [r for r in results if r.get("scored", True)]
    planted = [r for r in results if r["fault"]]
    healthy = [r for r in results if not r["fault"]]
    kinds = sorted({r["fault"] for r in planted})
    per_kind = {}
    for k in kinds:
        tp = sum(1 for r in planted if r["fault"] == k and r["right"])
        called = sum(1 for r in results if r["top"] == k or (r["fault"] == k and r["right"]))
        n = sum(1 for r in planted if r["fault"] == k)
        per_kind[k] = {"runs": n, "recall": tp / n, "precision": tp / called if called else float("nan")}
    return {
        "planted": len(planted),
        "kinds": len(kinds),
        "top_right": sum(r["right"] for r in planted) / max(1, len(planted)),
        "healthy": len(healthy),
        "healthy_clean": sum(r["right"] for r in healthy) / max(1, len(healthy)),
        "per_kind": per_kind,
        "label_noise_5pct": noise,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="eval", choices=["tune", "dev", "dev2", "dev3", "eval", "all"])
    parser.add_argument("--only", default="", help="comma-separated case names")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directories here")
    parser.add_argument("--dry", action="store_true", help="build every case's data and model, train nothing")
    args = parser.parse_args()
    torch.set_num_threads(1)
    selected = [c for c in cases() if args.set == "all" or c.split == args.set]
    if args.only:
        names = set(args.only.split(","))
        selected = [c for c in cases() if c.name in names]
    if args.dry:
        with tempfile.TemporaryDirectory() as tmp:
            for case in selected:
                print(run_case(case, Path(tmp), dry=True), flush=True)
        return
    OUT.mkdir(exist_ok=True)
    results = []
    partial = OUT / f"doctor_{args.set}.partial.jsonl"  # one line per finished case (a long run can be read early)
    partial.write_text("")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for case in selected:
            try:
                r = run_case(case, root)
            except PlantError:
                raise  # a broken case invalidates the set: stop loudly
            except Exception as e:  # a case that cannot run counts as a miss, and the others still run
                r = {
                    "case": case.name,
                    "split": case.split,
                    "fault": case.fault,
                    "top": None,
                    "findings": [],
                    "right": False,
                    "error": f"{type(e).__name__}: {e}",
                    "train_s": 0.0,
                    "scored": case.scored,
                }
                if not case.scored:
                    r["label_noise"] = {"flipped": 0, "flagged": 0, "recall": 0.0, "flagged_share": 0.0}
            results.append(r)
            with open(partial, "a") as f:
                f.write(json.dumps(r) + "\n")
            mark = "ok " if r["right"] else "MISS"
            print(f"{mark} {r['case']:<40} top={r['top']!s:<22} {r['findings']}  ({r['train_s']} s)", flush=True)
    summary = score(results)
    print(json.dumps(summary, indent=1))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    (OUT / f"doctor_{args.set}.json").write_text(
        json.dumps({"commit": commit.strip(), "machine": platform.processor(), "results": results, **summary}, indent=1)
    )


if __name__ == "__main__":
    sys.exit(main())
