"""``deepkit bench``: throughput, FLOPs and MFU of a recipe without a run directory; ``train --explain-speed`` and
the peak memory a training run reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepkit.bench import bench, format_result


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def mlp_flops_per_sample(sizes: list[int]) -> int:
    """Forward + backward FLOPs of an MLP per sample: 2·in·out per matmul; backward = weight grads for every layer
    plus input grads for every layer but the first (the data needs none)."""
    mats = [a * b for a, b in zip(sizes, sizes[1:], strict=False)]
    return 2 * sum(mats) * 2 + 2 * sum(mats[1:])


def test_bench_reports_speed_flops_and_writes_nothing(in_tmp, monkeypatch):
    monkeypatch.delenv("DEEPKIT_PEAK_TFLOPS", raising=False)
    r = bench("digits_mlp", "trainer.threads=1", steps=12, warmup=2)
    assert files_under(in_tmp) == [], "bench writes no run directory, no file at all"
    assert r["steps"] == 12 and r["steps_per_s"] > 0
    # digits: 1,149 training samples in batches of 32 -> full batches except one per epoch of 36
    assert r["samples_per_s"] == pytest.approx(32 * r["steps_per_s"], rel=0.05)
    assert r["flops_per_step"] == 32 * mlp_flops_per_sample([64, 256, 256, 10])  # digits_mlp: depth 2, width 256
    assert r["mfu"] is None and r["peak_tflops"] is None and "tokens_per_s" not in r
    assert r["peak_rss_mb"] > 20
    assert r["speed_plan"]["bf16_autocast"]["applied"] is False
    text = format_result(r)
    assert "steps/s" in text and "peak unknown" in text and "speed plan (cpu: " in text

    monkeypatch.setenv("DEEPKIT_PEAK_TFLOPS", "0.5")
    r = bench("digits_mlp", "trainer.threads=1", steps=5, warmup=1)
    assert r["mfu"] == pytest.approx(r["flops_per_step"] * r["steps_per_s"] / 0.5e12)
    assert "MFU" in format_result(r) and files_under(in_tmp) == []


def test_bench_tokens_per_second_for_a_language_model(in_tmp, tmp_path_factory):
    corpus = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    corpus.write_text("abcdefgh\n" * 300)
    recipe = {
        "name": "tiny_lm",
        "task": {"name": "language_model"},
        "model": {"name": "lstm_lm", "embed_dim": 8, "hidden_size": 16, "num_layers": 1, "dropout": 0.0},
        "data": {
            "name": "text_file",
            "path": str(corpus),
            "batch_size": 4,
            "text": {"tokenizer": "char", "vocab_size": None, "lowercase": False, "block_size": 16},
        },
        "trainer": {"epochs": 1, "threads": 1},
    }
    r = bench(recipe, steps=6, warmup=2)
    assert r["tokens_per_s"] == pytest.approx(16 * r["samples_per_s"], rel=1e-6)  # every window: 16 real tokens
    assert files_under(in_tmp) == []


def test_bench_argument_errors():
    from deepkit.errors import ConfigError

    with pytest.raises(ConfigError, match="steps"):
        bench("digits_mlp", steps=0)


def test_cli_bench_json_and_help(run_cli, tmp_path):
    proc = run_cli("bench", "digits_mlp", "--steps", "4", "--warmup", "1", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["recipe"] == "digits_mlp" and r["steps"] == 4 and r["steps_per_s"] > 0 and r["flops_per_step"] > 0
    assert files_under(tmp_path) == []
    top = run_cli("--help")
    assert "bench" in top.stdout
    train_help = run_cli("train", "--help")
    assert "--explain-speed" in train_help.stdout


def test_cli_explain_speed_prints_the_plan_and_trains_nothing(run_cli, tmp_path):
    proc = run_cli("train", "digits_cnn", "--explain-speed", "--out", tmp_path / "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    cpu = next(line for line in lines if line.startswith("speed plan (cpu: "))
    assert any(line.strip().startswith("[x] channels_last") and "this CPU" in line for line in lines), lines
    assert any(line.strip().startswith("[ ] compile") and "1,230 steps" in line for line in lines), lines
    assert not any(line.startswith("epoch") for line in lines) and files_under(tmp_path) == [], cpu


def test_cli_train_explains_speed_and_reports_peak_memory(run_cli, tmp_path):
    out = tmp_path / "run"
    proc = run_cli("train", "digits_mlp", "trainer.epochs=1", "trainer.speed.explain=true", "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    plan_at = next(i for i, line in enumerate(lines) if line.startswith("speed plan (cpu"))
    assert plan_at < next(i for i, line in enumerate(lines) if line.startswith("epoch 1"))
    assert any(line.strip().startswith("[ ] compile") and "this run's 41 steps" in line for line in lines)
    peak = [line for line in lines if line.startswith("peak memory:")]
    assert peak and "MiB host RSS" in peak[0]
    status = json.loads((out / "run.json").read_text())
    assert 20 < status["peak_memory"]["peak_rss_mb"] < 64 * 1024
    assert "speed plan (cpu" in (out / "log.txt").read_text()
    assert "peak_rss_mb" in (out / "metrics.csv").read_text().splitlines()[0]
