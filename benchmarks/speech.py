"""Speech on this CPU: the quality bars of issue 16 (spoken digits, CTC digit strings, synthesis).

    flock /tmp/deepkit-core1.lock taskset -c 1 python benchmarks/speech.py [--runs DIR]
        [--only digits,loso,ctc,ctc_speaker,tts] [--recipe fsdd_digits_cnn] [--loso-set KEY=VALUE ...]
        [--ctc-recipes fsdd_strings_ctc,...] [--ctc-speaker theo] [--ctc-set KEY=VALUE ...] [--set KEY=VALUE ...]
        [--tts-recipe fsdd_tts] [--tts-set KEY=VALUE ...] [--recognizer RUN_DIR] [--tts-run RUN_DIR] [--reuse]

Parts (``--only``):

* ``digits``: the recipe (default ``fsdd_digits_cnn``) trained from scratch on FSDD's official split (takes 0-4 of
  every speaker and digit test, 5-49 train, 2 training takes per (speaker, digit) validate); its best checkpoint's
  test accuracy. Bar: >= 98.5%.
* ``loso``: leave-one-speaker-out, 6 folds (``data.holdout_speaker``: every clip of one speaker is the test set, the
  other five speakers train and validate); mean and worst-speaker test accuracy. No bar (issue 16 asks for the
  figures); published ~97% figures use random splits that mix speakers, this split does not.
* ``ctc``: each CTC recipe of ``--ctc-recipes`` (default ``fsdd_strings_ctc``) trained on spoken digit strings
  (train strings only from training takes 5-49, test strings only from test takes 0-4); the digit error rate (DER)
  of its best checkpoint on the test strings, greedy and prefix beam search. Bar: DER <= 3% (seen speakers, unseen
  recordings), checked for each decoder.
* ``ctc_speaker``: the first CTC recipe with ``data.holdout_speaker`` (``--ctc-speaker``, default theo): test strings
  from that speaker's recordings only, which training never hears; DER greedy and beam. No bar (reported).

* ``tts``: intelligibility of synthesis, measured not heard. The recognizer is the ``digits`` part's run (trained on
  real recordings only; ``--recognizer RUN_DIR`` reuses one), the synthesizer the ``--tts-recipe`` run (``--tts-run
  RUN_DIR`` reuses one). Protocol, per voice (6): every digit alone 3 times (pace 1.0, 0.85, 1.15; Griffin-Lim seeds
  0, 1, 2) and every digit 5 times inside 5-digit strings (10 strings per voice: 5 shuffles of 0-9 cut in halves,
  drawn with seed 0; each string synthesized whole, then cut per digit at the word boundaries the synthesizer
  reports, widened by 40 ms of the pause on each side): 80 clips per voice, 480 in all. Figure: the share of clips
  the recognizer labels as the requested digit, per voice and averaged (bar >= 90%), next to the same recognizer's
  accuracy on the real test recordings and on the same recordings passed through the vocoder (trimmed, mel ->
  Griffin-Lim: the ceiling of a perfect acoustic model).

Each part is one function returning a dict, so later parts (CTC digit strings, synthesis judged by the digit
recognizer) add a function and a key in ``PARTS``. ``--set`` passes overrides to every run, ``--loso-set`` to the
folds only (e.g. ``trainer.epochs=10`` to make them cheaper; the table says so). ``--reuse`` takes a run directory
that already has results.json. Writes benchmarks/out/speech.json (speech_ctc.json, ... for the other parts)
and prints the Markdown rows for RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections.abc import Callable
from pathlib import Path

import deepkit
from _bench import one_thread_report

OUT = Path(__file__).parent / "out"
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
DIGITS_BAR = 0.985


def train_seconds(run: Path) -> float:
    """The Trainer's clock at the end (metrics.csv ``time``, last row): seconds of training steps."""
    with open(run / "metrics.csv", newline="") as f:
        return float(list(csv.DictReader(f))[-1]["time"])


def run_one(recipe: str, out: Path, reuse: bool, overrides: list[str]) -> dict:
    if not (reuse and (out / "results.json").is_file()):
        deepkit.train(recipe, "trainer.threads=1", "trainer.progress=plain", *overrides, out=out, overwrite=True)
    results = json.loads((out / "results.json").read_text())
    return {"run": str(out), "train_s": train_seconds(out), "overrides": overrides, **results}


def digits(args: argparse.Namespace) -> dict:
    r = run_one(args.recipe, args.runs / f"{args.recipe}_official", args.reuse, args.overrides)
    acc = r["metrics"]["accuracy"]
    wrong = ", ".join(f"{w['clip']} ({w['true']}->{w['predicted']})" for w in r.get("misclassified", []))
    r["row"] = (f"| {args.recipe}, official split | test accuracy {100 * acc:.2f}% ({len(r.get('misclassified', []))}"
                f" of 300 wrong: {wrong or 'none'}) | >= {100 * DIGITS_BAR:.1f}% | "
                f"{'yes' if acc >= DIGITS_BAR else 'no'} | {r['train_s'] / 60:.1f} min |")  # fmt: skip
    return r


