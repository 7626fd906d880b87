"""Real-valued sequences: forecasting time series, and the long-range adding problem (vanishing gradients).

Data: ``deepkit.data.series`` (airline passengers, sunspots, any CSV series: log, differencing and standardization
fitted on the training part; sliding windows) and ``deepkit.data.long_range``. Report: one-step and multi-step
forecasts of the test period against naive and seasonal-naive baselines, with a plot; for the adding problem,
accuracy within a tolerance and the gradient norm per time step before and after training. Verbs: ``forecast``,
and ``predict`` on CSV files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from deepkit.cli_options import flag
from deepkit.errors import ConfigError, DataError
from deepkit.families.base import ExportSpec, Family, Finish, Predictor, Saved

if TYPE_CHECKING:
    import numpy as np
    import torch

    from deepkit.data.long_range import LongRangeData
    from deepkit.data.module import LoaderData
    from deepkit.recipe import Recipe
    from deepkit.tasks.base import Task

TASKS = {
    "forecast": "forecast a time series from a window of past values (RNNs): vs naive and seasonal-naive",
    "long_range": "the adding problem: one value from hundreds of steps back (vanishing gradients, RNN vs LSTM)",
}


@dataclass
class ForecastTaskConfig:
    """The ``task`` section of a forecasting recipe."""

    name: str = "forecast"
    loss: Literal["mse", "mae", "huber"] = "mse"
    huber_delta: float = 1.0


@dataclass
class LongRangeTaskConfig:
    """The ``task`` section of a long-range recipe (the problem's sizes are in ``data.long_range``)."""

    name: str = "long_range"


@dataclass
class SeriesStats(Saved):
    """A forecasting run keeps the series' window, horizon and fitted transform (log, difference, mean, std)."""

    task: str
    series: dict[str, Any] = field(default_factory=dict)  # data.series fields + "mean", "std"

    def meta(self) -> dict[str, Any]:
        return {"sequence": {"task": self.task, **({"series": self.series} if self.series else {})}}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> SeriesStats:
        seq = meta.get("sequence") or {}
        return cls(seq.get("task", (meta.get("task") or {}).get("name", "")), seq.get("series") or {})


def bind_series_model(model_section: dict[str, Any], sizes: dict[str, int]) -> torch.nn.Module:
    """A recurrent model over real-valued steps: ``in_features`` per step, ``num_classes`` outputs, no vocabulary."""
    from deepkit.config import field_types
    from deepkit.errors import ShapeError
    from deepkit.models.registry import create_model, get_entry

    name = model_section["name"]
    overrides = {k: v for k, v in model_section.items() if k != "name"}
    fields = field_types(get_entry(name).config_cls)
    for key, value in sizes.items():
        if key not in fields:
            raise ShapeError(
                f"model '{name}' has no {key}; this task needs a model over real-valued steps "
                "(lstm_forecaster, gru_forecaster, rnn_forecaster)"
            )
        if key in overrides and overrides[key] != value:
            raise ShapeError(
                f"model.{key}={overrides[key]} does not fit the data; expected {key}={value} (or leave it out)"
            )
        overrides[key] = value
    if fields.get("vocab_size") is not None:
        overrides["vocab_size"] = 0  # real-valued steps
    return create_model(name, **overrides)


class SeriesFamily(Family):
    name = "series"
    description = "real-valued sequences: time-series forecasting, long-range dependencies"
    tasks = TASKS

    def task_config(self, task: str) -> type:
        return ForecastTaskConfig if task == "forecast" else LongRangeTaskConfig

    def data_config(self, task: str) -> type:
        from deepkit.data.long_range import LongRangeDataConfig
        from deepkit.data.series import SeriesDataConfig

        return SeriesDataConfig if task == "forecast" else LongRangeDataConfig

    def datasets(self, task: str) -> dict[str, str]:
        from deepkit.data.long_range import LONG_RANGE
        from deepkit.data.series import TIME_SERIES

        return TIME_SERIES if task == "forecast" else LONG_RANGE

    def build_data(self, rec: Recipe, saved: Saved | None = None, given: Any = None) -> LoaderData:
        from deepkit.data.long_range import long_range_data
        from deepkit.data.series import series_data

        if given is not None:
            raise ConfigError(f"task '{rec.task.name}' reads its data from the recipe's data section, not arrays")
        self.check_dataset(rec)
        return series_data(rec.data) if rec.task.name == "forecast" else long_range_data(rec.data)

    def build_model(self, rec: Recipe, data: LoaderData) -> torch.nn.Module:
        if rec.task.name == "forecast":
            return bind_series_model(rec.model, {"in_features": 1, "num_classes": data.series.cfg.horizon})
        return bind_series_model(rec.model, {"in_features": 2, "num_classes": 1})

    def build_task(self, rec: Recipe, model: torch.nn.Module, data: LoaderData) -> Task:
        from deepkit.tasks.regression import RegressionTask

        if rec.task.name == "forecast":
            return RegressionTask(model, data.series.cfg.horizon, loss=rec.task.loss, huber_delta=rec.task.huber_delta)
        return RegressionTask(model, 1, loss="mse")

    def on_create(self, rec: Recipe, run_dir: Path, model: torch.nn.Module, data: LoaderData) -> None:
        if rec.task.name == "long_range":  # gradient flow of the untrained model, for the vanishing-gradient plot
            from deepkit.weights import atomic_write_text

            norms = {"init": gradient_norms(model, data)}
            atomic_write_text(run_dir / "gradient_norms.json", json.dumps(norms))

    def saved(self, rec: Recipe, data: LoaderData) -> SeriesStats:
        from deepkit.config import to_dict

        if rec.task.name != "forecast":
            return SeriesStats(rec.task.name)
        tf = data.series.transform
        return SeriesStats(rec.task.name, {**to_dict(data.series.cfg), "mean": tf.mean, "std": tf.std})

    def load_saved(self, folder: Path, meta: dict[str, Any]) -> SeriesStats:
        return SeriesStats.from_meta(meta)

    def report(self, run: Finish) -> dict[str, Any]:
        if run.recipe.task.name == "forecast":
            extra: dict[str, Any] = {}
            run.metrics.update(forecast_report(run, extra))
            return extra
        run.metrics.update(long_range_report(run))
        return {}

    def predictor(self, model: torch.nn.Module, task: str, saved: Saved, run_dir: Path | None) -> Predictor:
        return (ForecastPredictor if task == "forecast" else SeriesPredictor)(model, task, saved, run_dir)


# --- end of run ----------------------------------------------------------------------------------------------------
def forecast_report(run: Finish, extra: dict[str, Any]) -> dict[str, float]:
    """Test-period forecasts (one-step with true history; multi-step from the end of validation) vs baselines."""
    import numpy as np
    import torch

    from deepkit.data.series import (
        forecast_errors,
        multi_step_forecast,
        naive_forecast,
        one_step_forecast,
        seasonal_naive_forecast,
    )
    from deepkit.viz.sequence_plots import plot_forecast

    s = run.data.series
    model = run.task.model.eval()

    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x.to(run.trainer.device)).float().cpu()

    true = s.values[s.test_start :]
    season = s.cfg.season
    rows = {
        "model_one_step": one_step_forecast(s, predict),
        "model_multi_step": multi_step_forecast(s, predict),
        "naive_one_step": naive_forecast(s.values, s.test_start, True),
        "naive_multi_step": naive_forecast(s.values, s.test_start, False),
        "seasonal_naive_one_step": seasonal_naive_forecast(s.values, s.test_start, season, True),
        "seasonal_naive_multi_step": seasonal_naive_forecast(s.values, s.test_start, season, False),
    }
    out = {}
    for name, pred in rows.items():
        for metric, v in forecast_errors(pred, true).items():
            out[f"{name}_{metric}"] = v
    extra["forecast"] = {
        "time": s.labels[s.test_start :],
        "true": true.tolist(),
        **{k: np.asarray(v).tolist() for k, v in rows.items()},
    }
    plot_forecast(
        s.labels,
        s.values,
        s.test_start,
        {k: v for k, v in rows.items() if k in ("model_one_step", "model_multi_step", "seasonal_naive_multi_step")},
        run.plots / "forecast.png",
    )
    return out


