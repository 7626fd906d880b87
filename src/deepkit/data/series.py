"""Univariate time series: strict CSV reading, transforms fitted on the training part only, sliding windows,
naive and seasonal-naive baselines, and one-step / multi-step forecasting with any window model.

Pipeline: values -> optional log -> optional first difference -> standardize (mean/std of the training part)
-> windows ``x = z[t-W : t]`` (B, W, 1), ``y = z[t : t+H]`` (B, H). The last ``test_size`` points are the test
period, the ``val_size`` before them validation; every window's target lies inside one part.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from deepkit.data.loader import TensorLoader
from deepkit.data.module import LoaderData
from deepkit.data.sources import dataset_path
from deepkit.errors import ConfigError, DataError

TIME_SERIES = {
    "airline": "airline passengers, monthly 1949-1960 (DATA_ROOT/timeseries/airline-passengers.csv)",
    "sunspots": "Zurich monthly sunspot numbers 1749-1983 (DATA_ROOT/timeseries/monthly-sunspots.csv)",
    "series_csv": "a CSV time series (data.path), one value column (data.series.column, default the last)",
}


@dataclass
class SeriesConfig:
    """The ``data.series`` recipe section."""

    column: str | None = None  # value column (default: the last column)
    window: int = 24  # past steps the model sees
    horizon: int = 1  # steps the model predicts at once
    test_size: int = 24  # last N points held out as test
    val_size: int = 12  # N points before the test period for validation
    season: int = 12  # seasonal period (12 for monthly data) for the seasonal-naive baseline
    log: bool = False  # model log(values) (multiplicative growth, e.g. airline passengers)
    difference: bool = False  # model first differences (removes a trend)
    scale: Literal["standard", "none"] = "standard"


@dataclass
class SeriesDataConfig:
    """The ``data`` section of a forecasting recipe."""

    name: str = "series_csv"  # airline, sunspots, series_csv
    path: str | None = None  # series_csv: the CSV file (airline/sunspots: default DATA_ROOT/timeseries/...)
    batch_size: int = 64
    eval_batch_size: int = 1024
    series: SeriesConfig = field(default_factory=SeriesConfig)


def read_series_csv(path: str | Path, column: str | None = None) -> tuple[list[str], np.ndarray, str]:
    """(time labels, float64 values, column name) from a CSV with a header; gaps and non-numbers are DataErrors."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"time-series CSV not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (offset {e.start})") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    if len(rows) < 2:
        raise DataError(f"{path} has no data rows; expected a header and one value per line")
    header = [h.strip() for h in rows[0]]
    col = column or header[-1]
    if col not in header:
        raise DataError(f"{path} has no column '{col}'; columns: {', '.join(header)}")
    j = header.index(col)
    labels, values = [], []
    for n, row in enumerate(rows[1:], 2):
        cell = row[j].strip() if j < len(row) else ""
        if cell == "" or cell.lower() in ("na", "nan", "null"):
            raise DataError(f"{path} line {n}: missing value in '{col}'; fill or interpolate gaps first")
        try:
            v = float(cell)
        except ValueError:
            raise DataError(f"{path} line {n}: '{cell}' in '{col}' is not a number") from None
        if not math.isfinite(v):
            raise DataError(f"{path} line {n}: '{cell}' is not a finite number")
        values.append(v)
        labels.append(row[0].strip() if j != 0 else str(n - 1))
    _check_monthly_gaps(path, labels)
    return labels, np.asarray(values, dtype=np.float64), col


def _check_monthly_gaps(path: Path, labels: list[str]) -> None:
    """If the time column is YYYY-MM, every month must follow the previous one."""
    try:
        months = [int(s[:4]) * 12 + int(s[5:7]) for s in labels]
    except ValueError:
        return
    if not all(len(s) >= 7 and s[4] == "-" for s in labels):
        return
    for a, b, la, lb in zip(months, months[1:], labels, labels[1:], strict=False):
        if b != a + 1:
            raise DataError(f"{path}: the series jumps from {la} to {lb}; expected consecutive months (a gap?)")


@dataclass
class SeriesTransform:
    """log -> difference -> standardize, fitted on the training part; JSON-safe for the checkpoint."""

    log: bool = False
    difference: bool = False
    mean: float = 0.0
    std: float = 1.0

    def fit(self, train_values: np.ndarray, scale: str) -> SeriesTransform:
        z = self._pre(train_values)
        if scale == "standard":
            self.mean, self.std = float(z.mean()), float(z.std()) or 1.0
        return self

    def _pre(self, v: np.ndarray) -> np.ndarray:
        if self.log:
            if (v <= 0).any():
                raise DataError("data.series.log=true needs positive values; the series has values <= 0")
            v = np.log(v)
        return np.diff(v) if self.difference else v

    def forward(self, v: np.ndarray) -> np.ndarray:
        """values (N,) -> model space (N,) (N-1 with differencing: z[i] is the change into v[i+1])."""
        return (self._pre(v) - self.mean) / self.std

    def invert(self, z: np.ndarray, last_value: float) -> np.ndarray:
        """Model-space predictions of consecutive steps after ``last_value`` -> values."""
        z = np.asarray(z, dtype=np.float64) * self.std + self.mean
        base = math.log(last_value) if self.log else last_value
        out = base + np.cumsum(z) if self.difference else z
        return np.exp(out) if self.log else out


@dataclass
class SeriesData:
    labels: list[str]
    values: np.ndarray  # original units
    transform: SeriesTransform
    cfg: SeriesConfig
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def test_start(self) -> int:
        return len(self.values) - self.cfg.test_size


