"""Bringing one's own CSV (issue 13, part 3): categorical columns one-hot encoded (inferred or declared), missing
cells imputed from the training split only (or rows dropped, or an error), the fitted encoding saved with the
preprocessing; the class-count warning. Through the CLI (predict, eval, tiny tables, confusion plots):
tests/test_own_csv.py."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from deepkit.data import DataConfig, build_data
from deepkit.data.preprocess import Preprocessing
from deepkit.data.tables import CsvConfig, DataWarning, TabularEncoding, read_csv_columns
from deepkit.errors import DataError


# --- reading and encoding ------------------------------------------------------------------------------------------
def test_categorical_column_is_inferred_and_one_hot_encoded(colour_table, tmp_path):
    path = colour_table(tmp_path / "t.csv", n=60, gaps=False)
    bundle = build_data(DataConfig(name="csv", path=path), "classification")
    prep = bundle.preprocessing
    assert prep.feature_names == ["a", "colour", "b"]
    assert prep.tabular.features == ["a", "colour=blue", "colour=green", "colour=red", "b"]
    assert prep.input_shape == [5]
    raw = prep.inverse_transform(bundle.train[0])
    onehot = raw[:, 1:4]
    torch.testing.assert_close(onehot.sum(1), torch.ones(len(raw)))  # exactly one category per row
    assert any("column 'colour' is categorical" in n for n in bundle.notes)


def test_declared_categorical_numeric_codes(write_table, tmp_path):
    rows = [[i % 4, f"{i * 0.1:.1f}", i % 2] for i in range(40)]
    path = write_table(tmp_path / "t.csv", ["zone", "x", "y"], rows)
    cfg = DataConfig(name="csv", path=path, csv=CsvConfig(categorical=["zone"]))
    enc = build_data(cfg, "classification").preprocessing.tabular
    assert enc.categories == {"zone": ["0", "1", "2", "3"]} and enc.features[:4] == [f"zone={i}" for i in range(4)]
    with pytest.raises(DataError, match=r"data.csv.categorical: 'zon' is not a feature column.*did you mean 'zone'"):
        build_data(DataConfig(name="csv", path=path, csv=CsvConfig(categorical=["zon"])), "classification")


def test_strict_reading_keeps_the_errors_that_point_at_the_cell(write_table, tmp_path):
    path = write_table(tmp_path / "t.csv", ["a", "b", "y"], [[1, 2, 0], [3, "x", 1], [4, "", 0]])
    with pytest.raises(DataError, match=r"line 3, column 'b': 'x', expected a number.*data.csv.categorical=\[b\]"):
        read_csv_columns(path, options=CsvConfig(infer_categorical=False))
    with pytest.raises(DataError, match=r"line 4, column 'b': a missing value \(an empty cell\).*data.csv.missing"):
        read_csv_columns(path, options=CsvConfig(categorical=["b"], missing="error"))


def test_missing_values_are_imputed_from_the_training_split_only(write_table, tmp_path):
    """The medians / most frequent values come from training rows: changing the held-out rows moves nothing."""
    rows = [[i, float(i * i % 17), ["u", "v"][i % 2] if i % 3 else "v", i % 2] for i in range(50)]
    rows[5][1] = ""  # a gap in 'a'
    rows[8][2] = ""  # a gap in 'c'
    header = ["row", "a", "c", "y"]
    cfg = DataConfig(name="csv", path=write_table(tmp_path / "t.csv", header, rows), val_split=0.2, normalize="none")
    bundle = build_data(cfg, "classification")
    enc = bundle.preprocessing.tabular
    train_rows = {int(r) for r in bundle.train[0][:, 0].tolist()}
    assert len(train_rows) < 40
    assert enc.fill["a"] == float(np.median([rows[r][1] for r in train_rows if r != 5]))
    counts = {v: sum(rows[r][2] == v for r in train_rows) for v in "uv"}
    assert enc.fill["c"] == max(counts, key=counts.get)
    held = [r for r in range(50) if r not in train_rows]
    for r in held:  # held-out rows change wildly: nothing fitted moves
        rows[r][1], rows[r][2] = 1e6, "w"
    cfg2 = DataConfig(name="csv", path=write_table(tmp_path / "t2.csv", header, rows), val_split=0.2, normalize="none")
    with pytest.warns(DataWarning, match="categories not seen in training .*'w'"):
        assert build_data(cfg2, "classification").preprocessing.tabular.fill == enc.fill
    assert any("filled 2 missing cells" in n for n in bundle.notes)


def test_missing_drop_and_error(colour_table, tmp_path):
    path = colour_table(tmp_path / "t.csv", n=60)
    dropped = build_data(DataConfig(name="csv", path=path, csv=CsvConfig(missing="drop")), "classification")
    assert sum(dropped.sizes().values()) == 50  # empty 'a' in rows 3, 13, ..., 53; 'NA' colour in 7, 22, 37, 52
    assert any("left out 10 of 60 rows" in n for n in dropped.notes)
    with pytest.raises(DataError, match=r"line 5, column 'a': a missing value"):
        build_data(DataConfig(name="csv", path=path, csv=CsvConfig(missing="error")), "classification")


def test_rows_without_target_are_left_out_with_a_warning(write_table, tmp_path):
    rows = [[i, i % 2] for i in range(30)]
    rows[4][1] = ""
    path = write_table(tmp_path / "t.csv", ["a", "y"], rows)
    with pytest.warns(DataWarning, match="1 of 30 rows have no target value"):
        bundle = build_data(DataConfig(name="csv", path=path), "classification")
    assert sum(bundle.sizes().values()) == 29


def test_too_many_categories_is_a_clear_error(write_table, tmp_path):
    rows = [[f"id{i}", i, i % 2] for i in range(80)]
    path = write_table(tmp_path / "t.csv", ["name", "x", "y"], rows)
    with pytest.raises(DataError, match=r"'name' has \d+ distinct values .*max_categories=50 .*data.features"):
        build_data(DataConfig(name="csv", path=path), "classification")
    bundle = build_data(DataConfig(name="csv", path=path, features=["x"]), "classification")
    assert bundle.preprocessing.input_shape == [1]


def test_unseen_category_in_held_out_rows_is_all_zeros_with_a_warning(write_table, tmp_path):
    rows = [[i, "a" if i % 2 else "b", i % 2] for i in range(40)]
    rows[39][1] = "zebra"  # one row: held out for some split seeds
    path = write_table(tmp_path / "t.csv", ["x", "c", "y"], rows)
    for seed in range(10):
        cfg = DataConfig(name="csv", path=path, test_split=0.5, val_split=0.0, split_seed=seed, normalize="none")
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            bundle = build_data(cfg, "classification")
        if "zebra" not in bundle.preprocessing.tabular.categories["c"]:
            break
    else:
        pytest.fail("no split seed held the row out")
    assert any("'zebra'" in str(w.message) and "all zeros" in str(w.message) for w in record)
    zebra = bundle.test[0][bundle.test[0][:, 0] == 39]
    assert zebra[0, 1:].tolist() == [0.0, 0.0]


def test_encoding_round_trip_and_decode():
    cells = np.array([[1.0, "red"], [np.nan, None], [3.0, "blue"]], dtype=object)
    enc = TabularEncoding.fit(cells, ["n", "c"], ["c"])
    assert enc.fill == {"n": 2.0, "c": "blue"}  # tie between blue and red: the first category
    x, filled, unseen = enc.transform(cells)
    np.testing.assert_array_equal(x, [[1, 0, 1], [2, 1, 0], [3, 1, 0]])
    assert filled == {"n": 1, "c": 1} and not unseen
    assert enc.decode(x) == [["1", "red"], ["2", "blue"], ["3", "blue"]]
    x2, unseen = enc.encode_rows([[5, "green"], [None, "red"]])
    np.testing.assert_array_equal(x2, [[5, 0, 0], [2, 0, 1]])
    assert dict(unseen["c"]) == {"green": 1}


def test_old_preprocessing_without_tabular_still_loads():
    old = {"kind": "tabular", "input_shape": [2], "normalize": "feature", "mean": [0, 0], "std": [1, 1]}
    prep = Preprocessing.from_dict(old)
    assert prep.tabular is None
    new = Preprocessing.from_dict(
        {**old, "tabular": TabularEncoding.fit(np.array([[1.0, "x"]], dtype=object), ["a", "b"], ["b"]).__dict__}
    )
    assert new.tabular.categories == {"b": ["x"]}


def test_class_count_warning_only_for_many_classes(write_table, tmp_path):
    few = write_table(tmp_path / "few.csv", ["a", "y"], [[i, i % 5] for i in range(100)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        build_data(DataConfig(name="csv", path=few), "classification")
    many = write_table(tmp_path / "many.csv", ["a", "y"], [[i, f"c{i % 40}"] for i in range(100)])
    with pytest.warns(DataWarning, match="40 classes in 100 samples.*check data.target"):
        build_data(DataConfig(name="csv", path=many), "classification")
