"""Hugging Face checkpoint directories: file layouts (sharded, pickle), head changes, tokenizers and bad input."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from deepkit import create_model
from deepkit.errors import CheckpointError, ConfigError
from deepkit.interop import export_hf, is_hf_checkpoint

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

BERT = dict(num_hidden_layers=2, num_attention_heads=2, hidden_size=32, intermediate_size=37, vocab_size=99)


@pytest.fixture
def bert_dir(tmp_path):
    torch.manual_seed(0)
    hf = transformers.BertForMaskedLM(transformers.BertConfig(**BERT)).eval()
    hf.save_pretrained(tmp_path / "bert")
    return tmp_path / "bert", hf


def test_detects_hf_directories(bert_dir, tmp_path):
    path, _ = bert_dir
    assert is_hf_checkpoint(path)
    assert not is_hf_checkpoint(tmp_path)  # no config.json
    assert not is_hf_checkpoint(path / "config.json")


def test_wrong_family_is_named(bert_dir):
    path, _ = bert_dir
    with pytest.raises(CheckpointError, match=r"holds a 'bert' checkpoint, but model 'gpt2' expects 'gpt2'"):
        create_model("gpt2", weights=path)
    with pytest.raises(ConfigError, match="Transformer families only"):
        create_model("mlp", weights=path)


def test_shape_mismatch_names_the_keys(bert_dir):
    path, _ = bert_dir
    with pytest.raises(
        CheckpointError, match=r"shape mismatch.*intermediate\.dense\.weight.*\(37, 32\) vs model \(64, 32\)"
    ):
        create_model("bert", weights=path, intermediate_size=64)


def test_missing_backbone_key_is_named(bert_dir):
    path, _ = bert_dir
    state = load_file(str(path / "model.safetensors"))
    del state["bert.encoder.layer.1.output.dense.weight"]
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"missing keys \['bert\.encoder\.layer\.1\.output\.dense\.weight'\]"):
        create_model("bert", weights=path)


def test_config_json_without_model_type(bert_dir):
    path, _ = bert_dir
    (path / "config.json").write_text(json.dumps({"hidden_size": 32}))
    with pytest.raises(CheckpointError, match="no 'model_type'"):
        create_model("bert", weights=path)


def test_pickle_checkpoint_needs_trust(tmp_path):
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50)).eval()
    path = tmp_path / "gpt2"
    hf.config.save_pretrained(path)
    torch.save(hf.state_dict(), path / "pytorch_model.bin")  # the pre-safetensors layout, lm_head.weight included
    with pytest.raises(CheckpointError, match="refusing to load.*trust_pickle"):
        create_model("gpt2", weights=path)
    model = create_model("gpt2", weights=path, trust_pickle=True).eval()
    ids = torch.randint(0, 50, (2, 6))
    with torch.no_grad():
        assert (model(ids) - hf(ids).logits).abs().max() <= 1e-5


def test_tied_copy_that_differs_is_an_error(tmp_path):
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50))
    path = tmp_path / "gpt2"
    hf.config.save_pretrained(path)
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    state["lm_head.weight"] += 1.0  # a file whose head was trained separately, under a config that says "tied"
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"'lm_head\.weight' differs from 'transformer\.wte\.weight'"):
        create_model("gpt2", weights=path)


def test_sharded_safetensors(tmp_path):
    torch.manual_seed(0)
    hf = transformers.T5ForConditionalGeneration(
        transformers.T5Config(num_layers=2, num_heads=2, d_model=32, d_kv=8, d_ff=37, vocab_size=99)
    ).eval()
    hf.save_pretrained(tmp_path / "t5", max_shard_size="20KB")
    assert (tmp_path / "t5" / "model.safetensors.index.json").is_file()
    # the original T5 release also stores an unused cross-attention position bias: it must be ignored
    extra = {"decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight": torch.zeros(32, 2)}
    save_file(extra, str(tmp_path / "t5" / "extra.safetensors"), metadata={"format": "pt"})
    index = json.loads((tmp_path / "t5" / "model.safetensors.index.json").read_text())
    index["weight_map"].update(dict.fromkeys(extra, "extra.safetensors"))
    (tmp_path / "t5" / "model.safetensors.index.json").write_text(json.dumps(index))
    model = create_model("t5-small", weights=tmp_path / "t5").eval()
    ids, dec = torch.randint(2, 99, (2, 9)), torch.randint(2, 99, (2, 4))
    with torch.no_grad():
        assert (model(ids, dec) - hf(input_ids=ids, decoder_input_ids=dec).logits).abs().max() <= 1e-4


def test_mlm_checkpoint_fine_tunes_as_classifier(bert_dir):
    path, hf = bert_dir
    with pytest.warns(UserWarning) as record:
        clf = create_model("bert", weights=path, head="classification", num_classes=3).eval()
    messages = [str(w.message) for w in record]
    assert any("newly initialised head parameters" in m and "classifier.weight" in m for m in messages)
    assert any("not used by this head" in m and "cls.predictions" in m for m in messages)
    ids = torch.randint(1, 99, (2, 7))
    with torch.no_grad():
        assert clf(ids).shape == (2, 3)
        # the backbone came from the checkpoint
        ref = hf.bert(ids, output_hidden_states=True).last_hidden_state
        assert (clf.forward_features(ids) - ref).abs().max() <= 1e-5


def test_bare_backbone_checkpoint_loads_with_prefix(tmp_path):
    torch.manual_seed(0)
    hf = transformers.RobertaModel(transformers.RobertaConfig(**BERT, pad_token_id=1)).eval()
    hf.save_pretrained(tmp_path / "rb")
    assert not any(k.startswith("roberta.") for k in load_file(str(tmp_path / "rb" / "model.safetensors")))
    model = create_model("roberta", weights=tmp_path / "rb")
    assert model.cfg.head == "none"  # read from config.json's architectures
    export_hf(model, tmp_path / "out")
    assert set(load_file(str(tmp_path / "out" / "model.safetensors"))) == set(hf.state_dict())


def write_tokenizer(path, n_tokens: int) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1, **{f"w{i}": i + 2 for i in range(n_tokens - 2)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path / "tokenizer.json"))


def test_tokenizer_is_loaded_and_exported(bert_dir, tmp_path):
    path, _ = bert_dir
    write_tokenizer(path, 60)
    model = create_model("bert", weights=path)
    assert model.tokenizer.encode("w0 w5 nope").ids == [2, 7, 1]
    export_hf(model, tmp_path / "out")
    assert (tmp_path / "out" / "tokenizer.json").is_file()


def test_tokenizer_larger_than_vocabulary_is_an_error(bert_dir):
    path, _ = bert_dir
    write_tokenizer(path, 150)
    with pytest.raises(CheckpointError, match=r"has 150 tokens but the model's vocab_size is 99"):
        create_model("bert", weights=path)


def test_export_needs_a_transformer(tmp_path):
    with pytest.raises(ConfigError, match="export_hf needs a deepkit Transformer"):
        export_hf(create_model("mlp", in_features=4), tmp_path)


def test_t5_v1_1_file_with_its_own_lm_head(tmp_path):
    """transformers 4 wrote T5 v1.1 as tie_word_embeddings=false with a separate lm_head.weight (no rescaling)."""
    torch.manual_seed(0)
    kw = dict(num_layers=2, num_heads=2, d_model=32, d_kv=8, d_ff=37, vocab_size=99, feed_forward_proj="gated-gelu")
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(**kw)).eval()
    path = tmp_path / "t5"
    hf.save_pretrained(path)
    cfg = json.loads((path / "config.json").read_text())
    cfg.pop("scale_decoder_outputs", None)
    cfg["tie_word_embeddings"] = False
    (path / "config.json").write_text(json.dumps(cfg))
    state = load_file(str(path / "model.safetensors"))
    head = torch.randn(99, 32)
    save_file({**state, "lm_head.weight": head}, str(path / "model.safetensors"), metadata={"format": "pt"})
    model = create_model("t5", weights=path).eval()
    ids, dec = torch.randint(2, 99, (2, 6)), torch.randint(2, 99, (2, 3))
    with torch.no_grad():
        hidden = model.decode(dec, model.encode(ids))
        torch.testing.assert_close(model(ids, dec), hidden @ head.T)  # own head, no d_model**-0.5


@pytest.mark.parametrize(
    "name,kw",
    [
        ("gpt2", dict(n_layer=1, n_embd=16, n_head=2, vocab_size=40, n_positions=16)),
        (
            "deberta",
            dict(num_hidden_layers=1, hidden_size=16, num_attention_heads=2, intermediate_size=20, vocab_size=40),
        ),
        ("t5-small", dict(num_layers=1, d_model=16, d_kv=4, d_ff=20, num_heads=2, vocab_size=40)),
    ],
)
def test_deepkit_checkpoint_round_trip(name, kw, tmp_path):
    """The Trainer's own safetensors checkpoints hold Transformers too (tied weights are stored once)."""
    from deepkit.train.checkpoint import model_metadata
    from deepkit.weights import atomic_save_safetensors

    model = create_model(name, **kw)
    atomic_save_safetensors(model.state_dict(), tmp_path / "model.safetensors", model_metadata(model))
    again = create_model(name, weights=tmp_path / "model.safetensors")
    assert again.cfg == model.cfg
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_unsupported_config_option_is_refused(bert_dir):
    path, _ = bert_dir
    cfg = json.loads((path / "config.json").read_text())
    cfg["position_embedding_type"] = "relative_key"
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"position_embedding_type='relative_key'.*only.*'absolute'"):
        create_model("bert", weights=path)