def gradient_norms(model: torch.nn.Module, data: LongRangeData) -> list[float]:
    from deepkit.data.long_range import input_gradient_norms

    x, y = data.tensors["val"]
    device = next(model.parameters()).device
    return input_gradient_norms(model, x[:256].to(device), y[:256].to(device)).cpu().tolist()


def long_range_report(run: Finish) -> dict[str, float]:
    """Test accuracy within tolerance, MSE vs the predict-the-mean baseline, gradient norm per time step."""
    import numpy as np
    import torch

    from deepkit.data.long_range import ADDING_BASELINE_MSE
    from deepkit.viz.sequence_plots import plot_gradient_norms
    from deepkit.weights import atomic_write_text

    model, device = run.task.model, run.trainer.device
    x, y = run.data.tensors["test"]
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 1024].to(device)).float().cpu() for i in range(0, len(x), 1024)])
    err = (pred - y).abs()
    tol = run.recipe.data.long_range.tolerance
    trained = gradient_norms(model, run.data)
    path = run.run_dir / "gradient_norms.json"
    init = json.loads(path.read_text()).get("init") if path.is_file() else None
    norms = {"length": len(trained), "trained": trained, **({"init": init} if init else {})}
    atomic_write_text(path, json.dumps(norms))
    name = getattr(model, "model_name", "model")
    curves = {f"{name} (trained)": np.array(trained), **({f"{name} (init)": np.array(init)} if init else {})}
    plot_gradient_norms(curves, run.plots / "gradient_norms.png", "‖∂L/∂x_t‖ on the adding problem")
    return {
        "accuracy": float((err < tol).float().mean()),
        "mse": float(err.pow(2).mean()),
        "baseline_mse": ADDING_BASELINE_MSE,
        "grad_ratio_first_last": trained[0] / max(trained[-1], 1e-30),
    }


