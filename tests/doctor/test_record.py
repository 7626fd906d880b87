"""trainer.record (on by default): what it writes, that it changes no training number, and that a resumed run's
records continue exactly (the resume matrix compares the records of killed-and-resumed runs bit for bit)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import deepkit
from deepkit.data.build import DataConfig
from deepkit.families.supervised import build_data
from deepkit.train.record import FILES, RecordConfig, Recorder, activation_stats, auto_every

SMALL = ["digits_mlp", "model.width=64", "trainer.epochs=2", "trainer.progress=none", "trainer.threads=1"]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    return deepkit.train(*SMALL, out=tmp_path_factory.mktemp("rec") / "run").run_dir


def test_recording_changes_no_training_number(recorded, tmp_path):
    """The same run with trainer.record off ends with bit-identical weights, optimizer state and metrics."""
    off = deepkit.train(*SMALL, "trainer.record.enabled=false", out=tmp_path / "off").run_dir
    assert not (off / "record").exists()
    for name in ("model.safetensors", "state.safetensors"):
        a = load_file(str(recorded / "checkpoints" / "last" / name))
        b = load_file(str(off / "checkpoints" / "last" / name))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}: {k} differs with recording on"
    drop = {"samples_per_s", "time", "peak_rss_mb"}
    same = [{k: v for k, v in r.items() if k not in drop} for r in rows(recorded / "metrics.csv")]
    assert same == [{k: v for k, v in r.items() if k not in drop} for r in rows(off / "metrics.csv")]


def test_the_record_files_hold_what_the_run_did(recorded):
    folder = recorded / "record"
    meta = json.loads((folder / "meta.json").read_text())
    steps = rows(folder / "steps.csv")
    history = rows(recorded / "metrics.csv")
    assert [int(r["step"]) for r in steps] == list(range(1, int(history[-1]["step"]) + 1))
    assert meta["every"] == auto_every(len(steps)) and meta["loss_falls"] is True
    # the mean of the recorded per-step losses of epoch 1 is the epoch's train_loss (up to the last batch's size)
    epoch1 = [float(r["loss"]) for r in steps if r["epoch"] == "0"]
    assert abs(np.mean(epoch1) - float(history[0]["train_loss"])) < 0.02
    assert all(float(r["lr"]) > 0 for r in steps)
    # one layers.csv row per parameter per recording step (the first, then every `every`)
    due = [s for s in range(1, len(steps) + 1) if s == 1 or s % meta["every"] == 0]
    layers = rows(folder / "layers.csv")
    names = [p["name"] for p in meta["parameters"]]
    assert [(int(r["step"]), r["name"]) for r in layers] == [(s, n) for s in due for n in names]
    for r in layers:
        assert float(r["weight_norm"]) > 0 and float(r["grad_norm"]) > 0 and 0 < float(r["update_ratio"]) < 1
    acts = rows(folder / "activations.csv")
    assert {r["module"] for r in acts} == {a["name"] for a in meta["activations"]} and len(acts) == 2 * len(due)
    assert all(0 <= float(r["inactive"]) <= 1 and r["kind"] == "relu" for r in acts)
    timing = rows(folder / "timing.csv")
    assert int(timing[-1]["step_to"]) == len(steps) and all(float(r["compute_s"]) > 0 for r in timing)


def test_input_statistics_and_the_data_scan_match_the_data(recorded):
    data = build_data(DataConfig(name="digits", normalize="feature", batch_size=32), "classification")
    inputs = json.loads((recorded / "record" / "inputs.json").read_text())
    assert inputs["batches"] == 8 and inputs["shape"] == [32, 1, 8, 8] and inputs["axis"] == "channel"
    loader = data.loader("train", seed=0)  # trainer.seed 0: the batches the run saw first
    first = torch.cat([b[0] for _, b in zip(range(8), loader, strict=False)])
    assert inputs["mean"][0] == pytest.approx(first.mean().item(), abs=1e-5)
    assert inputs["std"][0] == pytest.approx(first.std(unbiased=False).item(), rel=1e-4)
    assert inputs["max"][0] == pytest.approx(first.max().item())
    scan = json.loads((recorded / "record" / "data.json").read_text())
    assert {k: v["examples"] for k, v in scan["splits"].items()} == data.sizes()
    counts = np.bincount(data.train[1].numpy())
    assert scan["splits"]["train"]["labels"] == {str(i): int(c) for i, c in enumerate(counts)}
    assert scan["exact"]["train-test"]["count"] == 0


def test_validation_predictions_are_the_models_probabilities(recorded):
    with np.load(recorded / "record" / "val_predictions.npz", allow_pickle=False) as z:
        label, loss, probs, index = z["label"], z["loss"], z["probs"], z["index"]
    data = build_data(DataConfig(name="digits", normalize="feature", batch_size=32), "classification")
    assert np.array_equal(label, data.val[1].numpy()) and np.array_equal(index, np.arange(len(label)))
    assert probs.shape == (len(label), 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.allclose(loss, -np.log(probs[np.arange(len(label)), label]), atol=1e-4)
    # the last weights: the run's final validation accuracy
    assert (probs.argmax(1) == label).mean() == pytest.approx(float(rows(recorded / "metrics.csv")[-1]["val_accuracy"]))


def test_a_resumed_run_cuts_records_written_after_its_checkpoint(tmp_path):
    """What a killed run wrote after its last checkpoint (including a half-written last line) is cut away."""
    rec = Recorder(tmp_path, RecordConfig(every=5))
    rec.dir.mkdir()
    path = rec.dir / "steps.csv"
    path.write_text("step,epoch,loss,lr\n1,0,2.3,0.001\n")
    state = {"every": 5, "sizes": {"steps.csv": path.stat().st_size}, "inputs_done": True}
    with open(path, "a") as f:
        f.write("2,0,2.2,0.001\n3,0,2.")  # written after the checkpoint, the last line cut by SIGKILL
    (rec.dir / "layers.csv").write_text("step,name\n")  # did not exist at the checkpoint
    Recorder(tmp_path).load_state_dict(state)
    assert path.read_text() == "step,epoch,loss,lr\n1,0,2.3,0.001\n"
    assert not (rec.dir / "layers.csv").exists()
    assert set(FILES) >= {"steps.csv", "layers.csv"}


def test_activation_statistics():
    y = torch.tensor([[0.0, 1.0, 0.0], [0.0, 2.0, 3.0]])  # unit 0 is dead (zero for both examples)
    inactive, dead, saturated, mean, std = activation_stats(y, "relu").tolist()
    assert inactive == pytest.approx(0.5) and dead == pytest.approx(1 / 3) and math.isnan(saturated)
    s = torch.tensor([0.001, 0.5, 0.995, 0.3])
    assert activation_stats(s, "sigmoid")[2].item() == pytest.approx(0.5)
    t = torch.tensor([-0.999, 0.2, 0.995, 0.0])
    assert activation_stats(t, "tanh")[2].item() == pytest.approx(0.5)
    assert mean == pytest.approx(1.0) and std == pytest.approx(y.std().item())


def test_input_statistics_of_padded_waveforms_of_varying_length(tmp_path):
    """Audio batches ``{"audio": (B, T), "lengths"}`` change T from batch to batch: one pooled feature, no crash."""
    rec = Recorder(tmp_path, RecordConfig(input_batches=3))
    rec.dir.mkdir(parents=True)
    for t, value in ((3537, 1.0), (4096, 3.0), (100, 3.0)):
        rec._input_stats({"audio": torch.full((2, t), value), "lengths": torch.tensor([t, t]), "label": torch.zeros(2)})
    inputs = json.loads((rec.dir / "inputs.json").read_text())
    n = 2 * (3537 + 4096 + 100)
    mean = (2 * 3537 * 1.0 + 2 * (4096 + 100) * 3.0) / n
    assert inputs["mean"] == [pytest.approx(mean)] and inputs["min"] == [1.0] and inputs["max"] == [3.0]
    # table rows whose width changes (not a padded signal): the features are pooled the same way
    rec = Recorder(tmp_path / "b", RecordConfig(input_batches=2))
    rec.dir.mkdir(parents=True)
    rec._input_stats((torch.zeros(4, 3), torch.zeros(4)))
    rec._input_stats((torch.ones(4, 5), torch.zeros(4)))
    assert json.loads((rec.dir / "inputs.json").read_text())["mean"] == [pytest.approx(20 / 32)]


def test_a_run_shorter_than_the_input_batches_still_writes_its_input_statistics(tmp_path):
    run_dir = deepkit.train(*SMALL, "trainer.max_steps=3", out=tmp_path / "short").run_dir
    assert json.loads((run_dir / "record" / "inputs.json").read_text())["batches"] == 3


def test_the_data_scan_compares_no_inputs_where_they_recur_by_nature():
    from deepkit.train.record import scan_data

    class Pairs:  # a task whose inputs do not identify examples (word2vec's pairs, TTS words, recommender ids)
        inputs_identify_examples = False

        def example_labels(self, batch):
            return None

    data = build_data(DataConfig(name="digits", normalize="feature", batch_size=32), "classification")
    data.val = (data.train[0][:50].clone(), data.train[1][:50].clone())  # 50 training inputs copied into validation
    assert scan_data(data, object(), 10_000)["exact"]["train-val"]["count"] == 50
    scan = scan_data(data, Pairs(), 10_000)
    assert scan["compared"] is False and scan["exact"] == {} and scan["splits"]["val"]["examples"] == 50


def test_near_duplicates_leave_out_inputs_that_are_one_value_on_the_grid():
    """Quiet waveforms (|x| < 0.125) all round to zeros: not near duplicates of each other; inputs equal up to
    tiny noise are."""
    from deepkit.train.record import scan_data

    data = build_data(DataConfig(name="digits", normalize="feature", batch_size=32), "classification")
    g = torch.Generator().manual_seed(0)
    quiet = 0.1 * torch.rand(40, 1, 8, 8, generator=g)
    data.train = (torch.cat([quiet[:20], data.train[0][20:]]), data.train[1])
    data.val = (torch.cat([quiet[20:], data.train[0][20:30] + 1e-5]), data.val[1][:30])
    scan = scan_data(data, object(), 10_000)
    assert scan["exact"]["train-val"]["count"] == 0 and scan["near"]["train-val"]["count"] == 10
