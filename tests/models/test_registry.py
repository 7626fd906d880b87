"""Model registry: every registered model builds, runs forward/backward, and config mistakes are ConfigErrors."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepkit import create_model, list_models, register_model
from deepkit.errors import ConfigError, ShapeError
from deepkit.models import Classifier, registry
from deepkit.models._detection import Detector
from deepkit.models._segmentation import Segmenter
from deepkit.models.mlp import MLP, MLPConfig
from deepkit.models.token_model import TokenModel
from deepkit.nn import get_act, get_norm

# Every model is built from its registered config; these overrides only shrink the big ones so the smoke tests stay
# fast (the reference sizes are checked in test_vision_models.py and tests/models/test_<family>.py). The inputs come
# from the model itself: model.example_input() (the convention is in deepkit/models/base.py).
SMALL = {
    # AlexNet/VGG: their 4096-wide FCs hold ~100M parameters and dominate the time
    **{name: {"hidden": 256} for name in ("alexnet", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn")},
    # recurrent models (issue 4)
    **{
        name: {"vocab_size": 50, "hidden_size": 16, "embed_dim": 8}
        for name in ("rnn_classifier", "lstm_classifier", "gru_classifier", "bilstm_classifier")
    },
    "lstm_forecaster": {"hidden_size": 16},
    "gru_forecaster": {"hidden_size": 16},
    **{
        name: {"vocab_size": 30, "hidden_size": 16, "embed_dim": 8}
        for name in ("lstm_lm", "gru_lm", "rnn_lm", "char_lstm_lm")
    },
    "bilstm_tagger": {"vocab_size": 30, "hidden_size": 16},
    # detectors: the ResNet-50-FPN references at small input sizes (their 800 px default costs seconds a call)
    **{
        name: {"min_size": 64, "max_size": 96, "num_classes": 5}
        for name in (
            "fasterrcnn_resnet50_fpn",
            "retinanet_resnet50_fpn",
            "fcos_resnet50_fpn",
            "fasterrcnn_resnet18_fpn",
        )
    },
    **{
        name: {"src_vocab_size": 30, "tgt_vocab_size": 20, "hidden_size": 16, "embed_dim": 8}
        for name in ("seq2seq_bahdanau", "seq2seq_luong")
    },
    **{name: {"vocab_size": 30, "embed_dim": 8} for name in ("word2vec_skipgram", "word2vec_cbow")},
    "unet": {"width": 8},  # the paper's 64-1024 channels cost seconds a call
    # recommenders (issue 17): a small catalogue
    **{name: {"num_users": 20, "num_items": 30} for name in ("biased_mf", "gmf", "ncf_mlp", "neumf", "two_tower")},
    "i_autorec": {"num_users": 20, "hidden": 16},
    "gcmc": {"num_users": 20, "num_items": 30, "num_edges": 60, "hidden": 20, "dense": 8},
    "sasrec": {"num_items": 30, "max_len": 10, "dim": 16},
    # wav2vec2 (issue 16): a two-layer conv stack; no LayerDrop and short SpecAugment spans, so that in training mode
    # every layer runs and the learned mask embedding is used (every parameter then gets a gradient)
    **{
        name: {
            "hidden_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 24,
            "conv_dim": [8, 8],
            "conv_kernel": [10, 3],
            "conv_stride": [5, 2],
            "num_conv_pos_embeddings": 4,
            "num_conv_pos_embedding_groups": 2,
            "layerdrop": 0.0,
            "mask_time_length": 2,
        }
        for name in ("wav2vec2_ctc", "wav2vec2_large_ctc")
    },
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

# Models whose output is not one row of num_classes values per sample: the expected output shape(s) for their
# example input. They get the forward/backward smoke test, not the classifier-interface tests.
OTHER_OUTPUTS = {
    **{
        name: lambda m, i: (*i["x"].shape, m.cfg.vocab_size)  # next-token logits (B, T, V)
        for name in ("lstm_lm", "gru_lm", "rnn_lm", "char_lstm_lm")
    },
    "bilstm_tagger": lambda m, i: (*i["x"].shape, m.cfg.num_classes),  # one tag per token (B, T, tags)
    **{
        name: lambda m, i: (*i["tgt_in"].shape, m.cfg.tgt_vocab_size)  # teacher-forced logits (B, T_tgt, V)
        for name in ("seq2seq_bahdanau", "seq2seq_luong")
    },
    # word2vec returns (positive (B,), negative (B, K)) scores
    **{
        name: lambda m, i: (tuple(i["center"].shape), tuple(i["negatives"].shape))
        for name in ("word2vec_skipgram", "word2vec_cbow")
    },
    # generative models: autoencoders reconstruct their input (VAEs also return mu, logvar), GANs score G(z)
    **{name: lambda m, i: i["x"].shape for name in ("autoencoder", "conv_autoencoder")},
    **{
        name: lambda m, i: (tuple(i["x"].shape), (len(i["x"]), m.cfg.latent_dim), (len(i["x"]), m.cfg.latent_dim))
        for name in ("vae", "conv_vae")
    },
    **{name: lambda m, i: (len(i["z"]),) for name in ("dcgan", "cdcgan")},
    # recommenders: one score per (user, item) pair; I-AutoRec reconstructs item vectors; SASRec scores every item
    # after every position (B, T, I)
    **{name: lambda m, i: i["user"].shape for name in ("biased_mf", "gmf", "ncf_mlp", "neumf", "two_tower", "gcmc")},
    "i_autorec": lambda m, i: i["x"].shape,
    "sasrec": lambda m, i: (*i["seq"].shape, m.cfg.num_items),
    # wav2vec2: CTC logits per frame of the waveform (B, frames, V)
    **{
        name: lambda m, i: (len(i["input_values"]), m.frame_lengths(i["input_values"].shape[1]), m.cfg.vocab_size)
        for name in ("wav2vec2_ctc", "wav2vec2_large_ctc")
    },
    # text to speech (issue 16): normalized log-mel (B, T, n_mels), log word duration (B,), attention (B, T, P)
    "duration_tts": lambda m, i: (
        (len(i["frames"]), int(i["frames"].max()), m.cfg.n_mels),
        (len(i["frames"]),),
        (len(i["frames"]), int(i["frames"].max()), i["phonemes"].shape[1]),
    ),
    # CTC encoders: per-frame scores over the vocabulary + blank (B, frames, V) and the valid frames (B,)
    **{
        name: lambda m, i: (
            (len(i["audio"]), int(m.output_lengths(i["lengths"]).max()), m.cfg.num_classes),
            (len(i["audio"]),),
        )
        for name in ("ctc_lstm", "ctc_conformer")
    },
}
CLASSIFIERS = [n for n in list_models() if issubclass(registry.get_entry(n).cls, Classifier)]
# detectors (torchvision's API): lists of images and of target dicts in, a loss dict out in train mode
DETECTORS = [n for n in list_models() if issubclass(registry.get_entry(n).cls, Detector)]
# segmenters (torchvision's segmentation API): images in, {"out": (B, K, H, W)[, "aux": ...]} at the input size out
SEGMENTERS = [n for n in list_models() if issubclass(registry.get_entry(n).cls, Segmenter)]
OTHERS = [
    n for n in list_models() if n not in CLASSIFIERS and n not in TOKEN_MODELS and n not in DETECTORS + SEGMENTERS
]
BATCH = 3  # not example_input's default, so the tests see that batch_size is honoured


def small_config(name: str) -> dict:
    return {**TINY.get(registry.get_entry(name).config_cls.__name__, {}), **SMALL.get(name, {})}


def build(name: str, batch_size: int = BATCH, **overrides) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """The model (shrunk by small_config, then ``overrides``) and its own example input for ``batch_size``."""
    torch.manual_seed(0)
    model = create_model(name, **{**small_config(name), **overrides})
    if not callable(getattr(model, "example_input", None)):
        pytest.fail(
            f"model '{name}' ({type(model).__name__}) is registered but has no example_input(batch_size) method: "
            "every registered model returns the keyword arguments of one small valid forward call "
            "(see the convention in deepkit/models/base.py)"
        )
    inputs = model.example_input(batch_size=batch_size)
    assert isinstance(inputs, dict) and inputs, f"{name}.example_input() must return a dict of forward's kwargs"
    return model, inputs


def test_list_models_has_the_builtin_families():
    names = list_models()
    assert {"mlp", "lenet5", "simple_cnn"} <= set(names)
    assert names == sorted(names)


@pytest.mark.parametrize("name", OTHERS)
def test_non_classifier_forward_backward(name):
    """Models without the classifier interface: output shapes, forward, backward, every parameter gets a gradient."""
    if name not in OTHER_OUTPUTS:
        pytest.fail(f"model '{name}' was registered but tests/models/test_registry.py has no expected output for it")
    model, inputs = build(name)
    assert model.model_name == name
    torch.manual_seed(1)
    for p in model.parameters():  # word2vec starts its output vectors at zero: perturb so every gradient is nonzero
        p.data.add_(0.01 * torch.randn_like(p))
    out = model(**inputs)
    expected = OTHER_OUTPUTS[name](model, inputs)
    outs, shapes = (out, expected) if isinstance(out, tuple) else ((out,), (expected,))
    assert [tuple(o.shape) for o in outs] == [tuple(s) for s in shapes]
    assert outs[0].shape[0] == BATCH
    assert all(torch.isfinite(o).all() for o in outs)
    sum(o.float().logsumexp(-1).mean() for o in outs).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads), "every parameter should receive a gradient"
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_forward_backward(name):
    """Train mode: a dict of finite scalar losses whose sum reaches every trainable parameter; eval mode: one dict of
    boxes, labels and scores per image."""
    model, inputs = build(name)
    assert model.model_name == name and len(inputs["images"]) == BATCH == len(inputs["targets"])
    model.train()
    losses = model(**inputs)
    assert losses and all(v.ndim == 0 and torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    model.eval()
    with torch.no_grad():
        out = model(inputs["images"])
    assert len(out) == BATCH and all(o["boxes"].shape[1:] == (4,) and len(o["scores"]) == len(o["labels"]) for o in out)


@pytest.mark.parametrize("name", SEGMENTERS)
def test_segmenter_forward_backward(name):
    """Per-pixel logits at the input size (also for sides that are not multiples of the stride), finite; their loss
    reaches every parameter; ``aux`` exactly for the models that have an auxiliary head."""
    model, inputs = build(name, num_classes=5)
    x = inputs["x"][..., :57, :50]  # odd sizes
    out = model(x)
    assert set(out) == ({"out", "aux"} if getattr(model.cfg, "aux", False) else {"out"})
    assert all(tuple(v.shape) == (BATCH, 5, 57, 50) and torch.isfinite(v).all() for v in out.values())
    target = torch.arange(BATCH * 57 * 50).reshape(BATCH, 57, 50) % 5
    sum(F.cross_entropy(v, target) for v in out.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_forward_backward_shapes_and_finiteness(name):
    model, inputs = build(name, num_classes=7)
    assert model.model_name == name
    assert model.model_config.num_classes == 7
    out = model(**inputs)
    assert out.shape == (BATCH, 7)
    assert torch.isfinite(out).all()
    loss = F.cross_entropy(out, torch.arange(BATCH) % 7)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads), "every parameter should receive a gradient"
    assert all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_forward_is_head_of_features(name):
    model, inputs = build(name)
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(**inputs)
        if hasattr(model, "feature_info"):  # CNN backbones: the unpooled last-stage map (B, C, H, W)
            assert feats.ndim == 4 and feats.shape[:2] == (BATCH, model.feature_info[-1]["num_chs"])
        else:  # dense and recurrent classifiers: already a vector
            assert feats.ndim == 2 and feats.shape[0] == BATCH
        torch.testing.assert_close(model(**inputs), model.forward_head(feats), rtol=0, atol=0)
        pre = model.forward_head(feats, pre_logits=True)  # what the classifier layer sees
        assert pre.shape == (BATCH, model.num_features)
        torch.testing.assert_close(model.get_classifier()(pre), model.forward_head(feats), rtol=0, atol=0)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_reset_classifier_changes_output_width(name):
    model, inputs = build(name, num_classes=10)
    model.eval()
    with torch.no_grad():
        feats_before = model.forward_features(**inputs)
        pre_before = model.forward_head(feats_before, pre_logits=True)
        model.reset_classifier(5)
        out = model(**inputs)
        feats_after = model.forward_features(**inputs)
        pre_after = model.forward_head(feats_after, pre_logits=True)
    assert out.shape == (BATCH, 5)
    assert model.model_config.num_classes == 5
    torch.testing.assert_close(feats_before, feats_after, rtol=0, atol=0)  # only the head changed
    torch.testing.assert_close(pre_before, pre_after, rtol=0, atol=0)


@pytest.mark.parametrize("name", TOKEN_MODELS)
def test_token_model_forward_backward(name):
    model, inputs = build(name)
    assert model.model_name == name
    assert inputs["input_ids"].shape == (BATCH, 8)  # example_input's default length fits the tiny context
    out = model(**inputs)
    length = inputs.get("decoder_input_ids", inputs["input_ids"]).shape[1]
    assert out.shape == (BATCH, length, model.cfg.vocab_size)  # the default head predicts tokens
    assert torch.isfinite(out).all()
    F.cross_entropy(out.flatten(0, 1), torch.arange(3 * length) % model.cfg.vocab_size).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", list_models())
def test_example_input_is_valid_deterministic_and_leaves_the_global_rng(name):
    model, inputs = build(name)
    for key, value in inputs.items():  # a (B, ...) tensor, or a list of B items (detectors: images, targets)
        n = value.shape[0] if isinstance(value, torch.Tensor) else len(value) if isinstance(value, list) else None
        assert n == BATCH, f"{name}: {key} is neither a (B, ...) tensor nor a list of B items"
    params = inspect.signature(model.forward).parameters
    assert set(inputs) <= set(params), f"{name}: keys {sorted(set(inputs) - set(params))} are not forward arguments"
    state = torch.random.get_rng_state()
    again = model.example_input(batch_size=BATCH)
    assert torch.equal(torch.random.get_rng_state(), state), "example_input must not consume the global RNG"
    assert again.keys() == inputs.keys() and all(same(again[k], inputs[k]) for k in inputs)
    assert len(model.example_input()[next(iter(inputs))]) == 2  # the default batch size
    if "x" in inputs and inputs["x"].dtype.is_floating_point and hasattr(model, "check_input"):
        model.check_input(tuple(inputs["x"].shape[1:]))  # the model's own input check accepts it


def same(a, b) -> bool:
    """Equal tensors, or equal lists/dicts of them."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))


