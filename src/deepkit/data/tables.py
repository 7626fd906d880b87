"""CSV tables: feature columns and one target column, with errors that point at the bad cell.

Two readers share the file checks (header, ragged rows, missing columns, UTF-8):

* :func:`read_csv_columns` (training, evaluation, prediction): numeric columns as floats, categorical columns
  (declared in ``data.csv.categorical`` or inferred: any non-numeric value) as strings, missing cells kept as
  NaN / None. :class:`TabularEncoding` is then fitted on the training split only (categories, medians, most
  frequent values), saved with the run, and turns any split or any file of new rows into model inputs: one-hot
  columns for categories, missing cells imputed.
* :func:`read_csv_table`: every feature a finite number, no missing cell (runs written before categorical
  columns existed, and callers that want exactly that).
"""

from __future__ import annotations

import csv
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from deepkit.errors import DataError, suggest

# what pandas' read_csv reads as missing, less "None" (a category in some tables); data.csv.na_values changes it
NA_VALUES = ["", "NA", "N/A", "n/a", "#N/A", "NaN", "nan", "-nan", "NULL", "null", "<NA>", "?"]


class DataWarning(UserWarning):
    """Something in the data that training can go on with, but that the user should know (the message says what)."""


@dataclass
class CsvConfig:
    """``data.csv``: how the columns of a CSV table become numbers."""

    categorical: list[str] | None = None  # columns one-hot encoded (besides those inferred, see infer_categorical)
    infer_categorical: bool = True  # a column with any non-numeric value is categorical (false: it is an error)
    max_categories: int = 50  # a categorical column with more distinct training values is an error (an id? text?)
    missing: Literal["impute", "drop", "error"] = "impute"  # missing cells: impute (median / most frequent value of
    #                                                          the training split), drop their rows, or stop
    na_values: list[str] = field(default_factory=lambda: list(NA_VALUES))  # cells read as missing


# --- the file ---------------------------------------------------------------------------------------------------------
@dataclass
class CsvRows:
    """A CSV file's cells (stripped strings), checked for shape; ``lines`` are the 1-based file lines of ``body``."""

    path: Path
    header: list[str]
    body: list[list[str]]
    lines: list[int]
    features: list[str]
    target: str | None


