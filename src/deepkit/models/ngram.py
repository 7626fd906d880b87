"""Interpolated Kneser–Ney n-gram language model: the count-based baseline neural LMs are compared with.

Chen & Goodman (1998), "An Empirical Study of Smoothing Techniques for Language Modeling": absolute discounting
``d`` at every order, lower orders built from continuation counts (how many distinct words precede a word), the
unigram level interpolated with the uniform distribution so that every vocabulary item has nonzero probability.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

from deepkit.errors import ConfigError, DataError


class KneserNeyLM:
    """An order-``n`` interpolated Kneser–Ney model over token ids ``0 .. vocab_size-1``.

    Example:
        >>> lm = KneserNeyLM(order=3).fit(train_ids, vocab_size=6000)   # doctest: +SKIP
        >>> lm.perplexity(test_ids)                                      # doctest: +SKIP
    """

    def __init__(self, order: int = 3, discount: float = 0.75):
        if order < 1 or not 0 < discount < 1:
            raise ConfigError(f"n-gram order must be >= 1 and discount in (0, 1); got {order}, {discount}")
        self.order, self.d = order, discount

    def fit(self, stream: Sequence[int], vocab_size: int) -> KneserNeyLM:
        if len(stream) < self.order:
            raise DataError(f"an order-{self.order} n-gram model needs at least {self.order} tokens")
        self.V = vocab_size
        n = self.order
        s = list(stream)
        # highest order: real counts; lower orders: continuation counts N1+(• h w)
        self.counts: list[Counter] = [Counter() for _ in range(n + 1)]  # counts[k][(h..., w)] for k-grams
        top = Counter(tuple(s[i : i + n]) for i in range(len(s) - n + 1))
        self.counts[n] = top
        for k in range(n - 1, 0, -1):
            self.counts[k] = Counter(g[1:] for g in self.counts[k + 1])  # distinct left extensions
        # per context: total count and number of distinct followers
        self.ctx_total: list[dict] = [dict() for _ in range(n + 1)]
        self.ctx_types: list[dict] = [dict() for _ in range(n + 1)]
        for k in range(1, n + 1):
            tot: dict = defaultdict(int)
            typ: dict = defaultdict(int)
            for g, c in self.counts[k].items():
                tot[g[:-1]] += c
                typ[g[:-1]] += 1
            self.ctx_total[k], self.ctx_types[k] = dict(tot), dict(typ)
        return self

    def prob(self, history: Sequence[int], w: int) -> float:
        """P(w | the last ``order - 1`` tokens of ``history``)."""
        h = tuple(history[-(self.order - 1) :]) if self.order > 1 else ()
        return self._p(h, w, len(h) + 1)

    def _p(self, h: tuple, w: int, k: int) -> float:
        if k == 1:
            total = self.ctx_total[1].get((), 0)
            types = self.ctx_types[1].get((), 0)
            c = self.counts[1].get((w,), 0)
            return max(c - self.d, 0) / total + self.d * types / total / self.V
        lower = self._p(h[1:], w, k - 1)
        total = self.ctx_total[k].get(h, 0)
        if total == 0:
            return lower
        c = self.counts[k].get((*h, w), 0)
        return max(c - self.d, 0) / total + self.d * self.ctx_types[k][h] / total * lower

    def perplexity(self, stream: Sequence[int]) -> float:
        """exp(mean negative log-probability) of every token after the first, each given up to order-1 before it."""
        s = list(stream)
        nll = sum(-math.log(self.prob(s[max(0, i - self.order + 1) : i], s[i])) for i in range(1, len(s)))
        return math.exp(nll / max(1, len(s) - 1))
