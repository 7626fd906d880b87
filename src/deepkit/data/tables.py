"""CSV tables: numeric feature columns and one target column, with errors that point at the bad cell."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepkit.errors import DataError, suggest


@dataclass
class Table:
    x: np.ndarray  # (N, F) float32
    y: list[str] | None  # raw target strings, parsed by the task (labels or numbers)
    feature_names: list[str]
    target_name: str | None


def read_csv_table(
    path: str | Path, target: str | None = None, features: list[str] | None = None, require_target: bool = True
) -> Table:
    """Read a CSV with a header row. ``target`` defaults to the last column; features are all other columns.

    Raises:
        DataError: missing file, no rows, ragged rows, empty or non-numeric feature cells, NaN/Inf values.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CSV file not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); expected a UTF-8 CSV") from None
    except csv.Error as e:
        raise DataError(f"malformed CSV {path}: {e}") from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"{path} is empty; expected a header row and at least one data row")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    if not body:
        raise DataError(f"{path} has a header but no data rows; expected at least one row")
    if target is None and require_target:
        target = header[-1]
    if target is not None and target not in header:
        if require_target:
            raise DataError(f"target column '{target}' not in {path}{suggest(target, header)}")
        target = None  # predicting on rows that lack the target column
    if features is None:
        features = [h for h in header if h != target]
    for name in features:
        if name not in header:
            raise DataError(f"feature column '{name}' not in {path}{suggest(name, header)}")
    f_idx = [header.index(n) for n in features]
    t_idx = header.index(target) if target is not None else None
    x = np.empty((len(body), len(features)), dtype=np.float32)
    ys: list[str] = []
    for i, row in enumerate(body):
        line = i + 2  # 1-based, after the header
        if len(row) != len(header):
            raise DataError(f"{path} line {line}: {len(row)} fields, expected {len(header)} (as in the header)")
        for j, k in enumerate(f_idx):
            cell = row[k].strip()
            try:
                v = float(cell)
            except ValueError:
                what = "an empty cell" if cell == "" else f"'{cell}'"
                raise DataError(
                    f"{path} line {line}, column '{header[k]}': {what}, expected a number "
                    "(fill missing values or drop the column with data.features)"
                ) from None
            if not math.isfinite(v):
                raise DataError(f"{path} line {line}, column '{header[k]}': {cell}, expected a finite number")
            x[i, j] = v
        if t_idx is not None:
            cell = row[t_idx].strip()
            if cell == "":
                raise DataError(f"{path} line {line}: empty target '{target}', expected a value")
            ys.append(cell)
    return Table(x=x, y=ys if t_idx is not None else None, feature_names=features, target_name=target)
