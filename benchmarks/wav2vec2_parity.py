"""wav2vec2 parity with Hugging Face ``transformers`` (issue 16, 2c): max |Δ| of the CTC logits per configuration.

The tiny random configurations are the parity test's (tests/interop/test_wav2vec2_parity.py); ``--reference`` adds
the two registered sizes at full width (wav2vec2-base: 94.4M parameters; the large-lv60 / XLS-R layout: 315M) with
random weights, on a padded batch of ``--seconds`` of audio. fp32, eval mode, nothing downloaded.

    python benchmarks/wav2vec2_parity.py [--reference] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import torch

from deepkit import create_model
from deepkit.config import to_dict

TEST = Path(__file__).resolve().parents[1] / "tests" / "interop" / "test_wav2vec2_parity.py"


def load_test_module():
    spec = importlib.util.spec_from_file_location("w2v_parity_cases", TEST)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def compare(hf, ours, x, mask) -> tuple[float, float, float]:
    """(max |Δ| padded with mask, max |Δ| same batch without mask, seconds of one deepkit forward)."""
    with torch.no_grad():
        t = time.perf_counter()
        got = ours(x, attention_mask=mask)
        elapsed = time.perf_counter() - t
        padded = (got - hf(x, attention_mask=mask).logits).abs().max().item()
        plain = (ours(x) - hf(x).logits).abs().max().item()
    return padded, plain, elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", action="store_true", help="also the full-size base and large layouts")
    ap.add_argument("--seconds", type=float, default=1.0, help="audio length of the reference-size batch")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t = load_test_module()
    transformers = t.transformers
    print("| configuration | frames | max abs diff, padded batch + mask | max abs diff, no mask |")
    print("|---|---|---|---|")
    for case in t.CASES:
        hf = t.hf_model(case)
        ours = create_model("wav2vec2_ctc", **t.CASES[case]).eval()
        ours.load_state_dict(hf.state_dict())
        x, mask = t.padded_batch(ours)
        padded, plain, _ = compare(hf, ours, x, mask)
        print(f"| {case} | {int(ours.frame_lengths(x.shape[1]))} | {padded:.1e} | {plain:.1e} |")
    if not args.reference:
        return
    for name in ("wav2vec2_ctc", "wav2vec2_large_ctc"):
        torch.manual_seed(0)
        ours = create_model(name).eval()
        cfg = {k: v for k, v in to_dict(ours.cfg).items() if k != "freeze_feature_encoder"}
        hf = transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(**cfg)).eval()
        ours.load_state_dict(hf.state_dict())
        n = int(16000 * args.seconds)
        x = torch.randn(2, n, generator=torch.Generator().manual_seed(1))
        mask = torch.ones(2, n, dtype=torch.long)
        mask[1, int(0.7 * n) :] = 0
        x = x * mask
        padded, plain, elapsed = compare(hf, ours, x, mask)
        params = sum(p.numel() for p in ours.parameters()) / 1e6
        print(
            f"| {name} at reference size ({params:.1f}M params), {args.seconds:g} s × 2 | "
            f"{int(ours.frame_lengths(n))} | {padded:.1e} | {plain:.1e} | (deepkit forward {elapsed:.2f} s)"
        )


if __name__ == "__main__":
    main()
