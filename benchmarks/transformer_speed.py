"""Transformer speed: deepkit's GPT-2 against Hugging Face's, the SDPA path against the math path, and
greedy decoding with and without the KV cache. All in one process, alternating, random weights at GPT-2-small
shape (124M; nothing is downloaded).

    python benchmarks/transformer_speed.py [--rounds 3 --new-tokens 256 --prompt 16]

Figures: forward tokens/s (deepkit sdpa, deepkit math, transformers), and decoding tokens/s with/without cache.
The KV-cache target (issue 5) is >= 5x for 256 new tokens.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from deepkit import create_model
from deepkit.interop import export_hf
from deepkit.models.generation import generate


def forward_rate(fn, ids: torch.Tensor, repeats: int) -> float:
    with torch.no_grad():
        fn(ids)  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn(ids)
    return repeats * ids.numel() / (time.perf_counter() - t0)


def greedy(model, prompt: torch.Tensor, new_tokens: int, use_cache: bool) -> tuple[torch.Tensor, float]:
    """Greedy decoding with the library's ``generate``; returns (generated ids, new tokens per second)."""
    t0 = time.perf_counter()
    ids = generate(model, prompt, new_tokens, temperature=0, use_cache=use_cache)
    return ids, new_tokens / (time.perf_counter() - t0)


def load_hf_copy(model):
    """The same weights in ``transformers.GPT2LMHeadModel`` (None without transformers)."""
    try:
        import tempfile

        import transformers
    except ImportError:
        print("transformers not installed: skipping the comparison")
        return None
    transformers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as d:
        export_hf(model, d)
        return transformers.GPT2LMHeadModel.from_pretrained(d, attn_implementation="sdpa").eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decode-only", action="store_true", help="skip the forward comparison")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model("gpt2").eval()  # GPT-2 small, 124M
    print(
        f"GPT-2 small, {sum(p.numel() for p in model.parameters()):,} parameters; threads {args.threads}; "
        f"torch {torch.__version__}"
    )

    hf = load_hf_copy(model) if not args.decode_only else None
    ids = torch.randint(0, 50257, (args.batch, args.seq))
    rates: dict[str, list[float]] = {"deepkit sdpa": [], "deepkit math": [], "transformers sdpa": []}
    for r in range(0 if args.decode_only else args.rounds):
        model.cfg.attn_impl = "sdpa"
        rates["deepkit sdpa"].append(forward_rate(model, ids, 3))
        model.cfg.attn_impl = "math"
        rates["deepkit math"].append(forward_rate(model, ids, 3))
        model.cfg.attn_impl = "sdpa"
        if hf is not None:
            rates["transformers sdpa"].append(forward_rate(lambda x: hf(x).logits, ids, 3))
        print(f"round {r + 1}: " + "  ".join(f"{k} {v[-1]:,.0f} tok/s" for k, v in rates.items() if v))
    for k, v in rates.items():
        if v:
            print(f"forward ({args.batch}x{args.seq}) median, {k}: {statistics.median(v):,.0f} tokens/s")

    prompt = torch.randint(0, 50257, (1, args.prompt))
    with_cache, cached_rate = greedy(model, prompt, args.new_tokens, use_cache=True)
    without_cache, plain_rate = greedy(model, prompt, args.new_tokens, use_cache=False)
    assert torch.equal(with_cache, without_cache), "cached and uncached greedy decoding disagree"
    print(
        f"greedy decoding, {args.new_tokens} new tokens after {args.prompt}: with KV cache {cached_rate:.1f} tok/s, "
        f"without {plain_rate:.1f} tok/s (same tokens)"
    )
    print(f"KV-cache speed-up: {cached_rate / plain_rate:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
