"""wav2vec2 against Hugging Face ``transformers``: tiny random ``Wav2Vec2ForCTC`` models (both conv-stack norms, both
Transformer layouts, conv bias on/off, several conv stacks and position-conv sizes) load into deepkit's model
unchanged and give the same logits (max |Δ| ≤ 1e-4, fp32, eval mode) on padded batches with an attention mask and
on unpadded batches without one. All frames are compared, padded ones included: ``transformers`` computes them
deterministically (padded frames are zeroed before the position conv and masked as attention keys) and so does
deepkit. Checkpoint directories (``save_pretrained``: config, safetensors, vocabulary, feature extractor) load with
``create_model(..., weights=dir)``, transcribe to the strings ``transformers``' tokenizer decodes, and export back.
Nothing is downloaded.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from deepkit import create_model
from deepkit.config import to_dict
from deepkit.errors import CheckpointError, DataError
from deepkit.interop import export_hf
from deepkit.interop.wav2vec2 import CTCVocab, greedy_decode, load_wav2vec2, transcribe
from deepkit.models.wav2vec2 import DEEPKIT_ONLY, ctc_loss

transformers = pytest.importorskip("transformers", reason="transformers is needed for the parity tests")
transformers.logging.set_verbosity_error()

TOL = 1e-4
TINY = dict(vocab_size=11, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24)
CASES = {
    # base layout: group-norm first conv, no conv bias, post-LN encoder, even position kernel (one frame trimmed)
    "base-group-postln": dict(
        TINY, conv_dim=[8, 8, 12], conv_kernel=[10, 3, 3], conv_stride=[5, 2, 2], num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2,
    ),
    # large-lv60 / XLS-R layout: layer-norm conv stack with bias, pre-LN encoder, odd position kernel
    "large-layer-stable": dict(
        TINY, feat_extract_norm="layer", conv_bias=True, do_stable_layer_norm=True, conv_dim=[8, 12],
        conv_kernel=[10, 4], conv_stride=[5, 3], num_conv_pos_embeddings=5, num_conv_pos_embedding_groups=4,
    ),
    # mixed: group norm with a pre-LN encoder, conv bias, other activations, four conv layers
    "group-stable-bias": dict(
        TINY, conv_bias=True, do_stable_layer_norm=True, conv_dim=[6, 6, 8, 8], conv_kernel=[8, 4, 2, 2],
        conv_stride=[4, 2, 2, 1], num_conv_pos_embeddings=6, num_conv_pos_embedding_groups=8,
        feat_extract_activation="relu", hidden_act="gelu_new",
    ),
    # layer norm with a post-LN encoder, three layers, four heads, no masked_spec_embed (no masking configured)
    "layer-postln-nomask": dict(
        TINY, feat_extract_norm="layer", num_hidden_layers=3, num_attention_heads=4, conv_dim=[16, 16],
        conv_kernel=[5, 5], conv_stride=[3, 2], num_conv_pos_embeddings=3, num_conv_pos_embedding_groups=1,
        mask_time_prob=0.0,
    ),
}  # fmt: skip
VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "A", "B", "E", "O", "T", "'"]  # 11 = TINY's vocab_size


def randomize(model: torch.nn.Module, seed: int) -> None:
    """O(0.1) weights (norm scales around 1) instead of the small initialisation, so layout mistakes show up."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = ("norm" in name and name.endswith("weight")) or name.endswith("original0")
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if scale else 0.0))


def hf_model(case: str, seed: int = 0):
    torch.manual_seed(seed)
    hf = transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(**CASES[case])).eval()
    randomize(hf, seed=len(case))
    return hf


def padded_batch(model, lengths=(1, 0.8, 0.55)):
    """A zero-padded batch: the longest row has 9 frames, the others fewer (right padding, mask 1 = sample)."""
    n = model.min_input_length + 8 * int(torch.tensor(model.cfg.conv_stride).prod())
    g = torch.Generator().manual_seed(3)
    x = torch.randn(len(lengths), n, generator=g)
    mask = torch.zeros(len(lengths), n, dtype=torch.long)
    for i, f in enumerate(lengths):
        mask[i, : int(n * f)] = 1
    return x * mask, mask


@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_transformers(case):
    hf = hf_model(case)
    ours = create_model("wav2vec2_ctc", **CASES[case]).eval()
    assert list(ours.state_dict()) == list(hf.state_dict())  # the same names, in the same order
    ours.load_state_dict(hf.state_dict())  # unchanged
    x, mask = padded_batch(ours)
    with torch.no_grad():
        want, got = hf(x, attention_mask=mask).logits, ours(x, attention_mask=mask)
        want_nomask, got_nomask = hf(x).logits, ours(x)
    assert got.shape == want.shape == (3, 9, 11)
    assert (got - want).abs().max() <= TOL, f"{case} padded: max |Δ| {(got - want).abs().max():.2e}"
    assert (got_nomask - want_nomask).abs().max() <= TOL, f"{case} unmasked: {(got_nomask - want_nomask).abs().max()}"
    assert (want - want_nomask).abs().max() > 1e-3  # the mask matters for this batch, so the check above can fail
    # frame lengths are transformers' (the CTC input lengths)
    lengths = mask.sum(-1)
    torch.testing.assert_close(ours.frame_lengths(lengths), hf._get_feat_extract_output_lengths(lengths))


