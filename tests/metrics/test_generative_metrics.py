"""Classifier-feature FID (torchmetrics with a deepkit classifier) against the closed form, and conditional accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from deepkit import create_model
from deepkit.data.preprocess import Preprocessing
from deepkit.metrics.generative import ClassifierFeatures, classifier_fid, conditional_accuracy


@pytest.fixture(scope="module")
def features():
    torch.manual_seed(0)
    model = create_model("mlp", in_features=64, num_classes=3, depth=1, width=6)
    prep = Preprocessing(kind="image", input_shape=[1, 8, 8], normalize="channel", mean=[0.3], std=[0.2])
    return ClassifierFeatures(model, prep)


def reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||² + Tr(Sa + Sb - 2 (Sa Sb)^½) with scipy's matrix square root (Heusel et al., 2017)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(sa @ sb).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sa + sb - 2 * root))


def test_fid_matches_the_closed_form_on_classifier_features(features):
    g = torch.Generator().manual_seed(1)
    real, fake = torch.rand(400, 1, 8, 8, generator=g), torch.rand(300, 1, 8, 8, generator=g) ** 2
    fa, fb = features(real).double().numpy(), features(fake).double().numpy()
    assert features.num_features == 6
    assert classifier_fid(real, fake, features, batch_size=128) == pytest.approx(reference_fid(fa, fb), rel=1e-3)


def test_fid_orders_similar_and_different_sets(features):
    g = torch.Generator().manual_seed(2)
    real = torch.rand(500, 1, 8, 8, generator=g)
    same = torch.rand(500, 1, 8, 8, generator=g)
    other = (torch.rand(500, 1, 8, 8, generator=g) > 0.8).float()
    assert classifier_fid(real, same, features) < 0.1 * classifier_fid(real, other, features)


def test_conditional_accuracy_counts_requested_labels(features):
    clf = features.classifier
    x = torch.rand(50, 1, 8, 8)
    with torch.no_grad():
        pred = clf(features.preprocessing.transform(x)).argmax(1)
    assert conditional_accuracy(x, pred, clf, features.preprocessing) == 1.0
    assert conditional_accuracy(x, (pred + 1) % 3, clf, features.preprocessing) == 0.0
