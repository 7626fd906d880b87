"""Dynamic masking (BERT/RoBERTa) and T5 span corruption: statistics, specials, freshness, invertibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepkit.data.masking import (
    IGNORE,
    MaskedLMLoader,
    mask_tokens,
    random_spans_noise_mask,
    span_corruption,
    uncorrupt,
)
from deepkit.errors import ConfigError

NUM_SPECIAL, MASK_ID, VOCAB = 5, 4, 1000


def _ids(b=400, t=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(NUM_SPECIAL, VOCAB, (b, t), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3  # <bos> ... <eos>
    ids[::3, 30:] = 0  # every third row padded after 30 tokens
    return ids


def test_masking_proportions_and_specials():
    ids = _ids()
    inputs, labels = mask_tokens(ids, NUM_SPECIAL, VOCAB, MASK_ID, torch.Generator().manual_seed(1))
    regular = ids >= NUM_SPECIAL
    chosen = labels != IGNORE
    assert not chosen[~regular].any(), "a special or padding token was chosen"
    assert torch.equal(inputs[~regular], ids[~regular]), "specials and padding must stay as they are"
    assert torch.equal(labels[chosen], ids[chosen])  # labels are the original ids
    frac = chosen.sum().item() / regular.sum().item()
    assert abs(frac - 0.15) < 0.01, frac  # ~17k regular tokens: 0.15 ± 0.01 is > 3 sigma
    n = chosen.sum().item()
    as_mask = (inputs[chosen] == MASK_ID).sum().item() / n
    kept = (inputs[chosen] == ids[chosen]).sum().item() / n
    replaced = 1 - as_mask - kept
    assert abs(as_mask - 0.8) < 0.02 and abs(kept - 0.1) < 0.015 and abs(replaced - 0.1) < 0.015
    assert (inputs[chosen & (inputs != MASK_ID)] >= NUM_SPECIAL).all()  # random ids are regular tokens
    assert (inputs[~chosen & regular] == ids[~chosen & regular]).all()  # unchosen tokens untouched


def test_mask_prob_is_checked():
    with pytest.raises(ConfigError):
        mask_tokens(_ids(2, 5), NUM_SPECIAL, VOCAB, MASK_ID, mask_prob=1.5)


def _loader(shuffle, dynamic):
    seqs = [[2, *range(10 + i % 7, 30 + i % 7), 3] for i in range(64)]
    return MaskedLMLoader(seqs, 16, VOCAB, MASK_ID, NUM_SPECIAL, shuffle=shuffle, dynamic=dynamic, seed=3)


def _epoch_targets(loader, epoch):
    loader.set_epoch(epoch)
    return [b["target"] for b in loader]


def test_dynamic_masks_differ_between_epochs_and_are_reproducible():
    loader = _loader(shuffle=False, dynamic=True)
    e0, e1, e0_again = _epoch_targets(loader, 0), _epoch_targets(loader, 1), _epoch_targets(loader, 0)
    assert any(not torch.equal(a, b) for a, b in zip(e0, e1, strict=True)), "same masks in two epochs"
    assert all(torch.equal(a, b) for a, b in zip(e0, e0_again, strict=True)), "masks are not a function of epoch"
    fixed = _loader(shuffle=False, dynamic=False)  # evaluation: one mask for every epoch
    assert all(torch.equal(a, b) for a, b in zip(_epoch_targets(fixed, 0), _epoch_targets(fixed, 5), strict=True))


def test_resumed_epoch_sees_the_same_masks():
    loader = _loader(shuffle=True, dynamic=True)
    full = _epoch_targets(loader, 2)
    loader.set_epoch(2, start_batch=2)
    rest = [b["target"] for b in loader]
    assert len(rest) == len(full) - 2
    assert all(torch.equal(a, b) for a, b in zip(full[2:], rest, strict=True))


@pytest.mark.parametrize("length", [2, 5, 12, 40, 127])
def test_noise_mask_density_and_spans(length):
    rng = np.random.default_rng(0)
    mask = random_spans_noise_mask(length, 0.15, 3.0, rng)
    assert mask.shape == (length,) and not mask[0]  # starts with a kept span
    assert mask.sum() == min(max(round(length * 0.15), 1), length - 1)


def test_noise_mask_mean_span_length_over_many_sequences():
    rng = np.random.default_rng(0)
    total_noise = spans = 0
    for _ in range(300):
        m = random_spans_noise_mask(100, 0.15, 3.0, rng)
        total_noise += m.sum()
        spans += int((m[1:] & ~m[:-1]).sum())
    assert abs(total_noise / (300 * 100) - 0.15) < 1e-9
    assert 2.8 < total_noise / spans < 3.2


@pytest.mark.parametrize("seed", range(5))
def test_span_corruption_is_invertible(seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(40, 100, size=int(rng.integers(2, 60))).tolist()
    sentinels = list(range(200, 232))  # ids outside the sentence's range
    mask = random_spans_noise_mask(len(ids), 0.3, 2.0, rng)
    inputs, targets = span_corruption(ids, mask, sentinels)
    n_spans = int(mask[0]) + int((mask[1:] & ~mask[:-1]).sum())
    assert sum(t in sentinels for t in inputs) == n_spans
    assert targets[-1] == sentinels[n_spans]  # the final sentinel closes the targets
    assert len(inputs) + len(targets) == len(ids) + 2 * n_spans + 1
    assert uncorrupt(inputs, targets, sentinels) == ids


def test_span_corruption_paper_example():
    words = ["Thank", "you", "for", "inviting", "me", "to", "your", "party", "last", "week", "."]
    mask = np.array([w in ("for", "inviting", "last") for w in words])
    vocab = {w: i for i, w in enumerate(["<X>", "<Y>", "<Z>", *words])}
    inputs, targets = span_corruption([vocab[w] for w in words], mask, [0, 1, 2])
    names = {i: w for w, i in vocab.items()}
    assert " ".join(names[i] for i in inputs) == "Thank you <X> me to your party <Y> week ."
    assert " ".join(names[i] for i in targets) == "<X> for inviting <Y> last <Z>"


def test_too_few_sentinels_is_an_error():
    with pytest.raises(ConfigError, match="sentinel"):
        span_corruption([5, 6, 7, 8, 9], np.array([0, 1, 0, 1, 0], dtype=bool), [1, 2])
