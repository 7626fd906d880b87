"""Bringing one's own image folder (issue 13, part 3): the channel count follows the majority of the images (or
data.channels), the odd ones are converted with one summary warning that also lands in the run's log.txt; predict
converts an odd file with at most one warning; samples/ holds images of every class."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deepkit
from deepkit.data import DataConfig, build_data
from deepkit.data.images import ImageWarning, load_image_folder


def digit_folder(root: Path, classes: int = 4, per_class: int = 50, rgb: tuple[tuple[int, int], ...] = ((2, 7),)):
    """Grayscale 12×12 images, class c a bright band at rows 3c..3c+2; the files in ``rgb`` (class, index) are
    saved as colour images (a tinted band)."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"digit_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = (rng.random((12, 12)) * 60).astype(np.uint8)
            a[c * 3 : c * 3 + 3] = 220
            if (c, i) in rgb:
                Image.fromarray(np.stack([a, a // 2, a], -1), mode="RGB").save(folder / f"{i:03d}.png")
            else:
                Image.fromarray(a, mode="L").save(folder / f"{i:03d}.png")
    return root


def test_majority_channels_with_one_summary_warning(tmp_path):
    root = digit_folder(tmp_path / "imgs")
    with pytest.warns(ImageWarning) as record:
        raw = load_image_folder(root)
    assert raw.x.shape == (200, 1, 12, 12)
    messages = [str(w.message) for w in record]
    assert messages == [
        f"{root}: converted 1 of 200 images from RGB to grayscale (the majority; set data.channels=3 to keep colour)"
    ]
    odd = np.asarray(Image.open(root / "digit_2" / "007.png"), dtype=np.float32) / 255
    luma = odd @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    torch.testing.assert_close(raw.x[107, 0], torch.from_numpy(luma), atol=1e-5, rtol=0)


def test_data_channels_chooses_and_a_test_split_follows_train(tmp_path):
    root = digit_folder(tmp_path / "imgs", per_class=5, rgb=((2, 3),))
    with pytest.warns(ImageWarning, match=r"converted 19 of 20 images from grayscale to RGB \(data.channels=3\)"):
        raw = load_image_folder(root, channels=3)
    assert raw.x.shape[1] == 3
    split = tmp_path / "split"
    digit_folder(split / "train", per_class=5, rgb=())
    digit_folder(split / "test", per_class=3, rgb=((0, 0), (1, 0)))
    with pytest.warns(ImageWarning, match=r"converted 2 of 12 images from RGB to grayscale \(as the training split\)"):
        raw = load_image_folder(split)
    assert raw.x.shape[1] == raw.x_test.shape[1] == 1


def test_same_channels_everywhere_is_silent(tmp_path):
    root = digit_folder(tmp_path / "imgs", per_class=5, rgb=())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bundle = build_data(DataConfig(name="image_folder", path=str(root)), "classification")
    assert bundle.preprocessing.input_shape == [1, 12, 12] and not bundle.data_warnings


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ownimages")
    folder = digit_folder(root / "imgs")
    with pytest.warns(ImageWarning, match="converted 1 of 200"):
        deepkit.train(
            "image_folder_cnn",
            f"data.path={folder}",
            "data.image_size=null",
            "model.channels=[8,16]",
            "model.hidden=32",
            "trainer.epochs=2",
            "trainer.progress=none",
            out=root / "run",
        )
    return folder, root / "run"


def test_folder_run_is_grayscale_and_logs_the_conversion(folder_run):
    _, run = folder_run
    p = deepkit.load(run)
    assert p.preprocessing.input_shape == [1, 12, 12]
    log = (run / "log.txt").read_text()
    assert "warning: " in log and "converted 1 of 200 images from RGB to grayscale" in log


def test_samples_cover_every_class(folder_run):
    _, run = folder_run
    files = sorted(p.name for p in (run / "samples").glob("*.png"))
    assert len(files) == 8
    assert {f.split("_label_")[1].removesuffix(".png") for f in files} == {f"digit_{c}" for c in range(4)}


def test_predict_odd_file_with_at_most_one_warning(folder_run, run_cli):
    folder, run = folder_run
    files = [folder / "digit_2" / "007.png", *sorted((folder / "digit_0").glob("*.png"))[:5]]
    proc = run_cli("predict", run, *files)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 6
    warned = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "007.png: converted 3-channel images to 1" in warned[0], proc.stderr
    proc = run_cli("predict", run, *files[1:])  # grayscale files for a grayscale model: nothing to say
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_samples_round_robin_over_classes():
    from deepkit.families.supervised import sample_indices

    y = torch.tensor([0, 0, 0, 0, 1, 1, 2, 0, 2])
    assert sample_indices(y, True, 5).tolist() == [0, 4, 6, 1, 5]
    assert sample_indices(y, True, 20).tolist() == [0, 4, 6, 1, 5, 8, 2, 3, 7]
    assert sample_indices(torch.rand(20, 1), False, 8).tolist() == list(range(8))
