"""Load test of ``deepkit serve`` on loopback: requests/s and p50/p99 latency with and without batching, and a run
that interleaves malformed requests (every malformed one must get a 4xx, every good one a 200).

The served model is the ``mnist_cnn`` recipe's CNN (untrained: latency does not depend on the weights) exported
to a temporary folder (safetensors for ``--backend torch``, ONNX for ``--backend onnx``), or ``--run RUN_DIR``.
The server is ``python -m deepkit serve`` in a subprocess on 127.0.0.1, the same server for every run (only
``--max-batch`` differs: 1 is "unbatched"). The client, in this process, is lean so that the server is what is
measured: ``--concurrency`` HTTP/1.1 keep-alive connections on raw asyncio streams, each sending its next request
as soon as its answer is in (pre-encoded requests, responses parsed by Content-Length). ``--server-cpus`` and
``--client-cpus`` pin the two to different cores (``os.sched_setaffinity``); the CPU seconds each used during the
load are reported (the server's from ``/proc/PID/stat``), and per request. Bounded: ``--requests`` in all,
``--concurrency`` at once, each with a timeout, the whole run with a cap.

    python benchmarks/serve_load.py [--requests 1000] [--concurrency 64] [--backend torch|onnx] [--run RUN_DIR]
        [--body npy|json|both] [--server-cpus 1 --client-cpus 0] [--server-threads 1] [--no-malformed]

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


def cpus(text: str | None) -> set[int] | None:
    """``"1"``, ``"0,2"``, ``"2-5"`` -> a set of CPU numbers (None: not pinned)."""
    if not text:
        return None
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out |= set(range(int(lo), int(hi or lo) + 1))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads), from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(
    path: Path, port: int, max_batch: int, max_wait_ms: float, backend: str, pin: set[int] | None = None,
    threads: int | None = None,
) -> subprocess.Popen:  # fmt: skip
    cmd = [sys.executable, "-m", "deepkit", "serve", str(path), "--port", str(port), "--backend", backend]
    cmd += ["--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)]
    if threads is not None and backend == "onnx":
        cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
        preexec_fn=(lambda: os.sched_setaffinity(0, pin)) if pin else None,
    )
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


def malformed(rng: random.Random) -> tuple[str, bytes, str]:
    """One bad request of a random kind: (kind, body, content type)."""
    kind = rng.choice(["shape", "nan", "not image", "empty", "content type", "strings", "npy shape", "not npy"])
    body, ctype = {
        "npy shape": (_npy(np.zeros((2, 5), np.float32)), NPY),
        "not npy": (b"\x93NUMPY\x01\x00 truncated", NPY),
        "shape": (json.dumps({"inputs": [[1.0, 2.0, 3.0]]}).encode(), JSON),
        "nan": (b'{"inputs": [' + b",".join([b"NaN"] * 784) + b"]}", JSON),
        "not image": (b"this is not an image", "image/png"),
        "empty": (b"", JSON),
        "content type": (b"1,2,3", "text/csv"),
        "strings": (json.dumps({"inputs": [["a"] * 28] * 28}).encode(), JSON),
    }[kind]
    return kind, body, ctype


JSON = "application/json"
NPY = "application/x-npy"


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def good_request(body: str, seed: int) -> tuple[bytes, str]:
    """One sample: numpy.save bytes (``npy``) or a JSON array (``json``), and its content type."""
    x = np.random.default_rng(seed).random((1, 1, 28, 28)).astype(np.float32)
    if body == "npy":
        return _npy(x), NPY
    return json.dumps({"inputs": x.tolist()}).encode(), JSON


def http_request(port: int, path: str, body: bytes, ctype: str) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: {ctype}\r\n"
    return (head + f"content-length: {len(body)}\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length (what uvicorn sends for these answers): status and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = next(int(ln.split(b":", 1)[1]) for ln in lines[1:] if ln.lower().startswith(b"content-length:"))
    return status, await reader.readexactly(length)


async def load(
    port: int, n: int, concurrency: int, bad_share: float, seed: int, timeout: float, cap: float, body: str = "npy",
    server_pid: int | None = None,
) -> dict:  # fmt: skip
    import httpx

    rng = random.Random(seed)
    good, ctype = good_request(body, seed)
    plan = [
        (k, http_request(port, "/predict", b, t)) for k, b, t in
        (malformed(rng) if rng.random() < bad_share else ("good", good, ctype) for _ in range(n))
    ]  # fmt: skip
    latencies: list[float] = []
    wrong: list[str] = []
    todo = iter(plan)

    async def connection() -> None:
        reader = writer = None
        for kind, raw in todo:  # the shared iterator: each connection takes the next request when it is free
            t = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(raw)
                status, payload = await asyncio.wait_for(read_response(reader), timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as e:
                wrong.append(f"{kind}: {type(e).__name__}")
                if writer is not None:
                    writer.close()
                reader = writer = None
                continue
            if kind == "good":
                latencies.append(time.perf_counter() - t)
                if status != 200:
                    wrong.append(f"good: {status}")
            elif not 400 <= status < 500 or "error" not in json.loads(payload):
                wrong.append(f"{kind}: {status}")
        if writer is not None:
            writer.close()

    server0 = cpu_seconds(server_pid) if server_pid else None
    client0 = time.process_time()
    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(connection() for _ in range(concurrency))), cap)
    wall = time.perf_counter() - start
    client_cpu = time.process_time() - client0
    server_cpu = cpu_seconds(server_pid) - server0 if server_pid else None
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=timeout) as client:
        stats = (await client.get("/info")).json()["stats"]
    lat = sorted(latencies)
    return {
        "requests": n,
        "malformed": sum(k != "good" for k, _ in plan),
        "errors": len(wrong),
        "error_kinds": sorted(set(wrong))[:10],
        "wall_s": round(wall, 3),
        "requests_per_s": round(n / wall, 1),
        "p50_ms": round(statistics.median(lat) * 1e3, 2) if lat else None,
        "p99_ms": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1e3, 2) if lat else None,
        "model_calls": stats["batches"],
        "largest_batch": stats["largest"],
        "mean_batch": round(stats["samples"] / max(1, stats["batches"]), 1),
        "server_cpu_s": round(server_cpu, 3) if server_cpu is not None else None,
        "server_cpu_ms_per_request": round(server_cpu / n * 1e3, 3) if server_cpu is not None else None,
        "server_cpu_share": round(server_cpu / wall, 2) if server_cpu is not None else None,
        "client_cpu_s": round(client_cpu, 3),
        "client_cpu_ms_per_request": round(client_cpu / n * 1e3, 3),
    }


def model_times(backend: str, run: Path | None, iters: int = 200) -> dict:
    """The model alone in this process (one thread): CPU ms per call at batch 1 and per sample at batch 32,
    alternating, median of per-call thread CPU time (robust to other jobs on the core)."""
    import torch

    from deepkit.serve.backends import open_backend

    torch.set_num_threads(1)
    path = export_model(backend, run)
    b = open_backend(path, backend, threads=1)
    name = next(iter(b.sidecar["inputs"]))
    x1 = {name: np.random.default_rng(0).random((1, 1, 28, 28)).astype(np.float32)}
    x32 = {name: np.random.default_rng(1).random((32, 1, 28, 28)).astype(np.float32)}
    t1, t32 = [], []
    for i in range(iters + 20):
        for x, out in ((x1, t1), (x32, t32)):
            c = time.thread_time()
            b.run(x)
            if i >= 20:
                out.append(time.thread_time() - c)
    return {
        "batch_1_ms": round(statistics.median(t1) * 1e3, 3),
        "batch_32_ms_per_sample": round(statistics.median(t32) * 1e3 / 32, 3),
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
    ap.add_argument("--server-cpus", help="pin the server to these CPUs, e.g. 1 or 2-3 (default: not pinned)")
    ap.add_argument("--client-cpus", help="pin this client to these CPUs, e.g. 0 (default: not pinned)")
    ap.add_argument("--server-threads", type=int, help="onnxruntime threads of the server (torch: OMP_NUM_THREADS)")
    ap.add_argument("--no-malformed", action="store_true", help="skip the run with 10%% malformed requests")
    args = ap.parse_args(argv)
    server_pin, client_pin = cpus(args.server_cpus), cpus(args.client_cpus)
    if client_pin:
        os.sched_setaffinity(0, client_pin)

    path = export_model(args.backend, args.run)
    results = {}
    bodies = ["npy", "json"] if args.body == "both" else [args.body]
    runs = []
    for body in bodies:
        runs += [(f"batched, {body}", args.max_batch, 0.0, body), (f"unbatched, {body}", 1, 0.0, body)]
    if not args.no_malformed:
        runs.append((f"batched, {bodies[0]}, 10% malformed", args.max_batch, 0.1, bodies[0]))
    for name, max_batch, bad, body in runs:
        port = free_port()
        server = start_server(path, port, max_batch, args.max_wait_ms, args.backend, server_pin, args.server_threads)
        try:
            results[name] = asyncio.run(
                load(port, args.requests, args.concurrency, bad, seed=0, timeout=args.timeout, cap=args.cap, body=body,
                     server_pid=server.pid)
            )  # fmt: skip
        finally:
            server.terminate()
            server.wait(10)
    speedup = {
        body: round(results[f"batched, {body}"]["requests_per_s"] / results[f"unbatched, {body}"]["requests_per_s"], 2)
        for body in bodies
    }
    model = model_times(args.backend, args.run)
    # Amdahl: a request costs the server O (HTTP, app, decode, answer), its share of a model call's fixed cost C
    # (handing the batch to the inference thread and back, dispatch) and its sample's model time. Unbatched:
    # T1 = O + C + M1; batched with a mean batch of B: TB = O + C / B + m (m = M32 / 32, the model's time per
    # sample in a batch). The two measured server CPU figures give O and C; the bound at batch 32 is
    # T1 / (O + C / 32 + m), and without any per-call cost (C = 0) it would be (O + M1) / (O + m).
    bound = {}
    m1, m = model["batch_1_ms"], model["batch_32_ms_per_sample"]
    for body in bodies:
        one, many = results[f"unbatched, {body}"], results[f"batched, {body}"]
        t1, tb, b = one["server_cpu_ms_per_request"], many["server_cpu_ms_per_request"], many["mean_batch"]
        c = max(0.0, (t1 - m1 - (tb - m)) / (1 - 1 / b)) if b > 1 else 0.0
        o = max(0.0, t1 - m1 - c)
        bound[body] = {
            "unbatched_server_cpu_ms_per_request": t1,
            "batched_server_cpu_ms_per_request": tb,
            "overhead_per_request_ms": round(o, 3),
            "cost_per_model_call_ms": round(c, 3),
            "speedup_bound_batch_32": round(t1 / (o + c / 32 + m), 2),
            "speedup_bound_without_call_cost": round((o + m1) / (o + m), 2),
        }
    out = {
        "backend": args.backend,
        "concurrency": args.concurrency,
        "server_cpus": sorted(server_pin) if server_pin else "any",
        "client_cpus": sorted(client_pin) if client_pin else "any",
        "http": "httptools" if _has("httptools") else "h11",  # what uvicorn picks by itself
        "loop": "uvloop" if _has("uvloop") else "asyncio",
        "runs": results,
        "batching_speedup": speedup,
        "model_cpu_ms": model,
        "amdahl": bound,
    }
    print(json.dumps(out, indent=1))
    return out


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    result = main()
    sys.exit(0 if all(r["errors"] == 0 for r in result["runs"].values()) else 1)