def build_series(labels: list[str], values: np.ndarray, cfg: SeriesConfig) -> SeriesData:
    """Fit the transform on the training part and cut train/val/test windows (targets within each part)."""
    n, w, h = len(values), cfg.window, cfg.horizon
    if w < 1 or h < 1:
        raise ConfigError(f"data.series.window and horizon must be >= 1, got {w} and {h}")
    test0 = n - cfg.test_size
    val0 = test0 - cfg.val_size
    d = 1 if cfg.difference else 0
    if val0 - w - h - d < 8:
        raise DataError(
            f"the series has {n} points; window={w}, horizon={h}, val_size={cfg.val_size} and "
            f"test_size={cfg.test_size} leave fewer than 8 training windows; shorten them"
        )
    tf = SeriesTransform(cfg.log, cfg.difference).fit(values[:val0], cfg.scale)
    z = tf.forward(values)  # z[i] describes values[i + d]

    def windows(lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        # forecasts of values[t : t+h] for every t with lo <= t and t+h <= hi
        xs, ys = [], []
        for t in range(max(lo, w + d), hi - h + 1):
            xs.append(z[t - d - w : t - d])
            ys.append(z[t - d : t - d + h])
        return (
            torch.tensor(np.array(xs), dtype=torch.float32).unsqueeze(-1),
            torch.tensor(np.array(ys), dtype=torch.float32),
        )

    data = SeriesData(labels, values, tf, cfg)
    data.splits = {"train": windows(0, val0), "val": windows(val0, test0), "test": windows(test0, n)}
    for name, (x, _) in data.splits.items():
        if len(x) == 0 and (name == "train" or (name == "val" and cfg.val_size)):
            raise DataError(f"no {name} windows: horizon={h} is longer than the {name} period")
    return data


# --- forecasting and baselines -------------------------------------------------------------------------------------
Predict = Callable[[torch.Tensor], torch.Tensor]  # model-space windows (B, W, 1) -> (B, H)


def one_step_forecast(data: SeriesData, predict: Predict) -> np.ndarray:
    """Each test point predicted from the true history before it (first output of each window)."""
    cfg, tf = data.cfg, data.transform
    d = 1 if cfg.difference else 0
    z = tf.forward(data.values)
    starts = range(data.test_start, len(data.values))
    x = torch.tensor(np.array([z[t - d - cfg.window : t - d] for t in starts]), dtype=torch.float32).unsqueeze(-1)
    zp = predict(x)[:, 0].double().numpy()
    return np.array([tf.invert(zp[i : i + 1], data.values[t - 1])[0] for i, t in enumerate(starts)])


def multi_step_forecast(data: SeriesData, predict: Predict, steps: int | None = None) -> np.ndarray:
    """The whole test period from the history before it: outputs fed back as inputs (recursive) when the model's
    horizon is shorter than the test period."""
    cfg, tf = data.cfg, data.transform
    steps = steps or cfg.test_size
    z = list(tf.forward(data.values[: data.test_start]))
    out: list[float] = []
    while len(out) < steps:
        x = torch.tensor(z[-cfg.window :], dtype=torch.float32).view(1, -1, 1)
        pred = predict(x)[0].double().numpy().tolist()
        out += pred
        z += pred
    zp = np.asarray(out[:steps])
    return tf.invert(zp, data.values[data.test_start - 1])


def naive_forecast(values: np.ndarray, start: int, one_step: bool) -> np.ndarray:
    """Last observed value: the previous point (one-step) or the last training point repeated (multi-step)."""
    n = len(values)
    return values[start - 1 : n - 1].copy() if one_step else np.full(n - start, values[start - 1])


def seasonal_naive_forecast(values: np.ndarray, start: int, season: int, one_step: bool) -> np.ndarray:
    """Value one season earlier; multi-step repeats the last observed season."""
    n = len(values)
    if one_step:
        return values[start - season : n - season].copy()
    last = values[start - season : start]
    return np.array([last[i % season] for i in range(n - start)])


def forecast_errors(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and MAPE (%) via torchmetrics."""
    from torchmetrics.functional import mean_absolute_error, mean_absolute_percentage_error, mean_squared_error

    p, t = torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(true, dtype=torch.float64)
    return {
        "mae": float(mean_absolute_error(p, t)),
        "rmse": float(mean_squared_error(p, t, squared=False)),
        "mape": float(mean_absolute_percentage_error(p, t)) * 100,
    }


# --- the data contract ---------------------------------------------------------------------------------------------
@dataclass
class SeriesWindows(LoaderData):
    """Train/val/test windows of one series, with the series itself (baselines, plots, forecasts)."""

    series: SeriesData | None = None
    path: str = ""


def series_data(cfg: SeriesDataConfig) -> SeriesWindows:
    """Read ``cfg.name`` (a CSV series), fit the transform on its training part, cut the windows."""
    files = {"airline": "airline-passengers.csv", "sunspots": "monthly-sunspots.csv"}
    if cfg.name == "series_csv":
        if not cfg.path:
            raise ConfigError("data.name=series_csv needs data.path (a CSV file)")
        path = dataset_path(cfg, "")
    else:
        path = dataset_path(cfg, "timeseries", files[cfg.name])
    labels, values, _ = read_series_csv(path, cfg.series.column)
    series = build_series(labels, values, cfg.series)

    def make(split: str, shuffle: bool, seed: int) -> TensorLoader:
        x, y = series.splits[split]
        bs = cfg.batch_size if split == "train" else cfg.eval_batch_size
        return TensorLoader(x, y, bs, shuffle=shuffle, seed=seed)

    sizes = {k: len(v[0]) for k, v in series.splits.items()}
    return SeriesWindows(make, sizes, cfg.batch_size, cfg.eval_batch_size, series=series, path=str(path))
