"""``deepkit viz RUN_DIR``: PNGs of first-layer filters, feature maps and Grad-CAM for an image, and the most
confidently misclassified test images, written to ``RUN_DIR/plots/inside/``."""

from __future__ import annotations

from pathlib import Path

import torch

from deepkit.errors import ConfigError


def visualize_run(
    run_dir: str | Path, image: str | Path | None = None, out_dir: str | Path | None = None, top_k: int = 16
) -> list[Path]:
    """Write the inside-the-CNN plots of a trained run; returns the files written.

    Args:
        run_dir: a run directory written by ``deepkit train`` (a CNN on images).
        image: an image file for the feature maps and Grad-CAM (default: the first test image).
        out_dir: where the PNGs go (default ``RUN_DIR/plots/inside``).
        top_k: how many confidently misclassified test images to show.
    """
    from deepkit.api import load, open_run
    from deepkit.data.inputs import read_inputs
    from deepkit.viz import cnn_plots, inside

    run_dir = Path(run_dir)
    predictor = load(run_dir)
    prep = getattr(predictor, "preprocessing", None)
    labels = getattr(getattr(predictor, "task", None), "num_classes", None)  # a multi-class classifier's classes
    if prep is None or prep.kind != "image" or not labels:
        kind = prep.kind if prep is not None else "non-image"
        raise ConfigError(
            f"deepkit viz needs an image classification run; {run_dir} is a {kind} '{predictor.task_name}' run"
        )
    model = predictor.model.cpu().eval()
    out = Path(out_dir) if out_dir else run_dir / "plots" / "inside"
    written = [cnn_plots.plot_filters(inside.first_layer_filters(model), out / "filters.png")]

    bundle = open_run(run_dir).data
    split = "test" if bundle.test is not None else "val"
    x, y = bundle.split(split)
    if image is not None:
        _, raw = read_inputs([image], prep)
        name = Path(image).name
    else:
        raw, name = prep.inverse_transform(x[:1]), f"first {split} image"
    xin = prep.transform(raw)
    maps = inside.feature_maps(model, xin)
    written.append(cnn_plots.plot_feature_maps(maps, raw[0], out / "feature_maps.png"))
    with torch.no_grad():
        probs = model(xin).softmax(1)[0]
    cls = int(probs.argmax())
    cam = inside.grad_cam(model, xin, cls)
    names = prep.class_names
    title = f"Grad-CAM of {name}: predicted '{names[cls]}' (p={float(probs[cls]):.2f})"
    written.append(cnn_plots.plot_cam(raw[0], cam, out / "gradcam.png", title))

    probs_all = predictor.trainer.predict(predictor.task, x)
    mistakes = inside.confident_mistakes(probs_all, y.cpu(), top_k)
    imgs = prep.inverse_transform(x[[m.index for m in mistakes]]) if mistakes else x[:0]
    captions = [f"true {names[m.true]} → {names[m.pred]} ({m.confidence:.2f})" for m in mistakes]
    n_wrong = int((probs_all.argmax(1) != y.cpu()).sum())
    title = f"most confident mistakes on {split}: {n_wrong} of {len(y)} wrong"
    written.append(cnn_plots.plot_image_grid(imgs, captions, out / "mistakes.png", title))
    return written
