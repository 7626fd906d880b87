"""Word-vector queries: nearest neighbours, analogies (a : b :: c : ?), export to the word2vec text format.

vecs = WordVectors.from_run("runs/w2v")          # or WordVectors.load("vectors.txt")
vecs.neighbours("dog", k=5)                       # [("dogs", 0.71), ...]
vecs.analogy("man", "woman", "boy")               # [("girl", 0.64), ...]  (woman - man + boy)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deepkit.errors import ConfigError, DataError


class WordVectors:
    """Words and their vectors, compared by cosine similarity."""

    def __init__(self, words: list[str], vectors: np.ndarray | torch.Tensor):
        self.words = list(words)
        v = torch.as_tensor(np.asarray(vectors), dtype=torch.float32)
        if v.ndim != 2 or len(v) != len(self.words):
            raise DataError(f"{len(self.words)} words but vectors of shape {tuple(v.shape)}")
        self.vectors = v
        self.unit = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def load(cls, path: str | Path) -> WordVectors:
        from deepkit.data.text import read_word_vectors

        words, vectors = read_word_vectors(path)
        return cls(words, vectors)

    @classmethod
    def from_run(cls, run_dir: str | Path) -> WordVectors:
        path = Path(run_dir) / "vectors.txt"
        if not path.is_file():
            raise ConfigError(f"{run_dir} has no vectors.txt; expected a word2vec run directory")
        return cls.load(path)

    def _id(self, word: str) -> int:
        i = self.index.get(word, self.index.get(word.lower()))
        if i is None:
            from deepkit.errors import suggest

            raise DataError(f"'{word}' is not in the vocabulary of {len(self.words)} words{suggest(word, self.words)}")
        return i

    def _top(self, query: torch.Tensor, k: int, exclude: set[int]) -> list[tuple[str, float]]:
        sims = self.unit @ (query / query.norm().clamp_min(1e-12))
        if exclude:
            sims[list(exclude)] = -float("inf")
        top = sims.topk(min(k, len(self.words) - len(exclude)))
        return [(self.words[i], float(s)) for s, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)]

    def neighbours(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` words with the highest cosine similarity to ``word`` (itself excluded)."""
        i = self._id(word)
        return self._top(self.unit[i], k, {i})

    def analogy(self, a: str, b: str, c: str, k: int = 5) -> list[tuple[str, float]]:
        """Words ``d`` with ``a : b :: c : d``, i.e. nearest to ``b - a + c`` (3CosAdd; the inputs are excluded)."""
        ia, ib, ic = self._id(a), self._id(b), self._id(c)
        return self._top(self.unit[ib] - self.unit[ia] + self.unit[ic], k, {ia, ib, ic})

    def save(self, path: str | Path) -> Path:
        """Write the standard word2vec text format: ``COUNT DIM`` then ``word v1 ... vD`` per line."""
        from deepkit.weights import atomic_write_text

        lines = [f"{len(self.words)} {self.vectors.shape[1]}"]
        lines += [
            w + " " + " ".join(f"{x:.6g}" for x in row)
            for w, row in zip(self.words, self.vectors.tolist(), strict=True)
        ]
        path = Path(path)
        atomic_write_text(path, "\n".join(lines) + "\n")
        return path
