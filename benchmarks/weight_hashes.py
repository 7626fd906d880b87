"""Final-weight fingerprints of a few recipes, to show a refactor changes nothing (issue 12, point 8).

    python benchmarks/weight_hashes.py                 # this checkout
    PYTHONPATH=/path/to/other/src python benchmarks/weight_hashes.py   # another checkout, same machine

Each run trains in-process from a fixed seed and prints the SHA-256 of its final weights (checkpoints/last, tensors
in name order, raw bytes): equal hashes mean bit-identical weights. Runs go to a temporary folder.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import torch

import deepkit
from deepkit.weights import load_weights

RUNS = {
    "digits_mlp": ("digits_mlp",),
    "airline_lstm": ("airline_lstm",),
    "mnist_vae_digits": ("mnist_vae", "data.name=digits", "trainer.epochs=3"),
}


def weights_hash(run_dir: Path) -> str:
    state, _ = load_weights(run_dir / "checkpoints" / "last" / "model.safetensors")
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].contiguous().numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(RUNS), help="comma-separated subset of " + ", ".join(RUNS))
    args = parser.parse_args()
    torch.set_num_threads(1)  # one thread: float reductions in a fixed order on any machine
    print(f"deepkit from {Path(deepkit.__file__).parent}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            recipe, *overrides = RUNS[name]
            t0 = time.perf_counter()
            result = deepkit.train(recipe, *overrides, "trainer.progress=none", out=Path(tmp) / name)
            print(f"{name:<18} {weights_hash(result.run_dir)}  ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
