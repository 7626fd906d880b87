"""User mistakes through the CLI: exit status 2, ONE line on stderr starting with "error:", no traceback,
and no finished run directory left behind."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str, out: Path | None = None) -> str:
    """Check the one-line error contract and return the message."""
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{proc.stderr}"
    message = lines[0]
    assert message.startswith("error: "), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    if out is not None:
        status = out / "run.json"
        finished = status.is_file() and json.loads(status.read_text()).get("status") == "finished"
        assert not finished, f"a failed command left a finished run in {out}"
    return message


def train(run_cli, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "out"
    return run_cli("train", *args, "--out", out, cwd=tmp_path), out


# --- recipes and overrides -------------------------------------------------------------------------------------------


def test_unknown_recipe_suggests_nearest(run_cli, tmp_path):
    proc, out = train(run_cli, tmp_path, "digits_cn")
    assert_user_error(proc, "unknown recipe 'digits_cn'", "did you mean 'digits_cnn'", out=out)
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_unknown_key_suggests_nearest(run_cli, tmp_path):
    proc, out = train(run_cli, tmp_path, "digits_mlp", "trainer.epocs=3")
    assert_user_error(proc, "unknown key 'trainer.epocs'", "did you mean 'epochs'", out=out)
    assert not out.exists()


def test_wrong_value_type(run_cli, tmp_path):
    proc, out = train(run_cli, tmp_path, "digits_mlp", "trainer.epochs=abc")
    assert_user_error(proc, "trainer.epochs", "expected an integer", "'abc'", out=out)
    assert not out.exists()


def test_train_without_recipe(run_cli, tmp_path):
    assert_user_error(run_cli("train", cwd=tmp_path), "train needs a RECIPE")


@pytest.mark.slow  # one more CLI start-up (~3 s); runs with `make test-all`
def test_recipe_file_not_found(run_cli, tmp_path):
    proc, out = train(run_cli, tmp_path, str(tmp_path / "mine.yaml"))
    assert_user_error(proc, "recipe file not found", out=out)


# --- model and data do not fit ---------------------------------------------------------------------------------------


def test_channel_mismatch(run_cli, tmp_path):
    proc, out = train(run_cli, tmp_path, "digits_cnn", "model.in_channels=3")
    assert_user_error(proc, "model.in_channels=3 does not fit the data", "1-channel 8×8", out=out)
    assert not out.exists()


def test_switching_model_name_drops_old_keys_then_checks_shape(run_cli, tmp_path):
    # digits_cnn's model section has simple_cnn keys (channels, hidden); model.name=lenet5 starts the model section
    # afresh, so the run gets as far as the shape check and fails there as a one-line user error, writing nothing
    proc, out = train(run_cli, tmp_path, "digits_cnn", "model.name=lenet5")
    assert_user_error(proc, "lenet5 needs images of at least 24×24", "8×8", out=out)
    assert not out.exists()


def test_eval_of_a_run_trained_on_arrays_says_there_is_no_dataset(tmp_path):
    import deepkit
    from deepkit.data import from_arrays
    from deepkit.errors import DataError

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)), np.arange(60) % 2
    run = tmp_path / "arrays_run"
    deepkit.train("digits_mlp", "trainer.epochs=1", "trainer.progress=none", data=from_arrays(x, y), out=run)
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["name"] == "arrays"
    with pytest.raises(DataError, match="trained on arrays"):
        deepkit.evaluate(run)


def test_image_too_small_for_lenet(run_cli, tmp_path):
    recipe = tmp_path / "lenet_digits.yaml"
    recipe.write_text(
        yaml.safe_dump({"model": {"name": "lenet5"}, "data": {"name": "digits"}, "trainer": {"epochs": 1}})
    )
    proc, out = train(run_cli, tmp_path, str(recipe))
    assert_user_error(proc, "lenet5 needs images of at least 24×24", "8×8", out=out)
    assert not out.exists()


def test_tabular_data_for_a_cnn(run_cli, tmp_path):
    recipe = tmp_path / "cnn_table.yaml"
    recipe.write_text(
        yaml.safe_dump({"task": {"name": "regression"}, "model": {"name": "simple_cnn"}, "data": {"name": "diabetes"}})
    )
    proc, out = train(run_cli, tmp_path, str(recipe))
    assert_user_error(proc, "model 'simple_cnn' takes images", "10 features", out=out)
    assert not out.exists()


# --- corrupt and unusable data ---------------------------------------------------------------------------------------


def test_missing_csv(run_cli, tmp_path):
    proc, out = train(run_cli, tmp_path, "csv_classification", f"data.path={tmp_path / 'missing.csv'}")
    assert_user_error(proc, "CSV file not found", "missing.csv", out=out)
    assert not out.exists()


@pytest.mark.parametrize(
    "text,fragments",
    [
        ("a,b,label\n1,2,x\n3,4\n5,6,y\n", ["line 3: 2 fields, expected 3"]),
        ("a,b,label\n1,2,x\ninf,4,y\n5,6,y\n", ["line 3, column 'a'", "finite"]),
        ("", ["is empty"]),
        ("a,b,label\n1,two,x\n", ["line 2, column 'b'", "'two'", "data.csv.categorical=[b]"]),
        ("a,b,label\n1,2,x\n,4,y\n5,6,y\n", ["line 3, column 'a'", "missing value", "data.csv.missing"]),
    ],
    ids=["ragged", "inf", "empty", "text-in-number-column", "missing-cell"],
)
def test_bad_csv(run_cli, tmp_path, text, fragments):
    """Strict reading (data.csv.infer_categorical=false, missing=error) keeps the errors that point at the cell;
    by default words make a column categorical and missing cells are imputed (tests/data/test_tables.py)."""
    table = tmp_path / "table.csv"
    table.write_text(text)
    strict = ["data.csv.infer_categorical=false", "data.csv.missing=error"]
    proc, out = train(run_cli, tmp_path, "csv_classification", f"data.path={table}", *strict)
    assert_user_error(proc, *fragments, out=out)
    assert not out.exists()


def test_truncated_idx(run_cli, tmp_path, write_mnist):
    folder = write_mnist(tmp_path / "mnist", n_train=100, n_test=20)
    images = folder / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-200])
    proc, out = train(run_cli, tmp_path, "mnist_cnn", f"data.path={folder}")
    assert_user_error(proc, "truncated", "train-images-idx3-ubyte.gz", out=out)
    assert not out.exists()


def test_mnist_folder_missing(run_cli, tmp_path):
    proc, out = train(run_cli, tmp_path, "mnist_cnn", f"data.path={tmp_path / 'nowhere'}")
    assert_user_error(proc, "MNIST folder not found", "DEEPKIT_DATA", out=out)


def test_diverging_training_fails_cleanly(run_cli, tmp_path):
    proc, out = train(
        run_cli,
        tmp_path,
        "digits_mlp",
        "trainer.epochs=2",
        "trainer.optimizer.name=sgd",
        "trainer.optimizer.lr=1e6",
        "model.width=16",
        "trainer.progress=none",
    )
    message = assert_user_error(proc, "training loss became", "lower trainer.optimizer.lr", out=out)
    assert "no checkpoint was written before it" in message and "checkpoints/last" not in message, message
    assert not (out / "checkpoints" / "last").exists()
    status = json.loads((out / "run.json").read_text())
    assert status["status"] == "failed" and "TrainingDiverged" in status["error"]


# --- predict with inputs that do not fit -----------------------------------------------------------------------------


def test_predict_other_image_size_is_resized_with_warning(digits_run, run_cli, tmp_path):
    out, _ = digits_run
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((28, 28), np.uint8), mode="L").save(big)
    proc = run_cli("predict", out, big)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == f"warning: image {big}: resized 28×28 images to 8×8"
    assert proc.stdout.startswith(str(big))


def test_predict_colour_image_for_grayscale_model(digits_run, run_cli, tmp_path):
    out, _ = digits_run
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255  # pure red: the channels differ
    path = tmp_path / "red.png"
    Image.fromarray(rgb, mode="RGB").save(path)
    proc = run_cli("predict", out, path)  # converted to grayscale, as training converts an odd colour image
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == f"warning: image {path}: converted 3-channel images to 1 channel(s)"
    assert proc.stdout.startswith(str(path))


@pytest.mark.slow  # one more CLI start-up (~3 s); runs with `make test-all`
def test_predict_grayscale_saved_as_rgb_is_accepted(digits_run, run_cli, tmp_path):
    out, _ = digits_run
    gray = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    path = tmp_path / "gray_rgb.png"
    Image.fromarray(np.stack([gray] * 3, -1), mode="RGB").save(path)
    proc = run_cli("predict", out, path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(str(path))


def test_predict_corrupt_png(digits_run, run_cli, tmp_path):
    out, _ = digits_run
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    assert_user_error(run_cli("predict", out, path), "cannot read image", "broken.png")


@pytest.mark.slow  # one more CLI start-up (~3 s); runs with `make test-all`
def test_predict_missing_input_and_unknown_type(digits_run, run_cli, tmp_path):
    out, _ = digits_run
    assert_user_error(run_cli("predict", out, tmp_path / "nope.png"), "input file not found")
    other = tmp_path / "notes.docx"
    other.write_bytes(b"x")
    assert_user_error(run_cli("predict", out, other), "unsupported input")


# --- run directories -------------------------------------------------------------------------------------------------


def test_debug_shows_traceback(run_cli, tmp_path):
    proc = run_cli("train", "digits_cn", "--debug", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "ConfigError" in proc.stderr and "did you mean 'digits_cnn'" in proc.stderr


def test_out_of_existing_run_needs_overwrite(run_cli, tmp_path):
    out = tmp_path / "existing"
    out.mkdir()
    (out / "config.yaml").write_text("name: old\n")
    (out / "run.json").write_text(json.dumps({"status": "finished", "marker": 42}))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = run_cli("train", "digits_mlp", "trainer.epochs=1", "--out", out, cwd=tmp_path)
    assert_user_error(proc, "already exists", "--overwrite")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "the existing run was modified"


def test_overwrite_refuses_a_directory_that_is_not_a_run(run_cli, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.txt").write_text("do not delete")
    proc = run_cli("train", "digits_mlp", "trainer.epochs=1", "--out", out, "--overwrite", cwd=tmp_path)
    assert_user_error(proc, "not a deepkit run directory")
    assert (out / "thesis.txt").read_text() == "do not delete"


def test_eval_of_a_directory_that_is_not_a_run(run_cli, tmp_path):
    assert_user_error(run_cli("eval", tmp_path), "not a run directory")


def test_resume_checks_the_recipe(digits_run, run_cli):
    out, _ = digits_run
    assert_user_error(run_cli("train", "digits_cnn", "--resume", out), "holds a run of recipe 'digits_mlp'")


def test_resume_without_checkpoint(run_cli, tmp_path):
    run = tmp_path / "half"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"name": "digits_mlp", "model": {"name": "mlp"}}))
    assert_user_error(run_cli("train", "--resume", run), "no resumable checkpoint")


# --- messages a new user met (issue 13, part 4) ----------------------------------------------------------------------
def test_a_yaml_syntax_error_names_its_line_and_column(run_cli, tmp_path):
    (tmp_path / "mine.yaml").write_text("task:\n  name: classification\nmodel: {name: mlp\ndata: {name: digits}\n")
    proc, out = train(run_cli, tmp_path, str(tmp_path / "mine.yaml"))
    assert_user_error(proc, "is not valid YAML: line 4, column 5: expected ',' or '}'", out=out)


def test_a_scalar_for_a_list_setting_says_how_to_write_a_list(run_cli, tmp_path):
    proc, out = train(run_cli, tmp_path, "digits_cnn", "data.image_size=16")
    assert_user_error(
        proc, "data.image_size: expected a list of integers, got 16; a list is written in brackets, e.g. [16]"
    )


def test_out_must_be_a_new_folder_or_a_run(run_cli, tmp_path):
    (tmp_path / "some_file.csv").write_text("a,b\n")
    proc, _ = run_cli("train", "digits_mlp", "--out", tmp_path / "some_file.csv", cwd=tmp_path), None
    assert_user_error(proc, "some_file.csv is a file; expected a directory for the run")
    (tmp_path / "notarun").mkdir()
    (tmp_path / "notarun" / "notes.txt").write_text("mine")
    message = assert_user_error(run_cli("train", "digits_mlp", "--out", tmp_path / "notarun", cwd=tmp_path))
    assert "is not a deepkit run directory" in message and "--resume" not in message, message


def test_predict_on_a_missing_run_says_there_is_no_run(run_cli, tmp_path):
    assert_user_error(run_cli("predict", tmp_path / "runs" / "nope", "x.png", cwd=tmp_path), "no run directory")


def test_the_python_predictor_takes_what_the_cli_takes(digits_run):
    import deepkit

    out, _ = digits_run
    files = sorted((out / "samples").glob("*.png"))
    p = deepkit.load(out)
    one = p.predict(files[0])
    assert one.shape == (1,) and p.predict(str(files[0])).tolist() == one.tolist()
    names = p.predict(files, names=True)
    assert list(names) == [p.class_names[i] for i in p.predict(files)]
    labels = [f.stem.split("label_")[1] for f in files]
    assert sum(a == b for a, b in zip(names, labels, strict=True)) >= 6
    assert p.predict_proba(files).shape == (len(files), 10)
