"""Evaluation of generators with a classifier trained by deepkit on the same data.

``MNIST-FID``: the Fréchet distance (Heusel et al., 2017) between real and generated images, computed by
torchmetrics' ``FrechetInceptionDistance`` on the penultimate features of a deepkit classifier instead of
Inception-v3 (which knows nothing of 28×28 digits). ``conditional_accuracy``: how often that classifier assigns
generated images the label they were generated for.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance


class ClassifierFeatures(nn.Module):
    """Images in [0, 1] -> the classifier's normalization -> its penultimate features (B, F), in eval mode: the
    vector its classifier layer sees, ``forward_head(forward_features(x), pre_logits=True)``."""

    def __init__(self, classifier: nn.Module, preprocessing):
        super().__init__()
        self.classifier = classifier.eval()
        self.preprocessing = preprocessing
        with torch.no_grad():
            shape = (1, *preprocessing.input_shape)
            self.num_features = int(self.penultimate(torch.zeros(shape)).shape[1])

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.forward_head(self.classifier.forward_features(x), pre_logits=True)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.penultimate(self.preprocessing.transform(x.float()))


def classifier_fid(
    real: torch.Tensor, fake: torch.Tensor, features: ClassifierFeatures, batch_size: int = 1000
) -> float:
    """Fréchet distance between ``real`` and ``fake`` images (N, C, H, W) in [0, 1], in classifier-feature space."""
    fid = FrechetInceptionDistance(feature=features, normalize=True)  # feature sums and covariances kept in float64
    for imgs, is_real in ((real, True), (fake, False)):
        for xb in imgs.split(batch_size):
            fid.update(xb.float(), real=is_real)
    return float(fid.compute())


@torch.no_grad()
def conditional_accuracy(
    images: torch.Tensor, labels: torch.Tensor, classifier: nn.Module, preprocessing, batch_size: int = 1000
) -> float:
    """Fraction of generated ``images`` (in [0, 1]) that ``classifier`` puts in the class they were generated for."""
    classifier.eval()
    pred = torch.cat([classifier(preprocessing.transform(xb.float())).argmax(1) for xb in images.split(batch_size)])
    return float((pred == labels.to(pred.device)).float().mean())
