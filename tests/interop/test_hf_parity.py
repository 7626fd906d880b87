"""Parity with Hugging Face ``transformers``: small random models are saved with ``save_pretrained``, loaded with
``create_model(name, weights=dir)``, and must give the same last hidden states and logits (max |Δ| ≤ 1e-4, fp32);
``export_hf`` output must load back into ``transformers`` with the same outputs. Nothing is downloaded.
"""

from __future__ import annotations

import pytest
import torch

from deepkit import create_model, list_models
from deepkit.interop import export_hf
from deepkit.interop.hf import TIED_KEYS, config_to_hf
from deepkit.models.registry import get_entry
from deepkit.models.token_model import TokenModel

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

TOL = 1e-4
BERTISH = dict(num_hidden_layers=2, num_attention_heads=2, hidden_size=32, intermediate_size=37, vocab_size=99)
DEBERTA_V3 = dict(
    BERTISH,
    max_position_embeddings=64,
    relative_attention=True,
    position_buckets=8,  # smaller than the sequence, so the log-bucket path is exercised
    norm_rel_ebd="layer_norm",
    share_att_key=True,
    pos_att_type="p2c|c2p",  # the string form older configs use
    position_biased_input=False,
    max_relative_positions=-1,
    type_vocab_size=0,
)
# (deepkit family, transformers class, config class, config kwargs)
CASES = {
    "gpt2-2l": ("gpt2", "GPT2LMHeadModel", "GPT2Config", dict(n_layer=2, n_head=2, n_embd=32, vocab_size=99)),
    "gpt2-3l-untied-gelu": (
        "gpt2-medium",  # any variant of the family: the checkpoint's config sets the size
        "GPT2LMHeadModel",
        "GPT2Config",
        dict(n_layer=3, n_head=4, n_embd=48, vocab_size=150, activation_function="gelu", tie_word_embeddings=False),
    ),
    "gpt2-bare": ("gpt2", "GPT2Model", "GPT2Config", dict(n_layer=1, n_head=4, n_embd=32, vocab_size=77)),
    "bert-mlm": ("bert", "BertForMaskedLM", "BertConfig", BERTISH),
    "bert-cls-3l": (
        "bert-large",
        "BertForSequenceClassification",
        "BertConfig",
        dict(BERTISH, num_hidden_layers=3, num_attention_heads=4, vocab_size=120, num_labels=3),
    ),
    "bert-bare": ("bert", "BertModel", "BertConfig", dict(BERTISH, hidden_act="gelu_new")),
    "roberta-mlm": (
        "roberta",
        "RobertaForMaskedLM",
        "RobertaConfig",
        dict(BERTISH, pad_token_id=1, type_vocab_size=1, max_position_embeddings=40),
    ),
    "roberta-cls": (
        "roberta",
        "RobertaForSequenceClassification",
        "RobertaConfig",
        dict(BERTISH, num_hidden_layers=3, num_attention_heads=4, pad_token_id=1, num_labels=4),
    ),
    "deberta-v3-mlm": ("deberta", "DebertaV2ForMaskedLM", "DebertaV2Config", DEBERTA_V3),
    "deberta-v3-mlm-new-head": (
        "deberta",
        "DebertaV2ForMaskedLM",
        "DebertaV2Config",
        dict(DEBERTA_V3, legacy=False, num_hidden_layers=3, num_attention_heads=4, vocab_size=130),
    ),
    "deberta-v2-style": (  # no shared keys, no buckets, conv layer, absolute positions, token types, embed proj
        "deberta-v2-xlarge",
        "DebertaV2ForMaskedLM",
        "DebertaV2Config",
        dict(
            DEBERTA_V3,
            share_att_key=False,
            position_buckets=-1,
            max_relative_positions=6,
            norm_rel_ebd="none",
            position_biased_input=True,
            type_vocab_size=2,
            conv_kernel_size=3,
            conv_act="gelu",
            embedding_size=24,
        ),
    ),
    "deberta-cls": ("deberta", "DebertaV2ForSequenceClassification", "DebertaV2Config", dict(DEBERTA_V3, num_labels=3)),
    "bert-token": ("bert", "BertForTokenClassification", "BertConfig", dict(BERTISH, num_labels=5)),
    "bert-qa": ("bert", "BertForQuestionAnswering", "BertConfig", BERTISH),
    "roberta-token": (
        "roberta",
        "RobertaForTokenClassification",
        "RobertaConfig",
        dict(BERTISH, pad_token_id=1, type_vocab_size=1, max_position_embeddings=40, num_labels=3),
    ),
    "roberta-qa": (
        "roberta",
        "RobertaForQuestionAnswering",
        "RobertaConfig",
        dict(BERTISH, pad_token_id=1, type_vocab_size=1, max_position_embeddings=40),
    ),
    "deberta-token": ("deberta", "DebertaV2ForTokenClassification", "DebertaV2Config", dict(DEBERTA_V3, num_labels=4)),
    "deberta-qa": ("deberta", "DebertaV2ForQuestionAnswering", "DebertaV2Config", DEBERTA_V3),
    "t5-relu": (
        "t5-small",
        "T5ForConditionalGeneration",
        "T5Config",
        dict(num_layers=2, num_heads=2, d_model=32, d_kv=8, d_ff=37, vocab_size=99),
    ),
    "t5-v1_1-unscaled": (  # transformers 5's T5 v1.1: tied embeddings, decoder output not rescaled
        "t5",
        "T5ForConditionalGeneration",
        "T5Config",
        dict(
            num_layers=2,
            num_heads=2,
            d_model=32,
            d_kv=8,
            d_ff=37,
            vocab_size=99,
            feed_forward_proj="gated-gelu",
            tie_word_embeddings=False,
        ),
    ),
    "t5-gated-asym": (
        "t5",
        "T5ForConditionalGeneration",
        "T5Config",
        dict(
            num_layers=3,
            num_decoder_layers=2,
            num_heads=4,
            d_model=32,
            d_kv=4,  # inner size 16 != d_model
            d_ff=40,
            vocab_size=120,
            feed_forward_proj="gated-gelu",
            relative_attention_num_buckets=8,
            relative_attention_max_distance=10,
        ),
    ),
}


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Replace the tiny-std initialisation with O(0.1) weights, so masking or layout mistakes show up clearly."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied parameters are the same object: they stay tied
            is_norm_scale = "norm" in name.lower() and name.endswith("weight")
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if is_norm_scale else 0.0))


