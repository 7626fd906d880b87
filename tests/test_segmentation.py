"""The segmentation family end to end through the CLI: train on a folder of image + palette-mask pairs (and on
MNIST scenes), eval (mIoU and one IoU per class, the mean's rule), predict (palette mask PNG + overlay PNG), the
image / truth / prediction plot, a classifier run transferred into a U-Net encoder, and issue 15's bad inputs as
one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deepkit
from conftest import datasets_root
from deepkit.viz.masks import class_palette, save_palette_png

MNIST = datasets_root() / "mnist"
FAST = ["trainer.progress=none", "trainer.threads=1"]
SHAPES = ["background", "square", "disc"]


def shapes_folder(root: Path, n: int = 24, size: int = 32, seed: int = 0) -> Path:
    """Images of a bright square and/or a grey disc on noise; palette-PNG masks (0 background, 1 square, 2 disc)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        x0, y0, s = (int(v) for v in rng.integers(2, size // 2, 3))
        mask[y0 : y0 + s // 2 + 4, x0 : x0 + s // 2 + 4] = 1
        cx, cy, r = rng.integers(6, size - 6), rng.integers(6, size - 6), rng.integers(3, 7)
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 2
        img[mask == 1] = 230
        img[mask == 2] = (120, 40, 200)
        Image.fromarray(img).save(root / "images" / f"im{i:03d}.png")
        save_palette_png(mask, root / "masks" / f"im{i:03d}.png", class_palette(3))
    return root


FOLDER = ["data.name=folder", "data.classes=[background,square,disc]", "data.batch_size=4", "data.val_split=0.15",
          "data.test_split=0.15", "model.width=8", "model.depth=2", "trainer.epochs=3"]  # fmt: skip


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("seg")
    data = shapes_folder(base / "shapes")
    out = base / "run"
    quick = ["trainer.optimizer.lr=0.01", "trainer.schedule.name=constant", "trainer.schedule.warmup_steps=0"]
    deepkit.train("scenes_unet", *FOLDER, f"data.path={data}", *quick, *FAST, out=out)
    return out


def test_a_run_reports_miou_per_class_iou_and_its_rule(folder_run):
    results = json.loads((folder_run / "results.json").read_text())
    m = results["metrics"]
    assert {"miou", "miou_no_bg", "pixel_accuracy", "mdice", "iou_background", "iou_square", "iou_disc"} <= set(m)
    assert m["miou"] == pytest.approx(np.mean([m["iou_background"], m["iou_square"], m["iou_disc"]]))
    assert m["pixel_accuracy"] > 0.5  # three epochs on bright, easy shapes: the background at least
    assert "background 'background' included" in results["mean_rule"]
    table = (folder_run / "iou_table.txt").read_text()
    assert table.splitlines()[0].split() == ["class", "IoU"] and "square" in table and "miou_no_bg" in table
    assert (folder_run / "plots" / "segmentation.png").is_file()
    assert len(list((folder_run / "samples").glob("test_*.png"))) == 4
    header = (folder_run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val_miou", "val_iou_disc", "train_pixel_accuracy"} <= set(header)
    saved = deepkit.load(folder_run).saved
    assert saved.class_names == SHAPES and saved.channels == 3 and saved.background == 0


def test_the_plot_is_a_grid_of_image_truth_and_prediction(folder_run):
    grid = Image.open(folder_run / "plots" / "segmentation.png")
    assert grid.size[0] == 3 * 32 * 2  # three columns of 32 px tiles drawn at 2x
    assert grid.size[1] == 4 * 32 * 2  # one row per test image (4 = 15% of 24, rounded)


def test_eval_prints_miou_and_the_per_class_table(folder_run, deepkit_cli):
    code, out, err = deepkit_cli("eval", folder_run, "--json")
    assert code == 0, err
    got = json.loads(out)
    saved = json.loads((folder_run / "results.json").read_text())["metrics"]
    assert got["miou"] == pytest.approx(saved["miou"], abs=1e-9)
    code, out, _ = deepkit_cli("eval", folder_run)  # the per-class IoU table, the means and the rule they follow
    names = [line.split()[0] for line in out.strip().splitlines() if line.strip()]
    assert code == 0 and {"class", "background", "square", "disc", "miou"} <= set(names)
    assert (
        f"miou {100 * got['miou']:5.1f}".split()
        == next(ln for ln in out.splitlines() if ln.startswith("miou ")).split()
    )
    assert "background 'background' included" in out


def test_predict_writes_a_palette_mask_and_an_overlay(folder_run, deepkit_cli, tmp_path):
    image = next((folder_run.parent / "shapes" / "images").glob("*.png"))
    code, out, err = deepkit_cli("predict", folder_run, image, "--out", tmp_path / "p")
    assert code == 0, err
    assert out.startswith(f"{image}: ") and "%" in out
    mask = Image.open(tmp_path / "p" / f"{image.stem}_mask.png")
    assert mask.mode == "P" and mask.size == (32, 32)
    assert set(np.unique(np.asarray(mask)).tolist()) <= {0, 1, 2}
    assert mask.getpalette()[3:6] == class_palette(3)[1].tolist()  # VOC colours: class 1 is dark red
    overlay = Image.open(tmp_path / "p" / f"{image.stem}_overlay.png")
    assert overlay.mode == "RGB" and overlay.size == (32, 32)
    pred = deepkit.load(folder_run).predict([image])[0]
    assert np.array_equal(pred, np.asarray(mask))


@pytest.mark.parametrize(
    "setup,fragment",
    [
        ("size", "is 32×31 px but its image is 32×32; expected masks of the same size"),
        ("label", "holds label value(s) 7 outside the class list (3 classes: values 0-2 expected"),
        ("missing", "1 image(s) without a mask in"),
        ("rgb", "is an RGB image (2 colours); expected an index or palette PNG"),
    ],
)
def test_bad_masks_are_one_line_errors(setup, fragment, tmp_path, deepkit_cli):
    data = shapes_folder(tmp_path / "d", n=4)
    bad = data / "masks" / "im001.png"
    if setup == "size":
        Image.fromarray(np.zeros((31, 32), np.uint8)).save(bad)
    elif setup == "label":
        Image.fromarray(np.full((32, 32), 7, np.uint8)).save(bad)
    elif setup == "missing":
        bad.unlink()
    else:
        rgb = np.zeros((32, 32, 3), np.uint8)
        rgb[..., 0] = np.eye(32, dtype=np.uint8) * 255  # a red diagonal: a colour mask
        Image.fromarray(rgb).save(bad)
    code, _, err = deepkit_cli("train", "scenes_unet", *FOLDER, f"data.path={data}", *FAST, "--out", tmp_path / "r")
    assert code == 2 and err.count("\n") == 1 and fragment in err, err
    if setup != "missing":
        assert "im001.png" in err
    assert not (tmp_path / "r").exists()


def test_a_model_that_does_not_fit_the_data_is_one_line(tmp_path, deepkit_cli):
    data = shapes_folder(tmp_path / "d", n=4)
    code, _, err = deepkit_cli("train", "scenes_unet", *FOLDER, f"data.path={data}", "model.num_classes=5", *FAST,
                               "--out", tmp_path / "r")  # fmt: skip
    assert code == 2 and "model.num_classes=5 does not fit the data: expected num_classes=3" in err
    data_only = [a for a in FOLDER if not a.startswith("model.")]
    code, _, err = deepkit_cli("train", "scenes_unet", *data_only, f"data.path={data}", "model.name=resnet18", *FAST,
                               "--out", tmp_path / "r")  # fmt: skip
    assert code == 2 and "model 'resnet18' is not a segmentation model" in err


def test_a_classifier_run_transfers_into_the_unet_encoder(tmp_path, run_cli):
    """A simple_cnn classifier's weights load into unet_encoder's encoder unchanged; its head is left out."""
    from deepkit.families.segmentation import load_encoder
    from deepkit.models import create_model

    torch.manual_seed(0)
    clf = create_model("simple_cnn", in_channels=3, num_classes=4, channels=[8, 16])
    from deepkit.weights import atomic_save_safetensors

    path = tmp_path / "clf.safetensors"
    atomic_save_safetensors(clf.state_dict(), path, {"model": "simple_cnn", "model_config": {"in_channels": 3}})
    seg = create_model("unet_encoder", encoder="simple_cnn", encoder_config={"channels": [8, 16]}, num_classes=3)
    line = load_encoder(seg, str(path))
    assert "encoder (simple_cnn) loaded" in line and "head" in line
    enc = seg.encoder.state_dict()
    assert enc and all(torch.equal(v, clf.state_dict()[k]) for k, v in enc.items())
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(seg.encoder.forward_features(x), clf.forward_features(x))


@pytest.mark.slow
def test_scenes_unet_learns_digit_masks(tmp_path):
    if not (MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST not found at {MNIST}")
    r = deepkit.train("scenes_unet", "data.scenes.train=600", "data.scenes.test=100", "trainer.epochs=3", *FAST,
                      out=tmp_path / "r")  # fmt: skip
    assert r.metrics["miou"] > 0.4 and r.metrics["iou_background"] > 0.9


def test_a_classifier_checkpoint_trains_on_as_the_encoder_of_a_segmentation_run(tmp_path):
    """finetune.weights naming a classifier's weights: the run starts from them (log line), trains, and its encoder
    moved away from them."""
    from deepkit.models import create_model
    from deepkit.weights import atomic_save_safetensors, load_weights

    torch.manual_seed(0)
    clf = create_model("simple_cnn", in_channels=3, num_classes=4, channels=[8, 16])
    path = tmp_path / "clf.safetensors"
    atomic_save_safetensors(clf.state_dict(), path, {"model": "simple_cnn", "model_config": {"channels": [8, 16]}})
    data = shapes_folder(tmp_path / "d", n=8)
    out = tmp_path / "r"
    deepkit.train("scenes_unet", *[a for a in FOLDER if not a.startswith("model.")], f"data.path={data}",
                  "model.name=unet_encoder", "model.encoder=simple_cnn", "model.encoder_config={channels: [8, 16]}",
                  "model.decoder_widths=[16,8]", f"finetune.weights={path}", "trainer.epochs=1", *FAST,
                  out=out)  # fmt: skip
    log = (out / "log.txt").read_text()
    assert f"finetune: encoder (simple_cnn) loaded from {path}" in log and "head (the classifier's head)" in log
    trained, _ = load_weights(out / "checkpoints" / "last" / "model.safetensors")
    start = clf.state_dict()
    conv = "features.0.0.weight"
    assert f"encoder.{conv}" in trained and trained[f"encoder.{conv}"].shape == start[conv].shape
    assert not torch.equal(trained[f"encoder.{conv}"], start[conv])  # trained on from there
    assert (trained[f"encoder.{conv}"] - start[conv]).abs().max() < 0.1  # ... not from a fresh initialization
