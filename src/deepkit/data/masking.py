"""Pretraining inputs: BERT's dynamic masking and T5's span corruption, and the loaders that apply them per batch.

Masking happens in the loader, afresh for every batch (RoBERTa's *dynamic* masking: a sentence gets a new mask
each epoch). The random generator of a batch is seeded by (seed, epoch, batch index), so a resumed run sees the
very same masks; evaluation loaders use one fixed mask so validation losses of different epochs compare.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from deepkit.data.loader import BucketedLoader
from deepkit.data.text import SequenceLoader
from deepkit.errors import ConfigError

IGNORE = -100  # label of positions the loss skips


# --- masked LM (Devlin et al. 2019, Liu et al. 2019) ---------------------------------------------------------------
def mask_tokens(
    ids: torch.Tensor,
    num_special: int,
    vocab_size: int,
    mask_id: int,
    generator: torch.Generator | None = None,
    mask_prob: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: each non-special token is chosen with ``mask_prob``; a chosen token becomes ``<mask>`` 80%
    of the time, a random regular token 10%, and stays unchanged 10%. Only chosen positions are predicted.

    Args:
        ids: token ids ``(B, T)``; ids below ``num_special`` (padding, ``<bos>``, ``<eos>``, ``<mask>``, ...) are
            never chosen.
        num_special: special tokens occupy ids ``0 .. num_special-1`` (deepkit tokenizers put them first).
        vocab_size: random replacements are drawn from ``[num_special, vocab_size)``.
        mask_id: id of ``<mask>``.

    Returns:
        ``(inputs, labels)``, both ``(B, T)``: ``labels`` is the original id at chosen positions and -100 elsewhere.
    """
    if not 0 < mask_prob < 1:
        raise ConfigError(f"mask probability must be in (0, 1), got {mask_prob}")
    regular = ids >= num_special
    chosen = (torch.rand(ids.shape, generator=generator) < mask_prob) & regular
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    u = torch.rand(ids.shape, generator=generator)
    to_mask = chosen & (u < 0.8)
    to_random = chosen & (u >= 0.8) & (u < 0.9)
    random_ids = torch.randint(num_special, vocab_size, ids.shape, generator=generator)
    inputs = torch.where(to_mask, torch.full_like(ids, mask_id), ids)
    inputs = torch.where(to_random, random_ids, inputs)
    return inputs, labels


def batch_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    """The generator of one batch's random choices: a pure function of (seed, epoch, batch index)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_033 + batch)


class MaskedLMLoader:
    """Sentences (``<bos> ... <eos>``, bucketed by length) with a fresh BERT mask per batch.

    Yields ``{"tokens": masked ids (B, T), "lengths": (B,), "target": labels (B, T) with -100 off the mask}``.
    With ``dynamic=False`` (evaluation) every epoch uses the same masks.
    """

    def __init__(
        self,
        seqs: Sequence[Sequence[int]],
        batch_size: int,
        vocab_size: int,
        mask_id: int,
        num_special: int,
        mask_prob: float = 0.15,
        shuffle: bool = False,
        dynamic: bool = True,
        seed: int = 0,
        pad_id: int = 0,
    ):
        dummy = torch.zeros(len(seqs), dtype=torch.long)
        self.inner = SequenceLoader(seqs, dummy, batch_size, shuffle=shuffle, bucket=True, seed=seed, pad_id=pad_id)
        self.vocab_size, self.mask_id, self.num_special, self.mask_prob = vocab_size, mask_id, num_special, mask_prob
        self.dynamic, self.seed = dynamic, seed
        self.epoch = self.start_batch = 0
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.inner)

    @property
    def num_samples(self) -> int:
        return self.inner.num_samples

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch
        self.inner.set_epoch(epoch, start_batch)

    def to(self, device: torch.device | str) -> MaskedLMLoader:
        self.device = torch.device(device)
        return self

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        b = self.start_batch
        for batch in self.inner:  # the inner loader stays on the CPU, where the masks are drawn
            g = batch_generator(self.seed, self.epoch if self.dynamic else 0, b)
            inputs, labels = mask_tokens(
                batch["tokens"], self.num_special, self.vocab_size, self.mask_id, g, self.mask_prob
            )
            yield {"tokens": inputs.to(self.device), "lengths": batch["lengths"], "target": labels.to(self.device)}
            b += 1
        self.start_batch = 0


# --- span corruption (Raffel et al. 2020, section 3.1.4) ----------------------------------------------------------
def random_spans_noise_mask(
    length: int, noise_density: float = 0.15, mean_span_length: float = 3.0, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Which of ``length`` tokens to corrupt: about ``noise_density * length`` tokens in spans of mean length
    ``mean_span_length``, alternating with kept spans; the sequence always starts with a kept span.

    Follows T5's ``random_spans_noise_mask`` (text-to-text-transfer-transformer ``preprocessors.py``): the noise
    and non-noise token counts are split into the same number of random segments, which are then interleaved.
    """
    rng = rng or np.random.default_rng()
    if length < 2:
        return np.zeros(length, dtype=bool)
    num_noise = min(max(int(round(length * noise_density)), 1), length - 1)
    num_spans = max(int(round(num_noise / mean_span_length)), 1)
    num_keep = length - num_noise
    num_spans = min(num_spans, num_keep)  # every noise span needs a kept span before it

    def segment(num_items: int, num_segments: int) -> np.ndarray:
        """Random split of ``num_items`` into ``num_segments`` positive lengths."""
        cuts = np.sort(rng.choice(np.arange(1, num_items), num_segments - 1, replace=False))
        return np.diff(np.concatenate([[0], cuts, [num_items]]))

    noise_lengths, keep_lengths = segment(num_noise, num_spans), segment(num_keep, num_spans)
    mask = np.zeros(length, dtype=bool)
    pos = 0
    for keep, noise in zip(keep_lengths, noise_lengths, strict=True):
        pos += keep
        mask[pos : pos + noise] = True
        pos += noise
    return mask


