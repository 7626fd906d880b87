"""Turning an HTTP request body into the model's input arrays, checked against the sidecar's input description.

Every refusal is a :class:`RequestError`: an HTTP status and a message naming what was received and what was
expected, which the app returns as JSON (the server goes on serving).
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64, "int32": np.int32}


class RequestError(Exception):
    """A request the model cannot take: ``status`` (4xx) and what was received vs expected."""

    def __init__(self, status: int, message: str, received: Any = None, expected: Any = None):
        super().__init__(message)
        self.status, self.message, self.received, self.expected = status, message, received, expected

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.received is not None:
            out["received"] = self.received
        if self.expected is not None:
            out["expected"] = self.expected
        return out


def describe_input(info: dict[str, Any]) -> str:
    shape = ", ".join(map(str, info["shape"]))
    return f"{info['dtype']} array of shape (N, {shape})" if shape else f"{info['dtype']} array of shape (N,)"


class TextEncoder:
    """Texts -> the token inputs of a model whose sidecar has a ``tokenizer`` entry (``file``, ``inputs``: which
    input gets the padded ids and which the lengths, ``pad_id``, ``max_len``, ``add_special``), with the tokenizer
    file exported beside it: ``{"text": "..."}`` or ``{"text": ["...", ...]}`` in a ``/predict`` body."""

    def __init__(self, info: dict[str, Any], path):
        from deepkit.data.tokenizers import load_tokenizer

        self.tokenizer = load_tokenizer(path)
        self.tokens, self.lengths = info["inputs"]["tokens"], info["inputs"]["lengths"]
        self.max_len, self.pad_id, self.add_special = int(info["max_len"]), int(info["pad_id"]), info["add_special"]

    @classmethod
    def of(cls, sidecar: dict[str, Any], files: dict[str, Any]) -> TextEncoder | None:
        info = sidecar.get("tokenizer")
        if not info or "inputs" not in info or info.get("file") not in files:
            return None
        return cls(info, files[info["file"]])

    def __call__(self, texts: Any) -> dict[str, np.ndarray]:
        texts = [texts] if isinstance(texts, str) else texts
        want = f"a text or a list of texts, each at most {self.max_len} tokens"
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            got = type(texts).__name__ if not isinstance(texts, list) else "a list of non-texts or an empty list"
            raise RequestError(422, "'text' must hold text", received=got, expected=want)
        ids = []
        for i, t in enumerate(texts):
            row = self.tokenizer.encode(t, add_special=self.add_special)
            if len(row) > self.max_len:
                raise RequestError(
                    422, f"text {i} is longer than the model's context", received=f"{len(row)} tokens", expected=want
                )
            ids.append(row or [self.tokenizer.unk_id])
        tokens = np.full((len(ids), max(map(len, ids))), self.pad_id, dtype=np.int64)
        for i, row in enumerate(ids):
            tokens[i, : len(row)] = row
        return {self.tokens: tokens, self.lengths: np.array([len(r) for r in ids], dtype=np.int64)}


def from_json(body: bytes, inputs: dict[str, dict[str, Any]], text: TextEncoder | None = None) -> dict[str, np.ndarray]:
    """``{"inputs": ARRAY}`` (one-input models) or ``{"inputs": {NAME: ARRAY, ...}}``; an array is one sample
    of the input's shape or a batch of them. Models that take token ids also take ``{"text": ...}``."""
    expected: dict[str, Any] = {"inputs": {k: describe_input(v) for k, v in inputs.items()}}
    if text is not None:
        expected["or"] = {"text": "a text or a list of texts"}
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(
            400, f"the body is not valid JSON: {e}", received=_preview(body), expected=expected
        ) from None
    if text is not None and isinstance(doc, dict) and "text" in doc and "inputs" not in doc:
        return text(doc["text"])
    if not isinstance(doc, dict) or "inputs" not in doc:
        got = f"a JSON {type(doc).__name__}" + (f" with keys {sorted(doc)}" if isinstance(doc, dict) else "")
        raise RequestError(422, "the JSON body needs an 'inputs' member", received=got, expected=expected)
    given = doc["inputs"]
    if not isinstance(given, dict):
        if len(inputs) != 1:
            raise RequestError(422, "this model takes several inputs: give them by name", expected=expected)
        given = {next(iter(inputs)): given}
    unknown, missing = sorted(set(given) - set(inputs)), sorted(set(inputs) - set(given))
    if unknown or missing:
        raise RequestError(
            422,
            f"inputs {unknown or ''} unknown, {missing or ''} missing".replace(" unknown, ", " unknown; ").strip(),
            received=sorted(given),
            expected=sorted(inputs),
        )
    arrays = {name: to_array(name, given[name], inputs[name]) for name in inputs}
    sizes = {len(a) for a in arrays.values()}
    if len(sizes) > 1:
        raise RequestError(
            422, "the inputs hold different numbers of samples", received={k: len(v) for k, v in arrays.items()}
        )
    return arrays


