"""A run's :class:`~deepkit.families.base.ServeHook` operations as HTTP routes: ``POST /NAME`` (a JSON answer) or
``POST /NAME/stream`` (server-sent events: one ``data: {"text": PIECE}`` event per piece as it is generated, then
``event: done`` with the whole text).

Written once for every family: a route knows only the hook's parameter description, which it checks (type,
bounds, length, unknown names; a 4xx naming what was received and what was expected) before the hook runs. The
hook runs in a worker thread; a streaming hook's first piece is computed before the response starts, so an input
the model refuses (a prompt longer than its context) is still a 4xx rather than a broken stream.
"""

import asyncio
import json
from typing import Any

from deepkit.errors import DeepkitError
from deepkit.serve.requests import RequestError

TYPES = {"string": (str,), "integer": (int,), "number": (int, float)}
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
    unknown = sorted(set(doc) - set(params))
    if unknown:
        raise RequestError(422, f"unknown parameters {unknown}", received=sorted(doc), expected=sorted(params))
    out = {}
    for name, p in params.items():
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


def add_hook_routes(app, hooks: dict[str, Any]) -> None:
    """One documented route per hook (its parameters as the request body's schema in ``/docs``)."""
    from fastapi import Request
    from fastapi.responses import StreamingResponse

    for name, hook in hooks.items():
        schema = {
            "type": "object",
            "properties": {k: {kk: vv for kk, vv in v.items() if vv is not None} for k, v in hook.params.items()},
            "required": [k for k, v in hook.params.items() if "default" not in v],
        }
        extra = {"requestBody": {"content": {"application/json": {"schema": schema}}, "required": True}}
        summary = hook.description or name

        def make(hook=hook):
            if hook.stream:

                async def stream(request: Request):
                    kwargs = check_params(await request.body(), hook.params)
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
                kwargs = check_params(await request.body(), hook.params)
                try:
                    return {"result": await asyncio.to_thread(hook.fn, **kwargs)}
                except DeepkitError as e:
                    raise _refusal(e) from None

            return call

        app.add_api_route(
            route_of(name, hook), make(), methods=["POST"], summary=summary, openapi_extra=extra, name=name
        )
