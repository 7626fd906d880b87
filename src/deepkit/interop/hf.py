"""Hugging Face checkpoint directories in and out: ``config.json`` + ``model.safetensors`` (+ ``tokenizer.json``).

deepkit's Transformers use Hugging Face's parameter names, so the work here is the config (same field names,
plus the head read from ``architectures``), a bare backbone's missing prefix (``BertModel`` saves
``embeddings.*``, deepkit's ``Bert`` holds ``bert.embeddings.*``), tied weights (stored once) and a few
legacy names. ``transformers`` itself is never imported: loading and exporting need only safetensors and JSON.

Example:
    >>> model = create_model("bert", weights="path/to/hf_dir")              # what the directory holds
    >>> clf = create_model("bert", weights="path/to/hf_dir", head="classification", num_classes=2)
    >>> export_hf(model, "out_dir")   # transformers.AutoModelForMaskedLM.from_pretrained("out_dir") loads it
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from deepkit.config import to_dict
from deepkit.errors import CheckpointError, ConfigError
from deepkit.models.registry import get_entry, load_state_dict_checked, model_config, register_weight_reader
from deepkit.models.token_model import TokenModel, config_fields
from deepkit.weights import atomic_write_text, load_weights

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
# deepkit-only config fields, never written to config.json
_DEEPKIT_FIELDS = {"head", "attn_impl", "num_classes"}
# keys a checkpoint may hold that are copies of another parameter (tied) or derived buffers
TIED_KEYS = {
    "lm_head.weight": ("transformer.wte.weight", "shared.weight"),
    "cls.predictions.decoder.weight": (
        "bert.embeddings.word_embeddings.weight",
        "deberta.embeddings.word_embeddings.weight",
    ),
    "cls.predictions.decoder.bias": ("cls.predictions.bias",),
    "lm_head.decoder.weight": ("roberta.embeddings.word_embeddings.weight",),
    "lm_head.decoder.bias": ("lm_head.bias",),
    "encoder.embed_tokens.weight": ("shared.weight",),
    "decoder.embed_tokens.weight": ("shared.weight",),
}
# config.json settings deepkit's implementation does not have: refusing beats silently computing something else
UNSUPPORTED = {
    "bert": {"position_embedding_type": "absolute", "is_decoder": False, "add_cross_attention": False},
    "roberta": {"position_embedding_type": "absolute", "is_decoder": False, "add_cross_attention": False},
    "gpt2": {"add_cross_attention": False},
    "t5": {"is_decoder": False},
}
# keys some published checkpoints carry that no model uses: derived buffers (GPT-2's causal mask, BERT's position
# ids) and the cross-attention position bias the original T5 release stored but never used
IGNORED_SUFFIXES = (
    ".attn.bias",
    ".attn.masked_bias",
    "embeddings.position_ids",
    "embeddings.token_type_ids",
    "EncDecAttention.relative_attention_bias.weight",
)
# families that are not TokenModels read/write their directories themselves (keyed by the class's hf_model_type):
# deepkit.interop.wav2vec2 registers "wav2vec2"
HF_LOADERS: dict[str, Any] = {}  # hf_model_type -> build(name, path, trust_pickle=..., **overrides)
HF_EXPORTERS: dict[str, Any] = {}  # hf_model_type -> export(model, path)


def is_hf_checkpoint(path: str | Path) -> bool:
    """A directory with a ``config.json`` naming a ``model_type`` and a weights file."""
    p = Path(path)
    if not (p.is_dir() and (p / "config.json").is_file()):
        return False
    return any((p / f).is_file() for f in WEIGHT_FILES)


def read_hf_config(path: str | Path) -> dict[str, Any]:
    p = Path(path) / "config.json"
    try:
        cfg = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {p}: {e}") from None
    if not isinstance(cfg, dict) or "model_type" not in cfg:
        raise CheckpointError(f"{p} has no 'model_type' (expected a Hugging Face config.json)")
    return cfg


def config_from_hf(cls: type[TokenModel], config_cls: type, hf: dict[str, Any]) -> dict[str, Any]:
    """deepkit config overrides equivalent to a Hugging Face ``config.json``."""
    for key, supported in UNSUPPORTED.get(hf.get("model_type", ""), {}).items():
        if hf.get(key, supported) not in (supported, None):
            raise CheckpointError(
                f"config.json sets {key}={hf[key]!r}; deepkit's {cls.__name__} supports only {key}={supported!r}"
            )
    out = {k: v for k, v in hf.items() if k in config_fields(config_cls) and k not in _DEEPKIT_FIELDS}
    out = {k: v for k, v in out.items() if v is not None}
    if isinstance(out.get("pos_att_type"), str):  # older DeBERTa configs: "p2c|c2p"
        out["pos_att_type"] = [t.strip() for t in out["pos_att_type"].lower().split("|")]
    if out.get("embedding_size") == hf.get("hidden_size"):
        out.pop("embedding_size", None)
    inverse = {arch: head for head, arch in cls.hf_architectures.items()}
    for arch in hf.get("architectures") or []:
        if arch in inverse:
            out["head"] = inverse[arch]
            break
    n_labels = hf.get("num_labels") or (len(hf["id2label"]) if isinstance(hf.get("id2label"), dict) else None)
    if n_labels and "num_classes" in config_fields(config_cls):
        out["num_classes"] = int(n_labels)
    return out


def config_to_hf(model: nn.Module) -> dict[str, Any]:
    """The ``config.json`` that makes ``transformers`` build the same architecture."""
    cls = type(model)
    cfg = model.cfg
    out = {k: v for k, v in to_dict(cfg).items() if k not in _DEEPKIT_FIELDS}
    out["model_type"] = cls.hf_model_type
    out["architectures"] = [cls.hf_architectures[cfg.head]]
    if cfg.head in ("classification", "token_classification"):
        out["num_labels"] = cfg.num_classes
        out["id2label"] = {str(i): f"LABEL_{i}" for i in range(cfg.num_classes)}
        out["label2id"] = {f"LABEL_{i}": i for i in range(cfg.num_classes)}
    if cls.hf_model_type == "deberta-v2":
        out["pooler_hidden_size"] = cfg.hidden_size
        if out.get("embedding_size") is None:
            out.pop("embedding_size")
    if cls.hf_model_type == "t5":
        out["is_encoder_decoder"] = True
        if out.get("num_decoder_layers") is None:
            out["num_decoder_layers"] = cfg.num_layers
        if out.get("scale_decoder_outputs") is None:
            out["scale_decoder_outputs"] = cfg.tie_word_embeddings
    return out


def read_hf_state_dict(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of ``model.safetensors`` (single or sharded), else ``pytorch_model.bin`` (only if trusted)."""
    p = Path(path)
    if (p / "model.safetensors").is_file():
        return load_weights(p / "model.safetensors")[0]
    index = p / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(load_file(str(p / shard)))
        except (OSError, KeyError, json.JSONDecodeError, SafetensorError) as e:
            raise CheckpointError(f"cannot read sharded checkpoint {index}: {e}") from None
        return state
    return load_weights(p / "pytorch_model.bin", trust_pickle=trust_pickle)[0]


