"""The HTTP app: ``GET /health``, ``GET /info``, ``POST /predict`` (JSON arrays, NumPy ``.npy``/``.npz`` bytes, or
an image file as multipart or as the raw body), OpenAPI docs at ``/docs``.

Safety: the body size is capped before it is read in full (413), every bad request is a 4xx JSON error naming
what was received and what was expected, and no request names a file on the server (inputs come in the body).
"""

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepkit.serve.backends import Backend
from deepkit.serve.batching import Batcher
from deepkit.serve.hooks import add_hook_routes, describe_hooks
from deepkit.serve.requests import (
    NPY_TYPES,
    RequestError,
    TextEncoder,
    finite_or_none,
    from_audio,
    from_image,
    from_json,
    from_npy,
)

PAGE = Path(__file__).with_name("page.html")


@dataclass
class ServeConfig:
    """Limits and batching of a served model (the options of ``deepkit serve``)."""

    max_batch: int = 32  # samples per model call; 1 = no batching
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for others
    max_body_bytes: int = 10 * 2**20  # larger bodies get 413 before they are read in full
    max_image_pixels: int = 25_000_000  # uploads larger than this (width × height) get 413, undecoded
    max_audio_seconds: float = 60.0  # longer audio uploads get 413, judged from the file's header
    top_k: int = 5  # classes listed per sample, unless the request asks ?top_k=N


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes (by Content-Length, or counted as it streams) is a 413."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._refuse(send, f"{int(length):,} bytes")
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(send, f"more than {self.limit:,} bytes")

    async def _refuse(self, send, received: str) -> None:
        body = json.dumps(
            {"error": "the request body is too large", "received": received, "expected": f"≤ {self.limit:,} bytes"}
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def create_app(backend: Backend, config: ServeConfig | None = None):
    """The FastAPI app serving ``backend`` (see :func:`~deepkit.serve.backends.open_backend`).

    Example:
        >>> app = create_app(open_backend("runs/demo"))        # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)        # doctest: +SKIP
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    from deepkit.export import versions

    cfg = config or ServeConfig()
    batcher = Batcher(backend, cfg.max_batch, cfg.max_wait_ms)
    side = backend.sidecar
    inputs, outputs = side["inputs"], side["outputs"]
    text = TextEncoder.of(side, backend.files)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="deepkit serve", description=f"a '{side.get('task')}' model from {backend.source}", lifespan=lifespan
    )

    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, e: RequestError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        """The browser page, fitted to the model by ``/info``'s ``page`` (what to ask for, how to show it)."""
        return PAGE.read_text(encoding="utf-8")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return {
            "task": side.get("task"),
            "page": page_of(side, text is not None, backend.hooks),
            "hooks": describe_hooks(backend.hooks),
            "predict": backend.predicts,
            "inputs": inputs,
            "outputs": outputs,
            "classes": next((o["labels"] for o in outputs.values() if o.get("labels")), None),
            "backend": backend.name,
            "batching": {"max_batch": cfg.max_batch, "max_wait_ms": cfg.max_wait_ms},
            "limits": {
                "max_body_bytes": cfg.max_body_bytes,
                "max_image_pixels": cfg.max_image_pixels,
                "max_audio_seconds": cfg.max_audio_seconds,
            },
            "versions": versions(),
            "stats": asdict(batcher.stats),  # this worker's
            "worker": os.getpid(),
        }

    binary = {"schema": {"type": "string", "format": "binary"}}
    body_doc = {
        "parameters": [
            {
                "name": "top_k",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1},
                "description": f"classes listed per sample (default {cfg.top_k})",
            }
        ],
        "requestBody": {
            "content": {
                "application/json": {"schema": {"type": "object", "properties": {"inputs": {}}}},
                "application/x-npy": binary,
                "application/x-npz": binary,
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
                },
                "image/*": binary,
                "audio/*": binary,
            }
        },
    }

    @app.post("/predict", openapi_extra=body_doc, response_class=Response)
    async def predict(request: Request) -> Response:
        """Body: ``{"inputs": ARRAY}`` / ``{"inputs": {NAME: ARRAY}}`` as JSON; NumPy's binary formats
        (``application/x-npy``: ``numpy.save`` bytes of the one input, batch first or one sample;
        ``application/x-npz``: ``numpy.savez`` of the inputs by name), read without pickle; or an image (audio
        models: an audio file) as multipart (field ``file``) or as the raw body (``image/png``, ``audio/wav``)."""
        if not backend.predicts:
            raise RequestError(
                404,
                f"this run has no /predict: {backend.why_not}",
                expected=" or ".join(f"POST {p}" for p in describe_hooks(backend.hooks).values()) or None,
            )
        # The hot path is lean: the query and the body are read here (no per-request model of the body to
        # validate), the answer is encoded once, straight to bytes.
        top_k = query_top_k(request.query_params.get("top_k"), cfg.top_k)
        arrays = await read_request(request, inputs, cfg, text)
        out = await batcher.submit(arrays)
        doc = respond(out, outputs, top_k)
        return Response(json.dumps(doc, allow_nan=False, separators=(",", ":")), media_type="application/json")

    add_hook_routes(app, backend.hooks, cfg)
    return app


