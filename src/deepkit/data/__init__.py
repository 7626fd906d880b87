"""Readers of standard formats, preprocessing, and batching.

``build_data`` and ``from_arrays`` (tables and images for classification, binary classification and regression)
belong to the supervised family (``deepkit.families.supervised``) and are re-exported here.
"""

from typing import Any

from deepkit.data.build import DATASETS, DataBundle, DataConfig
from deepkit.data.loader import TensorLoader
from deepkit.data.module import DataModule, LoaderData
from deepkit.data.preprocess import Preprocessing
from deepkit.data.sources import data_root

__all__ = [
    "DATASETS",
    "DataBundle",
    "DataConfig",
    "DataModule",
    "LoaderData",
    "Preprocessing",
    "TensorLoader",
    "build_data",
    "data_root",
    "from_arrays",
]


def __getattr__(name: str) -> Any:
    if name in ("build_data", "from_arrays"):
        from deepkit.families import supervised

        return getattr(supervised, name)
    raise AttributeError(f"module 'deepkit.data' has no attribute '{name}'")