def test_padded_rows_equal_unpadded_runs_for_layer_norm_models():
    """With per-frame layer norm in the conv stack, the valid frames of a padded row equal the row run alone (the
    mask is applied correctly); group-norm models normalise over the padded length, as transformers' do."""
    ours = create_model("wav2vec2_ctc", **CASES["large-layer-stable"]).eval()
    randomize(ours, seed=5)
    x, mask = padded_batch(ours)
    with torch.no_grad():
        batch = ours(x, attention_mask=mask)
        for i, n in enumerate(mask.sum(-1).tolist()):
            alone = ours(x[i : i + 1, :n])
            frames = int(ours.frame_lengths(n))
            assert alone.shape[1] == frames
            torch.testing.assert_close(batch[i, :frames], alone[0], atol=1e-5, rtol=0)


@pytest.fixture
def checkpoint_dir(tmp_path):
    """What a user has after fine-tuning with transformers: model, tokenizer and feature extractor, saved."""
    hf = hf_model("base-group-postln", seed=1)
    with torch.no_grad():  # a confident, varied head, so decoded strings are not all blanks
        hf.lm_head.weight.mul_(30)
    hf.save_pretrained(tmp_path / "ckpt")
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(VOCAB)}))
    tok = transformers.Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"))
    fe = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)
    transformers.Wav2Vec2Processor(feature_extractor=fe, tokenizer=tok).save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt", hf, tok, fe


def test_checkpoint_directory_transcribes_like_transformers(checkpoint_dir):
    path, hf, tok, fe = checkpoint_dir
    model = create_model("wav2vec2_ctc", weights=path).eval()  # the registry reads HF directories
    assert model.vocab.blank_id == 0 and model.preprocessor["do_normalize"]
    g = torch.Generator().manual_seed(7)
    waves = [torch.randn(n, generator=g) * 0.3 + 0.1 for n in (3000, 4410)]
    texts = transcribe(path, waves)
    for wave, text in zip(waves, texts, strict=True):
        inputs = fe(wave.numpy(), sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            want = hf(inputs.input_values).logits
            got = model(inputs.input_values)
        assert (got - want).abs().max() <= TOL
        assert text == tok.batch_decode(want.argmax(-1))[0]
        assert text == greedy_decode(got, model.vocab)[0]
    assert any(len(t) >= 3 for t in texts), texts  # the comparison is not between empty strings
    assert transcribe(model, waves[0].numpy()) == texts[0]  # a model, and a numpy array, work too
    with pytest.raises(DataError, match="8000 Hz; this checkpoint expects 16000 Hz"):
        transcribe(model, waves[0], sample_rate=8000)


def test_vocab_decodes_and_encodes_like_the_tokenizer(checkpoint_dir):
    path, _, tok, _ = checkpoint_dir
    vocab = CTCVocab.from_dir(path)
    g = torch.Generator().manual_seed(0)
    for _ in range(50):  # repeats, blanks, delimiters and special tokens in every mix
        ids = torch.randint(0, len(VOCAB), (int(torch.randint(0, 30, (1,), generator=g)),), generator=g).tolist()
        assert vocab.decode(ids) == tok.decode(ids), ids
    assert vocab.encode("BOAT TO BE") == tok("BOAT TO BE").input_ids
    with pytest.raises(DataError, match=r"outside the CTC vocabulary: \['X', 'Z'\]"):
        vocab.encode("ZAX")


def test_old_weight_norm_names_and_pickle_weights_load(checkpoint_dir, tmp_path):
    """Checkpoints saved with torch's old weight_norm (weight_g / weight_v), and as pytorch_model.bin."""
    path, hf, _, _ = checkpoint_dir
    state = load_file(str(path / "model.safetensors"))
    renames = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}
    old = {}
    for k, v in state.items():
        for new_name, old_name in renames.items():
            k = k.replace(new_name, old_name)
        old[k] = v
    assert any(k.endswith("weight_g") for k in old)
    x = torch.randn(2, 2000)
    with torch.no_grad():
        want = hf(x).logits
    for name, write in (("safe", lambda d: save_file(old, str(d / "model.safetensors"))),
                        ("bin", lambda d: torch.save(old, d / "pytorch_model.bin"))):  # fmt: skip
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text((path / "config.json").read_text())
        write(d)
        model = load_wav2vec2(d, trust_pickle=True).eval()
        with torch.no_grad():
            assert (model(x) - want).abs().max() <= TOL
        assert model.vocab is None  # no vocab.json in this directory
        with pytest.raises(CheckpointError, match="vocab.json"):
            transcribe(model, x[0])