WORKER_ENV = "DEEPKIT_SERVE_WORKER"  # JSON: what each worker process of `deepkit serve --workers N` serves


def worker_app():
    """The app of one worker of ``deepkit serve --workers N`` (uvicorn's factory): each worker loads the model
    itself, from the path, backend and limits the parent checked and wrote to ``$DEEPKIT_SERVE_WORKER``."""
    from deepkit.serve.backends import open_backend

    spec = json.loads(os.environ[WORKER_ENV])
    backend = open_backend(spec["path"], spec["backend"], spec.get("threads"))
    return create_app(backend, ServeConfig(**spec["config"]))


def page_of(side: dict[str, Any], takes_text: bool, hooks: dict[str, Any] | None = None) -> dict[str, Any]:
    """The page description: the family's (sidecar ``page``), else what the inputs and outputs suggest (an image
    input: an image upload; an output naming classes: bars; otherwise JSON in, JSON out). A family page built on an
    operation this server does not have (an export served on its own has no hooks) gives way to the generic page."""
    page = dict(side.get("page") or {})
    if page.get("hook") and page["hook"] not in (hooks or {}):
        page = {}
    inputs, outputs = side.get("inputs") or {}, side.get("outputs") or {}
    if "input" not in page:
        image = len(inputs) == 1 and next(iter(inputs.values())).get("kind") == "image"
        page["input"] = "image" if image else "audio" if takes_audio(inputs) else "text" if takes_text else "json"
    if "show" not in page:
        page["show"] = "bars" if any(o.get("labels") for o in outputs.values()) else "json"
    return page


def takes_audio(inputs: dict[str, Any]) -> bool:
    return any(v.get("kind") == "audio" for v in inputs.values())


async def read_upload(request, what: str) -> tuple[bytes, str | None]:
    """The multipart form's file field ``file``: (bytes, the part's content type); a form without it is a 422."""
    form = await request.form()
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise RequestError(
            422, "the multipart form has no file field 'file'", received=sorted(form.keys()), expected=f"file=@{what}"
        )
    return await upload.read(), (upload.content_type or "").split(";")[0].strip().lower() or None


async def read_request(request, inputs: dict[str, Any], cfg: ServeConfig, text=None) -> dict[str, np.ndarray]:
    kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    accepted = (
        "application/json, application/x-npy, application/x-npz, multipart/form-data (field 'file'), image/* or audio/*"
    )
    if kind == "multipart/form-data":
        if takes_audio(inputs):
            data, part_type = await read_upload(request, "AUDIO")
            return from_audio(data, inputs, cfg.max_audio_seconds, part_type)
        data, _ = await read_upload(request, "IMAGE")
        return from_image(data, inputs, cfg.max_image_pixels)
    body = await request.body()
    if kind.startswith("image/"):
        return from_image(body, inputs, cfg.max_image_pixels)
    if kind.startswith("audio/"):
        return from_audio(body, inputs, cfg.max_audio_seconds)
    if kind in NPY_TYPES:
        return from_npy(body, kind, inputs)
    if kind != "application/json":
        raise RequestError(415, "unsupported content type", received=kind or "none", expected=accepted)
    if not body:
        raise RequestError(400, "the request body is empty", received="0 bytes", expected='{"inputs": ...}')
    return from_json(body, inputs, text)


def query_top_k(value: str | None, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise RequestError(422, "top_k must be a whole number ≥ 1", received=value, expected="?top_k=1, 2, ...")
    return int(value)


def respond(out: dict[str, np.ndarray], outputs: dict[str, Any], top_k: int) -> dict[str, Any]:
    """The outputs as lists; for an output of one score per class (batch, classes), the top-k classes of each sample
    (outputs with more axes, e.g. a CTC run's per-frame log probabilities, are given as they are)."""
    doc: dict[str, Any] = {"outputs": {k: finite_or_none(v) for k, v in out.items()}}
    for name, info in outputs.items():
        labels = info.get("labels")
        if labels and name in out and out[name].ndim == 2:
            probs = out[name]
            order = np.argsort(-probs, axis=-1)[:, : max(1, top_k)]
            doc["predictions"] = [
                {
                    "class": labels[row[0]],
                    "probability": float(p[row[0]]),
                    "top_k": [{"class": labels[i], "probability": float(p[i])} for i in row],
                }
                for row, p in zip(order, probs, strict=True)
            ]
            break
    return doc