def loso(args: argparse.Namespace) -> dict:
    folds = {}
    for speaker in SPEAKERS:
        out = args.runs / f"{args.recipe}_loso_{speaker}"
        over = [*args.overrides, *args.loso_overrides, f"data.holdout_speaker={speaker}"]
        folds[speaker] = run_one(args.recipe, out, args.reuse, over)
        print(f"LOSO {speaker}: test accuracy {folds[speaker]['metrics']['accuracy']:.4f}", flush=True)
    accs = {s: f["metrics"]["accuracy"] for s, f in folds.items()}
    mean = sum(accs.values()) / len(accs)
    worst = min(accs, key=accs.get)
    minutes = sum(f["train_s"] for f in folds.values()) / 60
    per = ", ".join(f"{s} {100 * a:.1f}%" for s, a in accs.items())
    note = f" ({' '.join(args.loso_overrides)})" if args.loso_overrides else ""
    row = (f"| {args.recipe}, leave-one-speaker-out{note} | mean {100 * mean:.2f}%, worst {worst} "
           f"{100 * accs[worst]:.2f}% ({per}) | reported | - | {minutes:.1f} min (6 folds) |")  # fmt: skip
    return {"folds": folds, "accuracy": accs, "mean": mean, "worst": [worst, accs[worst]], "row": row}


TTS_BAR = 0.90


def tts_clips(synth, speaker: str, seed: int = 0) -> list[tuple[int, str, object]]:
    """The protocol's clips for one voice: ``(requested digit, how, waveform)``; see the module docstring."""
    import numpy as np

    out = []
    for d in range(10):
        for k, pace in enumerate((1.0, 0.85, 1.15)):
            out.append((d, "alone", synth.speak(str(d), speaker, pace=pace, seed=k)))
    rng = np.random.default_rng(seed)
    strings = [half for _ in range(5) for half in np.split(rng.permutation(10), 2)]
    margin = int(0.04 * synth.sample_rate)
    hop = synth.saved.features["hop_length"]
    for j, digits_ in enumerate(strings):
        r = synth.synthesize(" ".join(map(str, digits_)), speaker, seed=j)
        for d, start, stop in r["words"]:
            a, b = max(start * hop - margin, 0), min(stop * hop + margin, len(r["wave"]))
            out.append((d, "string", r["wave"][a:b]))
    return out


def vocoder_ceiling(synth, recognizer) -> float:
    """The share of FSDD's real test recordings (takes 0-4) the recognizer still labels right after the synthesizer's
    own path from mel frames to sound: trimmed as its training words, mel power -> NNLS -> Griffin-Lim (60
    iterations). What the acoustic model could reach with perfect mel frames."""
    from deepkit.data import audio as da
    from deepkit.data.sources import data_root
    from deepkit.data.tts import trim_frames
    from deepkit.nn.griffinlim import mel_to_audio

    f = synth.saved.features
    clips = [c for c in da.read_fsdd(data_root() / "fsdd" / "recordings") if c.index < 5]
    reader = da.AudioReader(synth.sample_rate)
    waves = []
    for c in clips:
        power = synth.mel(reader(c.path)[None])[0]
        a, b = trim_frames(power)
        waves.append(mel_to_audio(power[:, a:b], synth.mel.filterbank, f["n_fft"], f["hop_length"]).numpy())
    said = recognizer.transcribe(waves)
    return sum(s == c.label for s, c in zip(said, clips, strict=True)) / len(clips)


def tts(args: argparse.Namespace) -> dict:
    if args.recognizer:
        recog_dir = args.recognizer
        recog = {"run": str(recog_dir), **json.loads((recog_dir / "results.json").read_text())}
    else:
        recog = run_one(args.recipe, args.runs / f"{args.recipe}_official", args.reuse, args.overrides)
        recog_dir = Path(recog["run"])
    if args.tts_run:
        tts_dir = args.tts_run
        synth_run = {"run": str(tts_dir), "train_s": train_seconds(tts_dir)}
    else:
        synth_run = run_one(args.tts_recipe, args.runs / args.tts_recipe, args.reuse, args.tts_overrides)
        tts_dir = Path(synth_run["run"])
    recognizer, synth = deepkit.load(recog_dir), deepkit.load(tts_dir)
    real_acc = recog["metrics"]["accuracy"]
    per_voice, per_how, confusions = {}, {"alone": [0, 0], "string": [0, 0]}, []
    t0 = time.perf_counter()
    for speaker in synth.speakers:
        clips = tts_clips(synth, speaker)
        said = recognizer.transcribe([w for _, _, w in clips])
        hits = [str(d) == s for (d, _, _), s in zip(clips, said, strict=True)]
        per_voice[speaker] = sum(hits) / len(hits)
        for (d, how, _), s, h in zip(clips, said, hits, strict=True):
            per_how[how][0] += h
            per_how[how][1] += 1
            if not h:
                confusions.append(f"{speaker} {d}->{s} ({how})")
        print(f"TTS {speaker}: {per_voice[speaker]:.4f} of {len(hits)} clips recognized", flush=True)
    seconds = time.perf_counter() - t0
    ceiling = vocoder_ceiling(synth, recognizer)
    print(f"TTS vocoder ceiling (real test clips through mel -> Griffin-Lim): {ceiling:.4f}", flush=True)
    mean = sum(per_voice.values()) / len(per_voice)
    per = ", ".join(f"{s} {100 * a:.1f}%" for s, a in per_voice.items())
    how = ", ".join(f"{k} {100 * v[0] / max(v[1], 1):.1f}% of {v[1]}" for k, v in per_how.items())
    row = (f"| {Path(synth_run['run']).name} judged by {Path(recog['run']).name} | synthesized digits recognized: mean "
           f"{100 * mean:.2f}% over {len(per_voice)} voices ({per}; {how}); recognizer on real test recordings "
           f"{100 * real_acc:.2f}%, on the same recordings through mel -> Griffin-Lim {100 * ceiling:.2f}% | "
           f">= {100 * TTS_BAR:.0f}% | {'yes' if mean >= TTS_BAR else 'no'} | "
           f"{synth_run['train_s'] / 60:.1f} min (synthesis + recognition {seconds:.0f} s) |")  # fmt: skip
    return {"per_voice": per_voice, "mean": mean, "by_context": per_how, "errors": confusions,
            "recognizer_real_test_accuracy": real_acc, "vocoder_ceiling": ceiling, "tts_run": synth_run,
            "recognizer_run": str(recog_dir),
            "row": row}  # fmt: skip


