"""wav2vec2 (deepkit's own behaviour; parity with transformers is in tests/interop/test_wav2vec2_parity.py): frame
lengths, CTC fine-tuning with a frozen feature encoder, SpecAugment masking in training only, bad input."""

from __future__ import annotations

import pytest
import torch

from deepkit import create_model
from deepkit.errors import ConfigError, ShapeError
from deepkit.interop.wav2vec2 import CTCVocab, greedy_decode
from deepkit.models.wav2vec2 import conv_frame_lengths, conv_input_length, ctc_loss, span_mask

TINY = dict(
    vocab_size=8,
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=24,
    conv_dim=[8, 8],
    conv_kernel=[10, 3],
    conv_stride=[5, 2],
    num_conv_pos_embeddings=4,
    num_conv_pos_embedding_groups=2,
    feat_extract_norm="layer",
    mask_time_length=2,
)
VOCAB = CTCVocab({i: t for i, t in enumerate(["<pad>", "<unk>", "|", "A", "B", "C", "D", "E"])})


def test_frame_lengths_of_the_standard_stack():
    model = create_model("wav2vec2_ctc", num_hidden_layers=1)  # the base conv stack: 20 ms frames, 25 ms window
    assert model.min_input_length == 400
    assert model.frame_lengths(16000) == 49  # one second at 16 kHz
    lengths = torch.tensor([400, 719, 720, 16000])
    assert model.frame_lengths(lengths).tolist() == [1, 1, 2, 49]
    k, s = model.cfg.conv_kernel, model.cfg.conv_stride
    assert all(conv_frame_lengths(conv_input_length(n, k, s), k, s) == n for n in (1, 2, 50))
    assert conv_frame_lengths(conv_input_length(3, k, s) - 1, k, s) == 2  # the fewest samples: one less is a frame less
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 1000)).shape == (1, model.frame_lengths(1000), 32)


def test_ctc_fine_tuning_decreases_the_loss_with_a_frozen_feature_encoder():
    torch.manual_seed(0)
    model = create_model("wav2vec2_ctc", **TINY, freeze_feature_encoder=True)
    frozen = {k: v.clone() for k, v in model.wav2vec2.feature_extractor.state_dict().items()}
    head = model.lm_head.weight.detach().clone()
    g = torch.Generator().manual_seed(1)
    wave = torch.randn(3, 1200, generator=g)
    mask = torch.ones(3, 1200, dtype=torch.long)
    mask[1, 900:] = 0
    mask[2, 700:] = 0
    wave = wave * mask
    texts = ["AB CA", "DEED", "BAD"]
    ids = [VOCAB.encode(t) for t in texts]
    labels = torch.full((3, max(map(len, ids))), -100)
    for i, row in enumerate(ids):
        labels[i, : len(row)] = torch.tensor(row)
    frames = model.frame_lengths(mask.sum(-1))
    assert (frames >= labels.ne(-100).sum(-1)).all()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    losses = []
    for _ in range(12):
        loss = ctc_loss(model(wave, attention_mask=mask), frames, labels, blank=VOCAB.blank_id, reduction="mean")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3, losses
    assert all(not p.requires_grad for p in model.wav2vec2.feature_extractor.parameters())
    for k, v in model.wav2vec2.feature_extractor.state_dict().items():
        assert torch.equal(v, frozen[k]), f"{k} changed although the feature encoder is frozen"
    assert not torch.equal(model.lm_head.weight, head)
    model.eval()
    with torch.no_grad():
        decoded = greedy_decode(model(wave, attention_mask=mask), VOCAB, frames)
    assert len(decoded) == 3 and all(isinstance(t, str) for t in decoded)


def test_ctc_loss_zero_infinity_for_clips_shorter_than_their_transcript():
    logits = torch.randn(2, 4, 8, requires_grad=True)
    labels = torch.tensor([[3, 4, 5, 6, 7, 3], [3, 4, -100, -100, -100, -100]])  # 6 labels cannot fit in 4 frames
    lengths = torch.tensor([4, 4])
    assert torch.isinf(ctc_loss(logits, lengths, labels, zero_infinity=False))
    loss = ctc_loss(logits, lengths, labels, zero_infinity=True)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_spec_augment_masks_only_in_training_and_within_each_length():
    torch.manual_seed(0)
    model = create_model("wav2vec2_ctc", **{**TINY, "mask_time_prob": 0.5, "mask_time_length": 3})
    backbone = model.wav2vec2
    x = torch.zeros(4, 40, 16)
    lengths = [40, 30, 12, 5]
    frame_mask = torch.arange(40)[None] < torch.tensor(lengths)[:, None]
    backbone.eval()
    assert torch.equal(backbone.mask(x, frame_mask), x)
    backbone.train()
    out = backbone.mask(x, frame_mask)
    masked = (out == backbone.masked_spec_embed).all(-1)  # (B, T)
    assert masked[0].sum() >= 3 * 2  # at least mask_time_min_masks spans of 3 frames
    for row, n in enumerate(lengths):
        assert not masked[row, n:].any(), f"row {row} masked beyond its {n} frames"
    assert masked[:3].float().mean() > 0.2
    m = span_mask([10], 10, prob=0.0, span=4, min_spans=0, device="cpu")
    assert not m.any()


def test_bad_input_is_named():
    model = create_model("wav2vec2_ctc", **TINY)
    with pytest.raises(
        ShapeError, match=r"\(batch, samples\) float waveform, got torch.float32 of shape \(1, 2, 400\)"
    ):
        model(torch.zeros(1, 2, 400))
    with pytest.raises(ShapeError, match="shorter than the model's receptive field"):
        model(torch.zeros(2, 300), attention_mask=torch.tensor([[1] * 300, [1] * 10 + [0] * 290]))
    with pytest.raises(ShapeError, match="attention_mask must have the waveform's shape"):
        model(torch.zeros(2, 300), attention_mask=torch.ones(2, 299))
    with pytest.raises(ConfigError, match="conv_dim, conv_kernel and conv_stride must have the same"):
        create_model("wav2vec2_ctc", **{**TINY, "conv_kernel": [10]})
    with pytest.raises(ConfigError, match="not divisible by num_conv_pos_embedding_groups"):
        create_model("wav2vec2_ctc", **{**TINY, "num_conv_pos_embedding_groups": 3})
