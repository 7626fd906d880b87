"""``deepkit serve``: the HTTP app in-process (FastAPI's TestClient; no socket): what it answers, how it refuses
bad requests (4xx JSON naming received vs expected, and it keeps serving), dynamic batching, both backends."""

from __future__ import annotations

import io
import json
import struct
import threading
import zlib

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'deepkit[serve]'")
pytest.importorskip("onnxruntime", reason="the serve extra is not installed: pip install 'deepkit[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

import deepkit  # noqa: E402
from deepkit.serve import ServeConfig, create_app, open_backend  # noqa: E402


@pytest.fixture(scope="module")
def run(digits_run):
    return digits_run[0]


@pytest.fixture(scope="module")
def predictor(run):
    return deepkit.load(run)


@pytest.fixture(scope="module")
def client(run):
    with TestClient(create_app(open_backend(run), ServeConfig(max_wait_ms=1))) as c:
        yield c


def raw_inputs(predictor, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *predictor.preprocessing.input_shape)).astype(np.float32)


def png(width: int, height: int) -> bytes:
    """A PNG whose header says width × height (pixels not included: only the header is read before refusing)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_health_and_info(client, predictor):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["task"] == "classification" and info["backend"] == "torch"
    assert info["classes"] == predictor.class_names
    assert info["inputs"]["x"]["shape"] == predictor.preprocessing.input_shape
    assert {"torch", "deepkit"} <= set(info["versions"])
    assert client.get("/docs").status_code == 200


def test_the_page_is_served_and_uses_the_endpoints(client):
    """The plain HTML/JS page at / (driven in a real browser by tests/test_serve_browser.py)."""
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert 'fetch("info")' in page and 'send("predict"' in page and 'form.append("file", file)' in page
    for widget in ("bars", "boxes", "mask", "list", "stream", "text", "audio"):  # every page kind a family asks for
        assert f"function {widget}(" in page
    assert "/" not in client.get("/openapi.json").json()["paths"]  # not part of the API
    assert client.get("/info").json()["page"] == {"input": "image", "show": "bars"}  # an image classifier


def test_json_predict_equals_the_predictor(client, predictor):
    x = raw_inputs(predictor, 3, seed=5)
    r = client.post("/predict", json={"inputs": x.tolist()}, params={"top_k": 2})
    assert r.status_code == 200, r.text
    got = np.array(r.json()["outputs"]["probabilities"])
    want = predictor.predict_proba(x)
    assert np.abs(got - want).max() < 1e-5
    preds = r.json()["predictions"]
    assert [p["class"] for p in preds] == list(predictor.predict(x, names=True))
    assert len(preds[0]["top_k"]) == 2
    one = client.post("/predict", json={"inputs": x[0].tolist()})  # one sample without the batch axis
    assert np.abs(np.array(one.json()["outputs"]["probabilities"]) - want[:1]).max() < 1e-5


def test_image_upload_multipart_and_raw_equal_deepkit_predict(client, predictor, run):
    sample = sorted((run / "samples").glob("*.png"))[0]
    want = predictor.predict_files([sample], top_k=1)[0]
    for r in (
        client.post("/predict", files={"file": (sample.name, sample.read_bytes(), "image/png")}),
        client.post("/predict", content=sample.read_bytes(), headers={"content-type": "image/png"}),
    ):
        assert r.status_code == 200, r.text
        p = r.json()["predictions"][0]
        assert p["class"] == want["class"] and abs(p["probability"] - want["probability"]) < 1e-5


def npy(array, **kw) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, **kw)
    return buf.getvalue()


NPY = {"content-type": "application/x-npy"}


def test_npy_body_equals_json(client, predictor):
    """A binary body (numpy.save bytes) gives what the JSON body gives: a batch, or one sample without the batch
    axis; float64 is taken as the model's float32. The second time, a header seen before is looked up, not parsed.
    A Fortran-ordered array reads as NumPy reads it."""
    x = raw_inputs(predictor, 3, seed=6)
    want = predictor.predict_proba(x)
    for body, rows in ((npy(x), 3), (npy(x[0]), 1), (npy(x.astype(np.float64)), 3)) * 2:  # again: header known
        r = client.post("/predict", content=body, headers=NPY)
        assert r.status_code == 200, r.text
        assert np.abs(np.array(r.json()["outputs"]["probabilities"]) - want[:rows]).max() < 1e-5
    fortran = npy(np.asfortranarray(x))
    assert b"'fortran_order': True" in fortran
    for _ in range(2):
        r = client.post("/predict", content=fortran, headers=NPY)
        assert np.abs(np.array(r.json()["outputs"]["probabilities"]) - want).max() < 1e-5
    assert (
        "application/x-npy" in client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]["content"]
    )


IMAGE = {"content-type": "image/png"}
NAN_SAMPLE = b'{"inputs": [[' + b",".join([b"[" + b",".join([b"0.5"] * 7 + [b"NaN"]) + b"]"] * 8) + b"]]}"  # 1×8×8
BAD = [
    ("wrong shape", {"json": {"inputs": [[1.0, 2.0, 3.0]]}}, 422, "shape (1, 3)"),
    ("strings", {"json": {"inputs": [["a", "b"]]}}, 422, "strings"),
    ("a server path", {"json": {"inputs": "/etc/passwd"}}, 422, "strings"),
    ("no inputs", {"json": {"x": [1]}}, 422, "keys ['x']"),
    ("unknown input", {"json": {"inputs": {"y": [1]}}}, 422, '["y"]'),
    ("NaN", {"content": NAN_SAMPLE, "headers": {"content-type": "application/json"}}, 422, "non-finite"),
    ("not JSON", {"content": b"{inputs", "headers": {"content-type": "application/json"}}, 400, "bytes starting"),
    ("empty body", {"content": b"", "headers": {"content-type": "application/json"}}, 400, "0 bytes"),
    ("content type", {"content": b"1,2", "headers": {"content-type": "text/csv"}}, 415, "text/csv"),
    ("not an image", {"files": {"file": ("x.png", b"plain text, no image", "image/png")}}, 422, "bytes starting"),
    ("empty upload", {"files": {"file": ("x.png", b"", "image/png")}}, 400, "0 bytes"),
    ("no file field", {"files": {"other": ("x.png", b"123", "image/png")}}, 422, '["other"]'),
    ("20000×20000 image", {"content": png(20000, 20000), "headers": IMAGE}, 413, "400,000,000 pixels"),
    ("6000×5000 image", {"content": png(6000, 5000), "headers": IMAGE}, 413, "6000×5000"),  # over ServeConfig's cap
    ("truncated image", {"content": png(8, 8), "headers": IMAGE}, 422, "bytes starting"),
    ("npy: not npy", {"content": b"\x93NUMPY garbage", "headers": NPY}, 400, "bytes starting"),
    ("npy: pickled objects", {"content": npy(np.array([{"a": 1}], dtype=object), allow_pickle=True), "headers": NPY},
     400, "bytes starting"),
    ("npy: wrong shape", {"content": npy(np.zeros((2, 5), np.float32)), "headers": NPY}, 422, "shape (2, 5)"),
    ("npy: strings", {"content": npy(np.array(["a", "b"])), "headers": NPY}, 422, "<U1"),
    ("npy: NaN", {"content": npy(np.full((1, 1, 8, 8), np.nan, np.float32)), "headers": NPY}, 422, "non-finite"),
    ("npy: empty", {"content": b"", "headers": NPY}, 400, "0 bytes"),
    ("npz: wrong names", {"content": None, "headers": {"content-type": "application/x-npz"}}, 422, '["y"]'),
    ("npy: truncated", {"content": npy(np.zeros((1, 1, 8, 8), np.float32))[:-5], "headers": NPY}, 400, "bytes st"),
    ("top_k not a number", {"json": {"inputs": [[[0.5] * 8] * 8]}, "params": {"top_k": "x"}}, 422, '"x"'),
]  # fmt: skip


@pytest.mark.parametrize("what, request_kw, status, received", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_are_4xx_json_naming_received_and_expected(client, predictor, what, request_kw, status, received):
    if what == "npz: wrong names":
        buf = io.BytesIO()
        np.savez(buf, y=np.zeros((1, 1, 8, 8), np.float32))
        request_kw = {**request_kw, "content": buf.getvalue()}
    r = client.post("/predict", **request_kw)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] and received in json.dumps(body["received"], ensure_ascii=False)
    assert "expected" in body
    ok = client.post("/predict", json={"inputs": raw_inputs(predictor, 1, 0).tolist()})  # still serving
    assert ok.status_code == 200


def test_out_of_range_pixels_and_the_body_limit(run, predictor):
    with TestClient(create_app(open_backend(run), ServeConfig(max_body_bytes=2000))) as c:
        r = c.post("/predict", json={"inputs": (raw_inputs(predictor, 1, 0) * 300).tolist()})
        assert r.status_code == 422 and "outside [0.0, 1.0]" in r.json()["error"]
        big = c.post("/predict", json={"inputs": raw_inputs(predictor, 20, 0).tolist()})
        assert big.status_code == 413 and big.json()["expected"] == "≤ 2,000 bytes"
        chunks = (b'{"inputs": [' + b"0.5," * 400 for _ in range(3))  # streamed: no Content-Length to go by
        streamed = c.post("/predict", content=chunks, headers={"content-type": "application/json"})
        assert streamed.status_code == 413 and streamed.json()["received"] == "more than 2,000 bytes"
        assert c.get("/health").status_code == 200


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(run, predictor):
    n = 8
    xs = [raw_inputs(predictor, 1 + i % 3, seed=100 + i) for i in range(n)]
    answers: dict[int, np.ndarray] = {}
    with TestClient(create_app(open_backend(run), ServeConfig(max_batch=64, max_wait_ms=300))) as c:
        barrier = threading.Barrier(n)

        def call(i: int) -> None:
            barrier.wait()
            r = c.post("/predict", json={"inputs": xs[i].tolist()})
            answers[i] = np.array(r.json()["outputs"]["probabilities"])

        threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = c.get("/info").json()["stats"]
    assert stats["requests"] == n and stats["samples"] == sum(len(x) for x in xs)
    assert stats["batches"] < n and stats["largest"] > 3  # several requests shared a model call
    for i, x in enumerate(xs):
        assert np.abs(answers[i] - predictor.predict_proba(x)).max() < 1e-5


def test_max_batch_one_runs_each_request_alone(run, predictor):
    with TestClient(create_app(open_backend(run), ServeConfig(max_batch=1, max_wait_ms=50))) as c:
        for i in range(3):
            assert c.post("/predict", json={"inputs": raw_inputs(predictor, 1, i).tolist()}).status_code == 200
        assert c.get("/info").json()["stats"]["batches"] == 3


def test_onnx_backend_serves_an_export_like_the_run(run, predictor, tmp_path):
    from deepkit.export import export

    export(predictor, "onnx", tmp_path / "exp")  # batch fixed at the example's (2): served in padded chunks
    x = raw_inputs(predictor, 3, seed=9)
    with TestClient(create_app(open_backend(tmp_path / "exp"))) as c:
        assert c.get("/info").json()["backend"] == "onnx"
        r = c.post("/predict", json={"inputs": x.tolist()})
    assert np.abs(np.array(r.json()["outputs"]["probabilities"]) - predictor.predict_proba(x)).max() < 1e-4


def test_cli_serve_binds_loopback_by_default(run, run_cli, monkeypatch):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, log_level: seen.update(host=host, port=port))
    proc = run_cli("serve", run, "--port", "8123")
    assert proc.returncode == 0, proc.stderr
    assert seen == {"host": "127.0.0.1", "port": 8123}
    bad = run_cli("serve", run, "--backend", "tensorrt")
    assert bad.returncode == 2 and "unknown backend 'tensorrt'; expected one of torch, onnx" in bad.stderr


def test_a_text_classifier_serves_token_ids_of_any_length():
    """Named axes (the sequence) take any length; ids outside the vocabulary are a 422 naming the range."""
    from deepkit.data.tokenizers import build_tokenizer
    from deepkit.families.text import FAMILY as TEXT_FAMILY
    from deepkit.families.text import TextSaved
    from deepkit.models.registry import create_model
    from deepkit.serve.backends import TorchBackend

    tok = build_tokenizer("word", ["a good film", "a bad film", "dull and slow"] * 3)
    model = create_model(
        "bert",
        vocab_size=tok.vocab_size,
        num_classes=2,
        head="classification",
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    saved = TextSaved(task="text_classification", tokenizer=tok, class_names=["neg", "pos"], max_len=16)
    predictor = TEXT_FAMILY.predictor(model, "text_classification", saved, None)
    ids = tok.encode("a good and slow film")
    with TestClient(create_app(TorchBackend(predictor, "memory"))) as c:
        r = c.post("/predict", json={"inputs": {"tokens": [ids], "lengths": [len(ids)]}})
        assert r.status_code == 200, r.text
        assert (
            np.abs(
                np.array(r.json()["outputs"]["probabilities"]) - predictor.predict_proba(["a good and slow film"])
            ).max()
            < 1e-5
        )
        buf = io.BytesIO()
        np.savez(buf, tokens=np.array([ids], np.int64), lengths=np.array([len(ids)], np.int64))
        npz = c.post("/predict", content=buf.getvalue(), headers={"content-type": "application/x-npz"})
        assert npz.status_code == 200 and npz.json()["outputs"] == r.json()["outputs"]
        one = c.post("/predict", content=npy(np.array([ids])), headers=NPY)  # two inputs: .npy cannot hold them
        assert one.status_code == 415 and "application/x-npz" in one.json()["error"]
        bad = c.post("/predict", json={"inputs": {"tokens": [[tok.vocab_size + 5]], "lengths": [1]}})
        assert bad.status_code == 422 and f"[0, {tok.vocab_size - 1}]" in bad.json()["error"]


# --- pages fitted to the family, text as text, hooks (streaming generation, recommendations) ----------------------
def tiny_text_classifier():
    from deepkit.data.tokenizers import build_tokenizer
    from deepkit.families.text import FAMILY as TEXT_FAMILY
    from deepkit.families.text import TextSaved
    from deepkit.models.registry import create_model

    tok = build_tokenizer("word", ["a good film", "a bad film", "dull and slow"] * 3)
    model = create_model("bert", vocab_size=tok.vocab_size, num_classes=2, head="classification", hidden_size=32,
                         num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)  # fmt: skip
    saved = TextSaved(task="text_classification", tokenizer=tok, class_names=["neg", "pos"], max_len=6)
    return TEXT_FAMILY.predictor(model, "text_classification", saved, None)


def test_a_text_classifier_takes_text_on_both_backends(tmp_path):
    """``{"text": ...}``: the server tokenizes with the run's (exported) tokenizer; text longer than the context
    is a 422 naming the token count; the page asks for text and shows bars."""
    from deepkit.export import export
    from deepkit.serve.backends import TorchBackend

    predictor = tiny_text_classifier()
    texts = ["a good film", "dull"]
    want = predictor.predict_proba(texts)
    export(predictor, "onnx", tmp_path, dynamic_batch=True)
    for backend in (TorchBackend(predictor, "memory"), open_backend(tmp_path)):
        with TestClient(create_app(backend)) as c:
            assert c.get("/info").json()["page"] == {"input": "text", "show": "bars"}
            r = c.post("/predict", json={"text": texts})
            assert r.status_code == 200, r.text
            assert np.abs(np.array(r.json()["outputs"]["probabilities"]) - want).max() < 1e-4
            assert c.post("/predict", json={"text": "a good film"}).json()["predictions"][0]["class"] in ("neg", "pos")
            long = c.post("/predict", json={"text": "a good film and a bad film"})
            assert long.status_code == 422 and long.json()["received"] == "7 tokens", long.text
            assert c.post("/predict", json={"text": [1, 2]}).status_code == 422


def test_detection_and_segmentation_pages_describe_their_outputs():
    from deepkit.serve.backends import TorchBackend
    from test_export import detection_predictor, segmentation_predictor

    with TestClient(create_app(TorchBackend(detection_predictor("fcos_small"), "memory"))) as c:
        info = c.get("/info").json()
        assert info["page"] == {"input": "image", "show": "boxes"}
        assert info["outputs"]["labels"]["classes"] == ["cat", "dog", "bird"] and info["classes"] is None
        x = np.random.default_rng(0).random((1, 3, 128, 128)).astype(np.float32)
        out = c.post("/predict", content=npy(x), headers=NPY).json()["outputs"]
        assert np.array(out["boxes"]).shape == (1, 100, 4) and out["count"][0] > 0
        assert isinstance(out["count"][0], int) and isinstance(out["labels"][0][0], int)  # not 3.0
    with TestClient(create_app(TorchBackend(segmentation_predictor("unet_small", [48, 48]), "memory"))) as c:
        page = c.get("/info").json()["page"]
        assert page["show"] == "mask" and len(page["palette"]) == 4 and len(page["palette"][0]) == 3


@pytest.fixture(scope="module")
def lm():
    return lm_predictor()


def lm_predictor():
    import torch

    from deepkit.data.tokenizers import build_tokenizer
    from deepkit.families.text import FAMILY as TEXT_FAMILY
    from deepkit.families.text import TextSaved
    from deepkit.models.registry import create_model

    tok = build_tokenizer("char", ["the quick brown fox jumps over the lazy dog"])
    torch.manual_seed(0)
    model = create_model("lstm_lm", vocab_size=tok.vocab_size, embed_dim=16, hidden_size=32, num_layers=1)
    return TEXT_FAMILY.predictor(model, "language_model", TextSaved(task="language_model", tokenizer=tok), None)


def sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        kind = next((ln[7:] for ln in block.splitlines() if ln.startswith("event: ")), "message")
        data = next(ln[6:] for ln in block.splitlines() if ln.startswith("data: "))
        events.append((kind, json.loads(data)))
    return events


def test_generation_streams_as_server_sent_events(lm):
    """``POST /generate/stream``: one event per piece, then ``done`` with the whole continuation, which is what
    ``generate`` gives with the same seed; documented in /docs; /predict (the exported logits step) checks inputs."""
    from deepkit.serve.backends import TorchBackend

    with TestClient(create_app(TorchBackend(lm, "memory"))) as c:
        info = c.get("/info").json()
        assert info["page"]["show"] == "stream" and info["hooks"] == {"generate": "/generate/stream"}
        body = {"prompt": "the ", "max_new_tokens": 12, "seed": 3, "temperature": 0.8}
        with c.stream("POST", "/generate/stream", json=body) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            events = sse("".join(r.iter_text()))
        pieces = [e["text"] for k, e in events if k == "message"]
        assert len(pieces) > 1 and events[-1] == ("done", {"text": "".join(pieces)})
        assert "the " + "".join(pieces) == lm.generate("the ", 12, temperature=0.8, seed=3)
        doc = c.get("/openapi.json").json()["paths"]["/generate/stream"]["post"]
        assert "prompt" in doc["requestBody"]["content"]["application/json"]["schema"]["required"]
        bad = c.post("/predict", json={"inputs": [1]})  # /predict is the logits step (tokens + state): 4xx, named
        assert 400 <= bad.status_code < 500 and "error" in bad.json(), bad.text
        for bad, status, word in [
            ({"max_new_tokens": 5}, 422, "'prompt' is required"),
            ({"prompt": "x", "max_new_tokens": 0}, 422, "out of range"),
            ({"prompt": "x", "temperature": "hot"}, 422, "must be a number"),
            ({"prompt": "x", "path": "/etc/passwd"}, 422, "unknown parameters ['path']"),
            ({"prompt": "x" * 20_001}, 422, "too long"),
        ]:
            r = c.post("/generate/stream", json=bad)
            assert r.status_code == status and word in r.json()["error"], r.text
        assert c.post("/generate/stream", content=b"{", headers={"content-type": "application/json"}).status_code == 400
        ok = c.post("/generate/stream", json={"prompt": "a", "max_new_tokens": 2})
        assert ok.status_code == 200 and "event: done" in ok.text  # still serving


def test_recommendations_by_user(rec_table, deepkit_cli, tmp_path_factory):
    folder = tmp_path_factory.mktemp("rec")
    table = rec_table(folder, users=20, items=15, per_user=8)
    code, _, err = deepkit_cli("train", "interactions_mf", f"data.path={table}", "trainer.progress=none",
                               "trainer.epochs=1", "--out", folder / "run")  # fmt: skip
    assert code == 0, err
    predictor = deepkit.load(folder / "run")
    with TestClient(create_app(open_backend(folder / "run"))) as c:
        info = c.get("/info").json()
        assert info["page"]["input"] == "choice" and info["page"]["show"] == "list" and info["predict"] is True
        user = info["page"]["choices"][0]
        r = c.post("/recommend", json={"user": user, "k": 3})
        assert r.status_code == 200, r.text
        want = [i["item"] for i in predictor.recommend([user], k=3)[0]]
        assert [i["item"] for i in r.json()["result"]] == want
        unknown = c.post("/recommend", json={"user": "no-such-user"})
        assert unknown.status_code == 422 and "no-such-user" in unknown.json()["error"]
    index = predictor.catalogue.users.index(user)  # the export's input: the user's index in the sidecar's users
    for backend in ("torch", "onnx"):  # /predict: the run's export graph, eager and in onnxruntime
        with TestClient(create_app(open_backend(folder / "run", backend))) as c:
            info = c.get("/info").json()  # the page never calls an operation this server lacks
            assert not info["page"].get("hook") or info["page"]["hook"] in info["hooks"], (backend, info["page"])
            r = c.post("/predict?top_k=3", json={"inputs": {"user": [index]}})
            assert r.status_code == 200, r.text
            assert [p["class"] for p in r.json()["predictions"][0]["top_k"]] == want, backend


def test_the_page_script_parses(tmp_path):
    """The page's JavaScript is valid (``node --check``; node ships with Playwright's driver, or on PATH). The
    browser test (tests/test_serve_browser.py) runs it for real where Chromium is installed."""
    import re
    import shutil
    import subprocess
    from pathlib import Path

    from deepkit.serve.app import PAGE

    try:
        from playwright._impl._driver import compute_driver_executable

        driver = compute_driver_executable()
        node = str(driver[0]) if isinstance(driver, tuple) else None
    except ImportError:
        node = None
    node = node if node and Path(node).is_file() else shutil.which("node")
    if node is None:
        pytest.skip("no node executable (Playwright's driver or PATH) to check the page's script with")
    script = re.search(r"<script>(.*)</script>", PAGE.read_text(encoding="utf-8"), re.S).group(1)
    (tmp_path / "page.js").write_text(script)
    proc = subprocess.run([node, "--check", str(tmp_path / "page.js")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_two_workers_serve(run, predictor, tmp_path):
    """``deepkit serve --workers 2``: two server processes, each with its own model, answer on one port."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    import httpx

    from conftest import cli_env

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "deepkit", "serve", str(run), "--port", str(port), "--workers", "2"]
    proc = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        tasks = Path(f"/proc/{proc.pid}/task")
        children = {int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()}
        x = raw_inputs(predictor, 1, seed=4)
        want = predictor.predict_proba(x)

        def call(_):
            with httpx.Client(timeout=30) as c:  # a new connection each time: the kernel picks the worker
                r = c.post(url + "/predict", json={"inputs": x.tolist()})
                return r.status_code, np.array(r.json()["outputs"]["probabilities"]), c.get(url + "/info").json()

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(call, range(40)))
        assert all(status == 200 and np.abs(p - want).max() < 1e-5 for status, p, _ in answers)
        workers = {info["worker"] for _, _, info in answers}
        assert len(children) >= 2 and workers <= children, (children, workers)
        assert len(workers) == 2, f"only worker {workers} answered 40 requests"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


