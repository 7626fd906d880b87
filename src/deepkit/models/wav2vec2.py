"""wav2vec 2.0 (Baevski et al. 2020) with a CTC head: raw 16 kHz waveform in, per-frame character logits out.

Architecture: a stack of 1-D convolutions turns the waveform into frames (20 ms apart with the standard stack);
each frame is layer-normalised and projected to the Transformer width; a grouped convolution over time (with
weight normalisation) adds relative position information; a Transformer encoder follows, either post-LayerNorm
(``do_stable_layer_norm=False``: the *base* models) or pre-LayerNorm with a final LayerNorm
(``do_stable_layer_norm=True``: *large-lv60*, XLS-R, MMS); a linear CTC head (``lm_head``) scores the vocabulary
at every frame. The first conv layer is group-normalised (``feat_extract_norm="group"``, base models) or every conv
layer is layer-normalised (``"layer"``, large-lv60 / XLS-R).

Parameter names equal Hugging Face's ``Wav2Vec2ForCTC``, and the config's field names equal ``Wav2Vec2Config``'s,
so ``model.load_state_dict(hf_model.state_dict())`` works unchanged; the position convolution's weight
normalisation is ``torch.nn.utils.parametrizations.weight_norm`` (keys ``...conv.parametrizations.weight.original0``
(g) / ``original1`` (v), as ``transformers`` 5 saves them; older checkpoints' ``weight_g``/``weight_v`` are renamed
by :mod:`deepkit.interop.wav2vec2`, which also reads checkpoint directories, the CTC vocabulary and transcribes).

API (what a family wires up):

* ``forward(input_values, attention_mask=None) -> logits``: ``input_values`` ``(B, T)`` float waveform (16 kHz,
  normalised to zero mean / unit variance per utterance when the checkpoint's ``preprocessor_config.json`` says
  ``do_normalize``), ``attention_mask`` ``(B, T)`` 1 = sample / 0 = padding (right padding). Returns logits
  ``(B, frames, vocab_size)``; frame ``t`` of utterance ``b`` is valid for ``t < frame_lengths(lengths)[b]``.
  As in ``transformers``, the mask shortens the attention and zeroes padded frames before the position
  convolution, but the conv feature encoder (with its group norm over time in base models) sees the padded
  waveform as it is; this is why base (``"group"``) checkpoints are meant to be run on *unpadded* audio, or on
  zero-padded batches without a mask, as their feature extractor (``return_attention_mask=False``) does.
* ``frame_lengths(input_lengths)``: output frames for input sample counts (``floor((L - k) / s) + 1`` per conv
  layer) — the CTC ``input_lengths``. :func:`conv_frame_lengths` is the same as a free function.
* Training mode applies SpecAugment-style masking as ``transformers`` does (``mask_time_prob`` spans of
  ``mask_time_length`` frames replaced by the learned ``masked_spec_embed``, ``mask_feature_prob`` channel spans
  zeroed) and LayerDrop (``layerdrop``); ``freeze_feature_encoder()`` (or the config field of the same name) stops
  the conv stack's gradients, the usual choice for CTC fine-tuning.
* ``ctc_loss(logits, input_lengths, labels)`` (module function): CTC with the pad token as blank,
  ``zero_infinity`` and padding labels ``-100``, as ``Wav2Vec2ForCTC`` computes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.errors import ConfigError, ShapeError
from deepkit.models.base import example_generator, model_device
from deepkit.models.registry import register_model
from deepkit.models.token_model import hf_activation
from deepkit.nn.attention import merge_heads, padding_mask, scaled_dot_product, split_heads


@dataclass
class Wav2Vec2Config:
    """Field names and defaults are ``transformers.Wav2Vec2Config``'s (the *base* architecture)."""

    vocab_size: int = 32
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout: float = 0.1
    activation_dropout: float = 0.1
    attention_dropout: float = 0.1
    feat_proj_dropout: float = 0.0
    final_dropout: float = 0.1
    layerdrop: float = 0.1
    layer_norm_eps: float = 1e-5
    feat_extract_norm: Literal["group", "layer"] = "group"
    feat_extract_activation: str = "gelu"
    conv_dim: list[int] = field(default_factory=lambda: [512] * 7)
    conv_stride: list[int] = field(default_factory=lambda: [5, 2, 2, 2, 2, 2, 2])
    conv_kernel: list[int] = field(default_factory=lambda: [10, 3, 3, 3, 3, 2, 2])
    conv_bias: bool = False
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    do_stable_layer_norm: bool = False
    apply_spec_augment: bool = True
    mask_time_prob: float = 0.05
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    mask_feature_prob: float = 0.0
    mask_feature_length: int = 10
    mask_feature_min_masks: int = 0
    pad_token_id: int = 0  # the CTC blank
    ctc_loss_reduction: Literal["sum", "mean"] = "sum"
    ctc_zero_infinity: bool = False
    freeze_feature_encoder: bool = False  # deepkit: no gradient for the conv feature encoder (CTC fine-tuning)
    # deepkit only (preprocessor_config.json's settings, and where a recipe's weights come from), not config.json's:
    sample_rate: int = 16000  # the waveform's rate (the data is resampled to it)
    do_normalize: bool = True  # zero mean, unit variance per utterance before the model
    return_attention_mask: bool | None = None  # None: a mask for layer-norm conv stacks only (as transformers)
    weights: str | None = None  # recipes: a Hugging Face checkpoint directory to fine-tune (the asr family loads it)


