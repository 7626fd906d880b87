"""``deepkit predict`` on image files: top-k classes with probabilities, preprocessed exactly as in training
(stored channel conversion, resize and normalization), with one-line warnings when an image is converted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import deepkit
from deepkit.cli import app
from deepkit.data.images import ImageWarning, adapt_images


@pytest.fixture(scope="module")
def rgb32_run(tmp_path_factory):
    """A CNN trained on 28×28 grayscale MNIST files converted to 3-channel 32×32 (data.channels, image_size)."""
    from tests.conftest import _write_mnist

    root = tmp_path_factory.mktemp("predict")
    folder = _write_mnist(root / "mnist", n_train=60, n_test=20)
    with pytest.warns(ImageWarning):
        deepkit.train(
            "mnist_cnn",
            f"data.path={folder}",
            "data.channels=3",
            "data.image_size=[32,32]",
            "model.channels=[4,8]",
            "trainer.epochs=1",
            "trainer.progress=none",
            out=root / "run",
        )
    return root / "run"


def test_predict_top_k_matches_training_preprocessing(rgb32_run, tmp_path):
    gray = np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)
    path = tmp_path / "digit.png"
    Image.fromarray(gray, mode="L").save(path)
    with pytest.warns(ImageWarning, match="resized 28×28 images to 32×32"):
        result = CliRunner().invoke(app, ["predict", str(rgb32_run), str(path), "--top-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    import json

    record = json.loads(result.stdout.strip().splitlines()[-1])[0]
    assert len(record["top_k"]) == 3
    probs = [t["probability"] for t in record["top_k"]]
    assert probs == sorted(probs, reverse=True)

    # the same image through the training-time conversion, normalization and model
    p = deepkit.load(rgb32_run)
    raw = torch.from_numpy(gray / 255.0).float()[None, None]
    with pytest.warns(ImageWarning):
        x = adapt_images(raw, 3, [32, 32], "reference")
    expected = p.predict_proba(x)[0]
    order = np.argsort(-expected)[:3]
    assert [t["class"] for t in record["top_k"]] == [p.class_names[i] for i in order]
    np.testing.assert_allclose(probs, expected[order], rtol=1e-5, atol=1e-6)


def test_predict_plain_text_lists_k_classes(rgb32_run, tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8), mode="RGB").save(path)  # already the model's shape
    result = CliRunner().invoke(app, ["predict", str(rgb32_run), str(path), "--top-k", "2"])
    assert result.exit_code == 0, result.output
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith(f"{path}: ") and line.count("(") == 2


def test_predict_colour_image_on_grayscale_model_is_converted(tmp_path):
    """Training converts the odd colour image of a grayscale folder to luma; predicting does the same, with one
    warning (before, the model refused it)."""
    from deepkit.data.inputs import read_image, read_inputs
    from deepkit.data.preprocess import Preprocessing

    rgb = np.zeros((28, 28, 3), np.uint8)
    rgb[..., 1] = 200
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "green.png")
    prep = Preprocessing(kind="image", input_shape=[1, 28, 28])
    with pytest.warns(ImageWarning, match=r"green.png: converted 3-channel images to 1"):
        x = read_image(tmp_path / "green.png", prep)
    torch.testing.assert_close(x, torch.full((1, 28, 28), 0.587 * 200 / 255))
    for i in range(3):
        Image.fromarray(rgb, mode="RGB").save(tmp_path / f"g{i}.png")
    with pytest.warns(ImageWarning) as record:
        read_inputs([tmp_path / f"g{i}.png" for i in range(3)], prep)
    assert len(record) == 1 and "converted 3 of 3 images" in str(record[0].message)
