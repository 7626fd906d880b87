"""Quality of the Transformer recipes on real data (issue 5), with wall times.

    flock /tmp/deepkit-heavy.lock python benchmarks/transformer_quality.py --only mlm   # pretrain, fine-tune, scratch
    flock /tmp/deepkit-heavy.lock python benchmarks/transformer_quality.py --only t5    # Multi30k de->en BLEU

Stages (``--only`` takes stage names or the groups ``mlm`` and ``t5``):

- mlm_pretrain: small BERT, masked LM with dynamic masking on SST-2 train sentences + Multi30k English;
- mlm_finetune: that BERT fine-tuned on SST-2 (dev accuracy);
- mlm_scratch: the same classifier, same tokenizer and schedule, from random weights (dev accuracy);
  the bar: pretraining helps (fine-tuned accuracy at least 1 point above scratch);
- t5: small T5 on Multi30k German->English, test BLEU (greedy, beam 5) scored like the GRU seq2seq recipe
  (multi30k_translation, 29.4 greedy BLEU in RESULTS.md).

Runs go to benchmarks/out/runs/<recipe>; figures to benchmarks/out/transformer_quality.json (merged per stage).
"""

from __future__ import annotations

import argparse
import json
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
    ap.add_argument("extra", nargs="*", help="KEY=VALUE overrides for every stage run here")
    args = ap.parse_args()
    stages = [s for name in args.only.split(",") for s in GROUPS.get(name, [name])]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise SystemExit(f"unknown stage(s) {unknown}; expected {list(STAGES)} or {list(GROUPS)}")
    out_file = OUT / "transformer_quality.json"
    results = json.loads(out_file.read_text()) if out_file.is_file() else {}
    for stage in stages:
        recipe, name, overrides = STAGES[stage]
        t0 = time.perf_counter()
        run = deepkit.train(recipe, *overrides, *args.extra, f"name={name}", out=RUNS / name, overwrite=True)
        wall = time.perf_counter() - t0
        results[stage] = {
            "recipe": recipe,
            "overrides": overrides + args.extra,
            "wall_s": round(wall, 1),
            **run.metrics,
        }
        print(f"{stage}: {json.dumps(results[stage])}", flush=True)
        OUT.mkdir(parents=True, exist_ok=True)
        out_file.write_text(json.dumps(results, indent=1))
    if "mlm_finetune" in results and "mlm_scratch" in results:
        ft, sc = results["mlm_finetune"]["accuracy"], results["mlm_scratch"]["accuracy"]
        # 872 dev sentences: one sentence is 0.11 points and the standard error ~1.3, so ask for a full point
        verdict = "met" if ft >= sc + 0.01 else "NOT met"
        print(f"SST-2 dev accuracy: pretrained+fine-tuned {ft:.4f} vs from scratch {sc:.4f} -> bar {verdict}")
    if "t5" in results:
        r = results["t5"]
        print(
            f"Multi30k de->en test BLEU: greedy {r.get('bleu_greedy', float('nan')):.1f}, beam5 "
            f"{r.get('bleu_beam5', float('nan')):.1f} (GRU seq2seq recipe: 29.4 greedy)"
        )


if __name__ == "__main__":
    main()
