"""Attention maps: weights collected from every family, the per-layer/per-head PNGs, and `deepkit viz --attention`."""

from __future__ import annotations

import pytest
import torch

from deepkit import create_model
from deepkit.errors import ConfigError
from deepkit.viz.attention import attention_maps, attention_report

TINY = {
    "gpt2": dict(n_layer=2, n_embd=16, n_head=2, vocab_size=40, n_positions=16),
    "bert": dict(num_hidden_layers=2, hidden_size=16, num_attention_heads=2, intermediate_size=20, vocab_size=40),
    "roberta": dict(num_hidden_layers=2, hidden_size=16, num_attention_heads=2, intermediate_size=20, vocab_size=40),
    "deberta": dict(num_hidden_layers=2, hidden_size=16, num_attention_heads=2, intermediate_size=20, vocab_size=40),
    "t5-small": dict(num_layers=2, d_model=16, d_kv=8, d_ff=20, num_heads=2, vocab_size=40),
}


@pytest.mark.parametrize("name", list(TINY))
def test_maps_are_distributions_per_layer_and_head(name):
    model = create_model(name, **TINY[name]).eval()
    ids = torch.randint(3, 40, (2, 6))
    maps = attention_maps(model, ids)
    assert [n for n, _ in maps] == ["layer 1", "layer 2"]
    for _, w in maps:
        assert w.shape == (2, 2, 6, 6)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 6))
    if name == "gpt2":
        assert all((w.triu(1) == 0).all() for _, w in maps)  # causal
    assert model.cfg.attn_impl == "sdpa"  # the fast path is restored


def test_maps_need_a_transformer():
    with pytest.raises(ConfigError, match="need a deepkit Transformer"):
        attention_maps(create_model("mlp", in_features=4), torch.zeros(1, 4))


@pytest.fixture
def bert_with_tokenizer(tmp_path):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    cfg = transformers.BertConfig(**TINY["bert"])
    transformers.BertForMaskedLM(cfg).save_pretrained(tmp_path / "bert")
    vocab = {
        "[PAD]": 0,
        "[UNK]": 1,
        "[CLS]": 2,
        "[SEP]": 3,
        **{w: i + 4 for i, w in enumerate(["the", "cat", "sat", "on", "a", "mat"])},
    }
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    tok.save(str(tmp_path / "bert" / "tokenizer.json"))
    return tmp_path / "bert"


def png_ok(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_report_writes_one_png_per_layer(bert_with_tokenizer, tmp_path):
    files = attention_report(bert_with_tokenizer, "the cat sat on the mat", tmp_path / "plots")
    assert [f.name for f in files] == ["attention_layer01.png", "attention_layer02.png"]
    assert all(png_ok(f) for f in files)


def test_cli_viz_attention(bert_with_tokenizer, tmp_path, run_cli):
    proc = run_cli("viz", str(bert_with_tokenizer), "--attention", "the cat sat", "--out", str(tmp_path / "maps"))
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.split()) == 2 and png_ok(tmp_path / "maps" / "attention_layer02.png")


def test_cli_viz_errors_are_one_line(bert_with_tokenizer, capsys):
    from deepkit.cli import main

    (bert_with_tokenizer / "tokenizer.json").unlink()
    for argv, expected in [
        (["viz", str(bert_with_tokenizer), "--attention", "the cat"], "error: no tokenizer.json in"),
        (["viz", str(bert_with_tokenizer)], "error: viz needs --attention TEXT"),
    ]:
        with pytest.raises(SystemExit) as info:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert info.value.code == 2 and err.startswith(expected) and len(err.splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "viz" in capsys.readouterr().out


def test_report_from_a_deepkit_checkpoint(bert_with_tokenizer, tmp_path):
    from deepkit.train.checkpoint import model_metadata
    from deepkit.weights import atomic_save_safetensors

    model = create_model("gpt2", **TINY["gpt2"])
    ckpt = tmp_path / "ckpt"
    atomic_save_safetensors(model.state_dict(), ckpt / "model.safetensors", model_metadata(model))
    (ckpt / "tokenizer.json").write_bytes((bert_with_tokenizer / "tokenizer.json").read_bytes())
    files = attention_report(ckpt, "the cat sat", tmp_path / "maps")
    assert len(files) == 2 and all(png_ok(f) for f in files)
