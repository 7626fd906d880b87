"""ONNX Runtime vs eager PyTorch at batch 1: median latency of the same exported graph, same process, alternating.

Two cases (``--model``, both by default); latency does not depend on the weights, so the models are untrained:

* ``mnist_cnn``: the ``mnist_cnn`` recipe's CNN (sizes from the recipe) with MNIST's input and normalization, or the
  model of a trained run (``--run RUN_DIR``); one 28×28 image per call.
* ``bert-small``: a BERT-small sequence classifier (Turc et al.'s L=4, H=512, A=8; the registered ``bert-small``)
  in the text family's predictor with a WordPiece tokenizer trained on SST-2's training sentences (``DEEPKIT_DATA``;
  random token ids when the data is absent), exported by the text family's own path (token ids + lengths ->
  probabilities, ``tokenizer.json`` in the sidecar). One text per call, ``--tokens`` long (64 and 128): SST-2
  validation sentences encoded by the run's tokenizer and joined into windows of exactly that many tokens, a
  different window each call (none of them is the export's example).

Both sides run the module of the run's export spec (preprocessing + model + softmax/sigmoid): eager PyTorch under
``torch.no_grad()``, onnxruntime on the ``model.onnx`` that ``deepkit export`` writes (graph optimization level
``ORT_ENABLE_ALL``, onnxruntime's default), one thread each unless ``--threads`` says otherwise. Every timed input's
outputs are compared too (``parity_max_abs_diff``: fp32, must stay within 1e-4).

    python benchmarks/export_speed.py [--model mnist_cnn bert-small] [--run RUN_DIR] [--iters 300] [--tokens 64 128]

Issue 18's bar: ONNX Runtime ≥ 1.5× eager at batch 1 on the MNIST CNN and on a BERT-small classifier.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

PARITY = 1e-4


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


def sst2_sentences(split: str) -> list[str] | None:
    """SST-2's sentences of ``split`` (train, dev) from ``DEEPKIT_DATA``/sst2, or None when absent."""
    path = Path(os.environ.get("DEEPKIT_DATA", "data")) / "sst2" / f"{split}.tsv"
    if not path.is_file():
        return None
    return [line.split("\t")[0] for line in path.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]


def bert_small_predictor(max_len: int):
    """The registered ``bert-small`` with a classification head (2 classes) and a WordPiece tokenizer of SST-2's
    training sentences (a 30,522 cap, as BERT's), inside the text family's predictor."""
    from deepkit.data.tokenizers import build_tokenizer
    from deepkit.families.text import FAMILY, TextSaved
    from deepkit.models.registry import create_model

    corpus = sst2_sentences("train") or ["a gripping film", "a dull and slow story", "what a good film it was"] * 9
    tok = build_tokenizer("wordpiece", corpus, vocab_size=30522)
    torch.manual_seed(0)
    model = create_model("bert-small", vocab_size=tok.vocab_size, num_classes=2, head="classification")
    names = ["negative", "positive"]
    saved = TextSaved("text_classification", tok, class_names=names, max_len=max_len, add_special=True)
    return FAMILY.predictor(model, "text_classification", saved, None)


def text_windows(predictor, length: int, count: int) -> list[dict[str, torch.Tensor]]:
    """``count`` inputs of exactly ``length`` tokens: [CLS] + SST-2 validation sentences encoded by the run's
    tokenizer, joined, cut into windows + [SEP] (random ids in the vocabulary when SST-2 is absent)."""
    tok = predictor.tokenizer
    dev = sst2_sentences("dev")
    if dev is None:
        print("SST-2 not found under DEEPKIT_DATA: random token ids", file=sys.stderr)
        g = torch.Generator().manual_seed(length)
        stream = torch.randint(4, tok.vocab_size, (count * length,), generator=g).tolist()
    else:
        stream = [i for s in dev for i in tok.encode(s)]
    body = length - 2
    out = []
    for k in range(count):
        start = (k * 37) % max(1, len(stream) - body)
        ids = [tok.bos_id, *stream[start : start + body], tok.eos_id]
        out.append({"tokens": torch.tensor([ids]), "lengths": torch.tensor([length])})
    return out


