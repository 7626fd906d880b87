"""Autoregressive decoding for every language model: greedy, sampling (temperature, top-k, top-p), repetition
penalty, beam search, stop tokens/strings and streaming.

A model is fed through one of three *decoders* that all answer "logits of the next token":

* ``model.step(ids, state) -> (logits, state)`` (the recurrent LMs): one new token per step, state carried;
* ``model(ids, cache=KVCache)`` (GPT-2): keys/values of past positions are cached, so each step computes only the
  new position (``use_cache=True``, the default); past the model's context the window is re-encoded, so cached and
  uncached decoding give the same tokens at any length;
* any other ``model(ids) -> logits (B, T, V)``: the whole context (cropped to ``context_len``) every step.

Token-level functions (:func:`generate`, :func:`iter_generate`, :func:`beam_search`) work on id tensors;
:func:`stream_text` adds a tokenizer (anything with ``encode``/``decode``), stop strings and text streaming.
"""

from __future__ import annotations

import inspect
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import torch
from torch import nn

from deepkit.errors import ConfigError, DataError
from deepkit.nn.attention import KVCache

LongPrompt = Literal["truncate", "error"]


class LongPromptWarning(UserWarning):
    """A prompt longer than the model's context was cut to its last tokens."""


# --- logits processing ---------------------------------------------------------------------------------------------
def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty (Keskar et al. 2019, eq. 1 as implemented by Hugging Face): for every token id already in
    ``seen`` (B, T), a positive logit is divided by ``penalty`` and a negative one multiplied, so ``penalty > 1``
    makes repeats less likely whatever the logit's sign. ``logits`` (B, V) is not modified in place."""
    if penalty == 1.0:
        return logits
    score = logits.gather(1, seen)  # (B, T): logits of the tokens present
    score = torch.where(score > 0, score / penalty, score * penalty)
    return logits.scatter(1, seen, score)


