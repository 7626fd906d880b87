"""Readers of standard formats, preprocessing, and batching."""

from deepkit.data.build import DATASETS, DataBundle, DataConfig, build_data, from_arrays
from deepkit.data.loader import TensorLoader
from deepkit.data.preprocess import Preprocessing
from deepkit.data.sources import data_root

__all__ = [
    "DATASETS",
    "DataBundle",
    "DataConfig",
    "Preprocessing",
    "TensorLoader",
    "build_data",
    "data_root",
    "from_arrays",
]
