"""Segmentation metrics against confusion matrices counted by hand, and against torchmetrics' own IoU/F1."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.classification import BinaryF1Score, MulticlassJaccardIndex

from deepkit.metrics.segmentation import confusion_metric, format_iou_table, mean_rule, scores_from_confusion
from deepkit.tasks.segmentation import IGNORE

# a 3×4 image, classes 0 (background), 1, 2 and 3 (never present), one ignored pixel
TARGET = torch.tensor([[0, 0, 1, 1], [0, 2, 1, 1], [2, 2, IGNORE, 0]])
PRED = torch.tensor([[0, 1, 1, 1], [0, 2, 2, 1], [2, 0, 1, 0]])
# by hand (rows truth, columns prediction; the ignored pixel predicted 1 counts nowhere):
#   truth 0 at (0,0) (0,1) (1,0) (2,3) -> predicted 0, 1, 0, 0
#   truth 1 at (0,2) (0,3) (1,2) (1,3) -> 1, 1, 2, 1
#   truth 2 at (1,1) (2,0) (2,1)       -> 2, 2, 0
HAND = torch.tensor([[3, 1, 0, 0], [0, 3, 1, 0], [1, 0, 2, 0], [0, 0, 0, 0]])


def logits_of(pred: torch.Tensor, k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(pred, k).permute(2, 0, 1)[None].float()  # (1, K, H, W)


def test_the_confusion_matrix_skips_ignored_pixels_and_equals_the_hand_count():
    m = confusion_metric(4, IGNORE)
    m.update(logits_of(PRED, 4), TARGET[None])
    assert torch.equal(m.compute(), HAND)


def test_iou_dice_and_pixel_accuracy_from_the_hand_counted_matrix():
    s = scores_from_confusion(HAND, ["background", "a", "b", "never"], background=0)
    # IoU = TP / (TP + FP + FN): class 0: 3 / (3 + 1 + 1) ; class 1: 3 / (3 + 1 + 1) ; class 2: 2 / (2 + 1 + 1)
    assert s["iou_background"] == pytest.approx(3 / 5)
    assert s["iou_a"] == pytest.approx(3 / 5)
    assert s["iou_b"] == pytest.approx(2 / 4)
    assert math.isnan(s["iou_never"])  # absent from truth and prediction: no IoU, and out of the mean
    assert s["miou"] == pytest.approx((3 / 5 + 3 / 5 + 2 / 4) / 3)
    assert s["miou_no_bg"] == pytest.approx((3 / 5 + 2 / 4) / 2)
    assert s["pixel_accuracy"] == pytest.approx(8 / 11)  # 11 pixels count (12 minus the ignored one)
    assert s["mdice"] == pytest.approx((6 / 8 + 6 / 8 + 4 / 6) / 3)  # 2TP / (2TP + FP + FN)


def test_per_class_iou_equals_torchmetrics_jaccard_where_the_class_is_present():
    torch.manual_seed(0)
    k = 5
    target = torch.randint(0, k, (3, 17, 13))
    target[:, :2] = IGNORE
    target[target == 4] = 0  # class 4 absent from the truth ...
    logits = torch.randn(3, k, 17, 13)
    logits[:, 4] -= 100  # ... and from the predictions
    m = confusion_metric(k, IGNORE)
    m.update(logits, target)
    s = scores_from_confusion(m.compute(), [str(i) for i in range(k)])
    ref = MulticlassJaccardIndex(k, average="none", ignore_index=IGNORE)(logits, target)
    for c in range(4):
        assert s[f"iou_{c}"] == pytest.approx(float(ref[c]), abs=1e-6)
    assert s["miou"] == pytest.approx(float(ref[:4].mean()), abs=1e-6)  # torchmetrics would count class 4 as 0


def test_binary_dice_is_torchmetrics_f1_of_the_foreground():
    torch.manual_seed(1)
    target = (torch.rand(2, 20, 20) < 0.2).long()
    logits = torch.randn(2, 2, 20, 20)
    m = confusion_metric(2, IGNORE)
    m.update(logits, target)
    s = scores_from_confusion(m.compute(), ["background", "vessel"], background=0)
    f1 = BinaryF1Score()(logits.argmax(1), target)
    assert s["dice"] == pytest.approx(float(f1), abs=1e-6)
    assert s["iou_fg"] == pytest.approx(s["iou_vessel"])
    assert s["pixel_error"] == pytest.approx(1 - s["pixel_accuracy"])
    assert "miou_no_bg" not in s  # two classes: the foreground's own figures say it


def test_the_rule_and_the_table_say_what_the_means_cover():
    rule = mean_rule(["Sky", "Road"], None, "label 11 (Unlabelled)")
    assert "over the 2 classes" in rule and "pixels of label 11 (Unlabelled) are ignored" in rule
    assert "left out of the means" in rule and "background" not in rule
    rule = mean_rule(["background", "a", "b"], 0, None)
    assert "background 'background' included" in rule and "miou_no_bg" in rule and "ignored" not in rule
    table = format_iou_table({"iou_sky": 0.5, "iou_road": float("nan"), "miou": 0.5}, ["Sky", "Road"])
    assert table.splitlines()[1].split() == ["Sky", "50.0"] and table.splitlines()[2].split() == ["Road", "n/a"]
