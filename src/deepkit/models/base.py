"""Conventions every model family follows; the classifier interface follows timm's.

Example inputs (every registered model)
---------------------------------------
``model.example_input(batch_size=2)`` returns a ``dict`` of keyword arguments for ``forward``: one small valid
call for the model *as configured* (its ``in_channels`` and image size, ``vocab_size``, context length, latent size,
...), so ``model(**model.example_input())`` always runs. Keys are ``forward``'s parameter names (``{"x": images}``,
``{"z": noise}``, ``{"input_ids": ..., "attention_mask": ...}``, ``{"src": ..., "src_lengths": ..., "tgt_in": ...}``).
The values come from a private ``torch.Generator`` seeded inside (see :func:`example_generator`): every call returns
the same tensors and the global RNG streams (model init, data order, dropout) are left untouched. Tensors are put on
the device of the model's parameters. Families may take extra keyword options (sequence models: ``seq_len``).

Classifiers
-----------
``forward(x) = forward_head(forward_features(x))``, bit for bit; transfer learning swaps the head with
``reset_classifier(num_classes)`` and finds it with ``get_classifier()``.

* ``forward_head(feats, pre_logits=True)`` returns the vector the classifier layer sees, ``(B, num_features)``
  (pooled, after any hidden FC layers and dropout); this is what feature-space metrics (FID) and linear probes use.
* CNN backbones (``simple_cnn``, ``lenet5``, ``alexnet``, ``vgg*``, ``resnet*``): ``forward_features(x)`` returns
  the *unpooled* final feature map ``(B, C, H, W)``; ``forward_head`` does the pooling (and, for LeNet, AlexNet
  and VGG, the hidden FC layers) and the classifier.
* Per-stage maps for FPN / U-Net decoders: ``forward_features(x, stages=True)`` returns a list of maps, one per
  stage, described by ``feature_info``: a list of ``{"num_chs": C, "reduction": stride, "module": name}`` (timm's
  keys; ``reduction`` is the nominal stride with respect to the input, ``module`` the name, as in
  ``named_modules()``, of the module whose output the map is). The last stage is ``forward_features(x)``.
  Sequence and dense classifiers (``mlp``, recurrent ones) have no spatial stages and no ``feature_info``;
  their ``forward_features`` is already a vector.
"""

from __future__ import annotations

import torch
from torch import nn

EXAMPLE_SEED = 0


def example_generator(seed: int = EXAMPLE_SEED) -> torch.Generator:
    """A fresh CPU generator for ``example_input``: fixed values, and the global RNG is not consumed."""
    return torch.Generator().manual_seed(seed)


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (or buffer); CPU for a model without tensors."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def random_ids(g: torch.Generator, vocab_size: int, shape: tuple[int, ...], low: int = 0) -> torch.Tensor:
    """Token ids in ``[low, vocab_size)`` (``low`` is lowered when the vocabulary is smaller), int64."""
    return torch.randint(min(low, vocab_size - 1), vocab_size, shape, generator=g, device="cpu")


class Classifier(nn.Module):
    """Base class: subclasses define ``forward_features``, ``forward_head`` and ``reset_classifier``.

    The default ``example_input`` is an image batch ``{"x": (B, cfg.in_channels, H, W)}`` of size
    ``example_size``; non-image classifiers override it.
    """

    min_size: int = 1  # smallest image side the model accepts (image classifiers set it)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_classifier(self) -> nn.Module:
        """The head module (its parameters are what transfer learning replaces); ``self.head`` by default."""
        return self.head

    def check_input(self, shape: tuple[int, ...]) -> None:
        """Raise ``ShapeError`` if one sample of this ``shape`` (no batch dim) cannot go through the model."""

    @property
    def example_size(self) -> tuple[int, int]:
        """(H, W) of ``example_input``'s images: 32 px (CIFAR's size), or ``min_size`` if that is larger."""
        s = max(32, self.min_size)
        return s, s

    def example_input(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """``{"x": images (batch_size, in_channels, *example_size)}``, standard normal (see the module docstring)."""
        x = torch.randn(
            batch_size, self.cfg.in_channels, *self.example_size, generator=example_generator(), device="cpu"
        )
        return {"x": x.to(model_device(self))}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