def read_csv_rows(
    path: str | Path, target: str | None = None, features: list[str] | None = None, require_target: bool = True
) -> CsvRows:
    """The header and rows of a CSV. ``target`` defaults to the last column; features are all other columns.

    Raises:
        DataError: missing file, not UTF-8, no rows, ragged rows, unknown target or feature columns.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CSV file not found: {path}")
    rows, lines = [], []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            for row in reader:
                if row and any(c.strip() for c in row):
                    rows.append([c.strip() for c in row])
                    lines.append(reader.line_num)
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); expected a UTF-8 CSV") from None
    except csv.Error as e:
        raise DataError(f"malformed CSV {path}: {e}") from None
    if not rows:
        raise DataError(f"{path} is empty; expected a header row and at least one data row")
    header, body = rows[0], rows[1:]
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
    for row, line in zip(body, lines[1:], strict=True):
        if len(row) != len(header):
            raise DataError(f"{path} line {line}: {len(row)} fields, expected {len(header)} (as in the header)")
    return CsvRows(path, header, body, lines[1:], list(features), target)


# --- numbers only (the strict reader) ------------------------------------------------------------------------------
@dataclass
class Table:
    x: np.ndarray  # (N, F) float32
    y: list[str] | None  # raw target strings, parsed by the task (labels or numbers)
    feature_names: list[str]
    target_name: str | None


def read_csv_table(
    path: str | Path, target: str | None = None, features: list[str] | None = None, require_target: bool = True
) -> Table:
    """Read a CSV whose features are all numbers, with no missing cell (see :func:`read_csv_columns` otherwise).

    Raises:
        DataError: missing file, no rows, ragged rows, empty or non-numeric feature cells, NaN/Inf values.
    """
    t = read_csv_rows(path, target, features, require_target)
    f_idx = [t.header.index(n) for n in t.features]
    t_idx = t.header.index(t.target) if t.target is not None else None
    x = np.empty((len(t.body), len(f_idx)), dtype=np.float32)
    ys: list[str] = []
    for i, (row, line) in enumerate(zip(t.body, t.lines, strict=True)):
        for j, k in enumerate(f_idx):
            x[i, j] = _number(row[k], t.path, line, t.header[k])
        if t_idx is not None:
            if row[t_idx] == "":
                raise DataError(f"{t.path} line {line}: empty target '{t.target}', expected a value")
            ys.append(row[t_idx])
    return Table(x=x, y=ys if t_idx is not None else None, feature_names=t.features, target_name=t.target)


def _number(cell: str, path: Path, line: int, column: str, hint: str = "") -> float:
    try:
        v = float(cell)
    except ValueError:
        what = "an empty cell" if cell == "" else f"'{cell}'"
        raise DataError(
            f"{path} line {line}, column '{column}': {what}, expected a number "
            + (hint or "(fill missing values or drop the column with data.features)")
        ) from None
    if not math.isfinite(v):
        raise DataError(f"{path} line {line}, column '{column}': {cell}, expected a finite number")
    return v


# --- numbers and categories, missing cells kept --------------------------------------------------------------------
@dataclass
class CsvColumns:
    """A CSV read for encoding: ``cells`` (N, F) object array holding floats (NaN: missing) in numeric columns and
    strings (None: missing) in categorical ones."""

    cells: np.ndarray
    y: list[str] | None
    feature_names: list[str]
    target_name: str | None
    categorical: list[str]
    notes: list[str] = field(default_factory=list)


def read_csv_columns(
    path: str | Path,
    target: str | None = None,
    features: list[str] | None = None,
    options: CsvConfig | None = None,
    categorical: list[str] | None = None,
    require_target: bool = True,
) -> CsvColumns:
    """Read a CSV for :class:`TabularEncoding`.

    Args:
        options: the recipe's ``data.csv`` (which columns are categorical, what counts as missing and what to do).
        categorical: the categorical columns of a trained run (then nothing is inferred: a word in one of its
            numeric columns is an error).

    Rows without a target value are left out with a warning (``missing: error``: an error); with ``missing: drop``
    so are rows with a missing feature.
    """
    opts = options or CsvConfig()
    t = read_csv_rows(path, target, features, require_target)
    na = set(opts.na_values)
    f_idx = [t.header.index(n) for n in t.features]
    t_idx = t.header.index(t.target) if t.target is not None else None
    body, lines, notes = t.body, t.lines, []

    if t_idx is not None and require_target:
        no_target = [i for i, row in enumerate(body) if row[t_idx] in na]
        if no_target:
            first = lines[no_target[0]]
            if opts.missing == "error":
                raise DataError(
                    f"{t.path} line {first}: empty target '{t.target}', expected a value "
                    "(data.csv.missing=drop leaves such rows out)"
                )
            warnings.warn(
                f"{t.path}: {len(no_target)} of {len(body)} rows have no target value (first: line {first}); "
                "they were left out",
                DataWarning,
                stacklevel=2,
            )
            gone = set(no_target)
            body = [r for i, r in enumerate(body) if i not in gone]
            lines = [x for i, x in enumerate(lines) if i not in gone]

    declared = list(opts.categorical or []) if categorical is None else list(categorical)
    for name in declared:
        if name not in t.features:
            where = "data.csv.categorical" if categorical is None else "the run's categorical columns"
            raise DataError(f"{where}: '{name}' is not a feature column of {t.path}{suggest(name, t.features)}")
    cat = set(declared)
    for name, k in zip(t.features, f_idx, strict=True):
        if name in cat:
            continue
        for row, line in zip(body, lines, strict=True):
            cell = row[k]
            if cell in na or _is_float(cell):
                continue
            if categorical is None and opts.infer_categorical:
                cat.add(name)
                break
            hint = (
                f"(this run reads '{name}' as numbers)"
                if categorical is not None
                else f"(declare it categorical: data.csv.categorical=[{name}])"
            )
            raise DataError(f"{t.path} line {line}, column '{name}': '{cell}', expected a number {hint}")

    missing_rows = []
    if opts.missing != "impute":
        for i, row in enumerate(body):
            j = next((j for j, k in enumerate(f_idx) if row[k] in na), None)
            if j is None:
                continue
            if opts.missing == "error":
                raise DataError(
                    f"{t.path} line {lines[i]}, column '{t.features[j]}': a missing value "
                    f"({'an empty cell' if row[f_idx[j]] == '' else repr(row[f_idx[j]])}); set data.csv.missing=impute "
                    "(median / most frequent value of the training split) or drop"
                )
            missing_rows.append(i)
    if missing_rows:
        gone = set(missing_rows)
        notes.append(f"{t.path}: left out {len(gone)} of {len(body)} rows with missing values (data.csv.missing=drop)")
        body = [r for i, r in enumerate(body) if i not in gone]
        lines = [x for i, x in enumerate(lines) if i not in gone]
        if not body:
            raise DataError(f"{t.path}: every row has a missing value; set data.csv.missing=impute")

    cells = np.empty((len(body), len(f_idx)), dtype=object)
    for j, (name, k) in enumerate(zip(t.features, f_idx, strict=True)):
        if name in cat:
            cells[:, j] = [None if row[k] in na else row[k] for row in body]
        else:
            cells[:, j] = [
                math.nan if row[k] in na else _number(row[k], t.path, line, name)
                for row, line in zip(body, lines, strict=True)
            ]
    ys = [row[t_idx] for row in body] if t_idx is not None else None
    return CsvColumns(cells, ys, t.features, t.target, [n for n in t.features if n in cat], notes)


def _category(v: Any) -> str:
    """A category given as a number (3, 3.0) -> its name as a CSV holds it ("3")."""
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _is_float(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


# --- the fitted encoding (saved with the run) ------------------------------------------------------------------------
@dataclass
class TabularEncoding:
    """Table columns -> model inputs, fitted on the training split: numeric columns pass through (missing cells get
    the training median), categorical ones become one-hot columns in the order of ``categories`` (missing cells get
    the most frequent training category; a category never seen in training gets all zeros, as scikit-learn's
    ``OneHotEncoder(handle_unknown="ignore")``)."""

    columns: list[str] = field(default_factory=list)  # the table's feature columns, in the order they are read
    categories: dict[str, list[str]] = field(default_factory=dict)  # categorical column -> its training categories
    fill: dict[str, Any] = field(default_factory=dict)  # column -> what a missing cell becomes (median / most frequent)
    features: list[str] = field(default_factory=list)  # the model's inputs: "age", "colour=red", "colour=blue", ...
    na_values: list[str] = field(default_factory=lambda: list(NA_VALUES))  # cells read as missing (data.csv)

    @classmethod
    def fit(
        cls,
        cells: np.ndarray,
        columns: list[str],
        categorical: list[str],
        max_categories: int = 50,
        na_values: list[str] | None = None,
    ) -> TabularEncoding:
        """Fit on the training split's ``cells`` (see :class:`CsvColumns`)."""
        from deepkit.data.splits import label_order

        enc = cls(columns=list(columns), na_values=list(NA_VALUES if na_values is None else na_values))
        for j, name in enumerate(columns):
            col = cells[:, j]
            if name in categorical:
                counts = Counter(v for v in col.tolist() if v is not None)
                if not counts:
                    raise DataError(f"column '{name}' has no values in the training split; drop it with data.features")
                if len(counts) > max_categories:
                    raise DataError(
                        f"categorical column '{name}' has {len(counts)} distinct values in the training split, more "
                        f"than data.csv.max_categories={max_categories} (an identifier or free text?); leave it out "
                        "with data.features, or raise data.csv.max_categories"
                    )
                cats = [str(c) for c in label_order(counts)]
                enc.categories[name] = cats
                enc.fill[name] = max(cats, key=lambda c: (counts[c], -cats.index(c)))  # ties: the first category
                enc.features += [f"{name}={c}" for c in cats]
            else:
                values = col.astype(np.float64)
                known = values[~np.isnan(values)]
                if not len(known):
                    raise DataError(f"column '{name}' has no values in the training split; drop it with data.features")
                enc.fill[name] = float(np.median(known))
                enc.features.append(name)
        return enc

    @classmethod
    def numeric(cls, columns: list[str]) -> TabularEncoding:
        """Every column a number, nothing to fill (runs written before categorical columns existed)."""
        return cls(columns=list(columns), features=list(columns))

    @property
    def categorical(self) -> list[str]:
        return [c for c in self.columns if c in self.categories]

    def transform(self, cells: np.ndarray) -> tuple[np.ndarray, dict[str, int], dict[str, Counter]]:
        """``cells`` -> (N, len(features)) float32; also the missing cells filled and the unseen categories met,
        per column."""
        n = len(cells)
        out = np.zeros((n, len(self.features)), dtype=np.float32)
        filled: dict[str, int] = {}
        unseen: dict[str, Counter] = {}
        pos = 0
        for j, name in enumerate(self.columns):
            col = cells[:, j]
            if name in self.categories:
                cats = self.categories[name]
                index = {c: i for i, c in enumerate(cats)}
                gaps = [i for i, v in enumerate(col.tolist()) if v is None]
                if gaps:
                    filled[name] = len(gaps)
                    col = col.copy()
                    col[gaps] = self._fill(name)
                for i, v in enumerate(col.tolist()):
                    k = index.get(str(v))
                    if k is None:
                        unseen.setdefault(name, Counter())[str(v)] += 1
                    else:
                        out[i, pos + k] = 1.0
                pos += len(cats)
            else:
                values = col.astype(np.float64)
                gaps = np.isnan(values)
                if gaps.any():
                    filled[name] = int(gaps.sum())
                    values = np.where(gaps, self._fill(name), values)
                out[:, pos] = values
                pos += 1
        return out, filled, unseen

    def encode_rows(self, rows: Any) -> tuple[np.ndarray, dict[str, Counter]]:
        """Raw rows (a pandas DataFrame with these columns, or an (N, columns) array or list of values: numbers,
        category names, None / NaN / an NA string for missing) -> model inputs, and the unseen categories met."""
        if hasattr(rows, "columns"):
            missing = [c for c in self.columns if c not in list(rows.columns)]
            if missing:
                raise DataError(f"the rows lack the columns {missing} (this run reads {self.columns})")
            rows = rows[self.columns].to_numpy(dtype=object)
        arr = np.asarray(rows, dtype=object)
        if arr.ndim == 1 and len(arr) == len(self.columns):
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != len(self.columns):
            raise DataError(f"rows of shape {arr.shape}; expected (N, {len(self.columns)}) values of {self.columns}")
        na = set(self.na_values)
        cells = np.empty(arr.shape, dtype=object)
        for j, name in enumerate(self.columns):
            for i, v in enumerate(arr[:, j].tolist()):
                gap = v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and v.strip() in na)
                if name in self.categories:
                    cells[i, j] = None if gap else (_category(v) if not isinstance(v, str) else v.strip())
                elif gap:
                    cells[i, j] = math.nan
                else:
                    try:
                        cells[i, j] = float(v)
                    except (TypeError, ValueError):
                        raise DataError(f"row {i}, column '{name}': {v!r}, expected a number") from None
        x, _, unseen = self.transform(cells)
        return x, unseen

    def _fill(self, name: str) -> Any:
        if name not in self.fill:
            raise DataError(f"column '{name}' has missing values, and this run has no value to fill them with")
        return self.fill[name]

    def decode(self, x: np.ndarray) -> list[list[str]]:
        """Model inputs (before normalization) back to table cells: the inverse of :meth:`transform` for rows
        without unseen categories (such a row decodes to an empty cell)."""
        rows: list[list[str]] = [[] for _ in range(len(x))]
        pos = 0
        for name in self.columns:
            if name in self.categories:
                cats = self.categories[name]
                block = x[:, pos : pos + len(cats)]
                for row, b in zip(rows, block, strict=True):
                    row.append(cats[int(b.argmax())] if b.max() > 0.5 else "")
                pos += len(cats)
            else:
                for row, v in zip(rows, x[:, pos], strict=True):
                    row.append(f"{float(v):.6g}")
                pos += 1
        return rows