# --- using a trained run -------------------------------------------------------------------------------------------
class SeriesPredictor(Predictor):
    """A trained model over real-valued steps (the adding problem offers no verb besides ``eval``)."""


class ForecastPredictor(SeriesPredictor):
    """A forecaster: ``forecast(values, steps)`` -> the next values after a history, in the series' units.

    Example:
        >>> f = deepkit.load("runs/airline_lstm")                  # doctest: +SKIP
        >>> f.forecast(passengers[-36:], steps=12)                 # doctest: +SKIP
    """

    kind = "forecasting run"
    verbs = {"forecast": ("forecast",), "predict": ("predict_files",)}

    def forecast(self, values, steps: int | None = None) -> np.ndarray:
        """The next ``steps`` values (default: the trained horizon) after a history of raw ``values``; outputs are
        fed back as inputs when ``steps`` exceeds the model's horizon."""
        import numpy as np
        import torch

        from deepkit.data.series import SeriesTransform

        cfg = self.saved.series
        tf = SeriesTransform(cfg["log"], cfg["difference"], cfg["mean"], cfg["std"])
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        need = cfg["window"] + (1 if cfg["difference"] else 0)
        if len(v) < need or not np.isfinite(v).all():
            raise DataError(f"forecast needs at least {need} finite past values (the model's window), got {len(v)}")
        if steps is not None and steps < 1:
            raise ConfigError(f"steps must be >= 1, got {steps}")
        z = list(tf.forward(v))
        out: list[float] = []
        steps = steps or cfg["horizon"]
        while len(out) < steps:
            x = torch.tensor(z[-cfg["window"] :], dtype=torch.float32, device=self.device).view(1, -1, 1)
            with torch.no_grad():
                pred = self.model(x)[0].float().cpu().double().tolist()
            out += pred
            z += pred
        return tf.invert(np.asarray(out[:steps]), v[-1])

    def export_spec(self) -> ExportSpec:
        """A raw history (B, window [+1 with differencing]) -> the next ``horizon`` values in the series' units:
        what :meth:`forecast` gives for ``steps=horizon``, the fitted transform inside the graph."""
        import torch

        from deepkit.tasks.sequence import ForecastInference

        cfg = self.saved.series
        module = ForecastInference(self.model, cfg["log"], cfg["difference"], cfg["mean"], cfg["std"]).eval()
        need = cfg["window"] + (1 if cfg["difference"] else 0)
        spread = abs(cfg["std"]) * (1 if cfg["difference"] else 3) or 1.0

        def sample(batch: int, seed: int) -> dict[str, torch.Tensor]:
            g = torch.Generator().manual_seed(seed)
            if cfg["difference"]:  # a random walk whose steps look like the training changes
                steps = torch.randn(batch, need, generator=g, dtype=torch.float64) * spread + cfg["mean"]
                z = torch.cumsum(steps, dim=1)
            else:
                z = torch.randn(batch, need, generator=g, dtype=torch.float64) * spread / 3 + cfg["mean"]
            return {"history": (torch.exp(z) if cfg["log"] else z).float()}

        sidecar = {
            "task": self.task_name,
            "inputs": {"history": {"dtype": "float32", "shape": [need], "kind": "series"}},
            "outputs": {"forecast": {"shape": [cfg["horizon"]]}},
            "series": {k: cfg.get(k) for k in ("window", "horizon", "log", "difference", "column")},
        }
        return ExportSpec(module, sample(2, 0), ["forecast"], sidecar, sample)

    def predict_files(self, paths: list[str | Path], top_k: int = 1) -> list[dict[str, Any]]:
        """CSV series: the next values of each (``top_k`` of them, at least the trained horizon)."""
        from deepkit.data.series import read_series_csv

        records = []
        for path in paths:
            _, values, _ = read_series_csv(path, self.saved.series.get("column"))
            pred = self.forecast(values, max(top_k, self.saved.series["horizon"]))
            records.append({"input": str(path), "value": [round(float(p), 6) for p in pred]})
        return records


