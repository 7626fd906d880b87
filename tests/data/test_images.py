"""Image data: class folders, CIFAR (python pickle and binary), Fashion-MNIST, .npz, class selection and
per-class subsampling, channel/size conversion, and batched augmentation."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from deepkit.data import DataConfig, build_data
from deepkit.data.augment import AugmentConfig, BatchAugment, build_augment
from deepkit.data.images import ImageWarning, adapt_images, load_cifar, load_cifar_pickle, load_image_folder
from deepkit.data.preprocess import Preprocessing
from deepkit.errors import ConfigError, DataError, ShapeError


# --- synthetic files in the real formats ---------------------------------------------------------------------------
def cifar_rows(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), [int(v) for v in rng.integers(0, 10, n)]


def write_cifar10_python(folder, n=20):
    folder.mkdir(parents=True)
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        data, labels = cifar_rows(n, i)
        with open(folder / name, "wb") as f:  # protocol 2 with bytes keys, like the Python 2 originals
            pickle.dump({b"batch_label": b"x", b"labels": labels, b"data": data}, f, protocol=2)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f, protocol=2)
    return folder


def test_cifar10_python_batches(tmp_path):
    folder = write_cifar10_python(tmp_path / "cifar-10-batches-py")
    raw = load_cifar("cifar10", tmp_path)  # the parent folder is found too
    assert raw.x.shape == (100, 3, 32, 32) and raw.x_test.shape == (20, 3, 32, 32)
    data, labels = cifar_rows(20, 0)
    # rows are the R, G and B planes of a 32×32 image, row-major
    assert torch.equal((raw.x[0] * 255).round().byte(), torch.from_numpy(data[0].reshape(3, 32, 32)))
    assert raw.y[:20].tolist() == labels
    assert raw.class_names[1] == "automobile"
    bundle = build_data(DataConfig(name="cifar10", path=str(folder), val_split=0.2), "classification")
    assert bundle.preprocessing.input_shape == [3, 32, 32] and bundle.num_classes == 10


def test_cifar_pickle_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    bad = tmp_path / "data_batch_1"
    bad.write_bytes(pickle.dumps({"data": Evil()}, protocol=2))
    with pytest.raises(DataError, match=r"(system|posix).*not allowed"):
        load_cifar_pickle(bad)
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "junk").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match="cannot read CIFAR batch"):
        load_cifar_pickle(tmp_path / "junk")


def test_cifar10_binary(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i, name in enumerate([*(f"data_batch_{k}.bin" for k in range(1, 6)), "test_batch.bin"]):
        data, labels = cifar_rows(10, i)
        records = np.concatenate([np.asarray(labels, dtype=np.uint8)[:, None], data], axis=1)
        (folder / name).write_bytes(records.tobytes())
    (folder / "batches.meta.txt").write_text("\n".join(f"class{i}" for i in range(10)) + "\n\n")
    raw = load_cifar("cifar10", folder)
    assert raw.x.shape == (50, 3, 32, 32) and raw.y[:10].tolist() == cifar_rows(10, 0)[1]
    assert raw.class_names[9] == "class9"
    (folder / "test_batch.bin").write_bytes(records.tobytes()[:-5])  # truncated
    with pytest.raises(DataError, match="whole number of 3073-byte"):
        load_cifar("cifar10", folder)


def test_cifar100_python_and_binary_label_modes(tmp_path):
    py = tmp_path / "cifar-100-python"
    py.mkdir()
    data, _ = cifar_rows(12, 0)
    fine, coarse = list(range(12)), [i % 3 for i in range(12)]
    for split in ("train", "test"):
        with open(py / split, "wb") as f:
            pickle.dump({b"data": data, b"fine_labels": fine, b"coarse_labels": coarse}, f, protocol=2)
    raw = load_cifar("cifar100", tmp_path, "coarse")
    assert raw.y.tolist() == coarse and len(raw.class_names) == 20
    assert load_cifar("cifar100", tmp_path, "fine").y.tolist() == fine

    binary = tmp_path / "b" / "cifar-100-binary"
    binary.mkdir(parents=True)
    rec = np.concatenate([np.asarray(coarse, np.uint8)[:, None], np.asarray(fine, np.uint8)[:, None], data], 1)
    for split in ("train.bin", "test.bin"):
        (binary / split).write_bytes(rec.tobytes())
    assert load_cifar("cifar100", binary, "fine").y.tolist() == fine
    assert load_cifar("cifar100", binary, "coarse").y_test.tolist() == coarse
    with pytest.raises(DataError, match="holds no cifar10 batches"):
        load_cifar("cifar10", binary)


# --- image folders -------------------------------------------------------------------------------------------------
def write_folder(root, classes=("cat", "dog"), n=4, size=(12, 10), mode="RGB"):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (*size, 3) if mode == "RGB" else size
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / c / f"{i}.png")
    return root


def test_image_folder_reads_classes_and_pixels(tmp_path):
    root = write_folder(tmp_path / "imgs")
    raw = load_image_folder(root)
    assert raw.x.shape == (8, 3, 12, 10) and raw.class_names == ["cat", "dog"]
    assert raw.y.tolist() == [0] * 4 + [1] * 4
    expected = np.asarray(Image.open(root / "dog" / "0.png"), dtype=np.float32) / 255
    torch.testing.assert_close(raw.x[4].permute(1, 2, 0), torch.from_numpy(expected))


def test_image_folder_train_test_split_and_recipe(tmp_path):
    write_folder(tmp_path / "ds" / "train", n=6, mode="L")
    write_folder(tmp_path / "ds" / "test", n=2, mode="L")
    bundle = build_data(DataConfig(name="image_folder", path=str(tmp_path / "ds"), val_split=0.25), "classification")
    assert bundle.preprocessing.input_shape == [1, 12, 10]
    assert len(bundle.test[0]) == 4 and len(bundle.train[0]) + len(bundle.val[0]) == 12


def test_image_folder_mixed_sizes_and_modes_warn(tmp_path):
    root = write_folder(tmp_path / "imgs", n=3)
    Image.fromarray(np.zeros((20, 20), np.uint8), "L").save(root / "cat" / "odd.png")
    with pytest.warns(ImageWarning) as record:
        raw = load_image_folder(root)
    text = " ".join(str(w.message) for w in record)
    assert "grayscale" in text and "resized to the most common, 12×10" in text
    assert raw.x.shape == (7, 3, 12, 10)


def test_image_folder_bad_inputs(tmp_path):
    root = write_folder(tmp_path / "imgs")
    (root / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read image .*broken\.png.*on_bad_image=skip"):
        load_image_folder(root)
    with pytest.warns(ImageWarning, match="skipped unreadable image .*broken.png"):
        assert len(load_image_folder(root, on_error="skip").x) == 8
    (root / "empty").mkdir()
    with pytest.raises(DataError, match=r"class folder .*empty has no images"):
        load_image_folder(root, on_error="skip")
    with pytest.raises(DataError, match="no class sub-folders"):
        load_image_folder(root / "empty")
    with pytest.raises(DataError, match="image folder not found"):
        load_image_folder(tmp_path / "nope")


# --- other formats, selection, conversion --------------------------------------------------------------------------
def test_fashion_mnist_uses_idx_reader(tmp_path, write_mnist, monkeypatch):
    write_mnist(tmp_path / "fashion-mnist", n_train=40, n_test=10)
    monkeypatch.setenv("DEEPKIT_DATA", str(tmp_path))
    bundle = build_data(DataConfig(name="fashion_mnist"), "classification")
    assert bundle.preprocessing.class_names[9] == "Ankle boot" and len(bundle.test[0]) == 10


def test_npz_images(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (30, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(30) % 3)
    bundle = build_data(DataConfig(name="npz", path=str(tmp_path / "d.npz"), normalize="none"), "classification")
    assert bundle.preprocessing.input_shape == [1, 8, 8]
    assert float(bundle.train[0].max()) <= 1.0  # uint8 scaled to [0, 1]
    np.savez(tmp_path / "bad.npz", a=x)
    with pytest.raises(DataError, match="expected at least 'x' and 'y'"):
        build_data(DataConfig(name="npz", path=str(tmp_path / "bad.npz")), "classification")


def test_classes_and_per_class(tmp_path, write_mnist):
    folder = write_mnist(tmp_path / "mnist", n_train=300, n_test=100)
    cfg = DataConfig(name="mnist", path=str(folder), classes=[5, 6, 7, 8, 9], per_class=20, val_split=0.2)
    bundle = build_data(cfg, "classification")
    assert bundle.preprocessing.class_names == ["5", "6", "7", "8", "9"]
    y = torch.cat([bundle.train[1], bundle.val[1]])
    assert len(y) == 100 and torch.bincount(y).tolist() == [20] * 5
    assert len(bundle.test[1]) == 50, "the test split keeps every image of the chosen classes"
    again = build_data(cfg, "classification")
    assert torch.equal(again.train[0], bundle.train[0]), "the subset is fixed by data.split_seed"
    with pytest.raises(ConfigError, match=r"\['11'\] are not classes"):
        build_data(DataConfig(name="mnist", path=str(folder), classes=[1, 11]), "classification")
    with pytest.raises(DataError, match="has only 30 training samples"):
        build_data(DataConfig(name="mnist", path=str(folder), per_class=31), "classification")


def test_classes_by_name_or_index_and_numeric_order(tmp_path):
    x = np.zeros((60, 4, 4), np.uint8)
    y = np.arange(60) % 12  # labels 0..11: "10" must not sort before "2"
    np.savez(tmp_path / "d.npz", x=x, y=y)
    cfg = DataConfig(name="npz", path=str(tmp_path / "d.npz"), classes=[2, 10], val_split=0, test_split=0.2)
    bundle = build_data(cfg, "classification")
    assert bundle.preprocessing.class_names == ["2", "10"]
    folder = write_cifar10_python(tmp_path / "cifar-10-batches-py")
    by_index = build_data(DataConfig(name="cifar10", path=str(folder), classes=[3, 5]), "classification")
    by_name = build_data(DataConfig(name="cifar10", path=str(folder), classes=["cat", "dog"]), "classification")
    assert by_index.preprocessing.class_names == by_name.preprocessing.class_names == ["cat", "dog"]
    assert torch.equal(by_index.test[1], by_name.test[1])


def test_adapt_images_converts_with_warning():
    gray = torch.rand(2, 1, 8, 8)
    with pytest.warns(ImageWarning, match="converted 1-channel images to 3"):
        rgb = adapt_images(gray, 3, None, "x")
    assert rgb.shape == (2, 3, 8, 8) and torch.equal(rgb[:, 0], rgb[:, 2])
    with pytest.warns(ImageWarning, match="resized 8×8 images to 16×12"):
        assert adapt_images(gray, None, [16, 12], "x").shape == (2, 1, 16, 12)
    with pytest.warns(ImageWarning):
        back = adapt_images(rgb, 1, None, "x")
    torch.testing.assert_close(back, gray)  # luma weights sum to 1
    with pytest.raises(ShapeError, match="4 channel"):
        adapt_images(torch.rand(1, 4, 8, 8), 3, None, "x")


def test_data_channels_and_image_size_options(tmp_path, write_mnist):
    folder = write_mnist(tmp_path / "mnist", n_train=40, n_test=10)
    with pytest.warns(ImageWarning):
        bundle = build_data(
            DataConfig(name="mnist", path=str(folder), channels=3, image_size=[32, 32]), "classification"
        )
    assert bundle.preprocessing.input_shape == [3, 32, 32] and bundle.test[0].shape[1:] == (3, 32, 32)


# --- augmentation --------------------------------------------------------------------------------------------------
def image_prep(c=3, hw=16):
    return Preprocessing(kind="image", input_shape=[c, hw, hw], normalize="channel", mean=[0.5] * c, std=[0.25] * c)


def test_augment_geometric_and_colour_keep_shape_and_range():
    torch.manual_seed(0)
    prep = image_prep()
    aug = BatchAugment(
        AugmentConfig(crop_padding=2, hflip=0.5, degrees=10, translate=0.1, brightness=0.2, erasing=0.5), prep, 10
    )
    raw = torch.rand(16, 3, 16, 16)
    x, y = aug((prep.transform(raw), torch.arange(16) % 10))
    assert x.shape == (16, 3, 16, 16) and torch.equal(y, torch.arange(16) % 10)
    back = prep.inverse_transform(x)
    assert float(back.min()) >= -1e-5 and float(back.max()) <= 1 + 1e-5, "augmented in pixel space, then normalized"
    assert not torch.allclose(back, raw)


def test_hflip_is_exact_mirror():
    prep = image_prep()
    aug = BatchAugment(AugmentConfig(hflip=1.0), prep, 10)
    x = prep.transform(torch.rand(4, 3, 16, 16))
    out, _ = aug((x, torch.zeros(4, dtype=torch.long)))
    torch.testing.assert_close(out, x.flip(-1), atol=1e-5, rtol=0)


def test_crop_padding_shifts_content():
    torch.manual_seed(1)
    prep = Preprocessing(kind="image", input_shape=[1, 8, 8])
    aug = BatchAugment(AugmentConfig(crop_padding=2), prep, 2)
    x = torch.rand(64, 1, 8, 8) * 0.5 + 0.5
    out, _ = aug((x, torch.zeros(64, dtype=torch.long)))
    zeros_rows = (out == 0).all(-1).any(-1).squeeze(1) | (out == 0).all(-2).any(-1).squeeze(1)
    assert zeros_rows.float().mean() > 0.5, "most crops include black padding"
    assert any(torch.equal(o, i) for o, i in zip(out, x, strict=True)), "an unshifted crop reproduces the image"


@pytest.mark.parametrize("kind", ["mixup_alpha", "cutmix_alpha"])
def test_mixup_cutmix_soft_labels(kind):
    torch.manual_seed(0)
    aug = BatchAugment(AugmentConfig(**{kind: 1.0}), image_prep(), 5)
    x, y = aug((torch.randn(8, 3, 16, 16), torch.arange(8) % 5))
    assert y.shape == (8, 5)
    torch.testing.assert_close(y.sum(1), torch.ones(8))
    assert (y > 0).sum(1).max() <= 2
    loss = torch.nn.functional.cross_entropy(torch.randn(8, 5), y)
    assert torch.isfinite(loss)


def test_augment_config_errors_and_identity():
    assert build_augment(None, image_prep(), 10) is None
    assert build_augment(AugmentConfig(), image_prep(), 10) is None
    with pytest.raises(ConfigError, match="need colour images"):
        BatchAugment(AugmentConfig(saturation=0.2), image_prep(c=1), 10)
    with pytest.raises(ConfigError, match="works on images"):
        BatchAugment(AugmentConfig(hflip=0.5), Preprocessing(kind="tabular", input_shape=[4]), 3)


def test_augment_runs_in_training_only(tmp_path, write_mnist):
    """A recipe's data.augment reaches the task's training step, and evaluation sees the images unchanged."""
    import deepkit

    folder = write_mnist(tmp_path / "mnist", n_train=60, n_test=20)
    seen = {}

    class Spy(BatchAugment):
        def forward(self, batch):
            seen["train"] = seen.get("train", 0) + 1
            return super().forward(batch)

    from deepkit.data import augment as augment_module

    orig = augment_module.BatchAugment
    augment_module.BatchAugment = Spy
    try:
        result = deepkit.train(
            "mnist_cnn",
            f"data.path={folder}",
            "data.augment={crop_padding: 2, mixup_alpha: 0.2}",
            "trainer.epochs=1",
            "trainer.progress=none",
            "model.channels=[4]",
            out=tmp_path / "run",
        )
    finally:
        augment_module.BatchAugment = orig
    assert seen["train"] == 1  # 54 training images, batch 128: one training batch; eval batches never augmented
    assert "accuracy" in result.metrics


def test_channels_last_option(tmp_path, write_mnist):
    import deepkit
    from deepkit.train.callbacks import Callback

    seen = []

    class Layout(Callback):
        def on_fit_start(self, trainer):
            w = trainer.task.model.features[1][0].weight  # (8, 4, 3, 3): the layouts differ only when C > 1
            seen.append(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous())

    folder = write_mnist(tmp_path / "mnist", n_train=40, n_test=10)
    common = [f"data.path={folder}", "model.channels=[4,8]", "trainer.epochs=1", "trainer.progress=none"]
    nchw = "trainer.speed.channels_last=false"  # the CPU default is NHWC for conv nets (train/speed.py)
    plain = deepkit.train("mnist_cnn", *common, nchw, out=tmp_path / "a", callbacks=[Layout()])
    fast = deepkit.train("mnist_cnn", *common, "data.channels_last=true", out=tmp_path / "b", callbacks=[Layout()])
    assert seen == [False, True]
    assert plain.metrics["loss"] == pytest.approx(fast.metrics["loss"], rel=1e-3)  # same computation, NHWC layout


def test_augmented_run_resumes_exactly(tmp_path, write_mnist):
    """Augmentation draws from torch's global RNG, which checkpoints restore: stop-and-resume = one run."""
    import deepkit
    from deepkit.weights import load_weights

    folder = write_mnist(tmp_path / "mnist", n_train=80, n_test=10)
    common = [
        f"data.path={folder}",
        "data.augment={crop_padding: 2, degrees: 10, erasing: 0.5, mixup_alpha: 0.4}",
        "model.channels=[4]",
        "trainer.progress=none",
        "data.batch_size=16",
        "trainer.epochs=2",
        "trainer.checkpoint_every=1",
    ]
    from deepkit.train.callbacks import Callback

    class Interrupt(Callback):  # fires after ModelCheckpoint saved checkpoints/last at this step
        def on_step_end(self, trainer):
            if trainer.state.step == 5:
                raise KeyboardInterrupt

    deepkit.train("mnist_cnn", *common, out=tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        deepkit.train("mnist_cnn", *common, out=tmp_path / "part", callbacks=[Interrupt()])
    deepkit.train(resume=tmp_path / "part")
    a, _ = load_weights(tmp_path / "full" / "checkpoints" / "last" / "model.safetensors")
    b, _ = load_weights(tmp_path / "part" / "checkpoints" / "last" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
