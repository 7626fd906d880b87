"""End to end on small synthetic files: text classification, language model + generate, forecasting; resume;
vocabulary mismatch and other bad input through the API and the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import deepkit
from deepkit.data.tokenizers import build_tokenizer
from deepkit.errors import CheckpointError, ConfigError, DataError, ShapeError
from deepkit.models.generation import LongPromptWarning


def cli(capsys, *args) -> tuple[int, str, str]:
    """Run the deepkit CLI in this process (much faster than a subprocess): (exit code, stdout, stderr)."""
    from deepkit.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


POS = ["good", "great", "lovely", "superb", "fine"]
NEG = ["bad", "awful", "dull", "boring", "poor"]
FILLER = ["the", "film", "movie", "plot", "acting", "was", "really", "quite", "and", "a"]


@pytest.fixture(scope="module")
def sentiment_tsv(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = ["text\tlabel"]
    for i in range(400):
        label = i % 2
        words = list(rng.choice(FILLER, rng.integers(3, 12)))
        words.insert(int(rng.integers(0, len(words))), str(rng.choice(POS if label else NEG)))
        rows.append(" ".join(words) + f"\t{'pos' if label else 'neg'}")
    path = tmp_path_factory.mktemp("text") / "reviews.tsv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _text_recipe(path, **data):
    return {
        "name": "toy_sentiment",
        "task": {"name": "text_classification"},
        "model": {"name": "gru_classifier", "embed_dim": 16, "hidden_size": 16, "pool": "max"},
        "data": {
            "name": "text_table",
            "path": str(path),
            "batch_size": 16,
            "val_split": 0.2,
            "test_split": 0.2,
            **data,
        },
        "trainer": {"epochs": 6, "optimizer": {"name": "adamw", "lr": 0.02}, "progress": "none", "threads": 1},
    }


@pytest.fixture(scope="module")
def sentiment_run(sentiment_tsv, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "sent"
    return deepkit.train(_text_recipe(sentiment_tsv), out=out)


def test_text_classification_learns_and_saves_its_vocabulary(sentiment_run):
    res = sentiment_run
    assert res.metrics["accuracy"] >= 0.9, res.metrics
    assert res.metrics["majority_baseline_accuracy"] == pytest.approx(0.5, abs=0.1)
    tok = json.loads((res.run_dir / "tokenizer.json").read_text())
    assert tok["kind"] == "word" and "superb" in tok["vocab"]
    p = deepkit.load(res.run_dir)
    assert p.class_names == ["neg", "pos"]
    assert p.predict(["the film was superb", "the plot was awful and dull"]).tolist() == [1, 0]
    probs = p.predict_proba(["a great movie"])
    assert probs.shape == (1, 2) and abs(probs.sum() - 1) < 1e-5
    cm = json.loads((res.run_dir / "confusion_matrix.json").read_text())  # as for image and table classifiers
    assert cm["classes"] == ["neg", "pos"] and (res.run_dir / "plots" / "confusion_matrix.png").is_file()
    correct = cm["matrix"][0][0] + cm["matrix"][1][1]
    assert correct / sum(map(sum, cm["matrix"])) == pytest.approx(res.metrics["accuracy"], abs=1e-6)


def test_eval_reuses_the_saved_tokenizer(sentiment_run):
    metrics = deepkit.evaluate(sentiment_run.run_dir)
    assert metrics["accuracy"] == pytest.approx(sentiment_run.metrics["accuracy"])


def test_vocabulary_mismatch_at_predict_time_is_refused(sentiment_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(sentiment_run.run_dir, copy)
    build_tokenizer("word", ["completely different words here"]).save(copy / "tokenizer.json")
    with pytest.raises(CheckpointError, match="vocabulary mismatch"):
        deepkit.load(copy)
    (copy / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        deepkit.load(copy)


def test_cli_predict_text_file_and_long_input_policy(sentiment_run, tmp_path, capsys):
    f = tmp_path / "reviews.txt"
    f.write_text("the acting was lovely\nthe movie was boring\n")
    code, out, err = cli(capsys, "predict", sentiment_run.run_dir, f, "--json")
    assert code == 0, err
    records = json.loads(out)
    assert [r["class"] for r in records] == ["pos", "neg"]
    p = deepkit.load(sentiment_run.run_dir)
    texts = ["the acting was lovely", "the movie was boring"]
    assert list(p.predict(texts, names=True)) == ["pos", "neg"]  # the names the CLI prints
    assert [p.class_names[i] for i in p.predict(texts)] == ["pos", "neg"]
    Image.new("L", (8, 8)).save(tmp_path / "digit.png")
    code, _, err = cli(capsys, "predict", sentiment_run.run_dir, tmp_path / "digit.png")
    assert code == 2 and "digit.png is a .png file; this 'text_classification' run reads text files" in err, err
    assert "iconv" not in err
    p.saved.max_len, p.saved.truncation = 4, "error"
    with pytest.raises(DataError, match="more than max_len=4"):
        p.predict(["the film was really quite good"])
    p.saved.truncation = "warn"
    with pytest.warns(UserWarning, match="truncated"):
        p.predict(["the film was really quite good"])


def test_text_recipe_mistakes(sentiment_tsv, tmp_path):
    with pytest.raises(ShapeError, match=r"model.vocab_size=7 does not fit the data"):
        deepkit.train({**_text_recipe(sentiment_tsv), "model": {"name": "lstm_classifier", "vocab_size": 7}})
    with pytest.raises(ConfigError, match="does not fit task 'text_classification'"):
        deepkit.train({**_text_recipe(sentiment_tsv), "data": {"name": "airline"}})
    bad = tmp_path / "latin.tsv"
    bad.write_bytes("text\tlabel\nMis\xe9rables\t1\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        deepkit.train(_text_recipe(bad))
    empty = tmp_path / "empty.tsv"
    empty.write_text("text\tlabel\n")
    with pytest.raises(DataError, match="no data rows"):
        deepkit.train(_text_recipe(empty))
    with pytest.raises(DataError, match="more than max_len=3"):
        deepkit.train(_text_recipe(sentiment_tsv, text={"max_len": 3, "truncation": "error"}))


# --- language model ------------------------------------------------------------------------------------------------
def _lm_recipe(path, **trainer):
    return {
        "name": "toy_lm",
        "task": {"name": "language_model"},
        "model": {"name": "lstm_lm", "embed_dim": 16, "hidden_size": 32, "num_layers": 1, "dropout": 0.0},
        "data": {
            "name": "text_file",
            "path": str(path),
            "batch_size": 8,
            "val_split": 0.1,
            "test_split": 0.1,
            "text": {"tokenizer": "char", "vocab_size": None, "lowercase": False, "block_size": 32},
        },
        "trainer": {
            "epochs": 4,
            "optimizer": {"name": "adamw", "lr": 0.01},
            "progress": "none",
            "threads": 1,
            **trainer,
        },
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "corpus.txt"
    path.write_text("abcdefgh\n" * 400)
    return path


def test_char_lm_learns_a_pattern_and_generates_it(corpus, tmp_path, run_cli):
    res = deepkit.train(_lm_recipe(corpus), out=tmp_path / "lm")
    assert res.metrics["perplexity"] < 1.5, res.metrics  # 10 chars uniform = 10; the pattern is deterministic
    assert res.metrics["loss"] == pytest.approx(np.log(res.metrics["perplexity"]), rel=1e-3)
    p = deepkit.load(res.run_dir)
    assert p.generate("abc", max_new_tokens=12, temperature=0) == "abcdefgh\nabcdef"
    proc = run_cli("generate", res.run_dir, "--prompt", "de", "--max-new-tokens", "6", "--temperature", "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("defgh\nab")


def test_generate_bad_arguments_and_wrong_run(sentiment_run, corpus, tmp_path, capsys):
    res = deepkit.train(_lm_recipe(corpus, epochs=1), out=tmp_path / "lm")
    code, _, err = cli(capsys, "generate", res.run_dir, "--prompt", "a", "--top-k", "0")
    assert code == 2 and err.startswith("error: top_k must be >= 1")
    code, _, err = cli(capsys, "generate", res.run_dir, "--prompt", "a", "--temperature", "-1")
    assert code == 2 and "temperature must be >= 0" in err
    code, _, err = cli(capsys, "generate", sentiment_run.run_dir, "--prompt", "x")
    assert code == 2 and "needs a language-model run" in err


def _gpt_recipe(path, **trainer):
    rec = _lm_recipe(path, **trainer)
    rec["name"] = "toy_gpt"
    rec["model"] = {"name": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 32}
    return rec


def test_char_gpt_trains_through_the_recipe_path_resumes_and_generates(corpus, tmp_path, capsys):
    full = deepkit.train(_gpt_recipe(corpus, epochs=3), out=tmp_path / "full")
    assert full.metrics["perplexity"] < 1.5, full.metrics
    deepkit.train(_gpt_recipe(corpus, epochs=2), out=tmp_path / "part")
    resumed = deepkit.train(resume=tmp_path / "part", **{"trainer.epochs": 3})
    assert resumed.metrics["loss"] == pytest.approx(full.metrics["loss"], rel=1e-5)
    sample = json.loads((full.run_dir / "results.json").read_text())["sample"]
    assert len(sample) > 100, "the end-of-training sample runs past the 32-position context"
    p = deepkit.load(full.run_dir)
    assert p.model.cfg.vocab_size == p.tokenizer.vocab_size and p.model.cfg.n_positions == 32
    assert p.generate("abc", 12, temperature=0) == "abcdefgh\nabcdef"
    assert p.generate("abc", 40, temperature=0, stop=["h\na"]) == "abcdefg"
    assert p.generate("abc", 12, num_beams=3) == "abcdefgh\nabcdef"
    code, out, err = cli(
        capsys,
        "generate",
        full.run_dir,
        "--prompt",
        "cd",
        "--max-new-tokens",
        "30",
        "--top-p",
        "0.5",
        "--repetition-penalty",
        "1.0",
        "--seed",
        "1",
        "--stop",
        "\\n",
    )
    assert code == 0, err
    assert out == "cdefgh\n", out
    code, out2, _ = cli(
        capsys,
        "generate",
        full.run_dir,
        "--prompt",
        "cd",
        "--max-new-tokens",
        "30",
        "--top-p",
        "0.5",
        "--seed",
        "1",
        "--stop",
        "\\n",
        "--no-stream",
        "--no-cache",
    )
    assert code == 0 and out2 == out
    code, out, _ = cli(capsys, "generate", full.run_dir, "--prompt", "e", "--max-new-tokens", "5", "--num-beams", "2")
    assert code == 0 and out == "efgh\na\n"
    long_prompt = "abcdefgh" * 5  # 40 characters > 32 positions
    with pytest.warns(LongPromptWarning, match="the prompt has 40 tokens, more than the model's context of 32"):
        code, out, _ = cli(
            capsys, "generate", full.run_dir, "--prompt", long_prompt, "--max-new-tokens", "3", "--temperature", "0"
        )
    assert code == 0 and out == long_prompt + "\nab\n"
    code, _, err = cli(capsys, "generate", full.run_dir, "--prompt", long_prompt, "--on-long-prompt", "error")
    assert code == 2 and err.startswith("error: the prompt has 40 tokens, more than the model's context of 32")
    code, _, err = cli(capsys, "generate", full.run_dir, "--prompt", "a", "--top-p", "0")
    assert code == 2 and err.startswith("error: top_p must be in (0, 1]")


def test_chat_continues_the_conversation_line_by_line(corpus, tmp_path, capsys, monkeypatch):
    import io

    res = deepkit.train(_gpt_recipe(corpus, epochs=3), out=tmp_path / "gpt")
    monkeypatch.setattr("sys.stdin", io.StringIO("abc\nab\n\nnot read\n"))
    code, out, err = cli(capsys, "chat", res.run_dir, "--temperature", "0", "--stop", "h", "--max-new-tokens", "20")
    assert code == 0, err
    # each line is followed by a newline, after which the pattern restarts: "abcdefg" (cut before the stop "h");
    # turn 2 continues the history "abc\nabcdefg\nab\n"; the empty line ends the session
    assert out == "abcdefg\nabcdefg\n", out


def test_lm_resume_is_exact(corpus, tmp_path):
    full = deepkit.train(_lm_recipe(corpus, epochs=2), out=tmp_path / "full")
    deepkit.train(_lm_recipe(corpus, epochs=1), out=tmp_path / "part")
    resumed = deepkit.train(resume=tmp_path / "part", **{"trainer.epochs": 2})
    assert resumed.metrics["loss"] == pytest.approx(full.metrics["loss"], rel=1e-6)
    a = (full.run_dir / "checkpoints" / "last" / "model.safetensors").read_bytes()
    b = (resumed.run_dir / "checkpoints" / "last" / "model.safetensors").read_bytes()
    from safetensors.torch import load

    sa, sb = load(a), load(b)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_non_utf8_corpus_is_one_line_error_in_cli(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"caf\xe9 au lait\n")
    code, _, err = cli(
        capsys, "train", "char_shakespeare", f"data.path={bad}", "data.name=text_file", "--out", tmp_path / "r"
    )
    assert code == 2
    assert err.strip().count("\n") == 0 and "not UTF-8" in err
    assert not (tmp_path / "r").exists()


# --- forecasting ---------------------------------------------------------------------------------------------------
def test_forecast_beats_naive_baselines_on_a_seasonal_series(tmp_path):
    n = 144
    t = np.arange(n)
    values = 200 + 2.0 * t + 40 * np.sin(2 * np.pi * t / 12)
    months = [f"{1950 + i // 12}-{i % 12 + 1:02d}" for i in t]
    csv = tmp_path / "series.csv"
    csv.write_text("Month,Value\n" + "\n".join(f"{m},{v:.3f}" for m, v in zip(months, values, strict=True)) + "\n")
    recipe = {
        "name": "toy_forecast",
        "task": {"name": "forecast"},
        "model": {"name": "gru_forecaster", "hidden_size": 16},
        "data": {
            "name": "series_csv",
            "path": str(csv),
            "batch_size": 16,
            "series": {"window": 12, "test_size": 12, "val_size": 12, "difference": True},
        },
        "trainer": {"epochs": 30, "optimizer": {"name": "adamw", "lr": 0.01}, "progress": "none", "threads": 1},
    }
    res = deepkit.train(recipe, out=tmp_path / "fc")
    m = res.metrics
    assert m["model_one_step_rmse"] < m["naive_one_step_rmse"]
    assert m["model_multi_step_rmse"] < m["naive_multi_step_rmse"]
    assert {"model_one_step_mape", "seasonal_naive_multi_step_mae"} <= set(m)
    results = json.loads((res.run_dir / "results.json").read_text())
    assert len(results["forecast"]["model_multi_step"]) == 12 and results["forecast"]["time"][0] == "1961-01"
    assert (res.run_dir / "plots" / "forecast.png").stat().st_size > 5000
    p = deepkit.load(res.run_dir)
    np.testing.assert_allclose(p.forecast(values[:132], 12), results["forecast"]["model_multi_step"], rtol=1e-5)
    records = p.predict_files([csv], top_k=3)
    assert len(records[0]["value"]) == 3 and abs(records[0]["value"][0] - (200 + 2 * 144)) < 40
    with pytest.raises(DataError, match="at least 13 finite past values"):
        p.forecast(values[:5])
    csv.write_text("Month,Value\n1950-01,1\n1950-02,x\n")
    with pytest.raises(DataError, match="'x' in 'Value' is not a number"):
        deepkit.train(recipe, out=tmp_path / "fc2")


def test_pretrained_word_vectors_initialize_the_embedding(sentiment_tsv, tmp_path):
    from deepkit.api import build
    from deepkit.families.text import load_vectors
    from deepkit.recipe import resolve_recipe

    (tmp_path / "vec.txt").write_text(
        "2 16\n" + "superb " + " ".join(["0.5"] * 16) + "\nawful " + " ".join(["-1"] * 16)
    )
    rec = resolve_recipe(_text_recipe(sentiment_tsv, text={"vectors": str(tmp_path / "vec.txt")}))
    built = build(rec)
    bundle, model = built.data, built.task.model
    note = bundle.notes[0]
    weight = model.inputs.embedding.weight
    assert torch.equal(weight[bundle.tokenizer.token_to_id("superb")], torch.full((16,), 0.5))
    assert torch.equal(weight[bundle.tokenizer.token_to_id("awful")], torch.full((16,), -1.0))
    assert "of the vocabulary initialized from" in note
    rec = resolve_recipe(
        {
            **_text_recipe(sentiment_tsv, text={"vectors": str(tmp_path / "vec.txt")}),
            "model": {"name": "lstm_classifier", "embed_dim": 8},
        }
    )
    with pytest.raises(ConfigError, match="embed_dim=8 but the word vectors have 16"):
        load_vectors(rec, rec.family.build_model(rec, bundle), bundle)
