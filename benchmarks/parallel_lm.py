"""Parallel training, measured (issue 5, point 8): a GPT and an LSTM language model of equal parameter count
trained on the same Tiny Shakespeare characters, with the same batches, sequence length, steps and schedule.

    DEEPKIT_DATA=/work/shared/datasets python benchmarks/parallel_lm.py [--budget-s 240 --target 2.0]

A Transformer processes all positions of a window at once (the attention is one batched matmul), an LSTM walks
them one after the other; on a GPU that is the whole story of why Transformers replaced RNNs. This measures what
it buys on the machine at hand. Both models see the same batch sequence (same seed), each with the learning rate
of its recipe (GPT 2e-3 after 100 warm-up steps, LSTM 3e-3; constant, fused AdamW), and are trained one
after the other in this one process, each for ``--budget-s`` seconds of training (evaluation excluded) or
``--steps`` steps, whichever comes first. Every ``--eval-every`` steps the validation loss is measured on the
first ``--val-chars`` characters of the held-out last 10%.

Reported per model: parameters, training tokens/s, best validation loss, and the training time (evaluation
excluded) to first reach each validation-loss threshold; the common target is ``--target`` nats/char.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from deepkit import create_model
from deepkit.data.corpora import language_model_data
from deepkit.recipe import resolve_recipe


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def lstm_matching(vocab: int, target: int, embed_dim: int = 64, layers: int = 2) -> torch.nn.Module:
    """The 2-layer LSTM LM (untied, like char_shakespeare) whose parameter count is closest to ``target``."""
    best = None
    for hidden in range(64, 1025, 4):
        n = count(create_model("lstm_lm", vocab_size=vocab, embed_dim=embed_dim, hidden_size=hidden, num_layers=layers))
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (hidden, n)
    return create_model(
        "lstm_lm", vocab_size=vocab, embed_dim=embed_dim, hidden_size=best[0], num_layers=layers, dropout=0.0
    )


@torch.no_grad()
def val_loss(model, val: torch.Tensor, block: int, batch: int) -> float:
    model.eval()
    n = (len(val) - 1) // block
    x = val[: n * block].view(n, block)
    y = val[1 : n * block + 1].view(n, block)
    total = 0.0
    for i in range(0, n, batch):
        logits = model(x[i : i + batch])
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[i : i + batch].reshape(-1))) * len(
            x[i : i + batch]
        )
    model.train()
    return total / n


def train(name, model, loader, val, args, lr: float, warmup: int) -> dict:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, fused=True)

    # linear warm-up, then constant: time-to-target must not depend on how far a decay schedule has got
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)
    curve = [(0, 0.0, val_loss(model, val, args.block, 64))]
    step, train_time, tokens = 0, 0.0, 0
    model.train()
    while step < args.steps and train_time < args.budget_s:
        for batch in loader:
            t0 = time.perf_counter()
            logits = model(batch["tokens"])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["target"].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            train_time += time.perf_counter() - t0
            tokens += batch["tokens"].numel()
            step += 1
            if step % args.eval_every == 0 or step == args.steps or train_time >= args.budget_s:
                curve.append((step, train_time, val_loss(model, val, args.block, 64)))
                print(f"{name:5s} step {step:5d}  {train_time:6.1f}s  val {curve[-1][2]:.3f}", flush=True)
            if step >= args.steps or train_time >= args.budget_s:
                break
        loader.set_epoch(loader.epoch + 1)
    reached = {}
    for thr in args.thresholds:
        hit = next(((s, t) for s, t, v in curve if v <= thr), None)
        reached[f"{thr:.2f}"] = None if hit is None else {"step": hit[0], "seconds": round(hit[1], 1)}
    return {
        "params": count(model),
        "steps": step,
        "train_seconds": round(train_time, 1),
        "tokens_per_s": round(tokens / train_time),
        "best_val": round(min(v for _, _, v in curve), 4),
        "time_to": reached,
        "curve": [(s, round(t, 1), round(v, 4)) for s, t, v in curve],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, default=240.0, help="training seconds per model")
    ap.add_argument("--steps", type=int, default=5000, help="step budget per model")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--val-chars", type=int, default=32768)
    ap.add_argument("--target", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    args.thresholds = sorted({2.5, 2.2, args.target, 1.8, 1.7}, reverse=True)
    torch.set_num_threads(args.threads)

    rec = resolve_recipe(
        "shakespeare_char_gpt",
        {"data.batch_size": args.batch, "data.text.block_size": args.block},
    )
    bundle = language_model_data(rec.data)
    vocab = bundle.tokenizer.vocab_size
    val = bundle.loader("val").stream[: args.val_chars + 1]
    torch.manual_seed(0)
    gpt = create_model(
        "gpt2",
        vocab_size=vocab,
        n_layer=4,
        n_head=4,
        n_embd=128,
        n_positions=args.block,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch.manual_seed(0)
    lstm = lstm_matching(vocab, count(gpt))
    print(
        f"GPT 4x128: {count(gpt):,} parameters; LSTM 2x{lstm.cfg.hidden_size}: {count(lstm):,} "
        f"({count(lstm) / count(gpt) - 1:+.1%})",
        flush=True,
    )
    results = {}
    for name, model, lr, warmup in (("gpt", gpt, 2e-3, 100), ("lstm", lstm, 3e-3, 0)):
        loader = bundle.loader("train", shuffle=True, seed=0)  # same windows in the same order for both
        results[name] = train(name, model, loader, val, args, lr, warmup)
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "curve"} for k, v in results.items()}, indent=1))
    g, s = results["gpt"]["time_to"][f"{args.target:.2f}"], results["lstm"]["time_to"][f"{args.target:.2f}"]
    print(
        f"\ntokens/s: GPT {results['gpt']['tokens_per_s']:,}  LSTM {results['lstm']['tokens_per_s']:,}; "
        f"time to val {args.target}: GPT {g['seconds'] if g else 'not reached'} s, "
        f"LSTM {s['seconds'] if s else 'not reached'} s"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": {k: v for k, v in vars(args).items()}, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
