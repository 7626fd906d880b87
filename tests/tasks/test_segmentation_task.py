"""Segmentation losses honour the ignore label and class weights; tiled inference equals whole-image inference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepkit.errors import ConfigError
from deepkit.tasks.segmentation import IGNORE, SegmentationTask, parse_loss, segmentation_loss, sliding_window


def batch(seed: int = 0, k: int = 4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, k, 9, 11, generator=g)
    target = torch.randint(0, k, (2, 9, 11), generator=g)
    return logits, target


@pytest.mark.parametrize("terms", [["ce"], ["dice"], ["focal"], ["ce", "dice"], ["focal", "dice"]])
def test_ignored_pixels_change_no_loss_whatever_their_logits(terms):
    logits, target = batch()
    target[:, :3] = IGNORE
    other = logits.clone()
    other[:, :, :3] = torch.randn_like(other[:, :, :3]) * 10  # only the ignored pixels' logits differ
    a, b = segmentation_loss(logits, target, terms), segmentation_loss(other, target, terms)
    assert torch.isfinite(a) and a > 0
    assert torch.allclose(a, b, atol=1e-6)


def test_cross_entropy_term_is_torch_cross_entropy_with_ignore_and_weights():
    logits, target = batch(1)
    target[0, 0] = IGNORE
    w = torch.tensor([0.5, 1.0, 2.0, 3.0])
    ref = F.cross_entropy(logits, target, weight=w, ignore_index=IGNORE)
    assert torch.allclose(segmentation_loss(logits, target, ["ce"], w), ref)
    assert not torch.allclose(segmentation_loss(logits, target, ["ce"]), ref)  # the weights do change it
    both = segmentation_loss(logits, target, ["ce", "dice"])
    assert torch.allclose(both, segmentation_loss(logits, target, ["ce"]) + segmentation_loss(logits, target, ["dice"]))


def test_a_perfect_prediction_has_almost_no_dice_loss():
    _, target = batch(2)
    logits = F.one_hot(target, 4).permute(0, 3, 1, 2).float() * 50
    assert float(segmentation_loss(logits, target, ["dice"])) < 1e-4


def test_loss_names_and_class_weights_are_checked():
    assert parse_loss("ce + dice") == ["ce", "dice"]
    with pytest.raises(ConfigError, match="task.loss: expected one of ce, dice, focal"):
        parse_loss("ce+lovasz")
    with pytest.raises(ConfigError, match=r"expected 3 non-negative numbers \(one per class: a, b, c\), got \[1.0\]"):
        SegmentationTask(nn.Identity(), ["a", "b", "c"], class_weights=[1.0])


class PixelModel(nn.Module):
    """A 1×1 conv: each pixel's logits depend on that pixel only, so tiling cannot change them."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 5, 1)

    def forward(self, x):
        return {"out": self.conv(x)}


@pytest.mark.parametrize("size,tile,overlap", [((50, 37), 16, 0.25), ((40, 40), 16, 0.5), ((10, 12), 16, 0.25)])
def test_sliding_window_equals_whole_image_logits_for_a_pointwise_model(size, tile, overlap):
    model = PixelModel().eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        whole = model(x)["out"]
    tiled = sliding_window(model, x, tile, overlap, batch=3)
    assert tiled.shape == whole.shape
    assert torch.allclose(tiled, whole, atol=1e-5)


def test_sliding_window_averages_overlapping_tiles():
    """A model that outputs the tile's own mean: overlapping tiles disagree, and the result is their average."""

    class TileMean(nn.Module):
        def forward(self, x):
            return {"out": x.mean((1, 2, 3), keepdim=True).expand(-1, 2, *x.shape[-2:])}

    x = torch.zeros(1, 1, 8, 12)
    x[..., 8:] = 1.0  # right third ones
    out = sliding_window(TileMean(), x, tile=8, overlap=0.5)  # tiles start at x = 0, 4 (means 0 and 0.5)
    assert torch.allclose(out[0, 0, 0, :4], torch.zeros(4))  # only tile 0
    assert torch.allclose(out[0, 0, 0, 4:8], torch.full((4,), 0.25))  # tiles 0 and 1
    assert torch.allclose(out[0, 0, 0, 8:], torch.full((4,), 0.5))  # only tile 1


def test_training_step_adds_the_weighted_aux_loss():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return {"out": self.a(x), "aux": self.b(x)}

    torch.manual_seed(0)
    model = Two()
    x, y = torch.rand(2, 3, 6, 6), torch.randint(0, 4, (2, 6, 6))
    task = SegmentationTask(model, list("abcd"), aux_weight=0.4)
    out = task.training_step((x, y))
    main = F.cross_entropy(model.a(x), y)
    assert torch.allclose(out["loss"], main + 0.4 * out["aux_loss"])
    assert torch.allclose(out["aux_loss"], F.cross_entropy(model.b(x), y))
