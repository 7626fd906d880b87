"""Data: IDX and CSV readers, splits and preprocessing, from_arrays, TensorLoader, MNIST loading and download."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest
import torch

from deepkit.data import DataConfig, TensorLoader, build_data, data_root, from_arrays
from deepkit.data import download as dl
from deepkit.data.idx import read_idx, write_idx
from deepkit.data.sources import load_mnist
from deepkit.data.tables import read_csv_table
from deepkit.errors import ConfigError, DataError

# --- IDX -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(7,), (5, 3, 4)])
def test_idx_round_trip(tmp_path, suffix, shape):
    arr = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    path = tmp_path / f"a-idx{len(shape)}-ubyte{suffix}"
    write_idx(path, arr)
    if suffix == ".gz":
        assert path.read_bytes()[:2] == b"\x1f\x8b"  # really gzip-compressed
    back = read_idx(path)
    assert back.dtype == np.uint8 and back.shape == shape
    np.testing.assert_array_equal(back, arr)


def test_idx_big_endian_int32(tmp_path):
    arr = np.array([[1, -2, 70000], [3, 2**30, -(2**31)]], dtype=np.int32)
    header = bytes([0, 0, 0x0C, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    path = tmp_path / "ints.idx"
    path.write_bytes(header + arr.astype(">i4").tobytes())
    np.testing.assert_array_equal(read_idx(path), arr)


def test_idx_truncated_raw(tmp_path):
    path = tmp_path / "x.idx"
    write_idx(path, np.zeros((4, 5, 5), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_idx_truncated_header(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 4]))
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_idx_truncated_gzip(tmp_path):
    path = tmp_path / "x.idx.gz"
    write_idx(path, np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_idx_too_long(tmp_path):
    path = tmp_path / "x.idx"
    write_idx(path, np.zeros((2, 2), np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(DataError, match="corrupt"):
        read_idx(path)


@pytest.mark.parametrize("magic", [b"\x01\x00\x08\x01", b"\x00\x00\x42\x01", b"PK\x03\x04", b"\x00"])
def test_idx_bad_magic(tmp_path, magic):
    path = tmp_path / "x.idx"
    path.write_bytes(magic + bytes(8))
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(path)


def test_idx_missing(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_idx(tmp_path / "nope.idx")


# --- CSV -------------------------------------------------------------------------------------------------------------


def write(tmp_path, text: str, name: str = "t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_numeric_features_string_target(tmp_path):
    path = write(tmp_path, "a,b,label\n1,2.5,cat\n3,-4e-1,dog\n\n5, 6 ,cat\n")  # blank line and spaces are fine
    t = read_csv_table(path)
    assert t.feature_names == ["a", "b"] and t.target_name == "label"
    np.testing.assert_allclose(t.x, [[1, 2.5], [3, -0.4], [5, 6]])
    assert t.x.dtype == np.float32
    assert t.y == ["cat", "dog", "cat"]


def test_csv_target_and_feature_selection(tmp_path):
    path = write(tmp_path, "a,b,c\n1,2,3\n4,5,6\n")
    t = read_csv_table(path, target="a", features=["c"])
    np.testing.assert_array_equal(t.x, [[3], [6]])
    assert t.y == ["1", "4"]
    with pytest.raises(DataError, match="did you mean 'c'"):
        read_csv_table(path, target="cc")
    with pytest.raises(DataError, match="feature column 'bb'"):
        read_csv_table(path, features=["bb"])


def test_csv_to_class_names(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["f1,f2,animal"]
    for i in range(60):
        cls = ["dog", "cat", "emu"][i % 3]
        rows.append(f"{rng.normal() + 5 * (i % 3):.4f},{rng.normal():.4f},{cls}")
    path = write(tmp_path, "\n".join(rows) + "\n")
    bundle = build_data(DataConfig(name="csv", path=str(path)), "classification")
    assert bundle.preprocessing.class_names == ["cat", "dog", "emu"]  # sorted
    assert bundle.preprocessing.feature_names == ["f1", "f2"]
    assert bundle.num_classes == 3 and bundle.num_outputs == 3
    ys = torch.cat([bundle.train[1], bundle.val[1], bundle.test[1]])
    assert ys.dtype == torch.int64 and sorted(ys.tolist()) == sorted([[1, 0, 2][i % 3] for i in range(60)])


def test_csv_numeric_labels_sorted_numerically(tmp_path):
    rows = ["x,y"] + [f"{i},{[10, 9, 100][i % 3]}" for i in range(60)]
    bundle = build_data(DataConfig(name="csv", path=str(write(tmp_path, "\n".join(rows)))), "classification")
    assert bundle.preprocessing.class_names == ["9", "10", "100"]


@pytest.mark.parametrize(
    "text,pattern",
    [
        ("", "is empty"),
        ("\n\n  \n", "is empty"),
        ("a,b,y\n", "header but no data rows"),
        ("a,b,y\n1,2,0\n3,x,1\n", r"line 3, column 'b': 'x', expected a number"),
        ("a,b,y\n1,,0\n", r"line 2, column 'b': an empty cell"),
        ("a,b,y\n1,2,0\n3,4\n", r"line 3: 2 fields, expected 3"),
        ("a,b,y\n1,2,\n", "empty target"),
        ("a,b,y\nnan,2,0\n", r"line 2, column 'a': nan, expected a finite number"),
        ("a,b,y\n1,inf,0\n", r"column 'b': inf, expected a finite"),
        ("a,b,y\n1,-Infinity,0\n", "finite"),
        ("a,b,y\n1,NaN,0\n", "finite"),
    ],
)
def test_csv_bad_files(tmp_path, text, pattern):
    with pytest.raises(DataError, match=pattern):
        read_csv_table(write(tmp_path, text))


def test_csv_not_utf8(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("a,b,y\n1,2,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_csv_table(path)


def test_csv_with_byte_order_mark(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("a,b,y\n1,2,x\n3,4,z\n".encode("utf-8-sig"))
    t = read_csv_table(path, target="y")
    assert t.feature_names == ["a", "b"]
    assert read_csv_table(path, target="a", features=["b"]).y == ["1", "3"]


def test_csv_missing_file(tmp_path):
    with pytest.raises(DataError, match="CSV file not found"):
        read_csv_table(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="data.path is not set"):
        build_data(DataConfig(name="csv"), "classification")


def test_csv_regression_target_must_be_numeric(tmp_path):
    path = write(tmp_path, "a,y\n" + "".join(f"{i},{i * 2}\n" for i in range(20)) + "3,lots\n")
    with pytest.raises(DataError, match="'lots' is not a number"):
        build_data(DataConfig(name="csv", path=str(path)), "regression")


# --- build_data: digits ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return build_data(DataConfig(name="digits"), "classification")


@pytest.fixture(scope="module")
def digits_raw():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float32) / 16.0, d.target


def test_digits_split_sizes(digits):
    n = 1797
    n_test = round(n * 0.2)
    n_val = round((n - n_test) * 0.1)
    assert len(digits.test[0]) == n_test == 359
    assert len(digits.val[0]) == n_val == 144
    assert len(digits.train[0]) == n - n_test - n_val
    assert digits.train[0].shape[1:] == (1, 8, 8)
    assert digits.preprocessing.input_shape == [1, 8, 8]
    assert digits.preprocessing.kind == "image" and digits.preprocessing.normalize == "channel"


def test_digits_split_is_stratified(digits, digits_raw):
    overall = np.bincount(digits_raw[1], minlength=10) / len(digits_raw[1])
    for name in ("train", "val", "test"):
        y = digits.split(name)[1].numpy()
        counts = np.bincount(y, minlength=10)
        assert (counts > 0).all(), f"{name} misses a class"
        # stratified: each class count within one sample of its share (a random split would be off by several)
        assert np.abs(counts - overall * len(y)).max() <= 1.0 + 1e-9, (name, counts)


def test_digits_splits_are_disjoint_and_complete(digits, digits_raw):
    prep = digits.preprocessing
    rows = [prep.inverse_transform(digits.split(s)[0]).reshape(-1, 64) for s in ("train", "val", "test")]
    allx = torch.cat(rows).numpy()
    assert len(allx) == 1797
    raw = digits_raw[0].reshape(-1, 64)
    # every original image appears (up to float error) once
    key = lambda a: sorted(map(tuple, np.round(a * 16).astype(int)))  # noqa: E731
    assert key(allx) == key(raw)


def test_preprocessing_fitted_on_train_only(digits, digits_raw):
    prep = digits.preprocessing
    train_raw = prep.inverse_transform(digits.train[0]).double()
    np.testing.assert_allclose(prep.mean, [float(train_raw.mean())], rtol=1e-5)
    np.testing.assert_allclose(prep.std, [float(train_raw.std())], rtol=1e-5)
    full = digits_raw[0]
    # float error is ~1e-7; the train-only and all-data means differ by ~5e-5
    assert abs(prep.mean[0] - float(full.astype(np.float64).mean())) > 1e-5, "mean is the all-data mean: test leaked in"
    # the normalized training split is centred and scaled; the test split is not exactly
    assert abs(float(digits.train[0].mean())) < 1e-5
    assert abs(float(digits.train[0].double().std()) - 1) < 1e-5
    assert abs(float(digits.test[0].mean())) > 1e-4


def test_feature_normalization_keeps_constant_pixels():
    from sklearn.datasets import load_digits

    bundle = build_data(DataConfig(name="digits", normalize="feature"), "classification")
    prep = bundle.preprocessing
    assert len(prep.mean) == 64 and len(prep.std) == 64
    raw = prep.inverse_transform(bundle.train[0]).reshape(len(bundle.train[0]), 64).double()
    np.testing.assert_allclose(prep.mean, raw.mean(0).numpy(), atol=1e-6)
    full = torch.from_numpy(load_digits().images.reshape(-1, 64) / 16.0)
    assert np.abs(np.array(prep.mean) - full.mean(0).numpy()).max() > 1e-3, "fitted on more than the train split"
    constant = raw.std(0) < 1e-8
    assert constant.any(), "digits has always-blank border pixels"
    assert all(prep.std[i] == 1.0 for i in np.flatnonzero(constant.numpy()))
    assert torch.isfinite(bundle.train[0]).all() and torch.isfinite(bundle.test[0]).all()


def test_normalize_none_keeps_pixels_in_unit_range():
    bundle = build_data(DataConfig(name="digits", normalize="none", limit=50), "classification")
    assert bundle.preprocessing.mean is None
    assert float(bundle.train[0].min()) >= 0 and float(bundle.train[0].max()) <= 1
    assert len(bundle.train[0]) == 50  # limit


def test_split_depends_only_on_split_seed():
    a = build_data(DataConfig(name="digits", split_seed=0), "classification")
    b = build_data(DataConfig(name="digits", split_seed=0, batch_size=7), "classification")
    c = build_data(DataConfig(name="digits", split_seed=1), "classification")
    assert torch.equal(a.test[0], b.test[0]) and torch.equal(a.train[1], b.train[1])
    assert a.test[0].shape == c.test[0].shape
    assert not torch.equal(a.test[1], c.test[1])


def test_bundle_loader_and_bad_split(digits):
    loader = digits.loader("train", seed=3)
    assert loader.shuffle and loader.batch_size == 64 and loader.seed == 3
    assert not digits.loader("test").shuffle and digits.loader("test").batch_size == 1024
    with pytest.raises(ConfigError, match="did you mean 'val'"):
        digits.loader("vall")


def test_unknown_dataset():
    with pytest.raises(ConfigError, match="did you mean 'mnist'"):
        build_data(DataConfig(name="mnst"), "classification")


def test_diabetes_regression_targets():
    bundle = build_data(DataConfig(name="diabetes"), "regression")
    prep = bundle.preprocessing
    assert bundle.task == "regression" and bundle.num_outputs == 1
    assert bundle.train[1].shape == (len(bundle.train[0]), 1) and bundle.train[1].dtype == torch.float32
    assert prep.kind == "tabular" and prep.normalize == "feature" and len(prep.feature_names) == 10
    np.testing.assert_allclose(prep.target_mean, [float(bundle.train[1].double().mean())], rtol=1e-5)
    y = bundle.train[1][:5]
    torch.testing.assert_close(prep.inverse_target(prep.transform_target(y)), y)


# --- from_arrays -----------------------------------------------------------------------------------------------------


def test_from_arrays_nan_and_inf():
    x = np.ones((20, 3), np.float32)
    x[7, 1] = np.nan
    with pytest.raises(DataError, match="NaN or Inf"):
        from_arrays(x, np.arange(20) % 2)
    x[7, 1] = np.inf
    with pytest.raises(DataError, match="NaN or Inf"):
        from_arrays(x, np.arange(20) % 2)


def test_from_arrays_nan_regression_target():
    y = np.arange(20, dtype=np.float32)
    y[3] = np.nan
    with pytest.raises(DataError, match="target values are NaN"):
        from_arrays(np.ones((20, 2)), y, task="regression")


def test_from_arrays_length_mismatch():
    with pytest.raises(DataError, match="10 samples but y has 9"):
        from_arrays(np.zeros((10, 2)), np.zeros(9, np.int64))


def test_from_arrays_empty_and_bad_rank():
    with pytest.raises(DataError, match="empty"):
        from_arrays(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    with pytest.raises(DataError, match="expected"):
        from_arrays(np.zeros(0), np.zeros(0))
    with pytest.raises(DataError, match=r"\(N, features\)"):
        from_arrays(np.zeros((4, 2, 2)), np.zeros(4, np.int64))


def test_from_arrays_single_class_is_an_error():
    with pytest.raises(DataError, match="at least 2 classes"):
        from_arrays(np.random.rand(20, 2), np.zeros(20, np.int64))


def test_from_arrays_unknown_option():
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        from_arrays(np.random.rand(20, 2), np.arange(20) % 2, batchsize=4)


def test_from_arrays_explicit_test_split(blobs):
    x, y = blobs()
    xt, yt = blobs(n_per_class=5, seed=1)
    bundle = from_arrays(x, y, x_test=xt, y_test=yt, val_split=0.25)
    assert len(bundle.test[0]) == 15 and len(bundle.val[0]) == 30 and len(bundle.train[0]) == 90
    prep = bundle.preprocessing
    torch.testing.assert_close(bundle.test[0], prep.transform(torch.from_numpy(xt)))
    assert torch.equal(bundle.test[1], torch.from_numpy(yt))


def test_from_arrays_binary_and_images():
    rng = np.random.default_rng(0)
    b = from_arrays(rng.normal(size=(40, 3)), np.arange(40) % 2, task="binary")
    assert b.num_outputs == 1 and b.train[1].dtype == torch.float32
    assert set(b.train[1].tolist()) == {0.0, 1.0}
    img = from_arrays(rng.random((80, 3, 4, 4)), np.arange(80) % 4)
    assert img.preprocessing.kind == "image" and img.preprocessing.normalize == "channel"
    assert len(img.preprocessing.mean) == 3
    assert img.preprocessing.class_names == ["0", "1", "2", "3"]


def test_small_dataset_with_many_classes_splits():
    x = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    bundle = from_arrays(x, np.arange(30) % 10)  # 10 classes × 3 samples; test_split 0.2 holds out 6 samples
    assert len(bundle.test[0]) == 6 and len(bundle.train[0]) + len(bundle.val[0]) == 24


def test_negative_integer_labels_are_a_clear_error_or_work():
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    y = np.where(np.arange(40) % 2 == 0, -1, 1)
    try:
        bundle = from_arrays(x, y)
    except DataError:
        return  # a clear user error is acceptable
    assert bundle.num_classes == 2
    assert set(bundle.train[1].tolist()) <= {0, 1}


# --- TensorLoader ----------------------------------------------------------------------------------------------------


def batches(loader) -> list[torch.Tensor]:
    return [yb.clone() for _, yb in loader]


def make_loader(n=50, bs=8, seed=0, **kw) -> TensorLoader:
    return TensorLoader(torch.arange(n).float()[:, None], torch.arange(n), bs, shuffle=True, seed=seed, **kw)


def test_loader_shuffle_is_function_of_seed_and_epoch():
    a, b = make_loader(), make_loader()
    a.set_epoch(3)
    b.set_epoch(3)
    ea, eb = batches(a), batches(b)
    assert all(torch.equal(u, v) for u, v in zip(ea, eb, strict=True))
    assert sorted(torch.cat(ea).tolist()) == list(range(50)), "an epoch visits each sample once"
    assert [len(t) for t in ea] == [8] * 6 + [2]
    b.set_epoch(4)
    assert not torch.equal(torch.cat(ea), torch.cat(batches(b))), "epochs should differ"
    c = make_loader(seed=1)
    c.set_epoch(3)
    assert not torch.equal(torch.cat(ea), torch.cat(batches(c))), "seeds should differ"
    assert torch.equal(torch.cat(ea), torch.cat(batches(a))), "same epoch again: same order"


def test_loader_resume_mid_epoch_yields_tail():
    full = make_loader()
    full.set_epoch(2)
    whole = batches(full)
    for k in (0, 1, 4, 6, 7):
        part = make_loader()
        part.set_epoch(2, start_batch=k)
        tail = batches(part)
        assert len(tail) == len(whole) - k
        assert all(torch.equal(u, v) for u, v in zip(tail, whole[k:], strict=True))
        assert len(batches(part)) == len(whole), "start_batch applies to one pass only"


def test_loader_without_shuffle_and_drop_last():
    loader = TensorLoader(torch.zeros(10, 1), torch.arange(10), 4, shuffle=False, drop_last=True)
    assert len(loader) == 2
    assert [b.tolist() for b in batches(loader)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(TensorLoader(torch.zeros(10, 1), torch.arange(10), 4)) == 3


# --- MNIST -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_synthetic_idx(tmp_path, write_mnist, gz):
    folder = write_mnist(tmp_path / "mnist", n_train=200, n_test=50, gz=gz)
    bundle = build_data(DataConfig(name="mnist", path=str(folder)), "classification")
    assert len(bundle.test[0]) == 50, "MNIST keeps its official test split"
    assert len(bundle.val[0]) == 20 and len(bundle.train[0]) == 180
    assert bundle.preprocessing.input_shape == [1, 28, 28]
    assert bundle.preprocessing.class_names == [str(i) for i in range(10)]
    assert bundle.test[1].tolist() == [i % 10 for i in range(50)]
    raw = bundle.preprocessing.inverse_transform(bundle.test[0])
    assert float(raw.min()) >= -1e-5 and float(raw.max()) <= 1 + 1e-5  # pixels / 255


def test_mnist_default_path_is_data_root(tmp_path, write_mnist, monkeypatch):
    write_mnist(tmp_path / "mnist", n_train=100, n_test=20)
    monkeypatch.setenv("DEEPKIT_DATA", str(tmp_path))
    assert data_root() == tmp_path
    raw = load_mnist()
    assert raw.x.shape == (100, 1, 28, 28) and raw.x_test.shape == (20, 1, 28, 28)


def test_data_root_fallback(tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert data_root() == tmp_path / "deepkit" / "datasets"


def test_mnist_missing_folder(tmp_path):
    with pytest.raises(DataError, match="DEEPKIT_DATA"):
        build_data(DataConfig(name="mnist", path=str(tmp_path / "nowhere")), "classification")


def test_mnist_missing_file(tmp_path, write_mnist):
    folder = write_mnist(tmp_path / "mnist", n_train=20, n_test=10)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\(\.gz\) not found"):
        load_mnist(folder)


def test_mnist_images_and_labels_disagree(tmp_path, write_mnist):
    folder = write_mnist(tmp_path / "mnist", n_train=20, n_test=10)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(19, np.uint8))
    with pytest.raises(DataError, match="disagree"):
        load_mnist(folder)


def test_real_mnist_counts(mnist_dir):
    raw = load_mnist(mnist_dir)
    assert raw.x.shape == (60000, 1, 28, 28) and raw.x_test.shape == (10000, 1, 28, 28)
    assert np.bincount(raw.y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(raw.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert float(raw.x.max()) == 1.0 and float(raw.x.min()) == 0.0


# --- download --------------------------------------------------------------------------------------------------------


def test_download_mnist_from_file_mirror(tmp_path, mnist_dir):
    dest = tmp_path / "mnist"
    dl.download_mnist(dest, mirrors=[mnist_dir.as_uri() + "/"])
    for name, md5 in dl.MNIST_MD5.items():
        assert dl.md5sum(dest / name) == md5
        assert (dest / name).read_bytes() == (mnist_dir / name).read_bytes()
    assert not list(dest.glob(".download-*")), "temporary download files left behind"
    # files already present with the right checksum are not fetched again (this mirror does not exist)
    dl.download_mnist(dest, mirrors=[(tmp_path / "no-such-mirror").as_uri() + "/"])


def test_load_mnist_download_flag_uses_mirror(tmp_path, mnist_dir, monkeypatch):
    monkeypatch.setattr(dl, "MNIST_MIRRORS", [mnist_dir.as_uri() + "/"])
    raw = load_mnist(tmp_path / "fresh", download=True)
    assert raw.x.shape[0] == 60000 and (tmp_path / "fresh" / "train-images-idx3-ubyte.gz").is_file()


def test_download_rejects_wrong_checksum(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in dl.MNIST_MD5:
        (mirror / name).write_bytes(gzip.compress(b"not mnist"))
    dest = tmp_path / "mnist"
    with pytest.raises(DataError, match="md5") as info:
        dl.download_mnist(dest, mirrors=[mirror.as_uri() + "/"])
    assert hashlib.md5(gzip.compress(b"not mnist")).hexdigest() != dl.MNIST_MD5["train-images-idx3-ubyte.gz"]
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    assert not (dest / "train-images-idx3-ubyte.gz").exists(), "a file with a wrong checksum was kept"
    assert not list(dest.glob(".download-*"))


def test_download_unreachable_mirror(tmp_path):
    with pytest.raises(DataError, match="could not download"):
        dl.download_file([(tmp_path / "absent").as_uri() + "/x.gz"], tmp_path / "out" / "x.gz", md5="0" * 32)