DEEPKIT_ONLY = ("freeze_feature_encoder", "sample_rate", "do_normalize", "return_attention_mask", "weights")
# what a checkpoint directory fixes (its config.json's shapes and layout, its preprocessor's settings); the rest
# (dropouts, masking, LayerDrop, freezing) a fine-tuning recipe may set
CHECKPOINT_FIXED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                    "hidden_act", "layer_norm_eps", "feat_extract_norm", "feat_extract_activation", "conv_dim",
                    "conv_stride", "conv_kernel", "conv_bias", "num_conv_pos_embeddings",
                    "num_conv_pos_embedding_groups", "do_stable_layer_norm", "pad_token_id", "sample_rate",
                    "do_normalize", "return_attention_mask")  # fmt: skip


def conv_frame_lengths(input_lengths, conv_kernel: list[int], conv_stride: list[int]):
    """Frames the conv feature encoder makes of ``input_lengths`` samples (int or integer tensor)."""
    for k, s in zip(conv_kernel, conv_stride, strict=True):
        input_lengths = (input_lengths - k) // s + 1
    return input_lengths


def conv_input_length(frames: int, conv_kernel: list[int], conv_stride: list[int]) -> int:
    """Fewest samples that give ``frames`` output frames (``frames=1``: the receptive field)."""
    for k, s in zip(reversed(conv_kernel), reversed(conv_stride), strict=True):
        frames = (frames - 1) * s + k
    return frames


def check_config(cfg: Wav2Vec2Config) -> None:
    n = len(cfg.conv_dim)
    if not (n == len(cfg.conv_kernel) == len(cfg.conv_stride)) or n == 0:
        raise ConfigError(
            f"wav2vec2: conv_dim, conv_kernel and conv_stride must have the same non-zero length, got "
            f"{len(cfg.conv_dim)}, {len(cfg.conv_kernel)}, {len(cfg.conv_stride)}"
        )
    if cfg.hidden_size % cfg.num_attention_heads:
        raise ConfigError(
            f"wav2vec2: hidden_size={cfg.hidden_size} is not divisible by num_attention_heads={cfg.num_attention_heads}"
        )
    if cfg.hidden_size % cfg.num_conv_pos_embedding_groups:
        raise ConfigError(
            f"wav2vec2: hidden_size={cfg.hidden_size} is not divisible by num_conv_pos_embedding_groups="
            f"{cfg.num_conv_pos_embedding_groups}"
        )


