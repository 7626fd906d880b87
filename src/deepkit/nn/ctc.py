"""CTC helpers: how many output frames a label sequence needs, greedy and prefix beam-search decoding, error rates.

* :func:`ctc_min_frames`: CTC can emit a label sequence of length ``L`` with ``r`` adjacent repeats only from at least
  ``L + r`` frames (a blank must separate two equal labels); a shorter clip has no valid alignment (an infinite
  loss, or 0 with ``zero_infinity``).
* :func:`greedy_decode`: the best label per frame, repeats merged, blanks dropped.
* :func:`prefix_beam_search`: CTC prefix beam search (Hannun et al., 2014) in plain Python over per-frame log
  probabilities: each kept prefix carries the log probability of all alignments that end in a blank and of those
  that end in its last label, so the scores are the prefixes' total probabilities (exact when the beam keeps every
  prefix; ``tests/nn/test_ctc.py`` checks it against a brute-force sum over every alignment).
* :func:`error_rates`: WER and CER through ``torchmetrics``, and the token error rate over a vocabulary's tokens
  (for digit strings: the digit error rate).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

NEG_INF = -math.inf


def ctc_min_frames(labels: Sequence[int]) -> int:
    """The fewest frames that can emit ``labels``: its length plus one blank between each pair of equal neighbours."""
    return len(labels) + sum(1 for a, b in zip(labels[:-1], labels[1:], strict=True) if a == b)


def greedy_decode(log_probs: torch.Tensor, length: int | None = None, blank: int = 0) -> list[int]:
    """``(T, V)`` scores -> labels: the argmax of each of the first ``length`` frames, repeats merged, blanks
    dropped."""
    best = log_probs[: length if length is not None else len(log_probs)].argmax(-1).tolist()
    out, prev = [], None
    for k in best:
        if k != prev and k != blank:
            out.append(k)
        prev = k
    return out


def _logadd(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    hi, lo = (a, b) if a > b else (b, a)
    return hi + math.log1p(math.exp(lo - hi))


def prefix_beam_search(
    log_probs: torch.Tensor, beam: int = 8, length: int | None = None, blank: int = 0, prune: float | None = -12.0
) -> list[tuple[list[int], float]]:
    """CTC prefix beam search over ``(T, V)`` log probabilities (the first ``length`` frames).

    Returns up to ``beam`` ``(labels, log probability)`` pairs, best first; the log probability sums every alignment
    of the labels over the frames seen. ``prune``: per frame, labels whose log probability is below it are not
    tried as extensions (None: try every label; the result is then exact when ``beam`` keeps every prefix)."""
    if beam < 1:
        raise ValueError(f"beam width must be >= 1, got {beam}")
    lp = log_probs[: length if length is not None else len(log_probs)].detach().float().cpu()
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}  # prefix -> (ends in blank, in label)
    for row in lp.tolist():
        cands = [k for k, v in enumerate(row) if k != blank and (prune is None or v >= prune)]
        if not cands:  # keep at least the best label so a confident blank frame cannot starve the search
            cands = [max((k for k in range(len(row)) if k != blank), key=row.__getitem__)]
        nxt: dict[tuple[int, ...], list[float]] = {}
        for prefix, (pb, pnb) in beams.items():
            total = _logadd(pb, pnb)
            s = nxt.setdefault(prefix, [NEG_INF, NEG_INF])
            s[0] = _logadd(s[0], total + row[blank])
            last = prefix[-1] if prefix else None
            for k in cands:
                p = row[k]
                ext = nxt.setdefault((*prefix, k), [NEG_INF, NEG_INF])
                if k == last:
                    s[1] = _logadd(s[1], pnb + p)  # the same label again without a blank: merged
                    ext[1] = _logadd(ext[1], pb + p)  # after a blank: a new label
                else:
                    ext[1] = _logadd(ext[1], total + p)
        ranked = sorted(nxt.items(), key=lambda kv: _logadd(*kv[1]), reverse=True)[:beam]
        ranked = [kv for kv in ranked if _logadd(*kv[1]) > NEG_INF] or ranked[:1]  # no impossible prefixes
        beams = {p: (v[0], v[1]) for p, v in ranked}
    return [(list(p), _logadd(*v)) for p, v in sorted(beams.items(), key=lambda kv: _logadd(*kv[1]), reverse=True)]


def error_rates(hyps: list[str], refs: list[str], token_sep: str | None = None) -> dict[str, float]:
    """``wer`` and ``cer`` (torchmetrics: edits over reference words / characters, corpus level); with
    ``token_sep=" "`` also ``ter``: the error rate over space-separated tokens with the spaces left out (digit
    strings: the digit error rate)."""
    from torchmetrics.functional.text import char_error_rate, word_error_rate

    if not refs:
        return {}
    out = {"wer": float(word_error_rate(hyps, refs)), "cer": float(char_error_rate(hyps, refs))}
    if token_sep is not None:
        out["ter"] = float(char_error_rate([h.replace(token_sep, "") for h in hyps],
                                           [r.replace(token_sep, "") for r in refs]))  # fmt: skip
    return out