def test_model_without_example_input_fails_the_registry_test(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # restored after the test

    @register_model("bare_model_for_test", MLPConfig)
    class Bare(nn.Module):
        """A model that forgot example_input."""

        def __init__(self, cfg):
            super().__init__()
            self.lin = nn.Linear(cfg.in_features, cfg.num_classes)

    with pytest.raises(pytest.fail.Exception, match=r"'bare_model_for_test' .*has no example_input\(batch_size\)"):
        build("bare_model_for_test")


def test_example_input_follows_the_config():
    def shapes(name, **kw):
        with torch.device("meta"):  # shapes only
            model = create_model(name, **{**small_config(name), **kw})
        inputs = model.example_input()
        assert all(v.device.type == "meta" for v in inputs.values())  # on the model's device
        return {k: tuple(v.shape) for k, v in inputs.items()}

    assert shapes("resnet18", in_channels=1) == {"x": (2, 1, 32, 32)}
    assert shapes("resnet20") == {"x": (2, 3, 32, 32)}
    assert shapes("alexnet") == {"x": (2, 3, 63, 63)}  # its minimum size
    assert shapes("lenet5") == {"x": (2, 1, 28, 28)} and shapes("lenet5", padding=0) == {"x": (2, 1, 32, 32)}
    assert shapes("simple_cnn", global_pool="flatten", input_size=[20, 24]) == {"x": (2, 1, 20, 24)}
    assert shapes("mlp", in_features=12) == {"x": (2, 12)}
    assert shapes("lstm_forecaster", in_features=3) == {"x": (2, 8, 3)}
    assert shapes("autoencoder", in_channels=3, input_size=[16, 12]) == {"x": (2, 3, 16, 12)}
    assert shapes("dcgan", latent_dim=7) == {"z": (2, 7)}
    assert shapes("cdcgan") == {"z": (2, 100), "labels": (2,)}
    assert shapes("word2vec_cbow") == {"center": (2,), "context": (2, 4), "negatives": (2, 3)}
    assert shapes("seq2seq_luong") == {"src": (2, 8), "src_lengths": (2,), "tgt_in": (2, 5)}
    assert shapes("gpt2", n_positions=4) == {"input_ids": (2, 4), "attention_mask": (2, 4)}  # cut to the context
    assert shapes("t5") == {"input_ids": (2, 8), "attention_mask": (2, 8), "decoder_input_ids": (2, 4)}
    for name, vocab, key in [("gpt2", 7, "input_ids"), ("lstm_lm", 5, "x"), ("seq2seq_bahdanau", 3, "src")]:
        model = create_model(
            name, **{**small_config(name), ("src_vocab_size" if key == "src" else "vocab_size"): vocab}
        )
        ids = model.example_input(batch_size=16)[key]
        assert ids.dtype == torch.long and int(ids.min()) >= 0 and int(ids.max()) < vocab


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
    model, inputs = build("mlp", act=act, depth=2, in_features=64)
    found = [m for m in model.modules() if isinstance(m, cls)]
    assert len(found) == 2, f"expected one {cls.__name__} per hidden layer"
    out = model(**inputs)
    assert out.shape == (BATCH, 10) and torch.isfinite(out).all()


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
    model, inputs = build("mlp", norm=norm, depth=2, width=16, in_features=64)
    layers = [m for m in model.modules() if isinstance(m, cls)]
    assert len(layers) == 2 and all(
        m.normalized_shape == (16,) if cls is nn.LayerNorm else m.num_features == 16 for m in layers
    )
    assert model(**inputs).shape == (BATCH, 10)


def test_mlp_without_norm_has_no_norm_layers():
    model, _ = build("mlp", norm="none")
    assert not any(isinstance(m, nn.BatchNorm1d | nn.LayerNorm) for m in model.modules())


@pytest.mark.parametrize(
    "norm,cls", [("batchnorm", nn.BatchNorm2d), ("groupnorm", nn.GroupNorm), ("layernorm", nn.GroupNorm)]
)
def test_simple_cnn_norm_layers(norm, cls):
    model, inputs = build("simple_cnn", norm=norm, channels=[8, 16])
    assert any(isinstance(m, cls) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is None for c in convs), "a conv followed by a norm layer needs no bias"
    assert model(**inputs).shape == (BATCH, 10)


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