def summarize(enc: TabularEncoding, filled: dict[str, int], where: str) -> list[str]:
    """Lines for a run's log: the categorical columns and the missing cells filled."""
    lines = []
    for name, cats in enc.categories.items():
        shown = ", ".join(cats[:8]) + (f", … ({len(cats)} in all)" if len(cats) > 8 else "")
        lines.append(f"{where}: column '{name}' is categorical, one-hot encoded ({shown})")
    if filled:
        parts = [f"{name} ({n}, with {_show(enc.fill[name])})" for name, n in filled.items()]
        lines.append(
            f"{where}: filled {sum(filled.values())} missing cells with the training split's median / most frequent "
            f"value: {', '.join(parts)}"
        )
    return lines


def unseen_message(unseen: dict[str, Counter], where: str) -> str:
    parts = []
    for name, counts in unseen.items():
        shown = ", ".join(f"'{v}'" for v, _ in counts.most_common(3))
        parts.append(f"'{name}': {shown}" + (f" and {len(counts) - 3} more" if len(counts) > 3 else ""))
    n = sum(sum(c.values()) for c in unseen.values())
    return (
        f"{where}: {n} cells hold categories not seen in training ({'; '.join(parts)}); they were encoded as all zeros"
    )


def _show(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else f"'{v}'"
