"""Transfer learning says what it does (issue 13, part 3): the weights loaded (how many tensors, from where, which
layers start afresh) go into the run's log.txt, and a backbone frozen for most of the run draws a warning."""

from __future__ import annotations

import warnings

import pytest

import deepkit
from deepkit.weights import load_weights


def test_freeze_warning_threshold():
    from deepkit.train.finetune import freeze_warning

    assert freeze_warning(0, 5) is None and freeze_warning(2, 5) is None and freeze_warning(3, 30) is None
    msg = freeze_warning(3, 5)
    assert "frozen for 3 of 5 epochs (60%)" in msg and "trainer.epochs" in msg
    assert "covers the whole run" in freeze_warning(5, 5)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    from tests.conftest import _write_mnist

    root = tmp_path_factory.mktemp("finetune")
    folder = _write_mnist(root / "mnist", n_train=60, n_test=20)
    common = [f"data.path={folder}", "model.channels=[4,8]", "model.hidden=16", "trainer.progress=none"]
    deepkit.train("mnist_cnn", *common, "trainer.epochs=1", out=root / "pre")
    return root, common


def test_most_of_the_run_frozen_warns_and_logs_the_weights(pretrained):
    root, common = pretrained
    args = [*common, f"finetune.weights={root / 'pre'}", "trainer.epochs=5", "data.classes=[0,1,2]"]
    with pytest.warns(UserWarning, match=r"frozen for 3 of 5 epochs \(60%\)"):
        deepkit.train("mnist_cnn", *args, "finetune.freeze_backbone_epochs=3", out=root / "ft")
    log = (root / "ft" / "log.txt").read_text()
    tensors = len(load_weights(root / "pre")[0])
    assert f"finetune: loaded {tensors - 2} tensors from {root / 'pre'}" in log, log
    assert "trained afresh (new head): head (2 tensors)" in log, log
    assert "warning: finetune.freeze_backbone_epochs=3" in log

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        deepkit.train("mnist_cnn", *args, "finetune.freeze_backbone_epochs=1", out=root / "ft1")
    assert not [w for w in record if "freeze_backbone_epochs" in str(w.message)]  # 1 of 5: no warning
    assert "finetune: loaded" in (root / "ft1" / "log.txt").read_text()
