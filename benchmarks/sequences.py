"""Quality of the sequence recipes on real data (issue 4), with wall times.

    flock /tmp/deepkit-heavy.lock python benchmarks/sequences.py [--only sst2,airline] [KEY=VALUE ... per recipe]

- sst2: BiLSTM dev accuracy (validation carved from train) and the majority-class baseline;
- char: Tiny Shakespeare char-LSTM validation loss (nats/char) and a sample;
- airline / sunspots: test-period RMSE of one-step and multi-step LSTM/GRU forecasts vs naive and seasonal-naive.

Runs go to benchmarks/out/runs/<name>; figures to benchmarks/out/sequences.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import deepkit

OUT = Path(__file__).parent / "out"
BENCHES = {
    # name: (recipe, extra overrides, bar description, check)
    "sst2": ("sst2_bilstm", [], "dev accuracy >= 0.80", lambda m: m["accuracy"] >= 0.80),
    "char": ("char_shakespeare", [], "val loss <= 1.60 nats/char", lambda m: m["loss"] <= 1.60),
    "word_lm": (
        "multi30k_word_lm",
        [],
        "test perplexity clearly below an interpolated Kneser-Ney trigram on the same tokens",
        lambda m: m["perplexity"] < 0.9 * m["kn3_perplexity"],
    ),
    "adding_rnn": ("adding_rnn", [], "vanilla RNN stays near chance (accuracy < 0.2)", lambda m: m["accuracy"] < 0.2),
    "adding_lstm": ("adding_lstm", [], "LSTM accuracy >= 0.95 (|error| < 0.04)", lambda m: m["accuracy"] >= 0.95),
    "adding_gru": ("adding_gru", [], "GRU accuracy >= 0.95 (|error| < 0.04)", lambda m: m["accuracy"] >= 0.95),
    "w2v": (
        "word2vec_multi30k",
        [],
        "man : woman :: boy : girl within the top 5 (3CosAdd)",
        lambda m: m["analogy_man_woman_boy_girl_rank"] <= 5,
    ),
    "translation": (
        "multi30k_translation",
        [],
        "test BLEU (greedy and beam 5) clearly above copying the source",
        lambda m: min(m["bleu_greedy"], m["bleu_beam5"]) > m["bleu_copy_source"] + 10,
    ),
    "airline": (
        "airline_lstm",
        [],
        "LSTM RMSE < seasonal-naive RMSE (one-step and multi-step, last 24 months)",
        lambda m: (
            m["model_one_step_rmse"] < m["seasonal_naive_one_step_rmse"]
            and m["model_multi_step_rmse"] < m["seasonal_naive_multi_step_rmse"]
        ),
    ),
    "sunspots": (
        "sunspots_gru",
        [],
        "GRU one-step RMSE < seasonal-naive RMSE (last 24 months)",
        lambda m: m["model_one_step_rmse"] < m["seasonal_naive_one_step_rmse"],
    ),
}


def ngram_baseline(run_dir: Path) -> dict[str, float]:
    """Kneser-Ney trigram on the run's own token streams (same tokenizer, <eos> after every caption)."""
    from deepkit.data.corpora import language_model_data
    from deepkit.data.tokenizers import load_tokenizer
    from deepkit.models.ngram import KneserNeyLM
    from deepkit.recipe import run_recipe

    rec = run_recipe(run_dir)
    tok = load_tokenizer(run_dir / "tokenizer.json")
    bundle = language_model_data(rec.data, tokenizer=tok)
    train = bundle.loader("train", shuffle=False).stream.tolist()
    test = bundle.loader("test").stream.tolist()
    t0 = time.perf_counter()
    out = {}
    for order in (2, 3):
        lm = KneserNeyLM(order).fit(train, tok.vocab_size)
        out[f"kn{order}_perplexity"] = lm.perplexity(test)
    out["kn_fit_eval_s"] = time.perf_counter() - t0
    return out


def analogy_rank(run_dir: Path) -> dict[str, float]:
    from deepkit.families.word2vec import WordVectors

    vecs = WordVectors.from_run(run_dir)
    ranked = [w for w, _ in vecs.analogy("man", "woman", "boy", k=50)]
    return {"analogy_man_woman_boy_girl_rank": ranked.index("girl") + 1 if "girl" in ranked else 99}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(BENCHES), help="comma-separated: " + ", ".join(BENCHES))
    ap.add_argument("overrides", nargs="*", help="recipe overrides applied to every selected bench")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "sequences.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    for name in args.only.split(","):
        recipe, extra, bar, check = BENCHES[name]
        t0 = time.perf_counter()
        res = deepkit.train(recipe, *extra, *args.overrides, out=OUT / "runs" / name, overwrite=True)
        wall = time.perf_counter() - t0
        if name == "word_lm":
            res.metrics.update(ngram_baseline(res.run_dir))
        if name == "w2v":
            res.metrics.update(analogy_rank(res.run_dir))
        history = res.history
        row = {
            "recipe": recipe,
            "overrides": extra + list(args.overrides),
            "bar": bar,
            "passed": bool(check(res.metrics)),
            "metrics": res.metrics,
            "wall_s": round(wall, 1),
            "train_s": round(history[-1]["time"], 1) if history else None,
            "epochs": len(history),
            "best_val": min((h.get("val_loss", float("inf")) for h in history), default=None),
        }
        if name == "char":
            row["sample"] = json.loads((res.run_dir / "results.json").read_text()).get("sample", "")[:400]
        results[name] = row
        print(json.dumps({name: row}, indent=1), flush=True)
        path.write_text(json.dumps(results, indent=1))
    plot_adding()


def plot_adding() -> None:
    """One plot of ‖∂L/∂x_t‖ vs t for every adding-problem run present (RNN vs LSTM vs GRU)."""
    import numpy as np

    from deepkit.viz.sequence_plots import plot_gradient_norms

    curves = {}
    for cell in ("rnn", "lstm", "gru"):
        f = OUT / "runs" / f"adding_{cell}" / "gradient_norms.json"
        if f.is_file():
            norms = json.loads(f.read_text())
            curves[f"{cell.upper()} trained"] = np.array(norms["trained"])
            if "init" in norms:
                curves[f"{cell.upper()} init"] = np.array(norms["init"])
    if curves:
        plot_gradient_norms(curves, OUT / "gradient_norms.png", "adding problem, length 100: ‖∂L/∂x_t‖ vs t")


if __name__ == "__main__":
    main()
