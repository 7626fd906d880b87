"""A run's :class:`~deepkit.families.base.ServeHook` operations as HTTP routes: ``POST /NAME`` (a JSON answer) or
``POST /NAME/stream`` (server-sent events: one ``data: {"text": PIECE}`` event per piece as it is generated, then
``event: done`` with the whole text).

Written once for every family: a route knows only the hook's parameter description, which it checks (type,
bounds, length, unknown names; a 4xx naming what was received and what was expected) before the hook runs. The
hook runs in a worker thread; a streaming hook's first piece is computed before the response starts, so an input
the model refuses (a prompt longer than its context) is still a 4xx rather than a broken stream. A hook with an
``audio`` parameter takes an uploaded file (multipart, or the raw ``audio/*`` body), decoded and checked by
:func:`~deepkit.serve.requests.read_audio_upload`; a hook with a ``media_type`` answers with its bytes (a WAV).
"""

import asyncio
import json
from typing import Any

from deepkit.errors import DeepkitError
from deepkit.serve.requests import RequestError, read_audio_upload

TYPES = {"string": (str,), "integer": (int,), "number": (int, float)}
FILE_TYPES = ("audio",)  # parameters that are uploaded files
_END = object()


def route_of(name: str, hook: Any) -> str:
    return f"/{name}/stream" if hook.stream else f"/{name}"


def describe_hooks(hooks: dict[str, Any]) -> dict[str, str]:
    """Hook name -> its route (for ``/info`` and the page)."""
    return {name: route_of(name, hook) for name, hook in hooks.items()}


