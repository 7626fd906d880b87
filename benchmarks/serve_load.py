"""Load test of ``deepkit serve`` on loopback: requests/s and p50/p99 latency with and without batching, and a run
that interleaves malformed requests (every malformed one must get a 4xx, every good one a 200).

The served model is the ``mnist_cnn`` recipe's CNN (untrained: latency does not depend on the weights) exported
to a temporary folder (safetensors for ``--backend torch``, ONNX for ``--backend onnx``), or ``--run RUN_DIR``.
The server is ``python -m deepkit serve`` in a subprocess on 127.0.0.1; the client is httpx's async client in this
process. Bounded: ``--requests`` in all, ``--concurrency`` at once, each with a timeout, the whole run with a cap.

    python benchmarks/serve_load.py [--requests 1000] [--concurrency 64] [--backend torch|onnx] [--run RUN_DIR]
        [--body npy|json|both]

Good requests carry one 28×28 sample as ``application/x-npy`` (numpy.save bytes: what a client that cares about
speed sends) and, with ``--body both`` (the default), the batched and unbatched runs are repeated with JSON bodies.

Issue 18's bars: 0 errors over 1,000 requests at concurrency 64; with batching ≥ 3× the throughput without.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def export_model(backend: str, run: Path | None) -> Path:
    import deepkit
    from deepkit.export import export
    from export_speed import mnist_cnn_predictor

    predictor = deepkit.load(run) if run else mnist_cnn_predictor()
    out = Path(tempfile.mkdtemp(prefix="serve-load-"))
    export(predictor, "onnx" if backend == "onnx" else "safetensors", out, dynamic_batch=True)
    return out


def start_server(path: Path, port: int, max_batch: int, max_wait_ms: float, backend: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "deepkit", "serve", str(path), "--port", str(port), "--backend", backend]
    cmd += ["--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    import httpx

    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not answer /health within 60 s")


def malformed(rng: random.Random) -> tuple[str, dict]:
    """One bad request of a random kind, as httpx keyword arguments."""
    kind = rng.choice(["shape", "nan", "not image", "empty", "content type", "strings", "npy shape", "not npy"])
    return kind, {
        "npy shape": {"content": _npy(np.zeros((2, 5), np.float32)), "headers": NPY},
        "not npy": {"content": b"\x93NUMPY\x01\x00 truncated", "headers": NPY},
        "shape": {"json": {"inputs": [[1.0, 2.0, 3.0]]}},
        "nan": {"content": b'{"inputs": [' + b",".join([b"NaN"] * 784) + b"]}", "headers": JSON},
        "not image": {"content": b"this is not an image", "headers": {"content-type": "image/png"}},
        "empty": {"content": b"", "headers": JSON},
        "content type": {"content": b"1,2,3", "headers": {"content-type": "text/csv"}},
        "strings": {"json": {"inputs": [["a"] * 28] * 28}},
    }[kind]


JSON = {"content-type": "application/json"}


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


NPY = {"content-type": "application/x-npy"}


def good_request(body: str, seed: int) -> dict:
    """One sample as httpx keyword arguments: numpy.save bytes (``npy``) or a JSON array (``json``)."""
    x = np.random.default_rng(seed).random((1, 1, 28, 28)).astype(np.float32)
    if body == "npy":
        buf = io.BytesIO()
        np.save(buf, x)
        return {"content": buf.getvalue(), "headers": NPY}
    return {"content": json.dumps({"inputs": x.tolist()}).encode(), "headers": JSON}


async def load(
    port: int, n: int, concurrency: int, bad_share: float, seed: int, timeout: float, cap: float, body: str = "npy"
) -> dict:
    import httpx

    rng = random.Random(seed)
    good = good_request(body, seed)
    plan = [malformed(rng) if rng.random() < bad_share else ("good", good) for _ in range(n)]
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    wrong: list[str] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=timeout) as client:

        async def one(kind: str, kw: dict) -> None:
            async with sem:
                t = time.perf_counter()
                try:
                    r = await client.post("/predict", **kw)
                    status = r.status_code
                except httpx.HTTPError as e:
                    wrong.append(f"{kind}: {type(e).__name__}")
                    return
                if kind == "good":
                    latencies.append(time.perf_counter() - t)
                    if status != 200:
                        wrong.append(f"good: {status}")
                elif not 400 <= status < 500 or "error" not in r.json():
                    wrong.append(f"{kind}: {status}")

        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one(k, kw) for k, kw in plan)), cap)
        wall = time.perf_counter() - start
        stats = (await client.get("/info")).json()["stats"]
    lat = sorted(latencies)
    return {
        "requests": n,
        "malformed": sum(k != "good" for k, _ in plan),
        "errors": len(wrong),
        "error_kinds": sorted(set(wrong))[:10],
        "requests_per_s": round(n / wall, 1),
        "p50_ms": round(statistics.median(lat) * 1e3, 2) if lat else None,
        "p99_ms": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1e3, 2) if lat else None,
        "model_calls": stats["batches"],
        "largest_batch": stats["largest"],
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path)
    ap.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    ap.add_argument("--cap", type=float, default=300.0, help="per load run, seconds")
    ap.add_argument("--body", choices=["npy", "json", "both"], default="both", help="good requests' body")
    args = ap.parse_args(argv)

    path = export_model(args.backend, args.run)
    results = {}
    bodies = ["npy", "json"] if args.body == "both" else [args.body]
    runs = []
    for body in bodies:
        runs += [(f"batched, {body}", args.max_batch, 0.0, body), (f"unbatched, {body}", 1, 0.0, body)]
    runs.append((f"batched, {bodies[0]}, 10% malformed", args.max_batch, 0.1, bodies[0]))
    for name, max_batch, bad, body in runs:
        port = free_port()
        server = start_server(path, port, max_batch, args.max_wait_ms, args.backend)
        try:
            results[name] = asyncio.run(
                load(port, args.requests, args.concurrency, bad, seed=0, timeout=args.timeout, cap=args.cap, body=body)
            )
        finally:
            server.terminate()
            server.wait(10)
    speedup = {
        body: round(results[f"batched, {body}"]["requests_per_s"] / results[f"unbatched, {body}"]["requests_per_s"], 2)
        for body in bodies
    }
    out = {
        "backend": args.backend,
        "concurrency": args.concurrency,
        "runs": results,
        "batching_speedup": speedup,
    }
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    result = main()
    sys.exit(0 if all(r["errors"] == 0 for r in result["runs"].values()) else 1)
