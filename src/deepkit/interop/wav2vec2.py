"""Hugging Face wav2vec2 checkpoint directories: load, transcribe, fine-tune, save back.

A directory written by ``Wav2Vec2ForCTC.save_pretrained`` + ``Wav2Vec2Processor.save_pretrained`` holds
``config.json``, ``model.safetensors`` (or ``pytorch_model.bin``), ``vocab.json`` + ``tokenizer_config.json`` (the
CTC characters) and ``preprocessor_config.json`` (sampling rate, normalisation). Pretrained-only checkpoints
(``Wav2Vec2Model`` / ``Wav2Vec2ForPreTraining``) load too: the CTC head starts fresh (a warning says so) and
``vocab_size`` comes from the directory's ``vocab.json`` or an override. ``transformers`` is never imported.

Example (offline, on a local directory):
    >>> from deepkit.interop.wav2vec2 import load_wav2vec2, transcribe
    >>> text = transcribe("path/to/wav2vec2-dir", waveform_16k)      # 1-D float array or tensor at 16 kHz
    >>> model = load_wav2vec2("path/to/wav2vec2-dir")                 # or create_model("wav2vec2_ctc", weights=dir)
    >>> model.vocab.decode(logits.argmax(-1)[0].tolist())             # greedy CTC decoding with its vocabulary
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

import torch

from deepkit.config import to_dict
from deepkit.errors import CheckpointError, DataError
from deepkit.interop import hf
from deepkit.models.registry import get_entry, load_state_dict_checked, model_config
from deepkit.models.token_model import _HF_ACTS, config_fields
from deepkit.models.wav2vec2 import DEEPKIT_ONLY, Wav2Vec2ForCTC

# config.json settings this implementation does not have (adapters, other conv normalisations)
UNSUPPORTED = {"add_adapter": False, "adapter_attn_dim": None, "use_weighted_layer_sum": False}
ARCHITECTURES = ("Wav2Vec2ForCTC", "Wav2Vec2ForPreTraining", "Wav2Vec2Model")
_OLD_WEIGHT_NORM = {
    ".weight_g": ".parametrizations.weight.original0",
    ".weight_v": ".parametrizations.weight.original1",
}
# the spaces transformers' clean_up_tokenization removes (only applied when tokenizer_config.json asks for it)
_CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
             (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))  # fmt: skip


@dataclass
class CTCVocab:
    """A character CTC vocabulary (``Wav2Vec2CTCTokenizer``'s): the pad token is the CTC blank, the word
    delimiter (``|``) stands for a space."""

    tokens: dict[int, str]
    pad_token: str = "<pad>"
    word_delimiter_token: str = "|"
    unk_token: str = "<unk>"
    replace_word_delimiter_char: str = " "
    do_lower_case: bool = False
    clean_up_tokenization_spaces: bool = False
    unit: str = "char"  # "word": tokens are space-separated words (deepkit's digit strings, ``deepkit_unit``)
    ids: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.ids = {t: i for i, t in self.tokens.items()}
        if self.pad_token not in self.ids:
            raise CheckpointError(f"the CTC vocabulary has no pad/blank token {self.pad_token!r}")

    @property
    def blank_id(self) -> int:
        return self.ids[self.pad_token]

    def __len__(self) -> int:
        return max(self.tokens) + 1

    @classmethod
    def from_dir(cls, path: str | Path) -> CTCVocab:
        """``vocab.json`` (+ ``tokenizer_config.json``'s special tokens and added tokens) of a checkpoint directory."""
        p = Path(path)
        try:
            vocab = json.loads((p / "vocab.json").read_text())
            tcfg = (
                json.loads((p / "tokenizer_config.json").read_text()) if (p / "tokenizer_config.json").is_file() else {}
            )
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"cannot read the CTC vocabulary in {p}: {e}") from None
        if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
            raise CheckpointError(
                f"{p / 'vocab.json'} is not a flat token → id mapping (per-language vocabularies, as MMS uses, are "
                "not supported)"
            )
        tokens = {i: t for t, i in vocab.items()}
        for i, tok in (tcfg.get("added_tokens_decoder") or {}).items():
            tokens.setdefault(int(i), tok["content"] if isinstance(tok, dict) else str(tok))

        def special(name: str, default: str) -> str:
            value = tcfg.get(name, default)
            return value["content"] if isinstance(value, dict) else (default if value is None else value)

        return cls(
            tokens,
            pad_token=special("pad_token", "<pad>"),
            word_delimiter_token=special("word_delimiter_token", "|"),
            unk_token=special("unk_token", "<unk>"),
            replace_word_delimiter_char=tcfg.get("replace_word_delimiter_char", " "),
            do_lower_case=bool(tcfg.get("do_lower_case", False)),
            clean_up_tokenization_spaces=bool(tcfg.get("clean_up_tokenization_spaces", False)),
            unit="word" if tcfg.get("deepkit_unit") == "word" else "char",
        )

    def decode(self, ids: list[int]) -> str:
        """CTC collapse of frame ids: merge repeats, drop blanks, delimiter → space (as ``Wav2Vec2CTCTokenizer``)."""
        return self.labels_to_text([i for i, _ in groupby(ids)])

    def labels_to_text(self, ids: list[int]) -> str:
        """Text of a label sequence (already collapsed: equal neighbours stay two), pad tokens dropped."""
        chars = [self.tokens.get(int(i), self.unk_token) for i in ids]
        chars = [
            self.replace_word_delimiter_char if c == self.word_delimiter_token else c
            for c in chars
            if c != self.pad_token
        ]
        text = (" ".join(chars) if self.unit == "word" else "".join(chars)).strip()
        if self.do_lower_case:
            text = text.lower()
        if self.clean_up_tokenization_spaces:
            for old, new in _CLEAN_UP:
                text = text.replace(old, new)
        return text

    def encode(self, text: str) -> list[int]:
        """Label ids for a transcript (space → word delimiter); characters outside the vocabulary are an error."""
        if self.do_lower_case:
            text = text.upper()
        if self.unit == "word":
            chars = text.split()
        else:
            chars = [self.word_delimiter_token if c == " " else c for c in text]
        missing = sorted({c for c in chars if c not in self.ids})
        if missing:
            raise DataError(
                f"transcript {text!r} has characters outside the CTC vocabulary: {missing} "
                f"(the vocabulary has {sorted(t for t in self.ids if len(t) == 1)})"
            )
        return [self.ids[c] for c in chars]

    def save(self, path: str | Path) -> None:
        """Write ``vocab.json`` + ``tokenizer_config.json`` as ``Wav2Vec2CTCTokenizer`` reads them."""
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        (p / "vocab.json").write_text(json.dumps(self.ids, indent=2, ensure_ascii=False) + "\n")
        tcfg = {
            "tokenizer_class": "Wav2Vec2CTCTokenizer",
            "pad_token": self.pad_token,
            "unk_token": self.unk_token,
            "word_delimiter_token": self.word_delimiter_token,
            "replace_word_delimiter_char": self.replace_word_delimiter_char,
            "do_lower_case": self.do_lower_case,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
        }
        if self.unit == "word":  # deepkit reads it back; transformers' tokenizer joins the tokens without spaces
            tcfg["deepkit_unit"] = "word"
        for name in ("<s>", "</s>"):
            if name in self.ids:
                tcfg["bos_token" if name == "<s>" else "eos_token"] = name
        (p / "tokenizer_config.json").write_text(json.dumps(tcfg, indent=2, ensure_ascii=False) + "\n")


def config_from_hf(hfc: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """deepkit ``Wav2Vec2Config`` fields equivalent to a Hugging Face ``config.json``; one clear error for settings
    this implementation does not have."""
    for key, supported in UNSUPPORTED.items():
        if hfc.get(key, supported) != supported:
            raise CheckpointError(
                f"{path}/config.json sets {key}={hfc[key]!r}; deepkit's wav2vec2 supports only {key}={supported!r}"
            )
    if hfc.get("feat_extract_norm", "group") not in ("group", "layer"):
        raise CheckpointError(
            f"{path}/config.json sets feat_extract_norm={hfc['feat_extract_norm']!r}; expected 'group' or 'layer'"
        )
    for key in ("hidden_act", "feat_extract_activation"):
        if hfc.get(key, "gelu") not in _HF_ACTS:
            raise CheckpointError(
                f"{path}/config.json sets {key}={hfc[key]!r}; supported activations: {', '.join(_HF_ACTS)}"
            )
    n = hfc.get("num_feat_extract_layers")
    if n is not None and n != len(hfc.get("conv_dim", [0] * 7)):
        raise CheckpointError(
            f"{path}/config.json sets num_feat_extract_layers={n} but conv_dim has {len(hfc['conv_dim'])} entries"
        )
    known = config_fields(get_entry("wav2vec2_ctc").config_cls) - set(DEEPKIT_ONLY)
    return {k: v for k, v in hfc.items() if k in known and v is not None}


def read_preprocessor(path: str | Path, feat_extract_norm: str) -> dict[str, Any]:
    """``preprocessor_config.json``'s sampling rate, normalisation and mask setting (transformers' defaults when the
    file is absent: 16 kHz, normalised, a mask only for layer-norm models)."""
    out = {"sampling_rate": 16000, "do_normalize": True, "return_attention_mask": feat_extract_norm == "layer"}
    p = Path(path) / "preprocessor_config.json"
    if p.is_file():
        try:
            cfg = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"cannot read {p}: {e}") from None
        out.update({k: cfg[k] for k in out if k in cfg})
    return out


def _rename_old_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``weight_g``/``weight_v`` (checkpoints saved with torch's old ``weight_norm``) → parametrization keys."""
    out = {}
    for k, v in state.items():
        for old, new in _OLD_WEIGHT_NORM.items():
            if k.endswith(old):
                k = k[: -len(old)] + new
        out[k] = v
    return out


def load_wav2vec2(
    path: str | Path, name: str = "wav2vec2_ctc", trust_pickle: bool = False, **overrides: Any
) -> Wav2Vec2ForCTC:
    """Build ``Wav2Vec2ForCTC`` from a Hugging Face checkpoint directory.

    Args:
        path: directory with ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin`` with
            ``trust_pickle=True``, read with ``weights_only=True``); ``vocab.json`` is optional.
        name: registered wav2vec2 variant (the directory's config sets the size, so either works).
        overrides: config fields, e.g. ``vocab_size=40`` for a new CTC head, ``freeze_feature_encoder=True``,
            ``mask_time_prob=0.0``.

    The model carries ``model.vocab`` (a :class:`CTCVocab`, or None without ``vocab.json``) and
    ``model.preprocessor`` (``sampling_rate``, ``do_normalize``, ``return_attention_mask``).
    """
    hfc = hf.read_hf_config(path)
    if hfc["model_type"] != "wav2vec2":
        raise CheckpointError(f"{path} holds a '{hfc['model_type']}' checkpoint, but model '{name}' expects 'wav2vec2'")
    archs = hfc.get("architectures") or ["Wav2Vec2ForCTC"]
    if not any(a in ARCHITECTURES for a in archs):
        warnings.warn(
            f"{path}: architecture {archs} is not one of {ARCHITECTURES}; its head is not loaded", stacklevel=2
        )
    fields = config_from_hf(hfc, path)
    pre = read_preprocessor(path, fields.get("feat_extract_norm", "group"))
    fields.update(sample_rate=pre["sampling_rate"], do_normalize=pre["do_normalize"],
                  return_attention_mask=pre["return_attention_mask"])  # fmt: skip
    vocab = CTCVocab.from_dir(path) if (Path(path) / "vocab.json").is_file() else None
    if "Wav2Vec2ForCTC" not in archs and vocab is not None:  # a pretrained model and a new vocabulary: its size
        fields["vocab_size"] = len(vocab)
    cfg = model_config(name, **{**fields, **overrides})
    if vocab is not None and len(vocab) > cfg.vocab_size:
        raise CheckpointError(
            f"{path}/vocab.json has ids up to {len(vocab) - 1} but the model's vocab_size is {cfg.vocab_size}"
        )
    model = get_entry(name).cls(cfg)
    model.model_name, model.model_config = name, cfg
    state = _rename_old_weight_norm(hf.read_hf_state_dict(path, trust_pickle))
    head = {k: v for k, v in model.state_dict().items() if k.startswith("lm_head.")}
    if any(k in state and state[k].shape != v.shape for k, v in head.items()):  # another vocabulary: a new head
        state = {k: v for k, v in state.items() if not k.startswith("lm_head.")}
    own = model.state_dict()
    if "wav2vec2.masked_spec_embed" in own and "wav2vec2.masked_spec_embed" not in state:
        state["wav2vec2.masked_spec_embed"] = own["wav2vec2.masked_spec_embed"]  # masking now, none when saved
    state = hf._fit_state(model, state, str(path))
    load_state_dict_checked(model, state, source=str(path))
    model.vocab = vocab
    model.preprocessor = {"sampling_rate": cfg.sample_rate, "do_normalize": cfg.do_normalize,
                          "return_attention_mask": model.uses_attention_mask}  # fmt: skip
    return model


def export_wav2vec2(model: Wav2Vec2ForCTC, path: str | Path) -> Path:
    """Write a directory ``transformers.Wav2Vec2ForCTC.from_pretrained`` loads (and :func:`load_wav2vec2` reads):
    ``config.json``, ``model.safetensors``, the vocabulary and ``preprocessor_config.json`` when the model has them."""
    out = Path(path)
    cfg = {k: v for k, v in to_dict(model.cfg).items() if k not in DEEPKIT_ONLY}
    cfg.update(model_type="wav2vec2", architectures=["Wav2Vec2ForCTC"], num_feat_extract_layers=len(model.cfg.conv_dim))
    hf.write_hf_dir(model.state_dict(), cfg, out)
    if getattr(model, "vocab", None) is not None:
        model.vocab.save(out)
    c = model.cfg
    pre = getattr(model, "preprocessor", None) or {"sampling_rate": c.sample_rate, "do_normalize": c.do_normalize,
                                                    "return_attention_mask": model.uses_attention_mask}  # fmt: skip
    pcfg = {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1, "padding_side": "right",
            "padding_value": 0.0, **pre}  # fmt: skip
    (out / "preprocessor_config.json").write_text(json.dumps(pcfg, indent=2) + "\n")
    return out


def normalize_waveform(wave: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per utterance (``Wav2Vec2FeatureExtractor``'s ``do_normalize``)."""
    return (wave - wave.mean()) / torch.sqrt(wave.var(unbiased=False) + 1e-7)


def greedy_decode(logits: torch.Tensor, vocab: CTCVocab, frame_lengths: torch.Tensor | None = None) -> list[str]:
    """Best-path CTC decoding of ``logits`` (B, frames, V): argmax per valid frame, then ``vocab.decode``."""
    best = logits.argmax(-1)
    lengths = frame_lengths.tolist() if frame_lengths is not None else [best.shape[1]] * best.shape[0]
    return [vocab.decode(row[:n].tolist()) for row, n in zip(best, lengths, strict=True)]


@torch.no_grad()
def transcribe(model: str | Path | Wav2Vec2ForCTC, waveform, sample_rate: int = 16000) -> str | list[str]:
    """Text of ``waveform`` (1-D at the checkpoint's rate, 16 kHz usually), or a list of texts for a list of waveforms.

    ``model`` is a checkpoint directory or a model from :func:`load_wav2vec2`. Each waveform runs on its own (no
    padding: base checkpoints' group norm sees padding), normalised when the checkpoint's feature extractor does.
    """
    if not isinstance(model, torch.nn.Module):
        model = load_wav2vec2(model)
    vocab = getattr(model, "vocab", None)
    if vocab is None:
        raise CheckpointError("the model has no CTC vocabulary (the checkpoint directory needs a vocab.json)")
    if sample_rate != model.cfg.sample_rate:
        raise DataError(
            f"audio at {sample_rate} Hz; this checkpoint expects {model.cfg.sample_rate} Hz (resample first)"
        )
    many = isinstance(waveform, list | tuple)
    texts = []
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    for wave in waveform if many else [waveform]:
        x = torch.as_tensor(wave, dtype=torch.float32).to(device)
        if x.ndim != 1:
            raise DataError(f"expected a mono 1-D waveform, got shape {tuple(x.shape)} (down-mix first)")
        if model.cfg.do_normalize:
            x = normalize_waveform(x)
        texts.append(greedy_decode(model(x[None]), vocab)[0])
    model.train(was_training)
    return texts if many else texts[0]


hf.HF_LOADERS["wav2vec2"] = lambda name, path, trust_pickle=False, **kw: load_wav2vec2(path, name, trust_pickle, **kw)
hf.HF_EXPORTERS["wav2vec2"] = export_wav2vec2