# --- audio: a classifier's /predict, a CTC run's /transcribe, a TTS run's /speak (through the families' hooks) -------
def untrained_predictor(recipe: str, recordings, *overrides: str):
    """The predictor of a recipe's model before training (deterministic: the recipe's seed), on an FSDD-style folder."""
    from deepkit.api import build, parse_overrides, resolve_recipe

    fixed = [f"data.path={recordings}", "trainer.progress=none", "trainer.threads=1", "data.val_per_group=1"]
    rec = resolve_recipe(recipe, parse_overrides([*fixed, *overrides]))
    built = build(rec)
    return rec.family.predictor(built.task.model, rec.task.name, rec.family.saved(rec, built.data), None)


AUDIO_RECIPES = {
    "speech": ("fsdd_digits_cnn", ["model.channels=[8,16]", "model.n_mels=24"]),
    "asr": ("fsdd_strings_ctc", ["model.input_dim=32", "model.hidden_size=32", "model.num_layers=1",
                                 "model.conv_channels=8", "model.n_mels=24", "data.train_strings=16",
                                 "data.val_strings=4", "data.test_strings=4"]),
    "tts": ("fsdd_tts", ["model.dim=32", "model.speaker_dim=8", "model.decoder_layers=2"]),
}  # fmt: skip