def build_hf(case: str, tmp_path):
    _, cls_name, cfg_name, kw = CASES[case]
    torch.manual_seed(0)
    hf = getattr(transformers, cls_name)(getattr(transformers, cfg_name)(**kw)).eval()
    randomize(hf, seed=len(case))
    hf.save_pretrained(tmp_path / "hf")
    return hf


def make_inputs(model, padded: bool, batch: int = 3, length: int = 12) -> dict[str, torch.Tensor]:
    cfg = model.cfg
    g = torch.Generator().manual_seed(1)
    pad = cfg.pad_token_id if hasattr(cfg, "pad_token_id") else 0
    low = 3  # avoid special ids (RoBERTa's pad is 1)
    ids = torch.randint(low, cfg.vocab_size, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    if padded:
        mask[0, length - 4 :] = 0
        mask[2, length - 1 :] = 0
        ids[mask == 0] = pad
    inputs = {"input_ids": ids, "attention_mask": mask}
    if model.hf_model_type == "t5":
        dec = torch.randint(low, cfg.vocab_size, (batch, 7), generator=g)
        dmask = torch.ones_like(dec)
        if padded:
            dmask[1, 5:] = 0
            dec[dmask == 0] = pad
        inputs.update(decoder_input_ids=dec, decoder_attention_mask=dmask)
    return inputs


def ours_outputs(model, inputs):
    """(last hidden states, logits) of a deepkit model, and the mask of positions that count."""
    if model.hf_model_type == "t5":
        enc = model.encode(inputs["input_ids"], inputs["attention_mask"])
        dec = model.decode(inputs["decoder_input_ids"], enc, inputs["attention_mask"], inputs["decoder_attention_mask"])
        return {"encoder": enc, "decoder": dec, "logits": model.forward_head(dec)}
    hidden = model.forward_features(inputs["input_ids"], inputs["attention_mask"])
    return {"hidden": hidden, "logits": model.forward_head(hidden)}


def hf_outputs(hf, inputs, t5: bool):
    out = hf(**inputs, output_hidden_states=True)
    if t5:
        return {
            "encoder": out.encoder_last_hidden_state,
            "decoder": out.decoder_hidden_states[-1],
            "logits": out.logits,
        }
    if hasattr(out, "start_logits"):  # question answering: ours stacks (start, end) on the last axis
        return {"hidden": out.hidden_states[-1], "logits": torch.stack([out.start_logits, out.end_logits], -1)}
    if hasattr(out, "logits"):
        return {"hidden": out.hidden_states[-1], "logits": out.logits}
    return {"hidden": out.last_hidden_state, "logits": out.last_hidden_state}


def assert_parity(ours: dict, ref: dict, inputs: dict) -> None:
    valid = {
        "encoder": inputs["attention_mask"].bool(),
        "hidden": inputs["attention_mask"].bool(),
        "decoder": inputs.get("decoder_attention_mask", inputs["attention_mask"]).bool(),
    }
    valid["logits"] = valid["decoder"] if "decoder" in ours else valid["hidden"]
    for key, a in ours.items():
        b = ref[key]
        assert a.shape == b.shape, f"{key}: {tuple(a.shape)} vs {tuple(b.shape)}"
        if a.ndim == 3:  # per-position outputs: padding positions are undefined, compare the real tokens
            a, b = a[valid[key]], b[valid[key]]
        delta = (a - b).abs().max().item()
        assert delta <= TOL, f"{key}: max |Δ| = {delta:.2e} > {TOL}"
        assert b.abs().max().item() > 1e-2, f"{key}: reference outputs are ~0, the comparison would prove nothing"


@pytest.mark.parametrize("padded", [False, True], ids=["no-padding", "padding"])
@pytest.mark.parametrize("case", list(CASES))
def test_load_hf_checkpoint_matches_transformers(case, padded, tmp_path):
    hf = build_hf(case, tmp_path)
    model = create_model(CASES[case][0], weights=tmp_path / "hf").eval()
    assert type(model).hf_architectures[model.cfg.head] == CASES[case][1]
    inputs = make_inputs(model, padded)
    with torch.no_grad():
        assert_parity(ours_outputs(model, inputs), hf_outputs(hf, inputs, model.hf_model_type == "t5"), inputs)


@pytest.mark.parametrize(
    "case",
    [
        "gpt2-3l-untied-gelu",
        "bert-cls-3l",
        "roberta-mlm",
        "deberta-v2-style",
        "t5-gated-asym",
        "bert-token",
        "roberta-qa",
        "deberta-token",
    ],
)
def test_export_hf_round_trip(case, tmp_path):
    build_hf(case, tmp_path)
    model = create_model(CASES[case][0], weights=tmp_path / "hf").eval()
    export_hf(model, tmp_path / "exported")
    back = getattr(transformers, CASES[case][1]).from_pretrained(tmp_path / "exported").eval()
    inputs = make_inputs(model, padded=True)
    with torch.no_grad():
        assert_parity(ours_outputs(model, inputs), hf_outputs(back, inputs, model.hf_model_type == "t5"), inputs)
    again = create_model(CASES[case][0], weights=tmp_path / "exported").eval()  # and back into deepkit, exactly
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_export_of_freshly_built_model_loads_in_transformers(tmp_path):
    torch.manual_seed(0)
    model = create_model("gpt2", n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=16).eval()
    randomize(model, 3)
    export_hf(model, tmp_path)
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert back.config.n_positions == 16 and back.config.vocab_size == 64
    ids = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        assert (model(ids) - back(ids).logits).abs().max() <= TOL


TOKEN_MODELS = [n for n in list_models() if issubclass(get_entry(n).cls, TokenModel)]


@pytest.mark.parametrize("name", TOKEN_MODELS)
def test_named_sizes_build_the_same_architecture_as_transformers(name):
    """Every registered size, at full reference size (on the meta device: no memory), has transformers' parameter
    names and count for the same config.json."""
    with torch.device("meta"):
        model = create_model(name)
        hf_cfg = config_to_hf(model)
        arch = hf_cfg.pop("architectures")[0]
        hf = getattr(transformers, arch)(transformers.AutoConfig.for_model(**hf_cfg))
    assert sum(p.numel() for p in model.parameters()) == hf.num_parameters()
    tied = set(hf.state_dict()) - set(model.state_dict())
    assert tied <= TIED_KEYS.keys(), f"keys only transformers has: {sorted(tied - TIED_KEYS.keys())}"
    assert set(model.state_dict()) <= set(hf.state_dict())


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,arch",
    [
        ("gpt2", "GPT2LMHeadModel"),
        ("bert", "BertForMaskedLM"),
        ("roberta", "RobertaForMaskedLM"),
        ("deberta", "DebertaV2ForMaskedLM"),
        ("t5-small", "T5ForConditionalGeneration"),
    ],
)
def test_parity_at_reference_size(name, arch, tmp_path):
    """The same check at the full reference size (random weights: nothing is downloaded), about 10 s each."""
    torch.manual_seed(0)
    with torch.device("meta"):
        hf_cfg = config_to_hf(create_model(name))
    hf_cfg.pop("architectures")
    hf = getattr(transformers, arch)(transformers.AutoConfig.for_model(**hf_cfg)).eval()
    hf.save_pretrained(tmp_path / "hf")
    model = create_model(name, weights=tmp_path / "hf").eval()
    inputs = make_inputs(model, padded=True, batch=3, length=64)
    with torch.no_grad():
        assert_parity(ours_outputs(model, inputs), hf_outputs(hf, inputs, model.hf_model_type == "t5"), inputs)
