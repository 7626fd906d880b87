"""Start-up times: what a user waits for before anything happens (issue 13, part 2).

    python benchmarks/startup.py [--repeats 5]

Median wall time (s) of fresh processes, alternating so that a busy machine slows every variant alike:
``python -c "import torch"`` (the floor), ``python -c "import deepkit"``, ``deepkit --help``, and on a tiny trained
run ``deepkit predict`` (one image) and ``deepkit eval``. Goals: ``deepkit --help`` ≤ 1.0 s; ``import deepkit`` ≤
torch's import + 0.5 s. Also lists which heavy packages each command imports.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "torchmetrics", "matplotlib", "scipy", "sklearn", "transformers", "kornia")


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def loaded(code: str, env: dict[str, str]) -> list[str]:
    """The heavy packages a Python snippet leaves in sys.modules."""
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        subprocess.run(
            [
                py,
                "-m",
                "deepkit",
                "train",
                "digits_mlp",
                "trainer.epochs=1",
                "trainer.progress=none",
                "--out",
                str(run),
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        image = sorted((run / "samples").glob("*.png"))[0]
        commands = {
            "import torch": [py, "-c", "import torch"],
            "import deepkit": [py, "-c", "import deepkit"],
            "deepkit --help": [py, "-m", "deepkit", "--help"],
            "deepkit predict (1 image)": [py, "-m", "deepkit", "predict", str(run), str(image)],
            "deepkit eval": [py, "-m", "deepkit", "eval", str(run)],
        }
        times: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(args.repeats):
            for name, cmd in commands.items():
                times[name].append(timed(cmd, env))
        snippets = {
            "import deepkit": "import deepkit",
            "deepkit --help": "import deepkit.cli",
            "deepkit predict (1 image)": f"import deepkit; deepkit.load({str(run)!r}).predict({str(image)!r})",
            "deepkit eval": f"import deepkit; deepkit.evaluate({str(run)!r})",
        }
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"median of {args.repeats} fresh processes, {sys.version.split()[0]}, OMP_NUM_THREADS=1")
        for name, t in med.items():
            heavy = loaded(snippets[name], env) if name in snippets else ["torch"]
            print(f"  {name:<28} {t:6.2f} s   imports: {', '.join(heavy) or 'none of ' + '/'.join(HEAVY)}")
        print(f"deepkit --help: {med['deepkit --help']:.2f} s (goal <= 1.0)")
        extra = med["import deepkit"] - med["import torch"]
        print(f"import deepkit - import torch: {extra:+.2f} s (goal <= +0.5)")


if __name__ == "__main__":
    main()
