"""Seeing inside a CNN: Grad-CAM points at the evidence, layer choice per family, confident mistakes, and
``deepkit viz`` writing its four PNGs for a trained run."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

import deepkit
from deepkit import create_model
from deepkit.cli import app
from deepkit.errors import ShapeError
from deepkit.viz import inside


def bright_square_model() -> nn.Module:
    """conv 1×1 (weight 1) -> ReLU -> global average -> linear: class 0 score rises with brightness anywhere."""
    conv = nn.Conv2d(1, 1, 1)
    fc = nn.Linear(1, 2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
        fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        fc.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc)


def test_grad_cam_highlights_the_evidence():
    x = torch.zeros(1, 1, 16, 16)
    x[..., 10:14, 2:6] = 1.0  # a bright square, lower left
    cam = inside.grad_cam(bright_square_model(), x, target=0, layer="1")
    assert cam.shape == (16, 16) and float(cam.max()) == pytest.approx(1.0)
    assert float(cam[10:14, 2:6].mean()) > 0.9 and float(cam[:8, 8:].max()) < 0.05
    # for the other class the same evidence lowers the score: nothing positive to show
    assert float(inside.grad_cam(bright_square_model(), x, target=1, layer="1").max()) == 0.0


def test_saliency_is_nonzero_only_where_gradients_flow():
    x = torch.zeros(1, 1, 8, 8)
    x[..., :4, :4] = 1.0
    s = inside.saliency(bright_square_model(), x, target=0)
    assert s.shape == (8, 8) and float(s[:4, :4].min()) == pytest.approx(1.0) and float(s[4:, 4:].max()) == 0.0


@pytest.mark.parametrize(
    "name,kw,size,layer",
    [
        ("resnet20", {}, 32, "layer3"),
        ("resnet18", {}, 64, "layer4"),
        ("vgg11", {"hidden": 16}, 32, "features.19"),  # the last ReLU at 2×2; the final pool leaves 1×1
        ("lenet5", {"in_channels": 3}, 28, "features.5"),
    ],
)
def test_gradcam_layer_is_last_feature_map(name, kw, size, layer):
    model = create_model(name, **kw)
    x = torch.rand(1, 3, size, size)
    assert inside.gradcam_layer(model, x) == layer
    cam = inside.grad_cam(model, x)
    assert cam.shape == (size, size) and torch.isfinite(cam).all()
    assert all(p.grad is None for p in model.parameters()), "Grad-CAM leaves no gradients behind"


def test_feature_maps_and_filters():
    model = create_model("resnet20")
    maps = inside.feature_maps(model, torch.rand(1, 3, 32, 32))
    first, last = maps.values()
    assert first.shape == (16, 32, 32) and last.shape == (64, 8, 8)
    assert inside.first_layer_filters(model).shape == (16, 3, 3, 3)
    with pytest.raises(ShapeError, match="no convolution"):
        inside.first_conv(create_model("mlp", in_features=4))


def test_confident_mistakes_order():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.99, 0.01]])
    labels = torch.tensor([0, 0, 0, 1])
    got = inside.confident_mistakes(probs, labels, k=5)
    assert [(m.index, m.true, m.pred) for m in got] == [(3, 1, 0), (1, 0, 1), (2, 0, 1)]
    assert got[0].confidence == pytest.approx(0.99)


def test_viz_command_writes_pngs(tmp_path, write_mnist):
    folder = write_mnist(tmp_path / "mnist", n_train=60, n_test=20)
    run = tmp_path / "run"
    deepkit.train(
        "mnist_cnn", f"data.path={folder}", "model.channels=[4,8]", "trainer.epochs=1", "trainer.progress=none", out=run
    )
    img = tmp_path / "digit.png"
    Image.new("L", (28, 28), 0).save(img)
    result = CliRunner().invoke(app, ["viz", str(run), "--image", str(img), "--top-k", "4"])
    assert result.exit_code == 0, result.output
    names = {"filters.png", "feature_maps.png", "gradcam.png", "mistakes.png"}
    assert {p.name for p in (run / "plots" / "inside").iterdir()} == names
    for n in names:
        with Image.open(run / "plots" / "inside" / n) as im:
            assert im.size[0] > 200 and im.size[1] > 100
    assert "gradcam.png" in result.output


def test_viz_rejects_models_without_convolutions(tmp_path):
    from deepkit.viz.run_report import visualize_run

    run = tmp_path / "run"
    deepkit.train("digits_mlp", "trainer.epochs=1", "trainer.progress=none", out=run)
    with pytest.raises(ShapeError, match="model 'mlp' has no convolution layer"):
        visualize_run(run)