def audio_predictors(folder) -> dict:
    from conftest import _write_fsdd

    recordings = _write_fsdd(folder / "recordings", ("ann", "bob"), takes=6)
    return {k: untrained_predictor(r, recordings, *ov) for k, (r, ov) in AUDIO_RECIPES.items()}


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio")
    return audio_predictors(folder), folder / "recordings"


def wav(samples: np.ndarray, rate: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_an_audio_classifier_takes_an_uploaded_clip(audio):
    """The page asks for audio and shows bars; a WAV as multipart or as the raw body gives ``predict``'s class, a
    stereo 16 kHz file is brought to mono at the run's rate as ``deepkit transcribe`` does."""
    import soundfile as sf

    from deepkit.serve.backends import TorchBackend

    predictors, recordings = audio
    p = predictors["speech"]
    clip = recordings / "3_ann_0.wav"
    want = p.predict([clip], top_k=3)[0]
    x, rate = sf.read(str(clip), dtype="float32")
    stereo = np.stack([x, x], 1).repeat(2, 0)  # 16 kHz, two channels
    with TestClient(create_app(TorchBackend(p, "memory"))) as c:
        assert c.get("/info").json()["page"] == {"input": "audio", "show": "bars"}
        for r in (
            c.post("/predict", files={"file": ("3.wav", clip.read_bytes(), "audio/wav")}),
            c.post("/predict", content=clip.read_bytes(), headers={"content-type": "audio/wav"}),
        ):
            assert r.status_code == 200, r.text
            got = r.json()["predictions"][0]
            assert got["class"] == want["class"] and abs(got["probability"] - want["probability"]) < 1e-5
        r = c.post("/predict", files={"file": ("s.wav", wav(stereo, 2 * rate), "audio/x-wav")})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"][0]["class"] == p.predict(stereo.mean(1)[::2].copy())[0]["class"]


AUDIO_BAD = [
    ("not audio", {"files": {"file": ("x.wav", b"RIFF but no audio at all", "audio/wav")}}, 422, "bytes starting"),
    ("empty", {"files": {"file": ("x.wav", b"", "audio/wav")}}, 400, "0 bytes"),
    ("too long", {"files": {"file": ("x.wav", None, "audio/wav")}}, 413, "2.0 s"),
    ("an image part", {"files": {"file": ("x.png", b"\x89PNG....", "image/png")}}, 415, "content type image/png"),
    ("a raw image", {"content": b"\x89PNG....", "headers": {"content-type": "image/png"}}, 415, None),
    ("wrong content type", {"content": b"1,2", "headers": {"content-type": "text/csv"}}, 415, "text/csv"),
    ("no file field", {"files": {"clip": ("x.wav", b"123", "audio/wav")}}, 422, '["clip"]'),
]


@pytest.mark.parametrize("what, request_kw, status, received", AUDIO_BAD, ids=[b[0] for b in AUDIO_BAD])
def test_bad_audio_uploads_are_4xx_naming_received_and_expected(audio, what, request_kw, status, received):
    from deepkit.serve.backends import TorchBackend

    predictors, recordings = audio
    clip = recordings / "3_ann_0.wav"
    if what == "too long":
        request_kw = {"files": {"file": ("x.wav", wav(np.zeros(16000, np.float32), 8000), "audio/wav")}}
    with TestClient(create_app(TorchBackend(predictors["speech"], "memory"), ServeConfig(max_audio_seconds=1.5))) as c:
        r = c.post("/predict", **request_kw)
        assert r.status_code == status, r.text
        body = r.json()
        assert body["error"] and "expected" in body
        if received is not None:
            assert received in json.dumps(body["received"], ensure_ascii=False), body
        ok = c.post("/predict", files={"file": ("3.wav", clip.read_bytes(), "audio/wav")})  # still serving
        assert ok.status_code == 200


def test_a_ctc_run_transcribes_an_uploaded_clip(audio):
    """``POST /transcribe`` (the asr family's hook): multipart (field ``audio``, ``beam`` as a form field) or the
    raw body (``?beam=``) -> the text ``transcribe`` gives; bad parameters and clips are 4xx naming both sides."""
    from deepkit.serve.backends import TorchBackend

    predictors, recordings = audio
    p = predictors["asr"]
    clip = recordings / "5_bob_1.wav"
    greedy, beam = p.transcribe([clip])[0], p.transcribe([clip], beam=4)[0]
    assert greedy  # a checkable transcript, not an empty one
    with TestClient(create_app(TorchBackend(p, "memory"))) as c:
        info = c.get("/info").json()
        assert info["page"] == {"input": "audio", "show": "text", "hook": "transcribe", "param": "audio"}
        assert info["hooks"] == {"transcribe": "/transcribe"}
        upload = {"audio": ("5.wav", clip.read_bytes(), "audio/wav")}
        r = c.post("/transcribe", files=upload)
        assert r.status_code == 200 and r.json()["result"]["text"] == greedy, r.text
        r = c.post("/transcribe", files=upload, data={"beam": "4"})
        assert r.json()["result"] == {"text": beam, "log_prob": r.json()["result"]["log_prob"], "decoder": "beam 4"}
        raw = c.post("/transcribe?beam=4", content=clip.read_bytes(), headers={"content-type": "audio/wav"})
        assert raw.status_code == 200 and raw.json()["result"]["text"] == beam
        short = wav(np.zeros(200, np.float32), 8000)  # 0.025 s
        for kw, status, word in [
            ({"files": upload, "data": {"beam": "-1"}}, 422, "out of range"),
            ({"files": upload, "data": {"beam": "wide"}}, 422, "must be a integer"),
            ({"files": upload, "data": {"path": "/etc/passwd"}}, 422, "unknown parameters ['path']"),
            ({"files": {"audio": ("x.wav", b"no audio", "audio/wav")}}, 422, "not audio"),
            ({"files": {"audio": ("x.wav", short, "audio/wav")}}, 422, "too short"),
            ({"files": {"file": ("x.wav", clip.read_bytes(), "audio/wav")}}, 422, "no file field 'audio'"),
            ({"json": {"audio": "/etc/passwd"}}, 415, "unsupported content type"),
        ]:
            r = c.post("/transcribe", **kw)
            assert r.status_code == status and word in r.json()["error"] and "expected" in r.json(), r.text
        assert c.post("/predict", files=upload).json()["expected"] == "file=@AUDIO"  # /predict's field is 'file'
        frames = c.post("/predict", files={"file": upload["audio"]})  # the export graph: per-frame log probabilities
        assert frames.status_code == 200 and "log_probs" in frames.text, frames.text[:300]
        assert (
            "multipart/form-data"
            in c.get("/openapi.json").json()["paths"]["/transcribe"]["post"]["requestBody"]["content"]
        )
        assert c.post("/transcribe", files=upload).status_code == 200  # still serving


def test_a_tts_run_answers_a_wav(audio):
    """``POST /speak`` (the tts family's hook): JSON text and voice -> the WAV bytes ``wav_bytes`` writes; the page
    asks for text with the voices as options and plays the answer."""
    import soundfile as sf

    from deepkit.serve.backends import TorchBackend

    p = audio[0]["tts"]
    with TestClient(create_app(TorchBackend(p, "memory"))) as c:
        page = c.get("/info").json()["page"]
        assert page["input"] == "text" and page["show"] == "audio" and page["options"] == {"speaker": ["ann", "bob"]}
        r = c.post("/speak", json={"text": "4 1 7", "speaker": "bob"})
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        assert r.content == p.wav_bytes("4 1 7", "bob")
        samples, rate = sf.read(io.BytesIO(r.content))
        assert rate == p.sample_rate and len(samples) > 0.3 * rate
        for body, word in [
            ({"text": "hello"}, "hello"),
            ({"text": "1", "speaker": "zed"}, "not one of the choices"),
            ({"speaker": "ann"}, "'text' is required"),
            ({"text": "1", "pace": 0}, "out of range"),
        ]:
            r = c.post("/speak", json=body)
            assert r.status_code == 422 and word in r.json()["error"], r.text
        assert c.post("/speak", json={"text": "one two"}).status_code == 200  # still serving