def check_params(body: bytes, params: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The JSON body -> keyword arguments, every parameter present (defaults filled) and within its description."""
    expected = {k: {kk: vv for kk, vv in v.items()} for k, v in params.items()}
    if not body:
        raise RequestError(400, "the request body is empty", received="0 bytes", expected=expected)
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(
            400, f"the body is not valid JSON: {e}", received=f"{len(body):,} bytes", expected=expected
        ) from None
    if not isinstance(doc, dict):
        raise RequestError(422, "the body must be a JSON object", received=type(doc).__name__, expected=expected)
    return check_values(doc, params)


def from_form(values: dict[str, str], params: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Form fields or query parameters (text) -> values of the parameters' types (text that is no number stays
    text, for :func:`check_values` to refuse by name)."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        kind = params.get(k, {}).get("type")
        try:
            out[k] = int(v) if kind == "integer" else float(v) if kind == "number" else v
        except ValueError:
            out[k] = v
    return out


def check_values(doc: dict[str, Any], params: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Named values -> keyword arguments, every parameter present (defaults filled) and within its description."""
    unknown = sorted(set(doc) - set(params))
    if unknown:
        raise RequestError(422, f"unknown parameters {unknown}", received=sorted(doc), expected=sorted(params))
    out = {}
    for name, p in params.items():
        if p["type"] in FILE_TYPES:
            continue  # read from the upload
        if name not in doc or doc[name] is None:
            if "default" not in p:
                raise RequestError(422, f"'{name}' is required", received=sorted(doc), expected={name: p})
            out[name] = p["default"]
            continue
        v = doc[name]
        kinds = TYPES[p["type"]]
        if isinstance(v, bool) or not isinstance(v, kinds):
            raise RequestError(422, f"'{name}' must be a {p['type']}", received=type(v).__name__, expected={name: p})
        if p["type"] == "string" and len(v) > p.get("maxLength", len(v)):
            raise RequestError(422, f"'{name}' is too long", received=f"{len(v):,} characters", expected={name: p})
        if p["type"] != "string" and not p.get("minimum", v) <= v <= p.get("maximum", v):
            raise RequestError(422, f"'{name}' is out of range", received=v, expected={name: p})
        if "enum" in p and v not in p["enum"]:
            raise RequestError(422, f"'{name}' is not one of the choices", received=v, expected={name: p})
        out[name] = v
    return out


def _refusal(e: Exception) -> RequestError:
    """The model's own refusal (a deepkit error: unknown user, prompt too long) as a 422."""
    return RequestError(422, str(e).splitlines()[0] if str(e) else type(e).__name__)


async def read_with_upload(request, params: dict[str, dict[str, Any]], max_seconds: float) -> dict[str, Any]:
    """A request to a hook with a file parameter: multipart (the file in the field of its name, the others as form
    fields) or the raw ``audio/*`` body (the others in the query) -> checked keyword arguments, the audio decoded."""
    (field, p), *more = [(k, v) for k, v in params.items() if v["type"] in FILE_TYPES]
    assert not more, "one file parameter per hook"
    kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    want = f"multipart/form-data with the file in field '{field}', or an audio/* body"
    if kind == "multipart/form-data":
        form = await request.form()
        upload = form.get(field)
        if upload is None or isinstance(upload, str):
            raise RequestError(
                422, f"the multipart form has no file field '{field}'", received=sorted(form.keys()), expected=want
            )
        data, part = await upload.read(), (upload.content_type or "").split(";")[0].strip().lower() or None
        values = {k: v for k, v in form.items() if k != field and isinstance(v, str)}
    elif kind.startswith("audio/"):
        data, part, values = await request.body(), None, dict(request.query_params)
    else:
        raise RequestError(415, "unsupported content type", received=kind or "none", expected=want)
    kwargs = check_values(from_form(values, params), params)
    limit = min(float(p.get("max_seconds", max_seconds)), max_seconds)
    kwargs[field] = read_audio_upload(data, int(p["sample_rate"]), limit, float(p.get("min_seconds", 0)), part)
    return kwargs


def add_hook_routes(app, hooks: dict[str, Any], cfg: Any = None) -> None:
    """One documented route per hook (its parameters as the request body's schema in ``/docs``)."""
    from fastapi import Request
    from fastapi.responses import Response, StreamingResponse

    max_seconds = getattr(cfg, "max_audio_seconds", 60.0)
    for name, hook in hooks.items():
        files = {k for k, v in hook.params.items() if v["type"] in FILE_TYPES}
        props = {k: {kk: vv for kk, vv in v.items() if vv is not None} for k, v in hook.params.items()}
        for k in files:
            props[k] = {"type": "string", "format": "binary", "description": f"an audio file ({props[k]})"}
        schema = {
            "type": "object",
            "properties": props,
            "required": [k for k, v in hook.params.items() if "default" not in v],
        }
        kind = "multipart/form-data" if files else "application/json"
        extra = {"requestBody": {"content": {kind: {"schema": schema}}, "required": True}}
        if hook.media_type:
            extra["responses"] = {"200": {"content": {hook.media_type: {}}, "description": hook.media_type}}
        summary = hook.description or name

        async def arguments(request: Request, hook=hook, files=files) -> dict[str, Any]:
            if files:
                return await read_with_upload(request, hook.params, max_seconds)
            return check_params(await request.body(), hook.params)

        def make(hook=hook, arguments=arguments):
            if hook.stream:

                async def stream(request: Request):
                    kwargs = await arguments(request)
                    try:
                        pieces = iter(await asyncio.to_thread(hook.fn, **kwargs))
                        first = await asyncio.to_thread(next, pieces, _END)
                    except DeepkitError as e:
                        raise _refusal(e) from None

                    async def events():
                        text, piece = [], first
                        try:
                            while piece is not _END:
                                text.append(piece)
                                yield f"data: {json.dumps({'text': piece})}\n\n"
                                piece = await asyncio.to_thread(next, pieces, _END)
                        except Exception as e:  # noqa: BLE001 - the stream has started: report it in the stream
                            yield f"event: error\ndata: {json.dumps({'error': str(e).splitlines()[0]})}\n\n"
                            return
                        yield f"event: done\ndata: {json.dumps({'text': ''.join(text)})}\n\n"

                    return StreamingResponse(events(), media_type="text/event-stream")

                return stream

            async def call(request: Request):
                kwargs = await arguments(request)
                try:
                    result = await asyncio.to_thread(hook.fn, **kwargs)
                except DeepkitError as e:
                    raise _refusal(e) from None
                if hook.media_type:
                    return Response(result, media_type=hook.media_type)
                return {"result": result}

            return call

        app.add_api_route(
            route_of(name, hook), make(), methods=["POST"], summary=summary, openapi_extra=extra, name=name
        )
