"""Generative models on real MNIST: VAE -ELBO and IW-NLL, autoencoder anomaly ROC-AUC, conditional-GAN label
accuracy, and MNIST-FID (features of a deepkit-trained MNIST classifier) for the GAN, the VAE and baselines.

    DEEPKIT_DATA=../shared/datasets python benchmarks/generative.py [--reuse] [--only vae,autoencoder,...]

Trains the bundled recipes mnist_cnn (the feature network), mnist_vae, mnist_autoencoder and mnist_cdcgan into
benchmarks/out/ (``--reuse`` keeps finished runs), then prints a Markdown table and writes it to
benchmarks/out/generative.md. Bars (issue 6): VAE test -ELBO ≤ 100 nats; autoencoder ROC-AUC ≥ 0.90 with one digit
held out; conditional GAN ≥ 90% of samples classified as the requested digit.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import deepkit
from deepkit.api import load, open_run
from deepkit.data.sources import data_root, load_mnist
from deepkit.metrics.generative import ClassifierFeatures, classifier_fid, conditional_accuracy

OUT = Path(__file__).parent / "out"
RECIPES = {"classifier": "mnist_cnn", "vae": "mnist_vae", "autoencoder": "mnist_autoencoder", "gan": "mnist_cdcgan"}
# a dense autoencoder with a 2-D code, for the latent scatter next to PCA (no anomaly class held out)
RECIPES["autoencoder2d"] = "mnist_autoencoder"
OVERRIDES = {
    "autoencoder2d": ["model.name=autoencoder", "model.latent_dim=2", "task.autoencoder.anomaly_class=null"],
}


def train(name: str, reuse: bool) -> tuple[Path, float | None]:
    run = OUT / (RECIPES[name] + ("_2d" if name == "autoencoder2d" else ""))
    if reuse and (run / "results.json").is_file():
        return run, None
    t0 = time.perf_counter()
    deepkit.train(RECIPES[name], "trainer.progress=plain", *OVERRIDES.get(name, []), out=run, overwrite=True)
    return run, time.perf_counter() - t0


def results(run: Path) -> dict[str, float]:
    return json.loads((run / "results.json").read_text())["metrics"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reuse", action="store_true", help="keep runs in benchmarks/out that already finished")
    ap.add_argument("--only", default="classifier,vae,autoencoder,autoencoder2d,gan")
    ap.add_argument("--n", type=int, default=10000, help="images per FID set")
    args = ap.parse_args()
    torch.manual_seed(0)
    wanted = args.only.split(",")
    runs, times = {}, {}
    for name in RECIPES:
        if name in wanted:
            runs[name], times[name] = train(name, args.reuse)
    rows = []
    raw = load_mnist(data_root() / "mnist")
    real_test = raw.x_test[: args.n]
    clf = load(runs["classifier"])
    feats = ClassifierFeatures(clf.model, clf.preprocessing)
    rows.append(("classifier (mnist_cnn) test accuracy", f"{results(runs['classifier'])['accuracy']:.4f}", "-"))
    g = torch.Generator().manual_seed(0)
    fid = {
        "real train images (floor)": classifier_fid(real_test, raw.x[: args.n], feats),
        "uniform noise (baseline)": classifier_fid(real_test, torch.rand(args.n, 1, 28, 28, generator=g), feats),
    }
    if "vae" in runs:
        m = results(runs["vae"])
        iw = next(k for k in m if k.startswith("iw_nll"))
        rows.append(
            ("VAE test -ELBO, nats (dynamic binarization; test binarized once, seed 1234)", f"{m['loss']:.2f}", "≤ 100")
        )
        rows.append((f"VAE test -log p(x), importance-weighted ({iw.split('_')[-1]})", f"{m[iw]:.2f}", "-"))
        rows.append(("VAE test reconstruction / KL, nats", f"{m['recon']:.2f} / {m['kl']:.2f}", "-"))
        task = open_run(runs["vae"]).task
        fid["VAE samples (decoder means)"] = classifier_fid(real_test, task.model.sample(args.n, generator=g), feats)
    if "autoencoder" in runs:
        m = results(runs["autoencoder"])
        task = open_run(runs["autoencoder"]).task
        k = task.cfg.anomaly_class
        rows.append(
            (f"autoencoder anomaly ROC-AUC (digit {k} held out, test set)", f"{m['anomaly_auroc']:.4f}", "≥ 0.90")
        )
        rows.append(
            (
                f"  at the val-chosen threshold (q={task.cfg.threshold_quantile}): precision / recall / F1",
                f"{m['anomaly_precision']:.3f} / {m['anomaly_recall']:.3f} / {m['anomaly_f1']:.3f}",
                "-",
            )
        )
        rows.append(
            (
                "  5-NN accuracy in 2-D: latent (PCA of codes) vs PCA of pixels",
                f"{m['latent2d_knn_accuracy']:.3f} vs {m['pca2d_knn_accuracy']:.3f}",
                "-",
            )
        )
    if "autoencoder2d" in runs:
        m = results(runs["autoencoder2d"])
        rows.append(
            (
                "dense autoencoder, 2-D code (plots/latent_vs_pca.png): 5-NN accuracy in 2-D, code vs PCA of pixels",
                f"{m['latent2d_knn_accuracy']:.3f} vs {m['pca2d_knn_accuracy']:.3f}",
                "-",
            )
        )
    if "gan" in runs:
        task = open_run(runs["gan"]).task
        labels = torch.arange(args.n) % 10
        images = torch.cat([task.model.sample(1000, labels=lb, generator=g) for lb in labels.split(1000)])
        acc = conditional_accuracy(images, labels, clf.model, clf.preprocessing)
        rows.append(("cDCGAN: generated digits classified as the requested label", f"{acc:.4f}", "≥ 0.90"))
        fid["cDCGAN samples (EMA generator)"] = classifier_fid(real_test, images, feats)
    for name, value in fid.items():
        rows.append((f"MNIST-FID vs {args.n} test images: {name}", f"{value:.2f}", "lower is better"))
    for name, t in times.items():
        if t is not None:
            rows.append((f"train wall time: {runs[name].name}", f"{t:.0f} s", "-"))
    table = "| measure | result | bar |\n|---|---|---|\n" + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    print(table)
    (OUT / "generative.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
