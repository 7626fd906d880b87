"""Attention maps of a Transformer: which tokens each head of each layer looks at.

:func:`attention_maps` runs the model once on the plain-math attention path (the fused SDPA kernels do not
return weights) and collects ``(B, H, T, T)`` per layer; :func:`plot_attention` writes one PNG per layer with a
heatmap per head; :func:`attention_report` does both for a text, given a checkpoint with a tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from deepkit.errors import CheckpointError, ConfigError
from deepkit.models.token_model import TokenModel


def attention_maps(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> list[tuple[str, torch.Tensor]]:
    """``[(layer name, weights (B, H, T, T)), ...]`` for every self-attention layer (T5: the encoder's).

    Example:
        >>> maps = attention_maps(model, torch.tensor([[101, 2023, 102]]))
        >>> name, w = maps[0]          # "layer 1", (1, heads, 3, 3); each row sums to 1
    """
    if not isinstance(model, TokenModel):
        raise ConfigError(f"attention maps need a deepkit Transformer, got {type(model).__name__}")
    collected: list[torch.Tensor] = []
    previous = model.cfg.attn_impl
    model.cfg.attn_impl = "math"  # the only path that can return the weights
    try:
        with torch.no_grad():
            if model.hf_model_type == "t5":
                model.encode(input_ids, attention_mask, attentions=collected)
            else:
                model.forward_features(input_ids, attention_mask, attentions=collected)
    finally:
        model.cfg.attn_impl = previous
    return [(f"layer {i + 1}", w.float().cpu()) for i, w in enumerate(collected)]


def plot_attention(
    maps: list[tuple[str, torch.Tensor]], tokens: list[str], out_dir: str | Path, sample: int = 0
) -> list[Path]:
    """One PNG per layer (``attention_layer01.png``, ...), a heatmap per head: rows attend (queries) to columns."""
    from deepkit.viz.plots import _plt

    plt = _plt()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (name, weights) in enumerate(maps):
        w = weights[sample]  # (H, T, T)
        heads = w.shape[0]
        cols = min(heads, 4)
        rows = (heads + cols - 1) // cols
        size = max(2.5, 0.28 * len(tokens))
        fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), dpi=100, squeeze=False)
        for h in range(rows * cols):
            ax = axes[h // cols][h % cols]
            if h >= heads:
                ax.axis("off")
                continue
            ax.imshow(w[h].numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_title(f"head {h + 1}", fontsize=9)
            ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
            ax.set_yticks(range(len(tokens)), tokens, fontsize=7)
        fig.suptitle(f"{name}: attention (row = query token, column = key token)")
        fig.tight_layout()
        path = out / f"attention_layer{i + 1:02d}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def attention_report(path: str | Path, text: str, out_dir: str | Path) -> list[Path]:
    """Load a Hugging Face checkpoint directory (or a deepkit checkpoint with ``tokenizer.json`` beside it),
    tokenize ``text`` and plot every layer's attention. Returns the PNGs written."""
    from deepkit.interop.hf import is_hf_checkpoint, load_tokenizer, read_hf_config
    from deepkit.models.registry import create_model, get_entry, list_models
    from deepkit.weights import load_weights, resolve_weights_path

    p = Path(path)
    if is_hf_checkpoint(p):
        model_type = read_hf_config(p)["model_type"]
        names = [n for n in list_models() if getattr(get_entry(n).cls, "hf_model_type", None) == model_type]
        if not names:
            raise CheckpointError(f"{p} holds a '{model_type}' checkpoint; no deepkit model reads that type")
        model = create_model(min(names, key=len), weights=p)
    else:
        meta = load_weights(p)[1]
        if not meta.get("model"):
            raise CheckpointError(f"{p} has no deepkit metadata naming its model")
        model = create_model(meta["model"], weights=p)
        candidates = [p / "tokenizer.json", resolve_weights_path(p).parent / "tokenizer.json"]
        tok_file = next((c for c in candidates if c.is_file()), None)
        if tok_file is not None:
            model.tokenizer = load_tokenizer(tok_file, model.cfg.vocab_size)
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise CheckpointError(f"no tokenizer.json in {p} (needed to turn the text into token ids)")
    enc = tokenizer.encode(text)
    if not enc.ids:
        raise ConfigError(f"the text {text!r} gives no tokens")
    model.eval()
    maps = attention_maps(model, torch.tensor([enc.ids]))
    return plot_attention(maps, enc.tokens, out_dir)
