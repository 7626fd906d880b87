"""The cost of recording (issue 19): step time with ``trainer.record`` on vs off, same process, alternating.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/doctor_overhead.py [--rounds 3] [--only digits_mlp,...]
        [--every auto,50]

On an idle core (nothing else running on it). Run time: (1 + 2 × rounds) passes over the recipes; one pass took
151 s on a shared core of the 2-core EPYC (digits_mlp 17 s, digits_cnn 8 s, mnist_cnn 70 s, char_shakespeare
33 s, sst2_bilstm 18 s, airline_lstm 6 s), so ``--rounds 3`` is about 18 minutes there and
``--rounds 3 --only digits_mlp,digits_cnn,char_shakespeare,sst2_bilstm,airline_lstm`` about 9.5 (less on an idle
core).

Each round trains every recipe twice in this process, once with the Recorder (its defaults: the cadence ``every``
chosen for the run's length; ``--every`` adds other cadences, ``trainer.record.every=N``) and once with
``trainer.record.enabled=false``; the order alternates round by round.
Step time: a callback stamps the clock at the end of every optimizer step; a run's step time is the mean gap
between consecutive steps of the same epoch after the first ``--warmup`` steps (10: past the first 8 batches, whose
input statistics are a one-off of the run's start like the data scan) (so it holds data loading, forward,
backward, the optimizer, every callback and the recording steps, and not the validation at epoch ends; the mean,
not the median, which would leave out the recording steps that come only every N steps). The
overhead of a recipe is the median over rounds of (on / off - 1), on the wall clock and on the training thread's
CPU time (the same gaps measured with ``time.thread_time``: on a shared core, other processes' time slices land
in the wall-clock gaps of one run and not the other; CPU time leaves them out). The one-off costs that are not
step time are reported beside it: the data scan at the start (hashing every split, ``record/data.json``) and the
whole run's wall time ratio (the scan, the validation predictions at the end, the records written at epoch ends).
Bar: step-time overhead <= 3% on every recipe.

``--blocks``: the paired design, for machines where whole runs vary by more than the bar (they do here: ±15 % between
identical runs on an idle core). One run per recipe with the Recorder on, whose per-step work (its batch-start,
before-optimizer-step and step-end hooks, and so the recording steps with their forward hooks) is switched off in
every other block of ``every`` consecutive optimizer steps; blocks are centred on the recording steps (steps
``every·j``), so each "on" block holds exactly one recording step and the per-step bookkeeping of ``every`` steps, as
a run with the Recorder holds on average. Step ``s``'s time is the gap between the step-end stamps of ``s − 1`` and
``s`` (the clock fires after the built-in callbacks: the gap holds all of step ``s``'s recording work); gaps across
an epoch boundary, the first gap of each block and the first block (the run's start: input statistics) are left out.
The overhead is the ratio of the mean step time of the on blocks to that of the off blocks, minus 1 (wall and
thread CPU time), with the median and a bootstrap 95 % interval over adjacent (on, off) block pairs.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/doctor_overhead.py --blocks [--only ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import deepkit
from deepkit.train import Callback

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "out"

# bundled CPU recipes, shortened: an MLP, two CNNs, two LSTMs (characters, words) and a small sequence model
# (each long enough for several recording steps at the default cadence, every 50 steps)
RECIPES = {
    "digits_mlp": ["trainer.epochs=5"],
    "digits_cnn": ["trainer.epochs=4"],
    "mnist_cnn": ["data.limit=19200", "trainer.epochs=1"],
    "char_shakespeare": ["data.limit=600000", "trainer.epochs=1", "model.hidden_size=128"],
    "sst2_bilstm": ["data.limit=9600", "trainer.epochs=1"],
    "airline_lstm": ["trainer.epochs=60"],
}


class StepClock(Callback):
    """Stamps two clocks at the end of every optimizer step (with its epoch): wall time, and the CPU time of the
    training thread (``time.thread_time``), which other processes on the same core do not inflate."""

    def __init__(self):
        self.stamps: list[tuple[int, float, float]] = []

    def on_step_end(self, trainer):
        self.stamps.append((trainer.state.epoch, time.perf_counter(), time.thread_time()))

    def step_time(self, warmup: int, clock: int = 1) -> float:
        gaps = [
            b[clock] - a[clock]
            for i, (a, b) in enumerate(zip(self.stamps, self.stamps[1:], strict=False))
            if a[0] == b[0] and i >= warmup
        ]
        return statistics.fmean(gaps) if gaps else float("nan")


def one_run(recipe: str, overrides: list[str], record: str | None, root: Path, warmup: int) -> dict:
    """``record``: None (off), ``auto`` (the default cadence) or a cadence N."""
    clock = StepClock()
    out = root / f"{recipe}-{record or 'off'}"
    t0 = time.perf_counter()
    every = [] if record in (None, "auto") else [f"trainer.record.every={record}"]
    deepkit.train(
        recipe,
        *overrides,
        *every,
        "trainer.progress=none",
        "trainer.threads=1",
        f"trainer.record.enabled={str(record is not None).lower()}",
        out=out,
        overwrite=True,
        callbacks=[clock],
    )
    wall = time.perf_counter() - t0
    scan_s = None
    if record and (out / "record" / "data.json").is_file():
        scan_s = json.loads((out / "record" / "data.json").read_text()).get("seconds")
    every = json.loads((out / "record" / "meta.json").read_text())["every"] if record else None
    return {
        "step_s": clock.step_time(warmup),
        "cpu_s": clock.step_time(warmup, clock=2),
        "steps": len(clock.stamps),
        "wall_s": wall,
        "scan_s": scan_s,
        "every": every,
    }


# --blocks: runs long enough for ~40 blocks of 50 steps (airline: one step an epoch of 6 batches, so many epochs)
BLOCK_RECIPES = {
    "digits_mlp": ["trainer.epochs=45"],
    "digits_cnn": ["trainer.epochs=40"],
    "mnist_cnn": ["data.limit=19200", "trainer.epochs=4"],
    "char_shakespeare": ["data.limit=600000", "trainer.epochs=6", "model.hidden_size=128"],
    "sst2_bilstm": ["data.limit=9600", "trainer.epochs=10"],
    "airline_lstm": ["trainer.epochs=400"],
}


def gate_recorder(state: dict) -> None:
    """Switch the Recorder's per-step hooks off in odd blocks of ``every`` steps centred on the recording steps."""
    from deepkit.train import record

    cls = record.Recorder

    def off(rec, step: int) -> bool:
        b = rec.every
        state["every"] = b
        return ((step - 1 + b // 2) // b) % 2 == 1

    orig = {n: getattr(cls, n) for n in ("on_batch_start", "on_before_optimizer_step", "on_step_end")}

    def on_batch_start(self, trainer, batch):
        if not off(self, trainer.state.step + 1):
            orig["on_batch_start"](self, trainer, batch)

    def on_before_optimizer_step(self, trainer):
        if not off(self, trainer.state.step + 1):
            orig["on_before_optimizer_step"](self, trainer)

    def on_step_end(self, trainer):
        if not off(self, trainer.state.step):
            orig["on_step_end"](self, trainer)
        else:
            self.t_mark = None

    cls.on_batch_start, cls.on_before_optimizer_step, cls.on_step_end = (
        on_batch_start,
        on_before_optimizer_step,
        on_step_end,
    )


def block_run(recipe: str, overrides: list[str], root: Path, state: dict, seed: int = 0) -> dict:
    """One run with the gated Recorder: the on/off step-time ratio, wall and CPU, overall and per block pair."""
    import random

    clock = StepClock()
    deepkit.train(recipe, *overrides, "trainer.progress=none", "trainer.threads=1", "trainer.record.enabled=true",
                  out=root / f"{recipe}-blocks", overwrite=True, callbacks=[clock])  # fmt: skip
    b = state["every"]
    blocks: dict[int, dict[str, list[float]]] = {}
    stamps = clock.stamps
    for s in range(2, len(stamps) + 1):  # optimizer step s (1-based) ends at stamps[s - 1]
        (e0, w0, c0), (e1, w1, c1) = stamps[s - 2], stamps[s - 1]
        j = (s - 1 + b // 2) // b
        first = (s - 2 + b // 2) // b != j
        if e0 != e1 or first or j == 0:
            continue
        blocks.setdefault(j, {"wall": [], "cpu": []})
        blocks[j]["wall"].append(w1 - w0)
        blocks[j]["cpu"].append(c1 - c0)
    full = {j: v for j, v in blocks.items() if len(v["wall"]) >= b // 2}
    out = {"every": b, "steps": len(stamps), "blocks": len(full)}
    for clk in ("wall", "cpu"):
        on = [x for j, v in full.items() if j % 2 == 0 for x in v[clk]]
        off = [x for j, v in full.items() if j % 2 == 1 for x in v[clk]]
        pairs = [(statistics.fmean(full[j][clk]), statistics.fmean(full[j + 1][clk]))
                 for j in full if j % 2 == 0 and j + 1 in full]  # fmt: skip
        ratios = [a / o - 1 for a, o in pairs]
        rng = random.Random(seed)
        boot = sorted(
            statistics.fmean(a for a, _ in sample) / statistics.fmean(o for _, o in sample) - 1
            for sample in ([rng.choice(pairs) for _ in pairs] for _ in range(2000))
        )
        out[clk] = {
            "on_ms": statistics.fmean(on) * 1e3,
            "off_ms": statistics.fmean(off) * 1e3,
            "overhead": statistics.fmean(on) / statistics.fmean(off) - 1,
            "pairs": len(pairs),
            "median_pair": statistics.median(ratios),
            "ci95": [boot[int(0.025 * len(boot))], boot[int(0.975 * len(boot)) - 1]],
        }
    return out


def blocks_main(names: list[str], extra: list[str]) -> None:
    state: dict = {}
    gate_recorder(state)
    summary = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            r = block_run(name, [*BLOCK_RECIPES[name], *extra], Path(tmp), state)
            summary[name] = r
            w, c = r["wall"], r["cpu"]
            print(
                f"{name:<18} every {r['every']}, {r['steps']} steps, {r['blocks']} blocks, {w['pairs']} pairs: step on "
                f"{w['on_ms']:.3f} ms, off {w['off_ms']:.3f} ms: wall {w['overhead']:+.2%} (pair median "
                f"{w['median_pair']:+.2%}, 95% CI {w['ci95'][0]:+.2%} .. {w['ci95'][1]:+.2%}); cpu "
                f"{c['overhead']:+.2%} (95% CI {c['ci95'][0]:+.2%} .. {c['ci95'][1]:+.2%}); bar <= 3%: "
                f"{'pass' if w['overhead'] <= 0.03 else 'FAIL'}",
                flush=True,
            )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    OUT.mkdir(exist_ok=True)
    (OUT / "doctor_overhead_blocks.json").write_text(
        json.dumps({"commit": commit.strip(), "design": "blocks", "recipes": summary}, indent=1)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--only", default="", help="comma-separated recipe names")
    parser.add_argument("--every", default="auto", help="cadences to measure: auto (the default) and/or numbers")
    parser.add_argument("--blocks", action="store_true", help="the paired design: on/off blocks inside one run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="--blocks: KEY=VALUE overrides")
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = [n for n in RECIPES if not args.only or n in args.only.split(",")]
    if args.blocks:
        return blocks_main(names, args.overrides)
    modes = args.every.split(",")
    rows = {n: {m: [] for m in [*modes, "off"]} for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:  # one unmeasured run each: data caches, imports, allocator warm-up
            one_run(name, RECIPES[name], "auto", Path(tmp), args.warmup)
        for r in range(args.rounds):
            for name in names:
                order = [*modes, "off"] if r % 2 == 0 else ["off", *modes[::-1]]
                for mode in order:
                    res = one_run(name, RECIPES[name], None if mode == "off" else mode, Path(tmp), args.warmup)
                    rows[name][mode].append(res)
                off = rows[name]["off"][-1]
                for mode in modes:
                    on = rows[name][mode][-1]
                    print(
                        f"round {r} {name:<18} {mode:>4}: step on {on['step_s'] * 1e3:8.3f} ms  off "
                        f"{off['step_s'] * 1e3:8.3f} ms  ({on['step_s'] / off['step_s'] - 1:+.2%}; every "
                        f"{on['every']}, {on['steps']} steps)  cpu {on['cpu_s'] * 1e3:.3f} / "
                        f"{off['cpu_s'] * 1e3:.3f} ms "
                        f"({on['cpu_s'] / off['cpu_s'] - 1:+.2%})  wall {on['wall_s']:.2f} / {off['wall_s']:.2f} s",
                        flush=True,
                    )
    summary: dict[str, dict] = {}
    for name in names:
        off = rows[name]["off"]
        for mode in modes:
            on = rows[name][mode]
            ratios = [a["step_s"] / b["step_s"] - 1 for a, b in zip(on, off, strict=True)]
            walls = [a["wall_s"] / b["wall_s"] - 1 for a, b in zip(on, off, strict=True)]
            cpus = [a["cpu_s"] / b["cpu_s"] - 1 for a, b in zip(on, off, strict=True)]
            summary[f"{name} every={mode}"] = {
                "step_ms_on": statistics.median(a["step_s"] for a in on) * 1e3,
                "step_ms_off": statistics.median(b["step_s"] for b in off) * 1e3,
                "overhead": statistics.median(ratios),
                "overhead_rounds": ratios,
                "cpu_ms_on": statistics.median(a["cpu_s"] for a in on) * 1e3,
                "cpu_ms_off": statistics.median(b["cpu_s"] for b in off) * 1e3,
                "cpu_overhead": statistics.median(cpus),
                "cpu_overhead_rounds": cpus,
                "wall_overhead": statistics.median(walls),
                "scan_s": statistics.median(a["scan_s"] or 0.0 for a in on),
                "every": on[0]["every"],
                "steps": on[0]["steps"],
                "pass": statistics.median(ratios) <= 0.03,
                "cpu_pass": statistics.median(cpus) <= 0.03,
            }
    print(
        f"{'recipe':<28} {'every':>5} {'steps':>5} {'wall step on/off ms':>20} {'overhead':>9} "
        f"{'cpu step on/off ms':>19} {'overhead':>9} {'run wall':>8}"
    )
    for name, s in summary.items():
        print(
            f"{name:<28} {s['every']:>5} {s['steps']:>5} {s['step_ms_on']:>9.3f}/{s['step_ms_off']:<10.3f} "
            f"{s['overhead']:>+9.2%} {s['cpu_ms_on']:>9.3f}/{s['cpu_ms_off']:<9.3f} {s['cpu_overhead']:>+9.2%} "
            f"{s['wall_overhead']:>+8.1%}  wall {'pass' if s['pass'] else 'FAIL'}, cpu "
            f"{'pass' if s['cpu_pass'] else 'FAIL'} (bar <= 3%); rounds wall "
            f"{' '.join(f'{x:+.1%}' for x in s['overhead_rounds'])}, cpu "
            f"{' '.join(f'{x:+.1%}' for x in s['cpu_overhead_rounds'])}"
        )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    OUT.mkdir(exist_ok=True)
    (OUT / "doctor_overhead.json").write_text(
        json.dumps({"commit": commit.strip(), "rounds": args.rounds, "recipes": summary}, indent=1)
    )


if __name__ == "__main__":
    sys.exit(main())
