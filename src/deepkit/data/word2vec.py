"""word2vec training pairs: frequent-word subsampling, dynamic windows, unigram^0.75 negative sampling.

Follows the reference C implementation: a word with corpus frequency f is kept with probability
``(sqrt(f / t) + 1) * t / f``; each centre word draws a window size uniformly in ``1..W``; negatives come from the
unigram distribution raised to 3/4. Everything random is drawn from a generator seeded by (seed, epoch), so an
epoch's batches (and a resumed run's) are reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from deepkit.errors import DataError


class Word2VecLoader:
    """Batches ``{"center": (B,), "context": (B,) | (B, 2W), "negatives": (B, K)}`` over a corpus of sentences.

    Args:
        sentences: token ids per sentence (no special tokens; ``<unk>`` ids are dropped).
        vocab_size: size of the id space.
        mode: ``skipgram`` (one (centre, context) pair per sample) or ``cbow`` (centre with its whole window).
        window: maximum distance W between centre and context words.
        negatives: negative samples K per positive.
        subsample: threshold t of frequent-word subsampling (0 disables it).
    """

    def __init__(
        self,
        sentences: list[list[int]],
        vocab_size: int,
        batch_size: int,
        mode: str = "skipgram",
        window: int = 5,
        negatives: int = 5,
        subsample: float = 1e-3,
        shuffle: bool = False,
        seed: int = 0,
        unk_id: int = 1,
        first_word_id: int = 4,
    ):
        ids = [t for s in sentences for t in s if t >= first_word_id]
        if not ids:
            raise DataError("word2vec: the corpus has no in-vocabulary words")
        self.tokens = torch.tensor([t for s in sentences for t in s], dtype=torch.long)
        self.sent = torch.repeat_interleave(torch.arange(len(sentences)), torch.tensor([len(s) for s in sentences]))
        keep = self.tokens >= first_word_id  # drop <unk> and specials
        self.tokens, self.sent = self.tokens[keep], self.sent[keep]
        counts = torch.bincount(self.tokens, minlength=vocab_size).double()
        freq = counts / counts.sum()
        if subsample > 0:
            f = freq.clamp_min(1e-12)
            self.keep_prob = (((f / subsample).sqrt() + 1) * subsample / f).clamp(max=1.0).float()
        else:
            self.keep_prob = torch.ones(vocab_size)
        self.noise = counts.pow(0.75)
        self.noise /= self.noise.sum()
        self.counts = counts
        self.batch_size, self.mode, self.window, self.k = batch_size, mode, window, negatives
        self.shuffle, self.seed = shuffle, seed
        self.epoch = self.start_batch = 0
        self.device = torch.device("cpu")
        self._cache: tuple[int, dict] | None = None

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)

    def _samples(self) -> dict[str, torch.Tensor]:
        """All samples of the current epoch (cached per epoch)."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        g = self._generator()
        keep = torch.rand(len(self.tokens), generator=g) < self.keep_prob[self.tokens] if self.shuffle else None
        tokens = self.tokens if keep is None else self.tokens[keep]
        sent = self.sent if keep is None else self.sent[keep]
        n = len(tokens)
        # dynamic window: each centre sees 1..W words either side (nearer words are used more often)
        reach = torch.randint(1, self.window + 1, (n,), generator=g) if self.shuffle else torch.full((n,), self.window)
        idx = torch.arange(n)
        if self.mode == "skipgram":
            centers, contexts = [], []
            for off in [o for o in range(-self.window, self.window + 1) if o]:
                j = (idx + off).clamp(0, n - 1)
                ok = (idx + off >= 0) & (idx + off < n) & (sent[j] == sent) & (reach >= abs(off))
                centers.append(tokens[ok])
                contexts.append(tokens[j[ok]])
            samples = {"center": torch.cat(centers), "context": torch.cat(contexts)}
        else:
            cols = []
            for off in [o for o in range(-self.window, self.window + 1) if o]:
                j = (idx + off).clamp(0, n - 1)
                ok = (idx + off >= 0) & (idx + off < n) & (sent[j] == sent) & (reach >= abs(off))
                cols.append(torch.where(ok, tokens[j], torch.zeros_like(tokens)))
            context = torch.stack(cols, 1)  # (n, 2W), 0 = padding
            has = (context != 0).any(1)
            samples = {"center": tokens[has], "context": context[has]}
        if self.shuffle:
            order = torch.randperm(len(samples["center"]), generator=g)
            samples = {k: v[order] for k, v in samples.items()}
        self._cache = (self.epoch, samples)
        return samples

    def __len__(self) -> int:
        return -(-len(self._samples()["center"]) // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self._samples()["center"])

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def to(self, device: torch.device | str) -> Word2VecLoader:
        self.device = torch.device(device)
        return self

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        samples = self._samples()
        g = self._generator()
        g.manual_seed(g.initial_seed() + 7919)  # negatives: their own stream, independent of the batch position
        bs = self.batch_size
        total = len(samples["center"])
        negs = torch.multinomial(self.noise.float(), total * self.k, replacement=True, generator=g).view(total, self.k)
        for b in range(self.start_batch, len(self)):
            sl = slice(b * bs, (b + 1) * bs)
            yield {
                "center": samples["center"][sl].to(self.device),
                "context": samples["context"][sl].to(self.device),
                "negatives": negs[sl].to(self.device),
            }
        self.start_batch = 0
