"""Where one served request's time goes, measured in-process on the MNIST CNN (the ``mnist_cnn`` recipe's model,
torch backend): the model call at batch 1 and 32, body decoding (``application/x-npy`` vs JSON), the response
(top-k + JSON), and the whole ASGI app called directly (FastAPI routing, the body-limit middleware, the batcher's
queue and its thread hop) with no socket and no HTTP parsing. The HTTP parser's share comes from
``serve_load.py``'s server CPU per request minus the ASGI figure here.

    python benchmarks/serve_profile.py [--iters 2000]

Prints one JSON document; every figure is CPU µs per call (this process, all threads), averaged over ``--iters``
calls after warm-up, so that other jobs on a shared core do not count.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def timed(fn, iters: int, warmup: int = 50) -> float:
    """µs of CPU (this process, all its threads) per ``fn()``: on a shared core the wall clock measures the other
    jobs too, the CPU time only this work."""
    for _ in range(warmup):
        fn()
    c = time.process_time()
    for _ in range(iters):
        fn()
    return round((time.process_time() - c) / iters * 1e6, 1)


async def asgi_call(app, path: str, body: bytes, kind: str) -> tuple[int, bytes]:
    """One request straight into the ASGI app (what uvicorn does after parsing the HTTP bytes)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST" if body else "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000), "state": {},
    }  # fmt: skip
    sent = False
    status, chunks = 0, []

    async def receive():
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def asgi_cpu(app, path: str, body: bytes, kind: str, iters: int, concurrent: int = 1) -> float:
    """CPU µs per request: ``concurrent`` requests at a time (gathered), ``iters`` in all."""
    for _ in range(50):
        await asgi_call(app, path, body, kind)
    rounds = max(1, iters // concurrent)
    c = time.process_time()
    for _ in range(rounds):
        res = await asyncio.gather(*(asgi_call(app, path, body, kind) for _ in range(concurrent)))
        assert all(s == 200 for s, _ in res), res[0]
    return round((time.process_time() - c) / (rounds * concurrent) * 1e6, 1)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=2000)
    args = ap.parse_args(argv)

    import torch

    from deepkit.serve import ServeConfig, create_app
    from deepkit.serve.app import respond
    from deepkit.serve.backends import TorchBackend
    from deepkit.serve.requests import from_json, from_npy
    from export_speed import mnist_cnn_predictor

    torch.set_num_threads(1)
    backend = TorchBackend(mnist_cnn_predictor(), "memory")
    inputs, outputs = backend.sidecar["inputs"], backend.sidecar["outputs"]
    x1 = np.random.default_rng(0).random((1, 1, 28, 28)).astype(np.float32)
    x32 = np.random.default_rng(1).random((32, 1, 28, 28)).astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, x1)
    npy = buf.getvalue()
    js = json.dumps({"inputs": x1.tolist()}).encode()
    out1 = backend.run({"x": x1})
    it = args.iters
    r: dict = {"iters": it, "unit": "CPU µs per call"}
    r["model_batch_1"] = timed(lambda: backend.run({"x": x1}), it)
    r["model_batch_32"] = timed(lambda: backend.run({"x": x32}), max(200, it // 10))
    r["model_batch_32_per_sample"] = round(r["model_batch_32"] / 32, 1)
    r["decode_npy"] = timed(lambda: from_npy(npy, "application/x-npy", inputs), it)
    r["decode_json"] = timed(lambda: from_json(js, inputs), it)
    r["respond_top5"] = timed(lambda: respond(out1, outputs, 5), it)
    r["respond_top5_json_dumps"] = timed(lambda: json.dumps(respond(out1, outputs, 5)).encode(), it)

    async def apps():
        for max_batch in (1, 32):
            app = create_app(backend, ServeConfig(max_batch=max_batch, max_wait_ms=5))
            async with app.router.lifespan_context(app):
                r[f"asgi_health_b{max_batch}"] = await asgi_cpu(app, "/health", b"", "", it)
                r[f"asgi_predict_npy_b{max_batch}"] = await asgi_cpu(app, "/predict", npy, "application/x-npy", it)
                r[f"asgi_predict_json_b{max_batch}"] = await asgi_cpu(app, "/predict", js, "application/json", it)
                r[f"asgi_predict_npy_b{max_batch}_64_at_once"] = await asgi_cpu(
                    app, "/predict", npy, "application/x-npy", it * 2, concurrent=64
                )
                if max_batch > 1:
                    r["asgi_predict_json_b32_64_at_once"] = await asgi_cpu(
                        app, "/predict", js, "application/json", it * 2, concurrent=64
                    )

    asyncio.run(apps())
    r["overhead_npy_b1"] = round(r["asgi_predict_npy_b1"] - r["model_batch_1"], 1)

    async def inline():  # the same app with the model called on the event loop's thread (no hand-off): the cost of
        # the hand-off to the inference thread under load is the difference with asgi_predict_npy_b1_64_at_once
        from deepkit.serve import batching

        app = create_app(backend, ServeConfig(max_batch=1, max_wait_ms=5))
        async with app.router.lifespan_context(app):

            async def run_here(self, items, n):  # noqa: ARG001 - Batcher._run's signature
                out = batching.run_in_chunks(backend, items[0].inputs)
                items[0].future.set_result(out)

            saved, batching.Batcher._run = batching.Batcher._run, run_here
            try:
                r["asgi_predict_npy_b1_64_at_once_model_inline"] = await asgi_cpu(
                    app, "/predict", npy, "application/x-npy", it * 2, concurrent=64
                )
            finally:
                batching.Batcher._run = saved

    asyncio.run(inline())
    print(json.dumps(r, indent=1))
    return r


if __name__ == "__main__":
    main()
