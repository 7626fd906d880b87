"""The status line: what it shows of a step's or an epoch's numbers."""

import math

from deepkit.train.callbacks import format_logs


def test_status_line_leaves_out_undefined_metrics_but_never_a_nan_loss():
    line = format_logs({"epoch": 1, "train_loss": math.nan, "val_map": 0.5, "val_map_large": math.nan, "lr": 1e-3})
    assert "val_map 0.5000" in line and "train_loss nan" in line  # a NaN loss is news: always shown
    assert "val_map_large" not in line  # COCO's mAP for a size range without objects is undefined, not zero
