"""Issue 13, part 3 (bringing one's own data): the cases of the issue on small generated data, through the CLI.

    python benchmarks/own_data.py [--out benchmarks/out/own_data.json]

Runs ``python -m deepkit`` in subprocesses with the current environment, so ``PYTHONPATH=OTHER/src`` measures
another tree (an older commit) with the same script. Cases:

* ``categorical``: 400 rows, label = (colour is red) xor (a > 0), every 10th ``a`` empty, every 15th colour ``NA``
  (csv_classification); ``categorical_without_colour``: the same with data.features=[a,b] (what dropping the
  column, the old workaround, gives).
* ``tiny``: a 3-row CSV.
* ``float_target``: 300 rows, y = 3a + b + noise with 2 decimals, classified (csv_classification, 10 epochs), and
  ``float_target_regression`` with task.name=regression.
* ``image_folder``: 4 classes × 50 grayscale 12×12 images, one of them saved as RGB, trained with digits_cnn
  data.name=image_folder (as the issue did), then ``deepkit predict`` on 10 grayscale files and the RGB one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def deepkit(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepkit", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=900
    )


def outcome(proc: subprocess.CompletedProcess, run: Path) -> dict:
    out = {"exit": proc.returncode, "seconds": None}
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    out["error"] = errors[-1] if errors else None
    out["warnings"] = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    if (run / "results.json").is_file():
        out["metrics"] = json.loads((run / "results.json").read_text())["metrics"]
    return out


def train(root: Path, name: str, *args: str) -> dict:
    run = root / name
    t = time.perf_counter()
    proc = deepkit("train", *args, "trainer.progress=none", "--out", run, cwd=root)
    res = outcome(proc, run)
    res["seconds"] = round(time.perf_counter() - t, 1)
    return res


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "own_data.json"))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = []
        for i in range(400):
            colour, a, b = ["red", "green", "blue"][i % 3], rng.normal(), rng.normal()
            label = "yes" if (colour == "red") != (a > 0) else "no"
            rows.append(["" if i % 10 == 3 else f"{a:.3f}", "NA" if i % 15 == 7 else colour, f"{b:.3f}", label])
        table = write_csv(root / "colours.csv", ["a", "colour", "b", "label"], rows)
        results["categorical"] = train(root, "categorical", "csv_classification", f"data.path={table}")
        results["categorical_without_colour"] = train(
            root, "no_colour", "csv_classification", f"data.path={table}", "data.features=[a,b]"
        )

        tiny = write_csv(root / "tiny.csv", ["a", "b", "y"], [[1, 2, 0], [3, 4, 1], [5, 6, 0]])
        results["tiny"] = train(root, "tiny", "csv_classification", f"data.path={tiny}")

        a = rng.normal(size=300)
        b = rng.normal(size=300)
        y = 3 * a + b + 0.1 * rng.normal(size=300)
        cells = [[f"{p:.3f}", f"{q:.3f}", f"{v:.2f}"] for p, q, v in zip(a, b, y, strict=True)]
        floats = write_csv(root / "floats.csv", ["a", "b", "y"], cells)
        res = train(root, "floats", "csv_classification", f"data.path={floats}", "trainer.epochs=10")
        cm = root / "floats" / "confusion_matrix.json"
        res["classes"] = len(json.loads(cm.read_text())["classes"]) if cm.is_file() else None
        png = root / "floats" / "plots" / "confusion_matrix.png"
        if png.is_file():
            from PIL import Image

            res["confusion_png_px"] = list(Image.open(png).size)
            res["confusion_png_bytes"] = png.stat().st_size
        else:
            res["confusion_png_px"] = None
        res["log_has_warning"] = "task.name=regression" in (root / "floats" / "log.txt").read_text()
        results["float_target"] = res
        results["float_target_regression"] = train(
            root, "floats_reg", "csv_classification", f"data.path={floats}", "task.name=regression"
        )

        from PIL import Image

        imgs = root / "imgs"
        for c in range(4):
            (imgs / f"digit_{c}").mkdir(parents=True)
            for i in range(50):
                px = (rng.random((12, 12)) * 60).astype(np.uint8)
                px[c * 3 : c * 3 + 3] = 220
                if (c, i) == (2, 7):
                    Image.fromarray(np.stack([px, px // 2, px], -1), mode="RGB").save(imgs / f"digit_{c}/{i:03d}.png")
                else:
                    Image.fromarray(px, mode="L").save(imgs / f"digit_{c}/{i:03d}.png")
        res = train(root, "imgs_run", "digits_cnn", "data.name=image_folder", f"data.path={imgs}", "trainer.epochs=5")
        run = root / "imgs_run"
        cfg = (run / "config.yaml").read_text() if (run / "config.yaml").is_file() else ""
        res["in_channels"] = next((int(x.split(":")[1]) for x in cfg.splitlines() if "in_channels:" in x), None)
        res["sample_labels"] = sorted(p.name.split("_label_")[1][:-4] for p in (run / "samples").glob("*.png"))
        res["log_has_conversion"] = "converted" in (run / "log.txt").read_text()
        gray = sorted((imgs / "digit_0").glob("*.png"))[:10]
        pred = deepkit("predict", run, *gray, cwd=root)
        res["predict_gray_10_warnings"] = sum(line.startswith("warning:") for line in pred.stderr.splitlines())
        pred = deepkit("predict", run, imgs / "digit_2" / "007.png", *gray, cwd=root)
        res["predict_rgb_plus_10_exit"] = pred.returncode
        res["predict_rgb_plus_10_warnings"] = sum(line.startswith("warning:") for line in pred.stderr.splitlines())
        res["predict_rgb_plus_10_error"] = next((x for x in pred.stderr.splitlines() if x.startswith("error")), None)
        results["image_folder"] = res
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