NPY_TYPES = ("application/x-npy", "application/x-npz")


def from_npy(body: bytes, kind: str, inputs: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
    """A binary body: NumPy's ``.npy`` bytes (``application/x-npy``: the one input of a one-input model) or an
    ``.npz`` archive of arrays by input name (``application/x-npz``). Read with ``allow_pickle=False`` (no code
    runs, object arrays are refused), then checked as JSON arrays are (shape, dtype, NaN, range)."""
    expected = {k: describe_input(v) for k, v in inputs.items()}
    want = f"{kind} bytes (numpy.save / numpy.savez) holding {expected}"
    if not body:
        raise RequestError(400, "the request body is empty", received="0 bytes", expected=want)
    if kind == "application/x-npy" and len(inputs) != 1:
        raise RequestError(
            415, "this model takes several inputs: send them as application/x-npz", received=kind, expected=want
        )
    try:
        loaded = np.load(io.BytesIO(body), allow_pickle=False)
        if kind == "application/x-npy":
            if not isinstance(loaded, np.ndarray):
                raise ValueError("an .npz archive, not one .npy array")
            given = {next(iter(inputs)): loaded}
        else:
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ValueError("one .npy array, not an .npz archive")
            with loaded:
                given = {k: loaded[k] for k in loaded.files}
    except (ValueError, OSError, EOFError, KeyError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RequestError(400, f"the body is not {kind} data: {why}", received=_preview(body), expected=want) from None
    unknown, missing = sorted(set(given) - set(inputs)), sorted(set(inputs) - set(given))
    if unknown or missing:
        raise RequestError(
            422, "the archive's arrays are not the model's inputs", received=sorted(given), expected=want
        )
    for name, arr in given.items():
        if arr.dtype.kind not in "biuf":
            raise RequestError(
                422, f"input '{name}' is a {arr.dtype} array, not numbers", received=str(arr.dtype), expected=want
            )
    arrays = {name: to_array(name, given[name], inputs[name]) for name in inputs}
    if len({len(a) for a in arrays.values()}) > 1:
        raise RequestError(
            422, "the inputs hold different numbers of samples", received={k: len(v) for k, v in arrays.items()}
        )
    return arrays


def to_array(name: str, value: Any, info: dict[str, Any]) -> np.ndarray:
    """One input's JSON value -> a batch (N, *shape) of its dtype; ragged, non-numeric, NaN or misshapen is a 422."""
    dtype = DTYPES[info["dtype"]]
    shape = tuple(info["shape"])
    expected = describe_input(info)
    try:
        arr = np.asarray(value)
    except ValueError:
        raise RequestError(
            422, f"input '{name}' is a ragged list (rows of different lengths)", expected=expected
        ) from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        kind = {"U": "strings", "O": "mixed or ragged values", "b": "booleans"}.get(arr.dtype.kind, str(arr.dtype))
        raise RequestError(422, f"input '{name}' holds {kind}, not numbers", received=kind, expected=expected)
    if arr.dtype.kind == "b":
        raise RequestError(422, f"input '{name}' holds booleans, not numbers", received="booleans", expected=expected)
    if np.issubdtype(dtype, np.integer) and arr.dtype.kind == "f":
        raise RequestError(
            422, f"input '{name}' holds fractions; it takes integers", received="floats", expected=expected
        )
    if fits(arr.shape, shape):
        arr = arr[None]
    if arr.ndim != len(shape) + 1 or not fits(arr.shape[1:], shape) or len(arr) == 0:
        raise RequestError(
            422, f"input '{name}' has the wrong shape", received=f"shape {tuple(arr.shape)}", expected=expected
        )
    arr = arr.astype(dtype)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise RequestError(
            422,
            f"input '{name}' holds NaN or infinity (first at index {bad})",
            received="non-finite values",
            expected="finite numbers",
        )
    lo_hi = info.get("range")
    if lo_hi is not None and (arr.min() < lo_hi[0] or arr.max() > lo_hi[1]):
        raise RequestError(
            422,
            f"input '{name}' has values outside {lo_hi}",
            received=[float(arr.min()), float(arr.max())],
            expected=f"values in [{lo_hi[0]}, {lo_hi[1]}] (images: pixel / 255)",
        )
    return arr


def fits(got: tuple[int, ...], want: tuple) -> bool:
    """Whether a shape matches a sidecar shape, whose named axes (``"sequence"``) take any size ≥ 1."""
    return len(got) == len(want) and all(
        isinstance(w, str) and g >= 1 or g == w for g, w in zip(got, want, strict=False)
    )


def from_image(data: bytes, inputs: dict[str, dict[str, Any]], max_pixels: int) -> dict[str, np.ndarray]:
    """An uploaded image file -> the model's one image input (1, C, H, W) in [0, 1], converted and resized as
    ``deepkit predict`` does. Bytes that are no image, or an image of more than ``max_pixels``, are refused."""
    from PIL import Image, UnidentifiedImageError

    from deepkit.data.inputs import read_image
    from deepkit.data.preprocess import Preprocessing
    from deepkit.errors import DataError

    images = [k for k, v in inputs.items() if v.get("kind") == "image"]
    if len(images) != 1 or len(inputs) != 1:
        raise RequestError(415, "this model does not take an image upload; send JSON", expected="application/json")
    name, info = images[0], inputs[images[0]]
    want = f"a PNG/JPEG/BMP image (any size up to {max_pixels:,} pixels; used as {info['height']}×{info['width']})"
    if not data:
        raise RequestError(400, "the uploaded file is empty", received="0 bytes", expected=want)
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only: the size before any pixels
            w, h = im.size
    except Image.DecompressionBombError as e:  # PIL's own cap (2× MAX_IMAGE_PIXELS), hit before ours
        digits = str(e).split(" pixels")[0].split("(")[-1]
        size = f"{int(digits):,} pixels" if digits.isdigit() else "too many pixels"
        raise RequestError(413, "the image is too large", received=size, expected=want) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise RequestError(422, "the upload is not an image", received=_preview(data), expected=want) from None
    if w * h > max_pixels:
        raise RequestError(413, "the image is too large", received=f"{w}×{h} = {w * h:,} pixels", expected=want)
    prep = Preprocessing(kind="image", input_shape=[info["channels"], info["height"], info["width"]])
    buf = io.BytesIO(data)
    try:
        x = read_image(buf, prep, notes=[])  # type: ignore[arg-type] - PIL reads file objects too
    except DataError as e:
        why = str(e).replace(f"cannot read image {buf}: ", "").split("; expected")[0]
        raise RequestError(422, f"the image cannot be read: {why}", received=_preview(data), expected=want) from None
    return {name: x.numpy()[None].astype(np.float32)}


def _preview(data: bytes, n: int = 40) -> str:
    head = data[:n]
    return f"{len(data):,} bytes starting {head!r}" if data else "0 bytes"


def finite_or_none(values: np.ndarray) -> Any:
    """Output arrays as JSON: lists, with NaN/infinity (a model's own) as null rather than invalid JSON."""
    out = values.tolist()
    if values.dtype.kind == "f" and not np.isfinite(values).all():

        def clean(v):
            return [clean(x) for x in v] if isinstance(v, list) else (v if math.isfinite(v) else None)

        out = clean(out)
    return out