class ConvLayer(nn.Module):
    """Conv1d → (group norm | layer norm over channels | nothing) → activation."""

    def __init__(self, cfg: Wav2Vec2Config, i: int, norm: str | None):
        super().__init__()
        c_in = cfg.conv_dim[i - 1] if i > 0 else 1
        c_out = cfg.conv_dim[i]
        self.conv = nn.Conv1d(c_in, c_out, cfg.conv_kernel[i], stride=cfg.conv_stride[i], bias=cfg.conv_bias)
        self.norm = norm
        if norm == "group":  # one group per channel: each channel normalised over time
            self.layer_norm = nn.GroupNorm(c_out, c_out, affine=True)
        elif norm == "layer":
            self.layer_norm = nn.LayerNorm(c_out)
        self.activation = hf_activation(cfg.feat_extract_activation)

    def forward(self, x):  # (B, C, T)
        x = self.conv(x)
        if self.norm == "group":
            x = self.layer_norm(x)
        elif self.norm == "layer":
            x = self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        return self.activation(x)


class FeatureEncoder(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        if cfg.feat_extract_norm == "group":
            norms = ["group"] + [None] * (len(cfg.conv_dim) - 1)
        else:
            norms = ["layer"] * len(cfg.conv_dim)
        self.conv_layers = nn.ModuleList(ConvLayer(cfg, i, n) for i, n in enumerate(norms))

    def forward(self, wave):  # (B, T) → (B, C, frames)
        x = wave[:, None]
        for layer in self.conv_layers:
            x = layer(x)
        return x


class FeatureProjection(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.layer_norm = nn.LayerNorm(cfg.conv_dim[-1], eps=cfg.layer_norm_eps)
        self.projection = nn.Linear(cfg.conv_dim[-1], cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.feat_proj_dropout)

    def forward(self, x):
        return self.dropout(self.projection(self.layer_norm(x)))


class PositionalConvEmbedding(nn.Module):
    """Grouped conv over time with weight normalisation (over the kernel axis, dim=2); an even kernel's extra
    output frame is dropped so the output keeps the input's length."""

    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        k = cfg.num_conv_pos_embeddings
        conv = nn.Conv1d(cfg.hidden_size, cfg.hidden_size, k, padding=k // 2, groups=cfg.num_conv_pos_embedding_groups)
        nn.init.normal_(conv.weight, mean=0.0, std=2 * math.sqrt(1 / (k * cfg.hidden_size)))
        nn.init.zeros_(conv.bias)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.trim = 1 if k % 2 == 0 else 0
        self.activation = hf_activation(cfg.feat_extract_activation)

    def forward(self, x):  # (B, T, C)
        y = self.conv(x.transpose(1, 2))
        if self.trim:
            y = y[:, :, : -self.trim]
        return self.activation(y).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        d = cfg.hidden_size
        self.heads = cfg.num_attention_heads
        self.dropout = cfg.attention_dropout
        self.k_proj, self.v_proj, self.q_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x, mask):
        q, k, v = (split_heads(f(x), self.heads) for f in (self.q_proj, self.k_proj, self.v_proj))
        out, _ = scaled_dot_product(q, k, v, mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(merge_heads(out))


class FeedForward(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.intermediate_dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.intermediate_act_fn = hf_activation(cfg.hidden_act)
        self.intermediate_dropout = nn.Dropout(cfg.activation_dropout)
        self.output_dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.output_dropout = nn.Dropout(cfg.hidden_dropout)

    def forward(self, x):
        x = self.intermediate_dropout(self.intermediate_act_fn(self.intermediate_dense(x)))
        return self.output_dropout(self.output_dense(x))


class EncoderLayer(nn.Module):
    """Post-LN (``pre_norm=False``: x = LN(x + attn(x)); x = LN'(x + ffn(x))) or pre-LN (x += attn(LN(x));
    x += ffn(LN'(x)))."""

    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.pre_norm = cfg.do_stable_layer_norm
        self.attention = Attention(cfg)
        self.dropout = nn.Dropout(cfg.hidden_dropout)
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.feed_forward = FeedForward(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x, mask):
        if self.pre_norm:
            x = x + self.dropout(self.attention(self.layer_norm(x), mask))
            return x + self.feed_forward(self.final_layer_norm(x))
        x = self.layer_norm(x + self.dropout(self.attention(x, mask)))
        return self.final_layer_norm(x + self.feed_forward(x))


class Encoder(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.cfg = cfg
        self.pos_conv_embed = PositionalConvEmbedding(cfg)
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(self, x, frame_mask=None):  # (B, T, C), (B, T) bool
        mask = None
        if frame_mask is not None:
            x = x.masked_fill(~frame_mask[..., None], 0.0)  # padded frames must not leak through the pos conv
            mask = padding_mask(frame_mask)
        x = x + self.pos_conv_embed(x)
        if not self.cfg.do_stable_layer_norm:
            x = self.layer_norm(x)
        x = self.dropout(x)
        for layer in self.layers:
            if self.training and self.cfg.layerdrop > 0 and float(torch.rand([])) < self.cfg.layerdrop:
                continue  # LayerDrop
            x = layer(x, mask)
        return self.layer_norm(x) if self.cfg.do_stable_layer_norm else x


def span_mask(lengths: list[int], width: int, prob: float, span: int, min_spans: int, device) -> torch.Tensor:
    """SpecAugment spans as wav2vec 2.0 draws them: ``prob * length / span`` spans (rounded with a random offset,
    at least ``min_spans``) of ``span`` positions, distinct start positions, within each row's length."""
    out = torch.zeros(len(lengths), width, dtype=torch.bool)
    offset = float(torch.rand([]))
    for row, length in enumerate(lengths):
        n = max(int(prob * length / span + offset), min_spans)
        n = min(n, width // span, max(length - span + 1, 0))
        if n <= 0:
            continue
        starts = torch.randperm(length - span + 1)[:n]
        idx = (starts[:, None] + torch.arange(span)[None]).flatten().clamp(max=width - 1)
        out[row, idx] = True
    return out.to(device)


class Wav2Vec2Model(nn.Module):
    """The backbone (``wav2vec2.*``): feature encoder, projection, optional masking, Transformer encoder."""

    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.cfg = cfg
        self.feature_extractor = FeatureEncoder(cfg)
        self.feature_projection = FeatureProjection(cfg)
        if cfg.mask_time_prob > 0 or cfg.mask_feature_prob > 0:
            self.masked_spec_embed = nn.Parameter(torch.rand(cfg.hidden_size))
        self.encoder = Encoder(cfg)

    def mask(self, x, frame_mask=None):
        """SpecAugment in training mode (``frame_mask``: (B, T) valid frames; spans stay within each length)."""
        cfg = self.cfg
        if not (self.training and cfg.apply_spec_augment):
            return x
        b, t, c = x.shape
        frame_lengths = frame_mask.sum(-1).tolist() if frame_mask is not None else [t] * b
        if cfg.mask_time_prob > 0:
            m = span_mask(frame_lengths, t, cfg.mask_time_prob, cfg.mask_time_length, cfg.mask_time_min_masks, x.device)
            x = torch.where(m[..., None], self.masked_spec_embed.to(x.dtype), x)
        if cfg.mask_feature_prob > 0:
            m = span_mask(
                [c] * b, c, cfg.mask_feature_prob, cfg.mask_feature_length, cfg.mask_feature_min_masks, x.device
            )
            x = x.masked_fill(m[:, None, :], 0.0)
        return x

    def forward(self, input_values, frame_mask=None):
        feats = self.feature_extractor(input_values).transpose(1, 2)  # (B, frames, C)
        x = self.feature_projection(feats)
        x = self.mask(x, frame_mask)
        return self.encoder(x, frame_mask)


class Wav2Vec2ForCTC(nn.Module):
    """wav2vec 2.0 + CTC head (Hugging Face ``Wav2Vec2ForCTC`` names): waveform (B, T) → logits (B, frames, V)."""

    hf_model_type = "wav2vec2"
    base_prefix = "wav2vec2"
    hf_architectures = {"ctc": "Wav2Vec2ForCTC"}
    # takes the raw waveform at ``cfg.sample_rate`` (the data is resampled to it, normalised and masked as the
    # config says: see ``prepare``) rather than computing log-mel features at the data's rate
    raw_waveform = True
    checkpoint_fixed = CHECKPOINT_FIXED  # config fields a checkpoint directory sets (a recipe cannot change them)

    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        check_config(cfg)
        self.cfg = cfg
        self.wav2vec2 = Wav2Vec2Model(cfg)
        self.dropout = nn.Dropout(cfg.final_dropout)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size)
        self.apply(self._init)
        if cfg.freeze_feature_encoder:
            self.freeze_feature_encoder()

    @staticmethod
    def _init(m: nn.Module) -> None:
        # the convolutions of the feature encoder: He init (the position conv keeps its own normal init)
        if isinstance(m, ConvLayer):
            nn.init.kaiming_normal_(m.conv.weight)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def reset_head(self, vocab_size: int | None = None) -> None:
        """A freshly initialised CTC head (``vocab_size`` outputs, default the config's), as fine-tuning on another
        vocabulary starts; the blank is output 0."""
        if vocab_size is not None:
            self.cfg.vocab_size = vocab_size
        device = self.lm_head.weight.device
        self.lm_head = nn.Linear(self.cfg.hidden_size, self.cfg.vocab_size).to(device)
        self._init(self.lm_head)
        self.cfg.pad_token_id = 0

    def reorder_outputs(self, order: list[int]) -> None:
        """Permute the CTC head's outputs: new output ``i`` is old output ``order[i]`` (``order[0]``: the blank, which
        becomes output 0 and ``pad_token_id``)."""
        with torch.no_grad():
            idx = torch.as_tensor(order, device=self.lm_head.weight.device)
            self.lm_head.weight.copy_(self.lm_head.weight[idx])
            self.lm_head.bias.copy_(self.lm_head.bias[idx])
        self.cfg.pad_token_id = 0

    def freeze_feature_encoder(self) -> None:
        """No gradient for the conv feature encoder (as ``transformers``' method of the same name)."""
        for p in self.wav2vec2.feature_extractor.parameters():
            p.requires_grad_(False)

    @property
    def min_input_length(self) -> int:
        """Fewest samples that make one frame (the conv stack's receptive field: 400 = 25 ms at 16 kHz for base)."""
        return conv_input_length(1, self.cfg.conv_kernel, self.cfg.conv_stride)

    def frame_lengths(self, input_lengths):
        """Output frames for ``input_lengths`` samples (int or integer tensor): the CTC input lengths."""
        return conv_frame_lengths(input_lengths, self.cfg.conv_kernel, self.cfg.conv_stride)

    output_lengths = frame_lengths  # the name the CTC encoders use

    @property
    def seconds_per_frame(self) -> float:
        return math.prod(self.cfg.conv_stride) / self.cfg.sample_rate

    @property
    def uses_attention_mask(self) -> bool:
        """Whether batches carry an attention mask (layer-norm conv stacks; base models' group norm sees the padded
        waveform anyway, and their feature extractor returns no mask)."""
        m = self.cfg.return_attention_mask
        return self.cfg.feat_extract_norm == "layer" if m is None else bool(m)

    @property
    def padding_invariant(self) -> bool:
        """A clip's logits do not depend on the batch it is padded into (with the attention mask)."""
        return self.uses_attention_mask and self.cfg.feat_extract_norm == "layer"

    def prepare(self, audio: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """A zero-padded waveform batch at ``cfg.sample_rate`` -> ``forward``'s inputs, as the checkpoint's feature
        extractor makes them: each clip normalised over its own samples (``do_normalize``), padding left at 0, and
        the attention mask when the model uses one."""
        mask = torch.arange(audio.shape[1], device=audio.device)[None] < lengths[:, None]
        x = audio
        if self.cfg.do_normalize:
            n = lengths.clamp(min=1)[:, None].to(audio.dtype)
            mean = (audio * mask).sum(1, keepdim=True) / n
            var = (((audio - mean) * mask) ** 2).sum(1, keepdim=True) / n
            x = (audio - mean) / torch.sqrt(var + 1e-7) * mask
        out = {"input_values": x}
        if self.uses_attention_mask:
            out["attention_mask"] = mask.long()
        return out

    def example_input(self, batch_size: int = 2, frames: int = 8) -> dict[str, torch.Tensor]:
        """A random waveform long enough for ``frames`` frames; the first row is half padding."""
        n = conv_input_length(frames, self.cfg.conv_kernel, self.cfg.conv_stride)
        wave = torch.randn(batch_size, n, generator=example_generator())
        mask = torch.ones(batch_size, n, dtype=torch.long)
        mask[0, max(self.min_input_length, n // 2) :] = 0
        wave[0, mask[0] == 0] = 0.0
        device = model_device(self)
        return {"input_values": wave.to(device), "attention_mask": mask.to(device)}

    def check_input(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None) -> None:
        if input_values.ndim != 2 or not input_values.dtype.is_floating_point:
            raise ShapeError(
                f"input_values must be a (batch, samples) float waveform, got {input_values.dtype} of shape "
                f"{tuple(input_values.shape)}"
            )
        if attention_mask is not None and tuple(attention_mask.shape) != tuple(input_values.shape):
            raise ShapeError(
                f"attention_mask must have the waveform's shape {tuple(input_values.shape)}, got "
                f"{tuple(attention_mask.shape)}"
            )
        if torch.compiler.is_exporting():  # value checks are no graph ops
            return
        shortest = input_values.shape[1] if attention_mask is None else int(attention_mask.sum(-1).min())
        if shortest < self.min_input_length:
            raise ShapeError(
                f"waveform of {shortest} samples is shorter than the model's receptive field "
                f"({self.min_input_length} samples make one frame)"
            )

    def frame_mask(self, attention_mask: torch.Tensor, frames: int) -> torch.Tensor:
        """(B, T) sample mask → (B, frames) bool frame mask (from the valid sample counts)."""
        lengths = self.frame_lengths(attention_mask.long().sum(-1))
        return torch.arange(frames, device=attention_mask.device)[None] < lengths[:, None]

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        self.check_input(input_values, attention_mask)
        frames = conv_frame_lengths(input_values.shape[1], self.cfg.conv_kernel, self.cfg.conv_stride)
        fmask = self.frame_mask(attention_mask, frames) if attention_mask is not None else None
        hidden = self.wav2vec2(input_values, fmask)
        return self.lm_head(self.dropout(hidden))


def ctc_loss(
    logits: torch.Tensor,
    input_lengths: torch.Tensor,
    labels: torch.Tensor,
    blank: int = 0,
    reduction: str = "sum",
    zero_infinity: bool = True,
) -> torch.Tensor:
    """CTC loss of ``logits`` (B, frames, V) against ``labels`` (B, L) padded with -100 (or any negative id).

    ``input_lengths`` are frame counts (``model.frame_lengths(sample_counts)``); ``blank`` is the vocabulary's pad
    token. ``zero_infinity`` turns the loss of an utterance shorter than its transcript into 0 instead of inf.
    """
    valid = labels >= 0
    targets = labels[valid]
    log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)  # (frames, B, V)
    with torch.backends.cudnn.flags(enabled=False):
        return F.ctc_loss(
            log_probs,
            targets,
            input_lengths.long(),
            valid.sum(-1),
            blank=blank,
            reduction=reduction,
            zero_infinity=zero_infinity,
        )


register_model("wav2vec2_ctc", Wav2Vec2Config, "wav2vec 2.0 base + CTC head (Hugging Face Wav2Vec2ForCTC names)")(
    Wav2Vec2ForCTC
)
register_model(
    "wav2vec2_large_ctc",
    Wav2Vec2Config,
    "wav2vec 2.0 large-lv60 / XLS-R layout + CTC head: layer-norm conv stack, pre-LN Transformer",
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    feat_extract_norm="layer",
    conv_bias=True,
    do_stable_layer_norm=True,
)(Wav2Vec2ForCTC)
