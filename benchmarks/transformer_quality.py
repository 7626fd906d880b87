"""Quality of the Transformer recipes on real data (issue 5), with wall times.

    flock /tmp/deepkit-heavy.lock python benchmarks/transformer_quality.py --only mlm   # pretrain, fine-tune, scratch
    python benchmarks/transformer_quality.py --only mlm_finetune,mlm_scratch --seeds 0,1,2  # reuse the pretraining
    flock /tmp/deepkit-heavy.lock python benchmarks/transformer_quality.py --only t5    # Multi30k de->en BLEU

Stages (``--only`` takes stage names or the groups ``mlm`` and ``t5``):

- mlm_pretrain: small BERT, masked LM with dynamic masking on SST-2 train sentences + Multi30k English;
- mlm_finetune: that BERT fine-tuned on SST-2 (dev accuracy);
- mlm_scratch: the same classifier, same tokenizer and schedule, from random weights (dev accuracy);
  the bar: pretraining helps (fine-tuned accuracy at least 1 point above scratch, as a mean over ``--seeds``:
  each seed is a different classifier-head initialization and batch order, the same for both arms);
- t5: small T5 on Multi30k German->English, test BLEU (greedy, beam 5) scored like the GRU seq2seq recipe
  (multi30k_translation, 29.4 greedy BLEU in RESULTS.md).

Runs go to benchmarks/out/runs/<recipe>; figures to benchmarks/out/transformer_quality.json (merged per stage).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import deepkit

OUT = Path(__file__).parent / "out"
RUNS = OUT / "runs"
PRETRAIN = RUNS / "sst2_bert_mlm_pretrain"
STAGES = {
    # stage: (recipe, run name, overrides)
    "mlm_pretrain": ("sst2_bert_mlm_pretrain", "sst2_bert_mlm_pretrain", []),
    "mlm_finetune": (
        "sst2_bert_finetune",
        "sst2_bert_finetune",
        [f"finetune.weights={PRETRAIN}", f"data.text.tokenizer_file={PRETRAIN}"],
    ),
    "mlm_scratch": (
        "sst2_bert_finetune",
        "sst2_bert_scratch",
        ["finetune.weights=null", f"data.text.tokenizer_file={PRETRAIN}"],
    ),
    "t5": ("multi30k_t5", "multi30k_t5", []),
}
GROUPS = {"mlm": ["mlm_pretrain", "mlm_finetune", "mlm_scratch"], "t5": ["t5"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="mlm,t5", help="stages or groups (mlm, t5), comma-separated")
    ap.add_argument("--seeds", default="0", help="trainer.seed values for the fine-tune and scratch stages")
    ap.add_argument("extra", nargs="*", help="KEY=VALUE overrides for every stage run here")
    args = ap.parse_args()
    stages = [s for name in args.only.split(",") for s in GROUPS.get(name, [name])]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise SystemExit(f"unknown stage(s) {unknown}; expected {list(STAGES)} or {list(GROUPS)}")
    out_file = OUT / "transformer_quality.json"
    results = json.loads(out_file.read_text()) if out_file.is_file() else {}
    seeds = [int(x) for x in args.seeds.split(",")]
    for stage in stages:
        recipe, name, overrides = STAGES[stage]
        for seed in seeds if stage in ("mlm_finetune", "mlm_scratch") else [None]:
            key, run_name, ov = stage, name, list(overrides)
            if seed is not None and len(seeds) > 1:
                key, run_name, ov = f"{stage}_s{seed}", f"{name}_s{seed}", ov + [f"trainer.seed={seed}"]
            t0 = time.perf_counter()
            run = deepkit.train(recipe, *ov, *args.extra, f"name={run_name}", out=RUNS / run_name, overwrite=True)
            wall = time.perf_counter() - t0
            results[key] = {"recipe": recipe, "overrides": ov + args.extra, "wall_s": round(wall, 1), **run.metrics}
            print(f"{key}: {json.dumps(results[key])}", flush=True)
            OUT.mkdir(parents=True, exist_ok=True)
            out_file.write_text(json.dumps(results, indent=1))
    if any(s.startswith("mlm_") for s in stages):
        _report_mlm(results, seeds)
    if "t5" in stages:
        r = results["t5"]
        print(
            f"Multi30k de->en test BLEU: greedy {r.get('bleu_greedy', float('nan')):.1f}, beam5 "
            f"{r.get('bleu_beam5', float('nan')):.1f} (GRU seq2seq recipe: 29.4 greedy)"
        )


def _report_mlm(results: dict, seeds: list[int]) -> None:
    """Pretrained vs scratch SST-2 dev accuracy: one seed, or the mean over several (with every seed's pair)."""
    keys = [f"_s{s}" for s in seeds] if len(seeds) > 1 else [""]
    pairs = [
        (results[f"mlm_finetune{k}"]["accuracy"], results[f"mlm_scratch{k}"]["accuracy"])
        for k in keys
        if f"mlm_finetune{k}" in results and f"mlm_scratch{k}" in results
    ]
    if not pairs:
        return
    ft = statistics.mean(p[0] for p in pairs)
    sc = statistics.mean(p[1] for p in pairs)
    each = ", ".join(f"{a:.4f} vs {b:.4f}" for a, b in pairs)
    # 872 dev sentences: one sentence is 0.11 points and the standard error ~1.3, so ask for a full point
    verdict = "met" if ft >= sc + 0.01 else "NOT met"
    print(
        f"SST-2 dev accuracy over {len(pairs)} seed(s): pretrained+fine-tuned {ft:.4f} vs from scratch {sc:.4f} "
        f"({100 * (ft - sc):+.2f} points; per seed {each}) -> bar {verdict}"
    )


if __name__ == "__main__":
    main()