def _rename_legacy(key: str) -> str:
    # TF-converted BERT checkpoints call LayerNorm parameters gamma/beta
    if key.endswith(".gamma"):
        return key[: -len(".gamma")] + ".weight"
    if key.endswith(".beta"):
        return key[: -len(".beta")] + ".bias"
    return key


def _fit_state(model: TokenModel, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Map a checkpoint's keys onto ``model``'s: prefix, tied copies, buffers, a different head."""
    own = model.state_dict()
    state = {_rename_legacy(k): v for k, v in state.items()}
    prefix = model.base_prefix + "." if model.base_prefix else ""
    if prefix and not any(k.startswith(prefix) for k in state):  # a bare backbone (BertModel, GPT2Model, ...)
        state = {prefix + k: v for k, v in state.items()}
    fitted: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k in own:
            fitted[k] = v
        elif k in TIED_KEYS:
            target = next((t for t in TIED_KEYS[k] if t in state), None)
            if target is not None and not torch.equal(state[target], v):
                raise CheckpointError(
                    f"{source}: '{k}' differs from '{target}' but the model ties them "
                    f"(set tie_word_embeddings=False for an untied head)"
                )
        elif k.endswith(IGNORED_SUFFIXES):
            continue
        else:
            fitted[k] = v  # unexpected: kept so the check below can name it
    # head parameters may differ from the checkpoint's (fine-tuning an MLM checkpoint as a classifier):
    # the model's own head starts fresh and the checkpoint's head is dropped — both said out loud
    is_head = (lambda k: not k.startswith(prefix) or k.startswith(prefix + "pooler.")) if prefix else (lambda k: False)
    new_head = [k for k in own if is_head(k) and k not in fitted]
    dropped = [k for k in fitted if is_head(k) and k not in own]
    if new_head:
        warnings.warn(f"{source}: newly initialised head parameters {new_head}", stacklevel=3)
        fitted.update({k: own[k] for k in new_head})
    if dropped:
        warnings.warn(f"{source}: checkpoint parameters not used by this head: {dropped}", stacklevel=3)
        fitted = {k: v for k, v in fitted.items() if k not in dropped}
    return fitted


def load_hf(name: str, path: str | Path, trust_pickle: bool = False, **overrides: Any) -> nn.Module:
    """Build registered model ``name`` from a Hugging Face checkpoint directory.

    Args:
        name: a deepkit Transformer (``"bert"``, ``"gpt2"``, ``"t5-small"``, ...); the directory's config sets the
            size, so any variant of the family works.
        path: directory with ``config.json`` and ``model.safetensors`` (or sharded safetensors, or
            ``pytorch_model.bin`` with ``trust_pickle=True``, read with ``weights_only=True``).
        overrides: config fields to change, e.g. ``head="classification", num_classes=3``.

    A ``tokenizer.json`` beside the weights is loaded as ``model.tokenizer`` (a ``tokenizers.Tokenizer``).
    """
    entry = get_entry(name)
    cls = entry.cls
    if getattr(cls, "hf_model_type", "") in HF_LOADERS:
        return HF_LOADERS[cls.hf_model_type](name, path, trust_pickle=trust_pickle, **overrides)
    if not (isinstance(cls, type) and issubclass(cls, TokenModel)):
        raise ConfigError(f"model '{name}' has no Hugging Face layout (Transformer families only)")
    hf = read_hf_config(path)
    if hf["model_type"] != cls.hf_model_type:
        raise CheckpointError(
            f"{path} holds a '{hf['model_type']}' checkpoint, but model '{name}' expects '{cls.hf_model_type}'"
        )
    merged = {**config_from_hf(cls, entry.config_cls, hf), **overrides}
    cfg = model_config(name, **merged)
    model = cls(cfg)
    model.model_name, model.model_config = name, cfg
    state = _fit_state(model, read_hf_state_dict(path, trust_pickle), str(path))
    load_state_dict_checked(model, state, source=str(path))
    tok = Path(path) / "tokenizer.json"
    if tok.is_file():
        model.tokenizer = load_tokenizer(tok, cfg.vocab_size)
    return model


def load_tokenizer(path: Path, vocab_size: int):
    """``tokenizers.Tokenizer`` from ``tokenizer.json``; its ids must fit the model's embedding table."""
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - the library raises a bare Exception for bad files
        raise CheckpointError(f"cannot read tokenizer {path}: {e}") from None
    if tok.get_vocab_size(with_added_tokens=True) > vocab_size:
        raise CheckpointError(
            f"tokenizer {path} has {tok.get_vocab_size(with_added_tokens=True)} tokens but the model's vocab_size "
            f"is {vocab_size} (expected at most {vocab_size})"
        )
    return tok


def export_hf(model: nn.Module, path: str | Path) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (+ ``tokenizer.json`` if the model carries one).

    ``transformers``' ``from_pretrained(path)`` loads the result with the class named in ``architectures``.
    """
    if getattr(type(model), "hf_model_type", "") in HF_EXPORTERS:
        return HF_EXPORTERS[type(model).hf_model_type](model, path)
    if not isinstance(model, TokenModel):
        raise ConfigError(f"export_hf needs a deepkit Transformer, got {type(model).__name__}")
    out = Path(path)
    state = model.state_dict()
    if model.cfg.head == "none" and model.base_prefix:  # bare backbones are saved without the prefix
        state = {k.removeprefix(model.base_prefix + "."): v for k, v in state.items()}
    write_hf_dir(state, config_to_hf(model), out)
    tok = getattr(model, "tokenizer", None)
    if tok is not None:
        tok.save(str(out / "tokenizer.json"))
    return out


def write_hf_dir(state: dict[str, torch.Tensor], config: dict[str, Any], out: Path) -> None:
    """``model.safetensors`` (written atomically) and ``config.json`` in ``out`` (created)."""
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".tmp-", suffix=".safetensors")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"format": "pt"})
        os.replace(tmp, out / "model.safetensors")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    atomic_write_text(out / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")


register_weight_reader(is_hf_checkpoint, load_hf)  # create_model(name, weights=HF_DIR)