def exported(predictor):
    """``deepkit export --format onnx --dynamic-batch`` of the predictor (the family's path): (result, seconds)."""
    from deepkit.export import export

    folder = Path(tempfile.mkdtemp(prefix="export-speed-"))
    t0 = time.perf_counter()
    result = export(predictor, "onnx", folder, dynamic_batch=True)
    return result, time.perf_counter() - t0


def time_case(predictor, done, inputs: list[dict[str, torch.Tensor]], warmup: int, threads: int) -> dict:
    """Time eager and onnxruntime on the export ``done`` (from :func:`exported`) call by call, alternating."""
    import onnxruntime as ort

    spec = predictor.export_spec()
    result, export_s = done
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(result.path), opts, providers=["CPUExecutionProvider"])
    module = spec.module.cpu().eval()
    names = list(spec.inputs)

    def eager(x: dict[str, torch.Tensor]) -> np.ndarray:
        with torch.no_grad():
            out = module(*(x[n] for n in names))
        return (out[0] if isinstance(out, tuple) else out).numpy()

    def onnx(x: dict[str, torch.Tensor]) -> np.ndarray:
        return session.run(None, {n: x[n].numpy() for n in names})[0]

    sides: dict[str, Callable] = {"eager": eager, "onnx": onnx}
    times: dict[str, list[float]] = {"eager": [], "onnx": []}
    diff = 0.0
    for i, x in enumerate(inputs):  # alternate, so load changes hit both sides alike
        got = {}
        for side in ("eager", "onnx") if i % 2 == 0 else ("onnx", "eager"):
            t = time.perf_counter()
            got[side] = sides[side](x)
            if i >= warmup:
                times[side].append(time.perf_counter() - t)
        diff = max(diff, float(np.abs(got["eager"] - got["onnx"]).max()))
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return {
        "batch": 1,
        "eager_median_ms": round(med["eager"], 4),
        "onnx_median_ms": round(med["onnx"], 4),
        "speedup": round(med["eager"] / med["onnx"], 3),
        "parity_export_check": result.max_diff,
        "parity_max_abs_diff": diff,
        "export_s": round(export_s, 1),
        "onnx_mb": round(result.path.stat().st_size / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", choices=["mnist_cnn", "bert-small"], default=["mnist_cnn", "bert-small"])
    ap.add_argument("--run", type=Path, help="a trained run directory (instead of the mnist_cnn recipe's model)")
    ap.add_argument("--iters", type=int, default=300, help="timed calls per side and case")
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tokens", type=int, nargs="+", default=[64, 128], help="bert-small: tokens per text")
    args = ap.parse_args(argv)

    import onnxruntime as ort

    import deepkit

    torch.set_num_threads(args.threads)
    n = args.iters + args.warmup
    rows = []
    for name in args.model:
        if name == "mnist_cnn":
            predictor = deepkit.load(args.run) if args.run else mnist_cnn_predictor()
            spec = predictor.export_spec()
            cases = [({}, [spec.sample(1, 1000 + i) for i in range(n)])]
            label = "run " + str(args.run) if args.run else "mnist_cnn recipe model (simple_cnn)"
        else:
            predictor = bert_small_predictor(max(args.tokens))
            cases = [({"tokens": t}, text_windows(predictor, t, n)) for t in args.tokens]
            label = "bert-small classifier (L4 H512 A8), SST-2 WordPiece tokenizer"
        done = exported(predictor)
        for extra, inputs in cases:
            row = {"model": label, **extra, **time_case(predictor, done, inputs, args.warmup, args.threads)}
            row.update(threads=args.threads, iters=args.iters, torch=torch.__version__, onnxruntime=ort.__version__)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


if __name__ == "__main__":
    results = main()
    sys.exit(0 if results and all(r["parity_max_abs_diff"] <= PARITY for r in results) else 1)
