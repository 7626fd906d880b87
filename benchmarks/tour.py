"""Runs the README's tour commands as a new user would, from a fresh folder, and times each one.

    python benchmarks/tour.py                      # the tour on embedded data only: no data root at all
    DEEPKIT_DATA=../shared/datasets python benchmarks/tour.py --with-data   # plus the MNIST commands

Each command runs in a new process (start-up included) in a temporary working folder with ``DEEPKIT_DATA`` pointing
at an empty folder unless ``--with-data``: the tour must work from a fresh clone, which has no ``../shared``.
Prints one line per command: wall seconds, exit status, and the last line it printed. Exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOUR = [
    "deepkit models",
    "deepkit recipes",
    "deepkit train digits_mlp",
    "deepkit train digits_cnn trainer.epochs=5 model.channels=[16,32] --out runs/small",
    "deepkit eval runs/small --json",
    "deepkit predict runs/small runs/small/samples/*.png --top-k 3",
    "deepkit train diabetes_regression",
    "deepkit predict runs/diabetes_regression runs/diabetes_regression/samples/test_rows.csv",
    "deepkit train digits_cnn trainer.epochs=10 trainer.checkpoint_every=100 --out runs/long",
    "deepkit train --resume runs/long trainer.epochs=12",
]
WITH_DATA = [
    "deepkit train mnist_cnn",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--with-data", action="store_true", help="also the commands that read $DEEPKIT_DATA")
    args = ap.parse_args()
    deepkit = str(Path(sys.executable).with_name("deepkit"))
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        if not args.with_data:
            (Path(tmp) / "no-data").mkdir()
            env["DEEPKIT_DATA"] = str(Path(tmp) / "no-data")
        work = Path(tmp) / "work"
        work.mkdir()
        print(f"working folder {work}; DEEPKIT_DATA={env.get('DEEPKIT_DATA', '(unset)')}")
        for cmd in TOUR + (WITH_DATA if args.with_data else []):
            line = cmd.replace("deepkit ", f"{shlex.quote(deepkit)} ", 1)
            t0 = time.perf_counter()
            proc = subprocess.run(
                line, shell=True, cwd=work, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
            )
            seconds = time.perf_counter() - t0
            last = (proc.stdout.strip().splitlines() or proc.stderr.strip().splitlines() or [""])[-1]
            failed += proc.returncode != 0
            print(f"{seconds:7.1f} s  exit {proc.returncode}  {cmd}\n            -> {last[:110]}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
