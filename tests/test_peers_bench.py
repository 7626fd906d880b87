"""benchmarks/peers.py: the plain and deepkit runners work on tiny inputs and the report has the promised format.

Lightning and Keras are not deepkit dependencies; their parts run only where they are installed.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("peers_bench", REPO / "benchmarks" / "peers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def workloads(peers):
    # synthetic data of the real shapes, but tiny: 2 steps of 8 samples
    return {
        "cnn": peers.cnn_workload(32, synthetic=True, batch_size=8),
        "lstm": peers.lstm_workload(32, synthetic=True, max_len=12, batch_size=8),
        "gpt": peers.gpt_workload(32, synthetic=True, block=16, batch_size=8),
    }


def test_workload_shapes(workloads):
    cnn, lstm, gpt = workloads["cnn"], workloads["lstm"], workloads["gpt"]
    assert cnn.x.shape == (32, 1, 28, 28) and cnn.y.shape == (32,)
    assert lstm.x.shape == (32, 12) and lstm.x.dtype == torch.long and lstm.lengths.shape == (32,)
    # right padding with 0 after each text's length, real tokens before it
    for row, n in zip(lstm.x, lstm.lengths, strict=True):
        assert (row[:n] > 0).all() and (row[n:] == 0).all()
    assert gpt.x.shape == gpt.y.shape == (32, 16)
    assert torch.equal(gpt.x[:, 1:], gpt.y[:, :-1])  # targets are the inputs shifted by one
    assert gpt.tokens_per_sample == 16 and cnn.tokens_per_sample == 1


def test_deepkit_loaders_yield_the_same_data(workloads):
    lstm = workloads["lstm"]
    batch = next(iter(lstm.deepkit_data.loader("train", shuffle=False)))
    n = batch["lengths"]
    assert torch.equal(n, lstm.lengths[:8])
    assert torch.equal(batch["tokens"], lstm.x[:8, : int(n.max())])  # padded to the batch's longest text
    gpt = workloads["gpt"]
    batch = next(iter(gpt.deepkit_data.loader("train", shuffle=False)))
    assert torch.equal(batch["tokens"], gpt.x[:8]) and torch.equal(batch["target"], gpt.y[:8])


@pytest.mark.parametrize("model", ["cnn", "lstm", "gpt"])
def test_plain_and_deepkit_train_and_report(peers, workloads, model):
    wl = workloads[model]
    plain = peers.run_plain(wl, steps=2, warmup=1)
    ours = peers.run_deepkit(wl, steps=2, warmup=1)
    assert plain.rate > 0 and ours.rate > 0
    assert plain.params == ours.params == peers.params(wl.torch_model(0)) > 0


def test_run_all_table_and_final_lines(peers, workloads):
    lines: list[str] = []
    results = peers.run_all(["cnn", "gpt"], ["plain", "deepkit"], 2, 1, 2, workloads, out=lines.append, threads=1)
    assert lines[0].startswith("round 1 cnn: plain ") and lines[-1].startswith("round 2 gpt: deepkit ")  # rotated
    assert [len(results[m][f]) for m in results for f in results[m]] == [2, 2, 2, 2]
    table = peers.table(workloads, results).splitlines()
    assert table[0].split()[:6] == ["model", "framework", "params", "samples/s", "tokens/s", "mean"]
    assert len(table) == 5 and table[3].split()[:2] == ["gpt", "plain"]
    # the GPT row carries tokens/s = samples/s × context length
    samples, tokens = float(table[3].split()[3]), float(table[3].split()[4])
    assert tokens == pytest.approx(samples * 16, rel=0.01, abs=1)
    line = peers.final_line("cnn", results["cnn"])
    assert re.fullmatch(r"cnn deepkit/plain=\d+\.\d\d deepkit/lightning=n/a deepkit/keras=n/a", line)


def test_final_line_ratios(peers):
    def r(rate):  # three steps of 1/rate s at batch 1
        return peers.Result([0.0, 1 / rate, 2 / rate, 3 / rate], 1, 1)

    res = {"plain": [r(100), r(300), r(200)], "deepkit": [r(250)], "lightning": [r(100)], "keras": []}
    assert peers.final_line("gpt", res) == "gpt deepkit/plain=1.25 deepkit/lightning=2.50 deepkit/keras=n/a"


def test_rate_is_robust_to_a_burst(peers):
    # 10 steps of 0.1 s at batch 8, one of them stretched to 1 s by another job: the median step ignores it
    times = list(np.cumsum([0.0] + [0.1] * 9 + [1.0]))
    res = peers.Result(times, 8, 1)
    assert res.rate == pytest.approx(80.0)
    assert res.mean_rate == pytest.approx(80 / 1.9)


def test_unknown_framework_is_rejected(peers, capsys):
    with pytest.raises(SystemExit):
        peers.main(["--frameworks", "plain,tensorflow", "--synthetic"])
    assert "tensorflow" in capsys.readouterr().err


@pytest.mark.parametrize("framework", ["lightning", "keras"])
def test_peer_runners_where_installed(peers, workloads, framework, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")  # before Keras' first import (it picks its backend then)
    pytest.importorskip("lightning" if framework == "lightning" else "keras")
    for name, wl in workloads.items():
        res = peers.RUNNERS[framework](wl, 2, 1)
        assert res.rate > 0
        # same architecture: the trainable parameter count matches torch's, except the LSTM's second bias vector
        extra = 4 * peers.LSTM["hidden_size"] if (framework == "keras" and name == "lstm") else 0
        assert res.params + extra == peers.params(wl.torch_model(0))
