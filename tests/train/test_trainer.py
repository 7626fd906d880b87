"""The Trainer on small synthetic data: reproducibility, optimizers, clipping, accumulation, penalties, stopping,
metrics, precision and divergence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score, roc_auc_score

from deepkit import Trainer, create_model
from deepkit.data import from_arrays
from deepkit.errors import ConfigError
from deepkit.tasks import BinaryClassificationTask, ClassificationTask, RegressionTask
from deepkit.train import Callback, EarlyStopping, TrainingDiverged


@pytest.fixture(scope="module")
def data():
    """120 samples of 3 separable blobs in 4-D: 96 train / 24 val, batches of 16."""
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=4.0, size=(3, 4))
    x = np.concatenate([c + 0.5 * rng.normal(size=(40, 4)) for c in centers]).astype(np.float32)
    y = np.repeat(np.arange(3), 40)
    return from_arrays(x, y, batch_size=16, test_split=0.0, val_split=0.2)


def make_task(seed: int = 0, **model_kw) -> ClassificationTask:
    torch.manual_seed(seed)
    model = create_model("mlp", **{"in_features": 4, "num_classes": 3, "depth": 1, "width": 16, **model_kw})
    return ClassificationTask(model, 3)


def weights(task) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in task.model.state_dict().items()}


def fit(task, data, **cfg) -> tuple[Trainer, list[dict]]:
    trainer = Trainer(progress="none", **cfg)
    return trainer, trainer.fit(task, data)


# --- reproducibility -------------------------------------------------------------------------------------------------


def test_same_seed_gives_bit_identical_weights(data):
    runs = []
    for trainer_seed in (1, 1, 2):
        task = make_task(dropout=0.3)  # dropout makes the run depend on the RNG, not just the shuffle
        fit(task, data, seed=trainer_seed, epochs=3, optimizer={"name": "adam", "lr": 0.01})
        runs.append(weights(task))
    same, other = runs[1], runs[2]
    assert all(torch.equal(runs[0][k], same[k]) for k in runs[0])
    assert any(not torch.equal(runs[0][k], other[k]) for k in runs[0])


# --- optimizers ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,lr", [("sgd", 0.1), ("adam", 0.01), ("adamw", 0.01), ("rmsprop", 0.01)])
def test_each_optimizer_reduces_training_loss(data, name, lr):
    task = make_task()
    trainer = Trainer(progress="none", epochs=5, optimizer={"name": name, "lr": lr})
    before = trainer.evaluate(task, data, "train")["loss"]
    history = trainer.fit(task, data)
    after = trainer.evaluate(task, data, "train")["loss"]
    assert after < 0.25 * before, (name, before, after)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_accuracy"] >= 0.9


# --- gradient clipping and accumulation ------------------------------------------------------------------------------


def param_delta_norm(before: dict, after: dict) -> float:
    return math.sqrt(sum(float((after[k] - before[k]).double().pow(2).sum()) for k in before))


def test_grad_clip_bounds_the_update(data):
    sgd = {"name": "sgd", "lr": 1.0, "momentum": 0.0}
    clip = 1e-3
    task = make_task()
    w0 = weights(task)
    fit(task, data, max_steps=1, grad_clip=clip, optimizer=sgd)
    clipped = param_delta_norm(w0, weights(task))
    assert clipped <= clip * 1.0 + 1e-6
    assert clipped > 0.5 * clip, "the update should be the clipped gradient, not zero"
    free = make_task()
    fit(free, data, max_steps=1, optimizer=sgd)
    assert param_delta_norm(w0, weights(free)) > 10 * clip, "without clipping the step is much larger"


def test_gradient_accumulation_equals_large_batch():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    small = from_arrays(x, y, class_names=["a", "b", "c"], test_split=0.0, val_split=0.0, batch_size=8)
    large = from_arrays(x, y, class_names=["a", "b", "c"], test_split=0.0, val_split=0.0, batch_size=32)
    sgd = {"name": "sgd", "lr": 0.5, "momentum": 0.0}
    accumulated, full, single = make_task(), make_task(), make_task()
    fit(accumulated, small, max_steps=1, accumulate=4, optimizer=sgd)
    fit(full, large, max_steps=1, accumulate=1, optimizer=sgd)
    fit(single, small, max_steps=1, accumulate=1, optimizer=sgd)
    wa, wf, ws = weights(accumulated), weights(full), weights(single)
    for k in wa:
        torch.testing.assert_close(wa[k], wf[k], rtol=0, atol=1e-6)
    assert any(not torch.allclose(ws[k], wf[k], atol=1e-4) for k in ws), "one micro-batch alone should differ"


def test_accumulate_counts_optimizer_steps(data):
    trainer, history = fit(make_task(), data, epochs=2, accumulate=4)  # 6 batches per epoch -> 2 steps
    assert trainer.state.step == 4
    assert [h["step"] for h in history] == [2, 4]


def test_accumulate_must_be_positive():
    with pytest.raises(ConfigError, match="accumulate"):
        Trainer(accumulate=0)


# --- penalties and dropout -------------------------------------------------------------------------------------------


def matrix_norm(task) -> float:
    return sum(float(p.detach().abs().sum()) for p in task.model.parameters() if p.ndim >= 2)


@pytest.mark.parametrize("penalty", [{"l1": 0.5}, {"l2": 0.5}])
def test_l1_l2_shrink_weights(data, penalty):
    sgd = {"name": "sgd", "lr": 0.1, "momentum": 0.0}
    base, shrunk = make_task(), make_task()
    start = matrix_norm(base)
    fit(base, data, epochs=3, optimizer=sgd)
    fit(shrunk, data, epochs=3, optimizer=sgd, **penalty)
    assert matrix_norm(shrunk) < 0.5 * matrix_norm(base)
    assert matrix_norm(shrunk) < start


def test_dropout_active_in_train_mode_only(data):
    task = make_task(dropout=0.5, width=64)
    x = data.train[0][:16]
    task.model.train()
    assert not torch.equal(task.model(x), task.model(x))
    task.model.eval()
    with torch.no_grad():
        assert torch.equal(task.model(x), task.model(x))
    trainer = Trainer(progress="none")
    assert torch.equal(trainer.predict(task, x), trainer.predict(task, x)), "predict must use eval mode"


# --- stopping --------------------------------------------------------------------------------------------------------


def test_early_stopping_when_nothing_improves(data):
    trainer, history = fit(
        make_task(), data, epochs=10, early_stopping={"monitor": "val_loss", "patience": 2, "min_delta": 1e9}
    )
    stopper = next(cb for cb in trainer.callbacks if isinstance(cb, EarlyStopping))
    assert len(history) == 3  # epoch 1 sets the best, epochs 2 and 3 do not beat it by min_delta
    assert stopper.stopped_epoch == 3 and stopper.wait == 2
    assert trainer.state.stop


def test_early_stopping_patience_with_a_callback(data):
    stopper = EarlyStopping(monitor="val_accuracy", patience=1, min_delta=2.0)  # accuracy can never gain 2.0
    trainer = Trainer(progress="none", epochs=10, callbacks=[stopper])
    assert len(trainer.fit(make_task(), data)) == 2
    assert stopper.mode == "max" and stopper.stopped_epoch == 2


def test_early_stopping_unknown_monitor(data):
    with pytest.raises(ConfigError, match="val_los' is not logged"):
        fit(make_task(), data, epochs=2, early_stopping={"monitor": "val_los"})


def test_max_steps_stops_mid_epoch(data):
    trainer, history = fit(make_task(), data, epochs=5, max_steps=3)
    assert trainer.state.step == 3
    assert len(history) == 1 and history[0]["step"] == 3


# --- logs and metrics ------------------------------------------------------------------------------------------------


def test_history_keys_and_counts(data):
    trainer, history = fit(make_task(), data, epochs=2)
    assert len(history) == 2
    expected = {
        "epoch",
        "step",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "val_f1",
        "lr",
        "samples_per_s",
        "time",
    }
    assert expected <= set(history[0])
    assert [h["epoch"] for h in history] == [1, 2]
    assert [h["step"] for h in history] == [6, 12]  # 96 samples / 16
    assert trainer.state.samples == 2 * 96
    assert all(math.isfinite(v) for h in history for v in h.values())


def test_without_validation_split(blobs):
    x, y = blobs()
    no_val = from_arrays(x, y, test_split=0.0, val_split=0.0, batch_size=32)
    trainer, history = fit(make_task(), no_val, epochs=1)
    assert not any(k.startswith("val_") for k in history[0])
    assert trainer.has_val is False


def test_bf16_on_cpu(data):
    task = make_task()
    trainer, history = fit(task, data, epochs=2, precision="bf16", optimizer={"name": "adam", "lr": 0.01})
    assert all(math.isfinite(h["train_loss"]) and math.isfinite(h["val_loss"]) for h in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    pred = trainer.predict(task, data.val[0])
    assert pred.dtype == torch.float32 and torch.isfinite(pred).all()


@pytest.mark.parametrize("lr", [1e6, 1e3])
def test_training_diverged(data, lr):
    with pytest.raises(TrainingDiverged, match="loss became (nan|inf)"):
        fit(make_task(), data, epochs=3, optimizer={"name": "sgd", "lr": lr})


def test_huge_inputs_diverge():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32) * 1e30
    bundle = from_arrays(x, np.arange(64) % 3, normalize="none", test_split=0.0, val_split=0.0, batch_size=16)
    with pytest.raises(TrainingDiverged, match="loss became"):
        fit(make_task(), bundle, epochs=1, optimizer={"name": "sgd", "lr": 0.1})


def test_classification_metrics_match_sklearn(data):
    task = make_task()
    trainer, _ = fit(task, data, epochs=1, optimizer={"name": "sgd", "lr": 0.02, "momentum": 0.0})
    metrics = trainer.evaluate(task, data, "val")
    x, y = data.val
    pred = trainer.predict(task, x)
    assert pred.shape == (len(y), 3)
    torch.testing.assert_close(pred.sum(1), torch.ones(len(y)))  # probabilities
    labels = pred.argmax(1).numpy()
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y.numpy(), labels), abs=1e-6)
    assert metrics["f1"] == pytest.approx(f1_score(y.numpy(), labels, average="macro"), abs=1e-6)
    ce = torch.nn.functional.cross_entropy(torch.log(pred), y)
    assert metrics["loss"] == pytest.approx(float(ce), rel=1e-4)


def test_binary_metrics_match_sklearn():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    y = (x[:, 0] + 0.8 * rng.normal(size=200) > 0).astype(np.int64)
    bundle = from_arrays(x, y, task="binary", batch_size=32)
    torch.manual_seed(0)
    task = BinaryClassificationTask(
        create_model("mlp", in_features=3, num_classes=1, width=8, depth=1), bundle.preprocessing
    )
    trainer, _ = fit(task, bundle, epochs=2, optimizer={"name": "adam", "lr": 0.01})
    metrics = trainer.evaluate(task, bundle, "test")
    x_test, y_test = bundle.test
    p = trainer.predict(task, x_test).numpy()
    assert p.shape == (len(y_test),) and ((p >= 0) & (p <= 1)).all()
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_test.numpy(), p > 0.5), abs=1e-6)
    assert metrics["auroc"] == pytest.approx(roc_auc_score(y_test.numpy(), p), abs=1e-4)
    assert metrics["auroc"] > 0.7


def test_regression_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    y = (x @ np.array([3.0, -2.0, 0.5, 0.0, 1.0]) + 100 + 0.3 * rng.normal(size=300)).astype(np.float32)
    bundle = from_arrays(x, y, task="regression", batch_size=32)
    torch.manual_seed(0)
    model = create_model("mlp", in_features=5, num_classes=1, depth=1, width=32)
    task = RegressionTask(model, 1, bundle.preprocessing)
    trainer, history = fit(task, bundle, epochs=15, optimizer={"name": "adam", "lr": 0.01})
    assert {"val_rmse", "val_mae", "val_r2"} <= set(history[-1])
    metrics = trainer.evaluate(task, bundle, "test")
    assert {"loss", "rmse", "mae", "r2"} <= set(metrics)
    x_test, y_test = bundle.test
    pred = trainer.predict(task, x_test).numpy().reshape(-1)
    truth = y_test.numpy().reshape(-1)
    assert abs(pred.mean() - 100) < 5, "predictions must be in the target's original units"
    assert metrics["r2"] == pytest.approx(r2_score(truth, pred), abs=1e-4)
    assert metrics["mae"] == pytest.approx(mean_absolute_error(truth, pred), rel=1e-4)
    assert metrics["rmse"] == pytest.approx(float(np.sqrt(np.mean((truth - pred) ** 2))), rel=1e-4)
    assert metrics["r2"] > 0.9


def test_multi_output_regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    y = np.stack([10 * x[:, 0], 0.1 * x[:, 1] + 5], 1).astype(np.float32)
    bundle = from_arrays(x, y, task="regression", batch_size=32)
    assert bundle.num_outputs == 2
    torch.manual_seed(0)
    task = RegressionTask(create_model("mlp", in_features=3, num_classes=2, width=16), 2, bundle.preprocessing)
    trainer, history = fit(task, bundle, epochs=5, optimizer={"name": "adam", "lr": 0.01})
    metrics = trainer.evaluate(task, bundle, "test")
    pred = trainer.predict(task, bundle.test[0]).numpy()
    assert pred.shape == (len(bundle.test[0]), 2)
    assert metrics["r2"] == pytest.approx(r2_score(bundle.test[1].numpy(), pred), abs=1e-4)  # uniform average


@pytest.mark.parametrize("loss", ["mae", "huber"])
def test_regression_losses(loss):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 2)).astype(np.float32)
    bundle = from_arrays(x, 3 * x[:, 0] - x[:, 1], task="regression", batch_size=16)
    torch.manual_seed(0)
    task = RegressionTask(create_model("mlp", in_features=2, num_classes=1, width=16), 1, bundle.preprocessing, loss)
    out, target = torch.tensor([[0.5], [2.0]]), torch.tensor([1.0, 1.0]) * bundle.preprocessing.target_std[0]
    target = target + bundle.preprocessing.target_mean[0]  # standardized: (1, 1)
    expected = {"mae": 0.75, "huber": (0.5 * 0.25 + 0.5) / 2}[loss]
    assert float(task.loss(out, target)) == pytest.approx(expected, rel=1e-4)
    _, history = fit(task, bundle, epochs=5, optimizer={"name": "adam", "lr": 0.01})
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_unknown_task_and_loss():
    from deepkit.families import family_of

    model = create_model("mlp", in_features=2, num_classes=1)
    with pytest.raises(ConfigError, match="did you mean 'huber'"):
        RegressionTask(model, 1, loss="hubber")
    with pytest.raises(ConfigError, match="did you mean 'regression'"):
        family_of("regresion")


# --- config and callbacks --------------------------------------------------------------------------------------------


def test_trainer_config_errors():
    with pytest.raises(ConfigError, match=r"trainer\.epocs.*did you mean 'epochs'"):
        Trainer(epocs=3)
    with pytest.raises(ConfigError, match=r"trainer\.optimizer\.lr"):
        Trainer(optimizer={"lr": "fast"})
    with pytest.raises(ConfigError, match=r"trainer\.precision"):
        Trainer(precision="fp8")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised when CUDA is absent")
def test_cuda_device_without_cuda(data):
    with pytest.raises(ConfigError, match="CUDA is not available"):
        fit(make_task(), data, epochs=1, device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_matches_cpu_predictions(data):
    task = make_task()
    trainer, history = fit(task, data, epochs=2, device="cuda", precision="bf16")
    assert trainer.device.type == "cuda" and next(task.model.parameters()).is_cuda
    assert all(math.isfinite(h["train_loss"]) for h in history)
    gpu = Trainer(progress="none", device="cuda")
    gpu.device = torch.device("cuda")
    on_gpu = gpu.predict(task, data.val[0])
    on_cpu = Trainer(progress="none").predict(task.to("cpu"), data.val[0])
    torch.testing.assert_close(on_gpu, on_cpu, rtol=1e-4, atol=1e-5)


def test_callback_hooks_fire_in_order(data):
    events = []

    class Recorder(Callback):
        def on_fit_start(self, trainer):
            events.append("fit_start")

        def on_epoch_start(self, trainer):
            events.append("epoch_start")

        def on_step_end(self, trainer):
            events.append("step")

        def on_epoch_end(self, trainer, logs):
            events.append(f"epoch_end:{int(logs['epoch'])}")

        def on_fit_end(self, trainer):
            events.append("fit_end")

    Trainer(progress="none", epochs=2, callbacks=[Recorder()]).fit(make_task(), data)
    epoch = ["epoch_start"] + ["step"] * 6
    assert events == ["fit_start", *epoch, "epoch_end:1", *epoch, "epoch_end:2", "fit_end"]


def test_exception_hook_sees_the_error(data):
    seen = []

    class Boom(Callback):
        def on_step_end(self, trainer):
            if trainer.state.step == 2:
                raise RuntimeError("boom")

        def on_exception(self, trainer, error):
            seen.append(str(error))

    with pytest.raises(RuntimeError, match="boom"):
        Trainer(progress="none", epochs=1, callbacks=[Boom()]).fit(make_task(), data)
    assert seen == ["boom"]


def test_run_dir_outputs(data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    trainer = Trainer(progress="plain", epochs=2, run_dir=out)
    trainer.fit(make_task(), data)
    assert (out / "metrics.csv").read_text().count("\n") == 3  # header + 2 epochs
    log = (out / "log.txt").read_text()
    assert log.startswith("speed plan (cpu: ") and "[x] log_sync" in log  # the fast-path decisions come first
    assert [line[:7] for line in log.splitlines() if line.startswith("epoch")] == ["epoch 1", "epoch 2"]
    assert {p.name for p in (out / "checkpoints").iterdir()} == {"best", "last"}
    assert (out / "plots" / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_run_dir_is_created_when_missing(data, tmp_path):
    out = tmp_path / "new" / "run"
    Trainer(progress="plain", epochs=1, run_dir=out).fit(make_task(), data)
    assert (out / "log.txt").is_file() and (out / "metrics.csv").is_file()


def test_the_progress_bar_moves_every_step_and_refreshes_metrics_at_log_intervals(data, monkeypatch):
    """rich's bar on a terminal: `completed` follows every step; loss and speed (a device sync) only every
    log_every steps and at the end of the epoch."""
    from rich.progress import Progress

    updates = []
    original = Progress.update

    def spy(self, task_id, **kw):
        updates.append(kw)
        return original(self, task_id, **kw)

    monkeypatch.setattr(Progress, "update", spy)
    trainer = Trainer(progress="bar", epochs=1, log_every=4, optimizer={"name": "adam", "lr": 0.01})
    trainer.fit(make_task(), data)
    per_step = [u for u in updates if "completed" in u][: trainer.batches_per_epoch]
    assert [u["completed"] for u in per_step] == list(range(1, trainer.batches_per_epoch + 1))
    with_info = [u["completed"] for u in per_step if "info" in u]
    assert with_info == [
        b for b in range(1, trainer.batches_per_epoch + 1) if b % 4 == 0 or b == trainer.batches_per_epoch
    ]
