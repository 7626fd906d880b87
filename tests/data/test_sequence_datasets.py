"""The real sequence datasets read as documented in ../shared/datasets/MANIFEST.md (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deepkit.data.build import DataConfig
from deepkit.data.sequences import build_sequence_data


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
    cfg = DataConfig(name="sst2", path=str(folder), val_split=0.05)
    bundle = build_sequence_data(cfg, "text_classification")
    assert bundle.class_names == ["negative", "positive"]
    assert bundle.splits["test"] == 872  # GLUE dev is the test split
    assert bundle.splits["train"] + bundle.splits["val"] == 67349
    assert int(bundle.raw["test"][1].sum()) == 444  # positives in dev


def test_airline_series_and_multi30k_pairs():
    need("timeseries", "airline-passengers.csv")
    bundle = build_sequence_data(DataConfig(name="airline"), "forecast")
    assert len(bundle.series.values) == 144 and bundle.series.values.sum() == 40363
    assert bundle.series.labels[bundle.series.test_start] == "1959-01"
    need("multi30k", "train.de.gz")
    mt = build_sequence_data(DataConfig(name="multi30k", limit=50), "translation")
    assert mt.splits == {"train": 50, "val": 1014, "test": 1000}