def forecast(
    predictor: ForecastPredictor,
    csv: Annotated[Path | None, typer.Option("--csv", help="History: a CSV series (the run's value column).")] = None,
    values: Annotated[
        str | None, typer.Option("--values", help="History: comma-separated numbers, oldest first.")
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Values to forecast (default: the horizon).")] = None,
    as_json: Annotated[bool, flag("--json", help="Print one JSON list.")] = False,
) -> None:
    """Forecast the next values of a series with a trained forecasting run: one value per line.

    Example: deepkit forecast runs/airline_lstm --csv passengers.csv --steps 12
    """
    import numpy as np

    if (csv is None) == (values is None):
        raise ConfigError("forecast needs the history: --csv FILE or --values 1,2,3,... (one of them)")
    if csv is not None:
        from deepkit.data.series import read_series_csv

        _, history, _ = read_series_csv(csv, predictor.saved.series.get("column"))
    else:
        try:
            history = np.array([float(v) for v in values.split(",") if v.strip()])
        except ValueError:
            raise ConfigError(f"--values must be comma-separated numbers, got {values!r}") from None
    out = [round(float(v), 6) for v in predictor.forecast(history, steps)]
    if as_json:
        typer.echo(json.dumps(out))
        return
    for v in out:
        typer.echo(f"{v:g}")


SeriesFamily.commands = (forecast,)
FAMILY = SeriesFamily()