def span_corruption(
    ids: Sequence[int], noise_mask: np.ndarray, sentinels: Sequence[int]
) -> tuple[list[int], list[int]]:
    """T5's inputs and targets: each corrupted span is replaced in the input by one sentinel; the target lists
    every sentinel followed by the tokens it hides, then a final sentinel (the paper's
    ``Thank you <X> me to your party <Y> week.`` → ``<X> for inviting <Y> last <Z>``).
    """
    inputs: list[int] = []
    targets: list[int] = []
    k = 0
    for i, tok in enumerate(ids):
        if noise_mask[i]:
            if i == 0 or not noise_mask[i - 1]:  # a span starts
                if k + 1 >= len(sentinels):
                    raise ConfigError(f"{k + 1} corrupted spans need more than the {len(sentinels)} sentinel tokens")
                inputs.append(sentinels[k])
                targets.append(sentinels[k])
                k += 1
            targets.append(tok)
        else:
            inputs.append(tok)
    targets.append(sentinels[k])
    return inputs, targets


def uncorrupt(inputs: Sequence[int], targets: Sequence[int], sentinels: Sequence[int]) -> list[int]:
    """Invert :func:`span_corruption`: put the spans of ``targets`` back in place of the sentinels of ``inputs``."""
    position = {s: i for i, s in enumerate(sentinels)}
    spans: dict[int, list[int]] = {}
    current = None
    for tok in targets:
        if tok in position:
            current = position[tok]
            spans[current] = []
        elif current is not None:
            spans[current].append(tok)
    out: list[int] = []
    for tok in inputs:
        out += spans.get(position[tok], []) if tok in position else [tok]
    return out


class PairBatcher(BucketedLoader):
    """Encoder–decoder batches in Hugging Face's layout from (source ids, target ids) pairs.

    ``target`` gets ``<eos>`` appended and -100 on padding; ``decoder_input_ids`` is it shifted right behind
    ``decoder_start_id`` (T5 starts the decoder with the padding id). Yields ``{"input_ids", "attention_mask",
    "decoder_input_ids", "target"}``. ``make_pairs(indices, generator)`` builds the pairs of one batch, so span
    corruption can draw new noise every batch; fixed pairs ignore the generator.
    """

    def __init__(
        self,
        lengths: torch.Tensor,
        make_pairs,
        batch_size: int,
        shuffle: bool = False,
        dynamic: bool = True,
        seed: int = 0,
        pad_id: int = 0,
        eos_id: int = 3,
        decoder_start_id: int = 0,
    ):
        super().__init__(lengths, batch_size, shuffle, bucket=True, seed=seed)
        self.make_pairs, self.dynamic = make_pairs, dynamic
        self.pad_id, self.eos_id, self.decoder_start_id = pad_id, eos_id, decoder_start_id

    def collate(self, pairs: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        b = len(pairs)
        s_max = max(len(s) for s, _ in pairs)
        t_max = max(len(t) for _, t in pairs) + 1
        src = torch.full((b, s_max), self.pad_id, dtype=torch.long)
        mask = torch.zeros((b, s_max), dtype=torch.long)
        dec = torch.full((b, t_max), self.pad_id, dtype=torch.long)
        target = torch.full((b, t_max), IGNORE, dtype=torch.long)
        for r, (s, t) in enumerate(pairs):
            src[r, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[r, : len(s)] = 1
            dec[r, : len(t) + 1] = torch.tensor([self.decoder_start_id, *t], dtype=torch.long)
            target[r, : len(t) + 1] = torch.tensor([*t, self.eos_id], dtype=torch.long)
        dev = self.device
        return {
            "input_ids": src.to(dev),
            "attention_mask": mask.to(dev),
            "decoder_input_ids": dec.to(dev),
            "target": target.to(dev),
        }

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for b, idx in enumerate(self.batches()[self.start_batch :], self.start_batch):
            seed = self.seed * 1_000_003 + (self.epoch if self.dynamic else 0)
            rng = np.random.default_rng([seed, b])
            yield self.collate(self.make_pairs(idx.tolist(), rng))
        self.start_batch = 0