CTC_BAR = 0.03


def ctc_row(r: dict, what: str, bar: bool) -> str:
    m = r["metrics"]
    der, beam = m["der"], m["der_beam"]
    met = f"greedy {'yes' if der <= CTC_BAR else 'no'}, beam {'yes' if beam <= CTC_BAR else 'no'}" if bar else "-"
    return (f"| {what} | test DER greedy {100 * der:.2f}%, beam {100 * beam:.2f}% (WER {100 * m['wer']:.2f}% / "
            f"{100 * m['wer_beam']:.2f}%; {len(r.get('transcripts', []))} strings listed) | "
            f"{f'<= {100 * CTC_BAR:.0f}%' if bar else 'reported'} | {met} | {r['train_s'] / 60:.1f} min |")  # fmt: skip


def ctc(args: argparse.Namespace) -> dict:
    out = {}
    for recipe in args.ctc_recipes.split(","):
        r = run_one(recipe, args.runs / f"{recipe}_official", args.reuse, [*args.overrides, *args.ctc_overrides])
        note = f" ({' '.join(args.ctc_overrides)})" if args.ctc_overrides else ""
        r["row"] = ctc_row(r, f"{recipe}, digit strings from test takes 0-4{note}", True)
        print(r["row"], flush=True)
        out[recipe] = r
    return {"runs": out, "row": "\n".join(r["row"] for r in out.values())}


def ctc_speaker(args: argparse.Namespace) -> dict:
    recipe = args.ctc_recipes.split(",")[0]
    over = [*args.overrides, *args.ctc_overrides, f"data.holdout_speaker={args.ctc_speaker}"]
    r = run_one(recipe, args.runs / f"{recipe}_speaker_{args.ctc_speaker}", args.reuse, over)
    note = f" ({' '.join(args.ctc_overrides)})" if args.ctc_overrides else ""
    r["row"] = ctc_row(r, f"{recipe}, held-out speaker {args.ctc_speaker} (test strings only from that unseen "
                          f"speaker){note}", False)  # fmt: skip
    return r


PARTS: dict[str, Callable[[argparse.Namespace], dict]] = {
    "digits": digits, "loso": loso, "ctc": ctc, "ctc_speaker": ctc_speaker, "tts": tts,
}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/bench_speech"))
    ap.add_argument("--only", default="digits,loso")
    ap.add_argument("--recipe", default="fsdd_digits_cnn")
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--loso-set", dest="loso_overrides", action="append", default=[])
    ap.add_argument("--tts-recipe", default="fsdd_tts")
    ap.add_argument("--tts-set", dest="tts_overrides", action="append", default=[])
    ap.add_argument("--recognizer", type=Path, help="tts: a trained digit-recognizer run to reuse")
    ap.add_argument("--tts-run", type=Path, help="tts: a trained TTS run to reuse")
    ap.add_argument("--ctc-recipes", default="fsdd_strings_ctc")
    ap.add_argument("--ctc-speaker", default="theo")
    ap.add_argument("--ctc-set", dest="ctc_overrides", action="append", default=[])
    args = ap.parse_args()
    report = one_thread_report(args.overrides)
    commit = report["commit"]
    rows = []
    for key in args.only.split(","):
        t0 = time.perf_counter()
        r = PARTS[key](args)
        r["wall_s"] = time.perf_counter() - t0
        report["results"][key] = r
        rows.append(r["row"])
    OUT.mkdir(exist_ok=True)
    parts = args.only.split(",")
    name = "speech.json" if set(parts) <= {"digits", "loso"} else f"speech_{'_'.join(parts)}.json"
    (OUT / name).write_text(json.dumps(report, indent=1, default=str))
    print(f"\nmachine: {report['machine']}; commit {commit}")
    print("| run | figure | bar | met | training time |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