def top_p_mask(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus (Holtzman et al. 2020): True for the smallest set of most likely tokens whose mass is >= ``top_p``.

    ``probs`` (B, V) sums to 1 per row; the most likely token is always kept.
    """
    sorted_p, order = probs.sort(-1, descending=True)
    before = sorted_p.cumsum(-1) - sorted_p  # mass of the more likely tokens
    keep_sorted = before < top_p  # a token is needed while the mass before it is still short of top_p
    keep_sorted[..., 0] = True
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def check_sampling(temperature: float, top_k: int | None, top_p: float | None, repetition_penalty: float) -> None:
    if temperature < 0:
        raise ConfigError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ConfigError(f"top_p must be in (0, 1], got {top_p}")
    if repetition_penalty <= 0:
        raise ConfigError(f"repetition_penalty must be > 0 (1 = off), got {repetition_penalty}")


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """Pick one token per row of ``logits`` (B, V): greedy at temperature 0, else sample from the
    temperature-scaled softmax restricted to the ``top_k`` most likely tokens and then to the ``top_p`` nucleus."""
    check_sampling(temperature, top_k, top_p, 1.0)
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    if top_p is not None and top_p < 1:
        probs = probs * top_p_mask(probs, top_p)  # multinomial renormalizes
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# --- decoders: "what are the next-token logits" for each kind of model ---------------------------------------------
class _Decoder(ABC):
    """Feeds ``ids`` (B, T) to a model incrementally. ``start`` and ``advance`` return next-token logits (B, V)."""

    @abstractmethod
    def start(self, ids: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def advance(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids`` is the whole sequence so far, its last column new since the previous call."""

    def reorder(self, index: torch.Tensor) -> None:  # noqa: B027 - a no-op by default (nothing cached)
        """Keep rows ``index`` (beam search)."""


class _FullContext(_Decoder):
    def __init__(self, model: nn.Module, context_len: int | None):
        self.model, self.context_len = model, context_len

    def start(self, ids):
        return self.advance(ids)

    def advance(self, ids):
        ctx = ids if self.context_len is None else ids[:, -self.context_len :]
        return self.model(ctx)[:, -1]


class _Cached(_Decoder):
    """KV cache; once the context is full every step re-encodes the last ``context_len`` tokens (as uncached)."""

    def __init__(self, model: nn.Module, context_len: int | None):
        self.model, self.context_len, self.cache = model, context_len, KVCache()

    def start(self, ids):
        self.cache = KVCache()
        ctx = ids if self.context_len is None else ids[:, -self.context_len :]
        return self.model(ctx, cache=self.cache)[:, -1]

    def advance(self, ids):
        if self.context_len is not None and self.cache.seq_len() >= self.context_len:
            return self.start(ids)  # absolute positions shift with the window: the cache cannot be reused
        return self.model(ids[:, -1:], cache=self.cache)[:, -1]

    def reorder(self, index):
        self.cache.reorder(index)


class _Stateful(_Decoder):
    """Recurrent LMs: ``step`` carries the hidden state; state tensors are (layers, B, H)."""

    def __init__(self, model: nn.Module):
        self.model, self.state = model, None

    def start(self, ids):
        logits, self.state = self.model.step(ids)
        return logits[:, -1]

    def advance(self, ids):
        logits, self.state = self.model.step(ids[:, -1:], self.state)
        return logits[:, -1]

    def reorder(self, index):
        if isinstance(self.state, tuple):
            self.state = tuple(s.index_select(1, index) for s in self.state)
        else:
            self.state = self.state.index_select(1, index)


def _takes_cache(model: nn.Module) -> bool:
    try:
        return "cache" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _decoder(model: nn.Module, context_len: int | None, use_cache: bool) -> _Decoder:
    if hasattr(model, "step"):
        return _Stateful(model)
    if use_cache and _takes_cache(model):
        return _Cached(model, context_len)
    return _FullContext(model, context_len)


def _prepare(
    model: nn.Module, prompt: torch.Tensor, context_len: int | None, on_long_prompt: LongPrompt
) -> tuple[int | None, torch.Tensor]:
    """The context length to use (given, or the model's ``context_length``) and the prompt checked against it."""
    if prompt.ndim != 2 or prompt.shape[1] == 0:
        raise ConfigError(f"prompt must be token ids of shape (B, T) with T >= 1, got {tuple(prompt.shape)}")
    if on_long_prompt not in ("truncate", "error"):
        raise ConfigError(f"on_long_prompt must be 'truncate' or 'error', got {on_long_prompt!r}")
    context_len = context_len or getattr(model, "context_length", None)
    if context_len is not None and prompt.shape[1] > context_len:
        msg = f"the prompt has {prompt.shape[1]} tokens, more than the model's context of {context_len}"
        if on_long_prompt == "error":
            raise DataError(f"{msg} (shorten it, or use on_long_prompt='truncate' to keep the last {context_len})")
        warnings.warn(f"{msg}; the model sees only the last {context_len}", LongPromptWarning, stacklevel=3)
    return context_len, prompt


# --- sampling ------------------------------------------------------------------------------------------------------
@torch.no_grad()
def iter_generate(
    model: nn.Module,
    prompt: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    context_len: int | None = None,
    stop_id: int | None = None,
    use_cache: bool = True,
    on_long_prompt: LongPrompt = "truncate",
    generator: torch.Generator | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the new token of every row, (B,) int64, one step at a time (see :func:`generate` for the arguments).

    Stops after ``max_new_tokens`` or once every row has produced ``stop_id``. The model is in eval mode while
    the iterator runs and gets its training mode back when it ends.
    """
    check_sampling(temperature, top_k, top_p, repetition_penalty)
    context_len, ids = _prepare(model, prompt, context_len, on_long_prompt)
    was_training = model.training
    model.eval()
    try:
        dec = _decoder(model, context_len, use_cache)
        done = torch.zeros(len(ids), dtype=torch.bool, device=ids.device)
        for i in range(max_new_tokens):
            logits = dec.start(ids) if i == 0 else dec.advance(ids)  # (B, V)
            logits = apply_repetition_penalty(logits, ids, repetition_penalty)
            nxt = sample_next(logits, temperature, top_k, generator, top_p)
            ids = torch.cat([ids, nxt[:, None]], 1)
            yield nxt
            if stop_id is not None:
                done |= nxt == stop_id
                if bool(done.all()):
                    break
    finally:
        model.train(was_training)


@torch.no_grad()
def beam_search(
    model: nn.Module,
    prompt: torch.Tensor,
    max_new_tokens: int,
    num_beams: int = 4,
    length_penalty: float = 1.0,
    repetition_penalty: float = 1.0,
    context_len: int | None = None,
    stop_id: int | None = None,
    is_finished: Callable[[list[int]], bool] | None = None,
    use_cache: bool = True,
    on_long_prompt: LongPrompt = "truncate",
) -> torch.Tensor:
    """The most likely continuation of one prompt (1, T) under beam search; returns (1, T + new).

    Hypotheses are ranked by ``sum log p / new_len ** length_penalty`` once finished (``stop_id`` produced,
    ``is_finished(new_ids)`` true, or ``max_new_tokens`` reached); ``length_penalty > 1`` favours longer ones.
    With ``num_beams=1`` this is greedy decoding. The ``stop_id`` itself is kept in the result, as in sampling.
    """
    if num_beams < 1:
        raise ConfigError(f"num_beams must be >= 1, got {num_beams}")
    check_sampling(0.0, None, None, repetition_penalty)
    context_len, prompt = _prepare(model, prompt, context_len, on_long_prompt)
    if len(prompt) != 1:
        raise ConfigError(f"beam search takes one prompt at a time, got a batch of {len(prompt)}")
    was_training = model.training
    model.eval()
    try:
        dec = _decoder(model, context_len, use_cache)
        ids = prompt  # (beams, T + t): the live hypotheses
        scores = torch.zeros(1, device=prompt.device)  # (beams,) summed log-probabilities
        finished: list[tuple[float, torch.Tensor]] = []  # (ranking score, ids)
        t0 = prompt.shape[1]

        def rank(score: float, n_new: int) -> float:
            return score / max(1, n_new) ** length_penalty

        for step in range(max_new_tokens):
            logits = dec.start(ids) if step == 0 else dec.advance(ids)
            logits = apply_repetition_penalty(logits, ids, repetition_penalty)
            total = scores[:, None] + logits.float().log_softmax(-1)  # (beams, V)
            vocab = total.shape[1]
            # 2 * num_beams candidates, so num_beams remain live even if some of them finish here
            top = total.flatten().topk(min(2 * num_beams, total.numel()))
            rows, toks, new_scores = [], [], []
            for score, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                row, tok = divmod(flat, vocab)
                seq = torch.cat([ids[row], ids.new_tensor([tok])])
                new = seq[t0:].tolist()
                if (stop_id is not None and tok == stop_id) or (is_finished is not None and is_finished(new)):
                    finished.append((rank(score, len(new)), seq))
                    continue
                rows.append(row)
                toks.append(tok)
                new_scores.append(score)
                if len(rows) == num_beams:
                    break
            if not rows:
                break
            if len(finished) >= num_beams:
                # Hugging Face's heuristic: done once the best live hypothesis, ranked at its current length,
                # cannot beat the num_beams-th best finished one
                kth_best = sorted((f[0] for f in finished), reverse=True)[num_beams - 1]
                if rank(new_scores[0], step + 1) < kth_best:
                    break
            index = torch.tensor(rows, device=ids.device)
            dec.reorder(index)
            ids = torch.cat([ids.index_select(0, index), ids.new_tensor(toks)[:, None]], 1)
            scores = torch.tensor(new_scores, device=ids.device)
        else:
            finished += [(rank(float(s), ids.shape[1] - t0), seq) for s, seq in zip(scores, ids, strict=True)]
        if not finished:  # every candidate ended on the last step without a live one: keep the best live
            finished = [(rank(float(s), ids.shape[1] - t0), seq) for s, seq in zip(scores, ids, strict=True)]
        return max(finished, key=lambda f: f[0])[1][None]
    finally:
        model.train(was_training)


def encoder_decoder_beam(
    step: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    start_id: int,
    eos_id: int,
    beam_size: int,
    max_len: int,
    length_penalty: float,
    device: torch.device,
) -> list[int]:
    """Beam search over one source for an encoder–decoder model; returns the best target ids (without ``<eos>``).

    ``step(last_tokens (b,), keep)`` returns the next-token log-probabilities (b, V) of the b live hypotheses;
    ``keep`` (None on the first step) indexes the previous step's hypotheses that survived, in the new order, so the
    model reorders its decoder state (recurrent state or KV cache) before decoding. Finished hypotheses are ranked
    by ``sum log p / length ** length_penalty``; the search stops when ``beam_size`` have finished.
    """
    beams: list[tuple[list[int], float]] = [([], 0.0)]
    finished: list[tuple[list[int], float]] = []
    keep: torch.Tensor | None = None
    for _ in range(max_len):
        y = torch.tensor([seq[-1] if seq else start_id for seq, _ in beams], device=device)
        logp = step(y, keep)
        total = torch.tensor([s for _, s in beams], device=device)[:, None] + logp  # (b, V)
        top = total.flatten().topk(min(beam_size, total.numel()))
        new_beams, rows = [], []
        for score, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            row, tok = divmod(flat, logp.shape[1])
            seq = beams[row][0] + [tok]
            if tok == eos_id:
                finished.append((seq[:-1], score / max(1, len(seq)) ** length_penalty))
            else:
                new_beams.append((seq, score))
                rows.append(row)
        if not new_beams or len(finished) >= beam_size:
            break
        beams, keep = new_beams, torch.tensor(rows, device=device)
    if not finished:
        finished = [(seq, s / max(1, len(seq)) ** length_penalty) for seq, s in beams]
    return max(finished, key=lambda f: f[1])[0]


def generate(
    model: nn.Module,
    prompt: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    context_len: int | None = None,
    stop_id: int | None = None,
    generator: torch.Generator | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    num_beams: int = 1,
    length_penalty: float = 1.0,
    use_cache: bool = True,
    on_long_prompt: LongPrompt = "truncate",
) -> torch.Tensor:
    """Continue ``prompt`` (B, T) int64 by up to ``max_new_tokens`` tokens; returns (B, T + new).

    Args:
        model: returns logits (B, T, V) for ids (B, T); may offer ``step(ids, state)`` or take ``cache=KVCache``.
        temperature: 0 = greedy; < 1 sharper, > 1 more random.
        top_k: sample only among the k most likely tokens.
        context_len: feed at most this many last tokens (default: the model's ``context_length``, if any).
        stop_id: stop once every row has produced this token (e.g. EOS).
        generator: a seeded ``torch.Generator`` for reproducible samples.
        top_p: sample only from the smallest set of tokens whose probability mass is >= top_p (nucleus).
        repetition_penalty: > 1 discourages tokens already present (CTRL); 1 = off.
        num_beams: > 1 = beam search, deterministic: temperature/top_k/top_p are not used (one prompt row at a time).
        length_penalty: beam search ranks finished hypotheses by log p / length ** length_penalty.
        use_cache: reuse past keys/values (models that take ``cache``); the tokens are the same without it.
        on_long_prompt: a prompt longer than the context is cut to its last tokens with a warning ("truncate")
            or refused with a DataError ("error").

    Example:
        >>> out = generate(lm, torch.tensor([tok.encode("ROMEO:")]), 200, temperature=0.8, top_p=0.9)  # doctest: +SKIP
    """
    if num_beams > 1:
        rows = [
            beam_search(
                model,
                row[None],
                max_new_tokens,
                num_beams,
                length_penalty,
                repetition_penalty,
                context_len,
                stop_id,
                use_cache=use_cache,
                on_long_prompt=on_long_prompt,
            )[0]
            for row in prompt
        ]
        width = max(len(r) for r in rows)  # rows that stopped early are padded with stop_id
        fill = stop_id if stop_id is not None else 0
        return torch.stack([torch.cat([r, r.new_full((width - len(r),), fill)]) for r in rows])
    steps = iter_generate(
        model,
        prompt,
        max_new_tokens,
        temperature,
        top_k,
        top_p,
        repetition_penalty,
        context_len,
        stop_id,
        use_cache,
        on_long_prompt,
        generator,
    )
    new = list(steps)
    return torch.cat([prompt, torch.stack(new, 1)], 1) if new else prompt


# --- text ----------------------------------------------------------------------------------------------------------
def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that could still grow into a stop string (not safe to print yet)."""
    longest = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), longest, -1):
            if s.startswith(text[-n:]):
                longest = n
                break
    return longest


def stream_text(
    model: nn.Module,
    tokenizer,
    prompt: str,
    max_new_tokens: int = 200,
    stop: Sequence[str] = (),
    device: torch.device | str = "cpu",
    **options,
) -> Iterator[str]:
    """Yield the continuation of ``prompt`` piece by piece as it is generated (the prompt itself is not yielded).

    Args:
        tokenizer: has ``encode(str) -> list[int]`` and ``decode(list[int]) -> str`` (and ``bos_id`` for an
            empty prompt).
        stop: stop strings; generation ends as soon as the continuation contains one, and the text is cut
            just before it (the stop string is never yielded). Text that could be the start of a stop string is
            held back until it is clear.
        **options: :func:`generate`'s (temperature, top_k, top_p, repetition_penalty, num_beams, generator, ...).
            With ``num_beams > 1`` the whole continuation comes in one piece at the end.

    ``"".join(stream_text(...))`` is the continuation; pieces are cut where the decoded text grows.
    """
    stop = [s for s in stop if s]
    ids = tokenizer.encode(prompt) or [tokenizer.bos_id]
    prompt_ids = torch.tensor([ids], device=device)
    options.setdefault("on_long_prompt", "truncate")
    if options.get("num_beams", 1) > 1:

        def finished(new: list[int]) -> bool:
            return any(s in tokenizer.decode(new) for s in stop)

        opts = {k: v for k, v in options.items() if k in ("length_penalty", "repetition_penalty", "context_len")}
        out = beam_search(
            model,
            prompt_ids,
            max_new_tokens,
            options["num_beams"],
            stop_id=options.get("stop_id"),
            is_finished=finished if stop else None,
            use_cache=options.get("use_cache", True),
            on_long_prompt=options["on_long_prompt"],
            **opts,
        )
        text = tokenizer.decode(out[0, len(ids) :].tolist())
        cut = min([text.find(s) for s in stop if s in text], default=len(text))
        if text[:cut]:
            yield text[:cut]
        return
    options = {k: v for k, v in options.items() if k not in ("num_beams", "length_penalty")}
    new: list[int] = []
    shown = 0  # characters of the continuation already yielded
    for tok in iter_generate(model, prompt_ids, max_new_tokens, **options):
        new.append(int(tok[0]))
        text = tokenizer.decode(new)
        hits = [text.find(s) for s in stop if s in text]
        if hits:
            if min(hits) > shown:
                yield text[shown : min(hits)]
            return
        safe = len(text) - _held_back(text, stop)
        # a decoder may still rewrite the last characters (an incomplete UTF-8 byte sequence): hold back U+FFFD
        while safe > shown and text[safe - 1] == "\ufffd":
            safe -= 1
        if safe > shown:
            yield text[shown:safe]
            shown = safe
    text = tokenizer.decode(new)
    if len(text) > shown:
        yield text[shown:]
