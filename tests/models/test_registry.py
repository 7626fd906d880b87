"""Model registry: every registered model builds, runs forward/backward, and config mistakes are ConfigErrors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepkit import create_model, list_models, register_model
from deepkit.errors import ConfigError, ShapeError
from deepkit.models import Classifier, registry
from deepkit.models.mlp import MLP, MLPConfig
from deepkit.models.token_model import TokenModel
from deepkit.nn import get_act, get_norm

# one input that fits each model: (batch shape, config overrides)
INPUTS = {
    "mlp": ((4, 1, 8, 8), {"in_features": 64}),
    "lenet5": ((4, 1, 28, 28), {}),
    "simple_cnn": ((4, 1, 16, 16), {}),
    # torchvision-compatible families on reduced inputs (32 px; AlexNet needs ≥ 63 px). AlexNet/VGG also get
    # narrower FC layers (hidden=256): their 4096-wide FCs hold ~100M parameters and dominate the time; the
    # reference sizes are checked key by key in test_vision_models.py.
    "alexnet": ((2, 3, 64, 64), {"hidden": 256}),
    "vgg11": ((2, 3, 32, 32), {"hidden": 256}),
    "vgg11_bn": ((2, 3, 32, 32), {"hidden": 256}),
    "vgg16": ((2, 3, 32, 32), {"hidden": 256}),
    "vgg16_bn": ((2, 3, 32, 32), {"hidden": 256}),
    "resnet18": ((2, 3, 32, 32), {}),
    "resnet34": ((2, 3, 32, 32), {}),
    "resnet50": ((2, 3, 32, 32), {}),
    "resnet20": ((4, 3, 32, 32), {}),
    "resnet32": ((4, 3, 28, 28), {}),
    "resnet56": ((4, 3, 32, 32), {}),
    # recurrent models (issue 4): token ids or real-valued steps, reduced sizes to keep the smoke test fast
    **{
        name: (lambda: torch.randint(1, 50, (4, 9)), {"vocab_size": 50, "hidden_size": 16, "embed_dim": 8})
        for name in ("rnn_classifier", "lstm_classifier", "gru_classifier", "bilstm_classifier")
    },
    "lstm_forecaster": ((4, 12, 1), {"hidden_size": 16}),
    "gru_forecaster": ((4, 12, 1), {"hidden_size": 16}),
    # generative models (not classifiers): images in for autoencoders, noise z in for GANs
    "autoencoder": ((4, 1, 28, 28), {}),
    "conv_autoencoder": ((4, 1, 28, 28), {}),
    "vae": ((4, 1, 28, 28), {}),
    "conv_vae": ((4, 1, 28, 28), {}),
    "dcgan": ((4, 100), {}),
    "cdcgan": ((4, 100), {}),
}


# Transformers (token-id inputs) are built at their reference size by default; the smoke test shrinks every variant
# of a family to a tiny width/depth (the reference sizes are checked in tests/models/test_<family>.py)
TOKEN_MODELS = [n for n in list_models() if issubclass(registry.get_entry(n).cls, TokenModel)]
TINY = {
    "GPT2Config": dict(n_layer=2, n_embd=32, n_head=2, vocab_size=101, n_positions=32),
    "BertConfig": dict(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=48, vocab_size=101
    ),
    "RobertaConfig": dict(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=48, vocab_size=101
    ),
    "DebertaConfig": dict(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=48, vocab_size=101
    ),
    "T5Config": dict(num_layers=2, d_model=32, d_kv=8, d_ff=48, num_heads=2, vocab_size=101),
}

# models whose output is not one row of num_classes values per sample: (inputs factory, config overrides,
# expected output shape); they get the forward/backward smoke test, not the classifier-interface tests
OTHER_INPUTS = {
    **{
        name: (
            lambda: (torch.randint(1, 30, (3, 7)),),
            {"vocab_size": 30, "hidden_size": 16, "embed_dim": 8},
            (3, 7, 30),
        )
        for name in ("lstm_lm", "gru_lm", "rnn_lm", "char_lstm_lm")
    },
    "bilstm_tagger": (lambda: (torch.randint(1, 30, (3, 7)),), {"vocab_size": 30, "hidden_size": 16}, (3, 7, 17)),
    **{
        name: (
            lambda: (torch.randint(4, 30, (3, 6)), torch.tensor([6, 4, 2]), torch.randint(4, 20, (3, 5))),
            {"src_vocab_size": 30, "tgt_vocab_size": 20, "hidden_size": 16, "embed_dim": 8},
            (3, 5, 20),
        )
        for name in ("seq2seq_bahdanau", "seq2seq_luong")
    },
    # word2vec returns (positive (B,), negative (B, K)) scores
    "word2vec_skipgram": (
        lambda: (torch.randint(4, 30, (5,)), torch.randint(4, 30, (5,)), torch.randint(4, 30, (5, 3))),
        {"vocab_size": 30, "embed_dim": 8},
        ((5,), (5, 3)),
    ),
    "word2vec_cbow": (
        lambda: (torch.randint(4, 30, (5,)), torch.randint(0, 30, (5, 4)), torch.randint(4, 30, (5, 3))),
        {"vocab_size": 30, "embed_dim": 8},
        ((5,), (5, 3)),
    ),
}
# generative models (autoencoders, VAEs, GANs) take INPUTS but have no classifier head
OTHERS = [
    n
    for n in list_models()
    if n in INPUTS and n not in OTHER_INPUTS and not issubclass(registry.get_entry(n).cls, Classifier)
]
CLASSIFIERS = [n for n in list_models() if n not in OTHER_INPUTS and n not in TOKEN_MODELS and n not in OTHERS]


def build(name: str, **overrides) -> tuple[nn.Module, torch.Tensor]:
    if name not in INPUTS:
        pytest.fail(f"model '{name}' was registered but tests/models/test_registry.py has no input shape for it")
    shape, kw = INPUTS[name]
    torch.manual_seed(0)
    x = shape() if callable(shape) else torch.randn(shape)
    return create_model(name, **{**kw, **overrides}), x


def test_list_models_has_the_builtin_families():
    names = list_models()
    assert {"mlp", "lenet5", "simple_cnn"} <= set(names)
    assert names == sorted(names)


@pytest.mark.parametrize("name", sorted(OTHER_INPUTS))
def test_non_classifier_forward_backward(name):
    make, kw, expected = OTHER_INPUTS[name]
    torch.manual_seed(0)
    model = create_model(name, **kw)
    assert model.model_name == name
    torch.manual_seed(1)
    for p in model.parameters():  # word2vec starts its output vectors at zero: perturb so every gradient is nonzero
        p.data.add_(0.01 * torch.randn_like(p))
    out = model(*make())
    outs, shapes = (out, expected) if isinstance(out, tuple) else ((out,), (expected,))
    assert [tuple(o.shape) for o in outs] == [tuple(s) for s in shapes]
    assert all(torch.isfinite(o).all() for o in outs)
    sum(o.float().logsumexp(-1).mean() for o in outs).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads), "every parameter should receive a gradient"
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_forward_backward_shapes_and_finiteness(name):
    model, x = build(name, num_classes=7)
    assert model.model_name == name
    assert model.model_config.num_classes == 7
    out = model(x)
    assert out.shape == (x.shape[0], 7)
    assert torch.isfinite(out).all()
    loss = F.cross_entropy(out, torch.arange(x.shape[0]) % 7)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads), "every parameter should receive a gradient"
    assert all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_forward_is_head_of_features(name):
    model, x = build(name)
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.ndim == 2 and feats.shape[0] == x.shape[0]
        torch.testing.assert_close(model(x), model.forward_head(feats), rtol=0, atol=0)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_reset_classifier_changes_output_width(name):
    model, x = build(name, num_classes=10)
    model.eval()
    with torch.no_grad():
        feats_before = model.forward_features(x)
        model.reset_classifier(5)
        out = model(x)
        feats_after = model.forward_features(x)
    assert out.shape == (x.shape[0], 5)
    assert model.model_config.num_classes == 5
    torch.testing.assert_close(feats_before, feats_after, rtol=0, atol=0)  # only the head changed


@pytest.mark.parametrize("name", TOKEN_MODELS)
def test_token_model_forward_backward(name):
    entry = registry.get_entry(name)
    torch.manual_seed(0)
    model = create_model(name, **TINY[entry.config_cls.__name__])
    assert model.model_name == name
    inputs = model.example_input(batch_size=3, seq_len=8)
    out = model(**inputs)
    length = inputs.get("decoder_input_ids", inputs["input_ids"]).shape[1]
    assert out.shape == (3, length, model.cfg.vocab_size)  # the default head predicts tokens
    assert torch.isfinite(out).all()
    F.cross_entropy(out.flatten(0, 1), torch.arange(3 * length) % model.cfg.vocab_size).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", OTHERS)
def test_non_classifier_forward_backward_finite(name):
    """Models without the classifier interface: forward, backward, every trainable parameter gets a gradient."""
    model, x = build(name)
    assert model.model_name == name
    out = model(x)
    outs = out if isinstance(out, tuple) else (out,)
    assert outs[0].shape[0] == x.shape[0] and all(torch.isfinite(o).all() for o in outs)
    sum(o.float().pow(2).mean() for o in outs).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads), "every parameter should receive a gradient"
    assert all(torch.isfinite(g).all() for g in grads)


def test_unknown_model_suggests_nearest():
    with pytest.raises(ConfigError, match=r"unknown model 'mpl'.*did you mean 'mlp'"):
        create_model("mpl")


def test_unknown_config_key_names_key_and_suggests():
    with pytest.raises(ConfigError) as info:
        create_model("mlp", widht=32)
    assert "model.widht" in str(info.value)
    assert "did you mean 'width'" in str(info.value)


def test_wrong_type_is_config_error():
    with pytest.raises(ConfigError, match=r"model\.depth.*integer.*'abc'"):
        create_model("mlp", depth="abc")
    with pytest.raises(ConfigError, match=r"model\.depth"):
        create_model("mlp", depth=2.5)
    with pytest.raises(ConfigError, match=r"model\.dropout"):
        create_model("mlp", dropout=True)


def test_numeric_strings_are_coerced():
    model = create_model("mlp", in_features="64", depth="3", dropout="0.25")  # YAML/CLI can hand over strings
    assert (model.cfg.in_features, model.cfg.depth, model.cfg.dropout) == (64, 3, 0.25)
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 4  # 3 hidden + head


@pytest.mark.parametrize(
    "act,cls",
    [("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh), ("relu", nn.ReLU), ("leaky_relu", nn.LeakyReLU), ("gelu", nn.GELU)],
)
def test_activation_lookup_in_mlp(act, cls):
    model, x = build("mlp", act=act, depth=2)
    found = [m for m in model.modules() if isinstance(m, cls)]
    assert len(found) == 2, f"expected one {cls.__name__} per hidden layer"
    out = model(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()


def test_unknown_activation_and_norm():
    with pytest.raises(ConfigError, match="did you mean 'relu'"):
        get_act("rellu")
    with pytest.raises(ConfigError, match="did you mean 'batchnorm'"):
        get_norm("batchnrom", 8)
    with pytest.raises(ConfigError, match="unknown activation"):
        create_model("mlp", in_features=4, act="swishy")
    assert isinstance(get_act(None), nn.Identity)
    assert isinstance(get_act(nn.SiLU), nn.SiLU)


@pytest.mark.parametrize("norm,cls", [("batchnorm", nn.BatchNorm1d), ("layernorm", nn.LayerNorm)])
def test_mlp_norm_layers(norm, cls):
    model, x = build("mlp", norm=norm, depth=2, width=16)
    layers = [m for m in model.modules() if isinstance(m, cls)]
    assert len(layers) == 2 and all(
        m.normalized_shape == (16,) if cls is nn.LayerNorm else m.num_features == 16 for m in layers
    )
    assert model(x).shape == (4, 10)


def test_mlp_without_norm_has_no_norm_layers():
    model, _ = build("mlp", norm="none")
    assert not any(isinstance(m, nn.BatchNorm1d | nn.LayerNorm) for m in model.modules())


@pytest.mark.parametrize(
    "norm,cls", [("batchnorm", nn.BatchNorm2d), ("groupnorm", nn.GroupNorm), ("layernorm", nn.GroupNorm)]
)
def test_simple_cnn_norm_layers(norm, cls):
    model, x = build("simple_cnn", norm=norm, channels=[8, 16])
    assert any(isinstance(m, cls) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is None for c in convs), "a conv followed by a norm layer needs no bias"
    assert model(x).shape == (4, 10)


def test_lenet5_rejects_small_images():
    model = create_model("lenet5")
    with pytest.raises(ShapeError, match=r"at least 24×24.*8×8"):
        model.check_input((1, 8, 8))
    with pytest.raises(ShapeError, match="channel"):
        model.check_input((3, 28, 28))
    model.check_input((1, 28, 28))  # fits
    model.check_input((1, 32, 32))  # larger images pass through the adaptive pool
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_simple_cnn_check_input():
    model = create_model("simple_cnn", channels=[8, 8, 8])
    with pytest.raises(ShapeError, match=r"at least 8×8"):
        model.check_input((1, 4, 4))
    with pytest.raises(ShapeError, match=r"\(C, H, W\)"):
        model.check_input((64,))
    with pytest.raises(ShapeError, match="global_pool"):
        create_model("simple_cnn", global_pool="max")


def test_simple_cnn_flatten_needs_input_size():
    with pytest.raises(ShapeError, match="input_size"):
        create_model("simple_cnn", global_pool="flatten")
    model = create_model("simple_cnn", global_pool="flatten", input_size=[28, 28], channels=[4, 8], hidden=0)
    assert model.head.in_features == 8 * 7 * 7  # two 2× pools keep a 7×7 map
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    model.check_input((1, 28, 28))
    with pytest.raises(ShapeError, match="built for 28×28"):
        model.check_input((1, 32, 32))
    model.reset_classifier(3)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 3)
    odd = create_model("simple_cnn", global_pool="flatten", input_size=[30, 30], channels=[4, 4, 4])
    assert odd(torch.randn(2, 1, 30, 30)).shape == (2, 10)  # 30 -> 15 -> 7 -> 3, as the pools floor


def test_register_model_variant_defaults(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # restored after the test

    @register_model("tiny_mlp_for_test", MLPConfig, depth=1, width=8)
    class TinyMLP(MLP):
        """Tiny MLP used by the registry test."""

    assert "tiny_mlp_for_test" in list_models()
    model = create_model("tiny_mlp_for_test", in_features=4)
    assert isinstance(model, TinyMLP) and (model.cfg.depth, model.cfg.width) == (1, 8)
    assert create_model("tiny_mlp_for_test", in_features=4, width=3).cfg.width == 3  # overrides beat defaults
    assert registry.get_entry("tiny_mlp_for_test").description == "Tiny MLP used by the registry test."

    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny_mlp_for_test", MLPConfig)(MLP)
