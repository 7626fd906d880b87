"""Detection export: time to export each CPU-sized detector to ONNX (NMS inside), and batch-1 median latency of
eager PyTorch (the detector's own eval mode), the exported module in eager PyTorch, and onnxruntime, alternating
in one process on one thread; plus whether the three give the same detections on the timed image.

The detectors are untrained with spread-out class logits (as ``tests/test_export.py`` builds them: a trained
model's scores are spread, the initial prior's are not), so post-processing handles tens of candidates as it
would in use. Latency depends on the number of candidates, not on what they mean.

    python benchmarks/export_detection.py [--iters 20] [--models retinanet_small fcos_small fasterrcnn_small]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main(argv: list[str] | None = None) -> dict:
    from deepkit.export import OnnxModel, export
    from test_export import assert_same_detections, detection_predictor

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--models", nargs="+", default=["retinanet_small", "fcos_small", "fasterrcnn_small"])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = {}
    for name in args.models:
        predictor = detection_predictor(name)
        folder = Path(tempfile.mkdtemp(prefix="det-export-"))
        t = time.perf_counter()
        export(predictor, "onnx", folder, dynamic_batch=True)
        export_s = time.perf_counter() - t
        ort = OnnxModel(folder, threads=1)
        spec = predictor.export_spec()
        x = spec.sample(1, 99)["image"]
        model = predictor.model
        times: dict[str, list[float]] = {"eager": [], "export module (eager)": [], "onnxruntime": []}
        with torch.no_grad():
            for _ in range(args.iters):
                for what, fn in (
                    ("eager", lambda m=model, x=x: m([x[0]])),
                    ("export module (eager)", lambda s=spec, x=x: s.module(x)),
                    ("onnxruntime", lambda o=ort, x=x: o.run({"image": x.numpy()})),
                ):
                    t = time.perf_counter()
                    fn()
                    times[what].append(time.perf_counter() - t)
        got = ort.run({"image": x.numpy()})
        count = assert_same_detections(got, model, x)
        out[name] = {
            "export_s": round(export_s, 1),
            "onnx_mb": round((folder / "model.onnx").stat().st_size / 2**20, 1),
            "median_ms": {k: round(statistics.median(v) * 1e3, 1) for k, v in times.items()},
            "detections": count,
            "same_detections": True,
        }
        print(json.dumps({name: out[name]}), flush=True)
    return out


if __name__ == "__main__":
    main()
