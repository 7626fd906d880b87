"""Time series: strict CSV reading, train-only scaling, windows, baselines, one-step and multi-step forecasts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepkit.data.series import (
    SeriesConfig,
    SeriesTransform,
    build_series,
    forecast_errors,
    multi_step_forecast,
    naive_forecast,
    one_step_forecast,
    read_series_csv,
    seasonal_naive_forecast,
)
from deepkit.errors import DataError


def _write(path, rows, header="Month,Value"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def _monthly(n, start=1950):
    return [f"{start + i // 12}-{i % 12 + 1:02d}" for i in range(n)]


def test_read_series_csv_rejects_gaps_and_non_numbers(tmp_path):
    labels, values, col = read_series_csv(
        _write(tmp_path / "ok.csv", [f'"{m}",{i}' for i, m in enumerate(_monthly(30))])
    )
    assert col == "Value" and len(values) == 30 and labels[0] == "1950-01"
    with pytest.raises(DataError, match="line 3: 'abc' in 'Value' is not a number"):
        read_series_csv(_write(tmp_path / "bad.csv", ["1950-01,1", "1950-02,abc"]))
    with pytest.raises(DataError, match="line 3: missing value"):
        read_series_csv(_write(tmp_path / "gap.csv", ["1950-01,1", "1950-02,", "1950-03,4"]))
    with pytest.raises(DataError, match="jumps from 1950-02 to 1950-04"):
        read_series_csv(_write(tmp_path / "hole.csv", ["1950-01,1", "1950-02,2", "1950-04,4"]))
    with pytest.raises(DataError, match="no column 'Sales'"):
        read_series_csv(tmp_path / "ok.csv", "Sales")


def test_transform_is_fitted_on_train_only_and_inverts():
    v = np.arange(1, 101, dtype=float) ** 1.5
    tf = SeriesTransform(log=True, difference=True).fit(v[:60], "standard")
    z = tf.forward(v)
    assert abs(z[:59].mean()) < 1e-9 and abs(z[:59].std() - 1) < 1e-9  # train part standardized exactly
    assert abs(z[59:].mean()) > 0.1  # later part is not (no leakage of its statistics)
    np.testing.assert_allclose(tf.invert(z[70:80], v[70]), v[71:81], rtol=1e-9)


def test_windows_keep_targets_inside_each_part():
    v = np.arange(100, dtype=float)
    cfg = SeriesConfig(window=6, horizon=2, test_size=10, val_size=8)
    s = build_series(_monthly(100), v, cfg)
    mean, std = s.transform.mean, s.transform.std
    x, y = s.splits["train"]
    raw_y = y * std + mean
    assert raw_y.max() <= 81 and x.shape[1:] == (6, 1) and y.shape[1] == 2
    torch.testing.assert_close(x[0, :, 0] * std + mean, torch.arange(6.0))
    xv, yv = s.splits["val"]
    assert (yv * std + mean).min() >= 82 and (yv * std + mean).max() <= 89
    xt, yt = s.splits["test"]
    assert (yt * std + mean).min() >= 90 and len(xt) == 9
    with pytest.raises(DataError, match="fewer than 8 training windows"):
        build_series(_monthly(30), v[:30], SeriesConfig(window=12, test_size=6, val_size=6))


def test_baselines():
    v = np.arange(48, dtype=float) + np.tile(np.arange(12) * 10, 4)
    assert naive_forecast(v, 40, True).tolist() == v[39:47].tolist()
    assert naive_forecast(v, 40, False).tolist() == [v[39]] * 8
    assert seasonal_naive_forecast(v, 40, 12, True).tolist() == v[28:36].tolist()
    assert seasonal_naive_forecast(v, 36, 12, False).tolist() == v[24:36].tolist()
    err = forecast_errors(np.array([1.0, 3.0]), np.array([2.0, 2.0]))
    assert err["mae"] == pytest.approx(1.0) and err["rmse"] == pytest.approx(1.0) and err["mape"] == pytest.approx(50)


def test_a_perfect_model_forecasts_exactly_one_step_and_multi_step():
    v = 100 + 3.0 * np.arange(80)  # linear trend: differences are constant
    cfg = SeriesConfig(window=5, horizon=1, test_size=12, val_size=6, difference=True)
    s = build_series(_monthly(80), v, cfg)

    def oracle(x: torch.Tensor) -> torch.Tensor:  # the next difference equals the last one
        return x[:, -1, :1]

    np.testing.assert_allclose(one_step_forecast(s, oracle), v[68:], rtol=1e-6)
    np.testing.assert_allclose(multi_step_forecast(s, oracle), v[68:], rtol=1e-6)
    naive = forecast_errors(naive_forecast(v, 68, False), v[68:])["rmse"]
    assert forecast_errors(multi_step_forecast(s, oracle), v[68:])["rmse"] < 1e-6 < naive
