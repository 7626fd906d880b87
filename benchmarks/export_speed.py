"""ONNX Runtime vs eager PyTorch at batch 1: median latency of the same exported graph, same process, alternating.

The model is the ``mnist_cnn`` recipe's CNN (sizes from the recipe) with MNIST's input and normalization, or the
model of a trained run (``--run RUN_DIR``); latency does not depend on the weights. Both sides run the module of
the run's export spec (normalization + model + softmax) on one thread unless ``--threads`` says otherwise.

    python benchmarks/export_speed.py [--run RUN_DIR] [--iters 500] [--threads 1]

Issue 18's bar: ONNX Runtime ≥ 1.5× eager at batch 1 on the MNIST CNN.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def mnist_cnn_predictor():
    """The mnist_cnn recipe's model, untrained, inside the supervised family's predictor (MNIST preprocessing)."""
    from deepkit.data.preprocess import Preprocessing
    from deepkit.families.supervised import FAMILY, Preprocessed
    from deepkit.models.registry import create_model
    from deepkit.recipe import read_recipe_file

    section = dict(read_recipe_file("mnist_cnn")["model"])
    name = section.pop("name")
    model = create_model(name, in_channels=1, num_classes=10, input_size=[28, 28], **section)
    prep = Preprocessing(
        kind="image",
        input_shape=[1, 28, 28],
        normalize="channel",
        mean=[0.1307],
        std=[0.3081],
        class_names=[str(i) for i in range(10)],
    )
    return FAMILY.predictor(model, "classification", Preprocessed(prep), None)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="a trained run directory (default: the mnist_cnn recipe's model)")
    ap.add_argument("--iters", type=int, default=500, help="timed calls per side")
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import onnxruntime as ort

    import deepkit
    from deepkit.export import export

    torch.set_num_threads(args.threads)
    predictor = deepkit.load(args.run) if args.run else mnist_cnn_predictor()
    spec = predictor.export_spec()
    folder = Path(tempfile.mkdtemp(prefix="export-speed-"))
    result = export(predictor, "onnx", folder, dynamic_batch=True)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = args.threads
    session = ort.InferenceSession(str(result.path), opts, providers=["CPUExecutionProvider"])
    module = spec.module.cpu().eval()
    xs = [spec.sample(1, 1000 + i)["x"] for i in range(args.iters + args.warmup)]
    name = next(iter(spec.inputs))

    def eager(x):
        with torch.no_grad():
            return module(x)

    def onnx(x):
        return session.run(None, {name: x.numpy()})[0]

    times: dict[str, list[float]] = {"eager": [], "onnx": []}
    for i, x in enumerate(xs):  # alternate, so load changes hit both sides alike
        order = (("eager", eager), ("onnx", onnx)) if i % 2 == 0 else (("onnx", onnx), ("eager", eager))
        for side, fn in order:
            t = time.perf_counter()
            fn(x)
            if i >= args.warmup:
                times[side].append(time.perf_counter() - t)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    out = {
        "model": "run " + str(args.run) if args.run else "mnist_cnn recipe model (simple_cnn)",
        "batch": 1,
        "threads": args.threads,
        "iters": args.iters,
        "eager_median_ms": round(med["eager"], 4),
        "onnx_median_ms": round(med["onnx"], 4),
        "speedup": round(med["eager"] / med["onnx"], 3),
        "parity_max_abs_diff": result.max_diff,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
