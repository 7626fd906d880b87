"""The real sequence datasets read as documented in ../shared/datasets/MANIFEST.md (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deepkit.data.corpora import text_classification_data, translation_data
from deepkit.data.series import SeriesDataConfig, series_data
from deepkit.data.text import TextDataConfig


def datasets_root() -> Path:
    env = os.environ.get("DEEPKIT_DATA")
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[3] / "shared" / "datasets"


def need(*parts: str):
    path = datasets_root().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found (set DEEPKIT_DATA or provide ../shared/datasets)")
    return path


def test_sst2_splits_and_classes():
    folder = need("sst2", "train.tsv").parent
    cfg = TextDataConfig(name="sst2", path=str(folder), val_split=0.05)
    bundle = text_classification_data(cfg)
    assert bundle.class_names == ["negative", "positive"]
    assert bundle.splits["test"] == 872  # GLUE dev is the test split
    assert bundle.splits["train"] + bundle.splits["val"] == 67349
    assert int(bundle.parts["test"][1].sum()) == 444  # positives in dev


def test_airline_series_and_multi30k_pairs():
    need("timeseries", "airline-passengers.csv")
    bundle = series_data(SeriesDataConfig(name="airline"))
    assert len(bundle.series.values) == 144 and bundle.series.values.sum() == 40363
    assert bundle.series.labels[bundle.series.test_start] == "1959-01"
    need("multi30k", "train.de.gz")
    mt = translation_data(TextDataConfig(name="multi30k", limit=50))
    assert mt.splits == {"train": 50, "val": 1014, "test": 1000}
