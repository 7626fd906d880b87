"""Seeing inside a CNN: first-layer filters, feature maps, Grad-CAM and the most confident mistakes.

Pure tensor logic (no drawing): ``deepkit.viz.cnn_plots`` turns the results into PNGs and
``deepkit.viz.run_report.visualize_run`` does both for a run directory (``deepkit viz RUN_DIR``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.errors import ShapeError


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first ``Conv2d`` the model defines (its input layer for every CNN here)."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            return name, m
    raise ShapeError(f"model '{getattr(model, 'model_name', type(model).__name__)}' has no convolution layer")


def first_layer_filters(model: nn.Module) -> torch.Tensor:
    """Weights of the first convolution, (out_channels, in_channels, k, k)."""
    return first_conv(model)[1].weight.detach().float().cpu()


@torch.no_grad()
def spatial_outputs(model: nn.Module, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """(module name, output) for every module whose output is a feature map (B, C, H, W) with H·W > 1, in the
    order they ran. Containers come after their children (a stage's output follows its last block).
    Adaptive pooling layers are left out: they only resize (VGG's 7×7 pool upsamples a 1×1 map at 32 px)."""
    out: list[tuple[str, torch.Tensor]] = []
    hooks = []
    for name, m in model.named_modules():
        if not name or isinstance(m, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
            continue

        def hook(mod, inp, o, name=name):
            if isinstance(o, torch.Tensor) and o.ndim == 4 and o.shape[-1] * o.shape[-2] > 1:
                out.append((name, o.detach().clone()))  # clone: a later in-place ReLU must not change it

        hooks.append(m.register_forward_hook(hook))
    try:
        model.eval()
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return out


def feature_maps(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Feature maps of one image (1, C, H, W): the first convolution's output and the last feature map before
    global pooling, each (C, H, W)."""
    outs = spatial_outputs(model, x)
    if not outs:
        raise ShapeError("the model produced no spatial feature maps for this input")
    conv_name = first_conv(model)[0]
    first = next((o for n, o in outs if n == conv_name), outs[0][1])
    last_name, last = outs[-1]
    return {f"{conv_name} (first conv)": first[0], f"{last_name} (last feature map)": last[0]}


def gradcam_layer(model: nn.Module, x: torch.Tensor) -> str:
    """Name of the module producing the last spatial feature map: where Grad-CAM looks."""
    outs = spatial_outputs(model, x)
    if not outs:
        raise ShapeError("Grad-CAM needs a convolutional model with spatial feature maps")
    return outs[-1][0]


def grad_cam(model: nn.Module, x: torch.Tensor, target: int | None = None, layer: str | None = None) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., 2017) for one image (1, C, H, W): which regions raised the ``target`` class
    score (default: the predicted class). Returns a map (H, W) in [0, 1] at the input's resolution.

    The class score's gradient with respect to a feature map A (K, h, w) is averaged over space to weight each
    channel; the map is ReLU(sum_k weight_k · A_k), upsampled bilinearly.
    """
    layer = layer or gradcam_layer(model, x)
    module = dict(model.named_modules())[layer]
    store: dict[str, torch.Tensor] = {}

    def hook(mod, inp, out):
        out = out.clone() if out.requires_grad else out  # keep this exact tensor out of later in-place ops
        out.retain_grad()
        store["act"] = out
        return out

    h = module.register_forward_hook(hook)
    try:
        model.eval()
        model.zero_grad(set_to_none=True)
        x = x.detach().requires_grad_(True)  # so activations require grad even with frozen parameters
        logits = model(x)
        cls = int(logits.argmax(1)[0]) if target is None else int(target)
        logits[0, cls].backward()
    finally:
        h.remove()
    act, grad = store["act"], store["act"].grad
    weights = grad.mean(dim=(2, 3), keepdim=True)  # (1, K, 1, 1)
    cam = F.relu((weights * act).sum(1, keepdim=True))  # (1, 1, h, w)
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0].detach()
    model.zero_grad(set_to_none=True)
    return cam / cam.max() if float(cam.max()) > 0 else cam


def saliency(model: nn.Module, x: torch.Tensor, target: int | None = None) -> torch.Tensor:
    """Vanilla gradient saliency (Simonyan et al., 2014): max over channels of |d score / d input|, (H, W)."""
    model.eval()
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)
    cls = int(logits.argmax(1)[0]) if target is None else int(target)
    logits[0, cls].backward()
    s = x.grad[0].abs().amax(0)
    model.zero_grad(set_to_none=True)
    return s / s.max() if float(s.max()) > 0 else s


@dataclass
class Mistake:
    index: int  # position in the evaluated split
    true: int
    pred: int
    confidence: float  # probability the model gave its (wrong) prediction


def confident_mistakes(probs: torch.Tensor, labels: torch.Tensor, k: int = 16) -> list[Mistake]:
    """The ``k`` misclassified samples with the highest predicted probability, most confident first."""
    conf, pred = probs.max(1)
    wrong = (pred != labels).nonzero().flatten()
    order = wrong[conf[wrong].argsort(descending=True)][:k]
    return [Mistake(int(i), int(labels[i]), int(pred[i]), float(conf[i])) for i in order]