def test_pretrained_only_checkpoint_gets_a_new_ctc_head(tmp_path):
    """A Wav2Vec2ForPreTraining directory (as published before fine-tuning) + the user's vocabulary: the encoder
    loads, the quantizer is dropped, the CTC head is new and sized by vocab.json — both said in warnings."""
    torch.manual_seed(0)
    cfg = transformers.Wav2Vec2Config(**CASES["large-layer-stable"])
    pre = transformers.Wav2Vec2ForPreTraining(cfg).eval()
    pre.save_pretrained(tmp_path / "pre")
    vocab = CTCVocab({i: t for i, t in enumerate(VOCAB[:8])})
    vocab.save(tmp_path / "pre")
    with pytest.warns(UserWarning) as record:
        model = create_model("wav2vec2_ctc", weights=tmp_path / "pre", freeze_feature_encoder=True).eval()
    messages = [str(w.message) for w in record]
    assert any("newly initialised head parameters ['lm_head.weight', 'lm_head.bias']" in m for m in messages)
    assert any("not used by this head" in m and "quantizer.codevectors" in m for m in messages)
    assert model.cfg.vocab_size == 8 and model.lm_head.out_features == 8
    assert not any(p.requires_grad for p in model.wav2vec2.feature_extractor.parameters())
    x = torch.randn(2, 1500)
    with torch.no_grad():
        torch.testing.assert_close(model.wav2vec2(x), pre.wav2vec2(x).last_hidden_state, atol=TOL, rtol=0)


def test_unsupported_config_is_named(checkpoint_dir, tmp_path):
    path, _, _, _ = checkpoint_dir
    cfg = json.loads((path / "config.json").read_text())
    for key, value in (("add_adapter", True), ("feat_extract_norm", "batch"), ("hidden_act", "mish")):
        d = tmp_path / key
        d.mkdir()
        (d / "config.json").write_text(json.dumps({**cfg, key: value}))
        (d / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes())
        with pytest.raises(CheckpointError, match=f"config.json sets {key}={value!r}"):
            create_model("wav2vec2_ctc", weights=d)
    with pytest.raises(CheckpointError, match="holds a 'wav2vec2' checkpoint, but model 'bert' expects 'bert'"):
        create_model("bert", weights=path)


def test_export_loads_back_into_transformers(checkpoint_dir, tmp_path):
    path, hf, _, _ = checkpoint_dir
    model = load_wav2vec2(path).eval()
    export_hf(model, tmp_path / "out")
    back = transformers.Wav2Vec2ForCTC.from_pretrained(tmp_path / "out").eval()
    tok = transformers.Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "out")
    x = torch.randn(1, 2500)
    with torch.no_grad():
        assert (back(x).logits - hf(x).logits).abs().max() <= TOL
    ids = back(x).logits.argmax(-1)[0].tolist()
    assert tok.decode(ids) == model.vocab.decode(ids)
    again = load_wav2vec2(tmp_path / "out")
    assert again.preprocessor == model.preprocessor and again.vocab.tokens == model.vocab.tokens


def test_ctc_loss_matches_transformers():
    """deepkit's ctc_loss on deepkit's frame lengths equals Wav2Vec2ForCTC's loss (blank = pad, labels -100 padded,
    zero_infinity for a row whose transcript is longer than its frames)."""
    kw = dict(CASES["large-layer-stable"], ctc_loss_reduction="mean", ctc_zero_infinity=True)
    torch.manual_seed(0)
    hf = transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(**kw)).eval()
    ours = create_model("wav2vec2_ctc", **kw).eval()
    ours.load_state_dict(hf.state_dict())
    x, mask = padded_batch(ours)
    pad = [-100] * 5
    labels = torch.tensor([[5, 6, 6, 4, 7, *pad], [8, 9, *pad, -100, -100, -100], [5, 6] * 5])
    frames = ours.frame_lengths(mask.sum(-1))
    assert frames[2] < 10  # the last row has more labels than frames: its loss is inf, zeroed
    with torch.no_grad():
        want = hf(x, attention_mask=mask, labels=labels).loss
        got = ctc_loss(ours(x, attention_mask=mask), frames, labels, blank=0, reduction="mean", zero_infinity=True)
    assert torch.isfinite(got) and abs(float(got) - float(want)) <= TOL * max(1.0, abs(float(want)))


@pytest.mark.parametrize("name", ["wav2vec2_ctc", "wav2vec2_large_ctc"])
def test_named_sizes_have_the_reference_architecture(name):
    """The registered sizes, at full size (on the meta device: no memory), have transformers' parameter names and
    shapes for the same config (base: 94.4M parameters with a 32-character head, as wav2vec2-base-960h)."""
    with torch.device("meta"):
        ours = create_model(name)
        cfg = {k: v for k, v in to_dict(ours.cfg).items() if k not in DEEPKIT_ONLY}
        hf = transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(**cfg))
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in hf.state_dict().items()}
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in hf.parameters())
    if name == "wav2vec2_ctc":
        assert round(count / 1e6, 1) == 94.4
