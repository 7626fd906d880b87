"""Train, evaluate, predict and generate for sequence tasks (text classification, language modelling, forecasting).

``deepkit.api.train`` hands recipes whose ``task.name`` is a sequence task to :func:`train`; the run directory has
the usual layout plus ``tokenizer.json`` (the vocabulary, reused at predict time) and, for forecasts,
``plots/forecast.png`` and the forecasts themselves in ``results.json``.
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepkit.config import field_types, to_dict
from deepkit.data.sequences import SEQUENCE_TASKS, SequenceBundle, build_sequence_data
from deepkit.data.series import (
    forecast_errors,
    multi_step_forecast,
    naive_forecast,
    one_step_forecast,
    seasonal_naive_forecast,
)
from deepkit.data.text import embedding_from_vectors, pad_batch, read_lines, read_word_vectors, truncate
from deepkit.data.tokenizers import Tokenizer, load_tokenizer
from deepkit.errors import CheckpointError, ConfigError, DataError, ShapeError
from deepkit.models.generation import check_sampling
from deepkit.models.generation import stream_text as stream_pieces
from deepkit.models.registry import create_model, get_entry, load_state_dict_checked
from deepkit.recipe import Recipe, read_recipe_file, resolve_recipe
from deepkit.tasks.base import Task
from deepkit.tasks.regression import RegressionTask
from deepkit.tasks.sequence import LanguageModelTask, Seq2SeqTask, TextClassificationTask
from deepkit.tasks.word2vec import Word2VecTask
from deepkit.train import distributed
from deepkit.train.checkpoint import find_checkpoint
from deepkit.train.trainer import Trainer, resolve_device, seed_everything
from deepkit.weights import atomic_write_text, load_weights


def is_sequence_task(name: str) -> bool:
    return name in SEQUENCE_TASKS


# --- model and task ------------------------------------------------------------------------------------------------
def bind_sequence_model(model_section: dict[str, Any], bundle: SequenceBundle) -> torch.nn.Module:
    """Create the model with ``vocab_size``/``num_classes``/``in_features`` taken from the data (checked)."""
    name = model_section["name"]
    overrides = {k: v for k, v in model_section.items() if k != "name"}
    fields = field_types(get_entry(name).config_cls)
    for key, value in bundle.model_overrides().items():
        if key not in fields:
            if key in ("vocab_size", "num_classes"):
                raise ShapeError(
                    f"model '{name}' has no {key}; task '{bundle.task}' needs a model that takes token ids "
                    f"({'an *_lm model' if bundle.task == 'language_model' else 'e.g. lstm_classifier'})"
                )
            continue
        if key == "vocab_size" and key in overrides and "model_overrides" in bundle.raw:
            from deepkit.data.token_data import check_vocab

            check_vocab(bundle.tokenizer, overrides[key])  # a larger embedding (unused rows) is fine
            continue
        if key in overrides and overrides[key] != value:
            raise ShapeError(
                f"model.{key}={overrides[key]} does not fit the data; expected {key}={value} (or leave it out)"
            )
        overrides[key] = value
    if bundle.task in ("forecast", "long_range") and fields.get("vocab_size") is not None:
        overrides["vocab_size"] = 0  # real-valued steps
    return create_model(name, **overrides)


def build_sequence_task(rec: Recipe, model: torch.nn.Module, bundle: SequenceBundle) -> Task:
    from deepkit.models.token_model import TokenModel

    if rec.task.name in TRANSFORMER_TASKS:
        return build_transformer_task(rec, model, bundle)
    if rec.task.name == "text_classification" and isinstance(model, TokenModel):
        from deepkit.tasks.token_tasks import SequenceClassificationTask

        return SequenceClassificationTask(model, len(bundle.class_names), label_smoothing=rec.task.label_smoothing)
    if rec.task.name == "text_classification":
        return TextClassificationTask(model, len(bundle.class_names), label_smoothing=rec.task.label_smoothing)
    if rec.task.name == "language_model":
        return LanguageModelTask(model, bundle.tokenizer.vocab_size, label_smoothing=rec.task.label_smoothing)
    if rec.task.name == "translation":
        return Seq2SeqTask(model, bundle.tokenizer.vocab_size, label_smoothing=rec.task.label_smoothing)
    if rec.task.name == "long_range":
        bundle.raw["tolerance"] = rec.data.long_range.tolerance
        return RegressionTask(model, 1, loss="mse")
    if rec.task.name == "word2vec":
        bundle.raw["mode"] = getattr(model.cfg, "mode", "skipgram")  # the loader builds skip-gram or CBOW samples
        return Word2VecTask(model)
    return RegressionTask(model, bundle.series.cfg.horizon, loss=rec.task.loss, huber_delta=rec.task.huber_delta)


TRANSFORMER_TASKS = ("masked_lm", "span_corruption", "token_classification", "question_answering", "text_to_text")


def build_transformer_task(rec: Recipe, model: torch.nn.Module, bundle: SequenceBundle) -> Task:
    """Tasks of the Transformer objectives and heads (tasks/masked_lm.py, token_tasks.py, text_to_text.py)."""
    from deepkit.tasks.masked_lm import MaskedLMTask
    from deepkit.tasks.text_to_text import SpanCorruptionTask, TextToTextTask
    from deepkit.tasks.token_tasks import QuestionAnsweringTask, TokenClassificationTask

    name = rec.task.name
    heads = {
        "masked_lm": "mlm",
        "token_classification": "token_classification",
        "question_answering": "question_answering",
    }
    head = getattr(getattr(model, "cfg", None), "head", None)
    if name in heads and head != heads[name]:
        raise ConfigError(
            f"task '{name}' needs an encoder (bert, roberta, deberta) with model.head={heads[name]}, got "
            f"model '{rec.model['name']}' with head={head}"
        )
    if name in ("span_corruption", "text_to_text") and not hasattr(model, "shift_right"):
        raise ConfigError(f"task '{name}' needs an encoder-decoder model (t5), got model '{rec.model['name']}'")
    if name == "masked_lm":
        return MaskedLMTask(model, bundle.tokenizer.vocab_size, label_smoothing=rec.task.label_smoothing)
    if name == "span_corruption":
        return SpanCorruptionTask(model, bundle.tokenizer.vocab_size, label_smoothing=rec.task.label_smoothing)
    if name == "text_to_text":
        return TextToTextTask(model, bundle.tokenizer.vocab_size, label_smoothing=rec.task.label_smoothing)
    if name == "token_classification":
        return TokenClassificationTask(model, len(bundle.class_names))
    return QuestionAnsweringTask(model, bundle.raw.get("max_answer_len", rec.data.text.max_answer_len))


def reused_tokenizer(rec: Recipe) -> Tokenizer | None:
    """``data.text.tokenizer_file`` (a tokenizer.json or a run directory), else the tokenizer of the run named by
    ``finetune.weights``: a fine-tuned model must read the ids its pretrained embedding was trained on."""
    spec = rec.data.text.tokenizer_file
    if spec is None and rec.finetune is not None and rec.finetune.weights:
        start = Path(rec.finetune.weights)
        start = start if start.is_dir() else start.parent
        found = next(
            (d / "tokenizer.json" for d in [start, *start.parents][:4] if (d / "tokenizer.json").is_file()), None
        )
        if found is None:
            return None
        try:
            return load_tokenizer(found)
        except CheckpointError:  # e.g. a Hugging Face checkpoint's own tokenizer.json: not a deepkit run
            return None
    if spec is None:
        return None
    path = Path(spec)
    return load_tokenizer(path / "tokenizer.json" if path.is_dir() else path)


def _check_pretrained_vocab(rec: Recipe, bundle: SequenceBundle) -> None:
    """Fine-tuning: the tokenizer must not produce ids beyond the pretrained embedding table."""
    if rec.finetune is None or not rec.finetune.weights or bundle.tokenizer is None:
        return
    from deepkit.data.token_data import check_vocab

    state, _ = load_weights(rec.finetune.weights, trust_pickle=rec.finetune.trust_pickle)
    rows = next((v.shape[0] for k, v in state.items() if k.endswith(("word_embeddings.weight", "shared.weight"))), None)
    check_vocab(bundle.tokenizer, rows, where=f"pretrained weights ({rec.finetune.weights})")


def _load_vectors(rec: Recipe, model: torch.nn.Module, bundle: SequenceBundle) -> str | None:
    path = rec.data.text.vectors
    if not path or bundle.tokenizer is None:
        return None
    emb = getattr(getattr(model, "inputs", None), "embedding", None)
    if emb is None:
        raise ConfigError(f"data.text.vectors is set, but model '{rec.model['name']}' has no token embedding")
    words, vectors = read_word_vectors(path)
    weight, found = embedding_from_vectors(bundle.tokenizer, words, vectors, emb.embedding_dim)
    with torch.no_grad():
        emb.weight.copy_(weight)
    return f"{found:.1%} of the vocabulary initialized from {path}"


# --- train ---------------------------------------------------------------------------------------------------------
def train(
    rec: Recipe,
    out: str | Path | None = None,
    overwrite: bool = False,
    callbacks: list | tuple = (),
    command: list[str] | None = None,
):
    """Train a sequence recipe (already resolved) and write its run directory."""
    from deepkit import api

    task, bundle, extra, note = build_training(rec)
    callbacks = [*callbacks, *extra]
    model = task.model
    if bundle.task == "long_range":  # gradient flow of the untrained model, for the vanishing-gradient plot
        bundle.raw["grad_init"] = _gradient_norms(model, bundle)
    resolve_device(rec.trainer.device)

    def create() -> Path:
        run_dir = api.new_run_dir(out, rec.name, overwrite)
        try:
            if bundle.tokenizer is not None:
                bundle.tokenizer.save(run_dir / "tokenizer.json")
            if "src_tokenizer" in bundle.raw:
                bundle.raw["src_tokenizer"].save(run_dir / "src_tokenizer.json")
            api._write_config(run_dir, rec, model, command)
            api._write_status(run_dir, "running", started=datetime.datetime.now().isoformat(timespec="seconds"))
        except BaseException:
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        return run_dir

    run_dir = api.create_run_dir(rec, rec.data.batch_size, create)  # several processes: rank 0 creates it
    return _fit_and_finish(run_dir, rec, task, bundle, callbacks, None, [note] if note else [])


def build_training(rec: Recipe) -> tuple[Task, SequenceBundle, list, str | None]:
    """Data, model and task of a sequence recipe, as ``train`` builds them (also used by ``deepkit bench``).

    Returns the task, the bundle, the callbacks the recipe needs (fine-tuning's backbone freezer) and a note on
    pretrained vectors (None when the recipe loads none). A ``finetune:`` section loads its weights here.
    """
    from deepkit import api

    seed_everything(rec.trainer.seed)
    bundle = build_sequence_data(rec.data, rec.task.name, tokenizer=reused_tokenizer(rec))
    model = bind_sequence_model(rec.model, bundle)
    note = _load_vectors(rec, model, bundle)
    _check_pretrained_vocab(rec, bundle)
    callbacks = api._setup_finetune(rec, model, load=True)
    return build_sequence_task(rec, model, bundle), bundle, callbacks, note


def resume(run_dir: Path, overrides: dict[str, Any], callbacks=()):
    """Continue a sequence run exactly where it stopped (same tokenizer, same batches)."""
    from deepkit import api

    last = find_checkpoint(run_dir / "checkpoints" / "last")
    if last is None or not (last / "state.json").is_file():
        raise CheckpointError(f"cannot resume {run_dir}: no resumable checkpoint in {run_dir / 'checkpoints' / 'last'}")
    rec = resolve_recipe(read_recipe_file(run_dir / "config.yaml"), overrides)
    tok = load_tokenizer(run_dir / "tokenizer.json") if (run_dir / "tokenizer.json").is_file() else None
    src_file = run_dir / "src_tokenizer.json"
    src_tok = load_tokenizer(src_file) if src_file.is_file() else None
    bundle = build_sequence_data(rec.data, rec.task.name, tokenizer=tok, src_tokenizer=src_tok)
    model = bind_sequence_model(rec.model, bundle)
    callbacks = [*callbacks, *api._setup_finetune(rec, model, load=False)]  # weights come from the checkpoint
    task = build_sequence_task(rec, model, bundle)
    if distributed.is_main_process():
        api._write_status(run_dir, "running", resumed=datetime.datetime.now().isoformat(timespec="seconds"))
    return _fit_and_finish(run_dir, rec, task, bundle, callbacks, last, [])


def _meta(rec: Recipe, bundle: SequenceBundle) -> dict[str, Any]:
    meta: dict[str, Any] = {"task": to_dict(rec.task), "recipe": rec.name, "preprocessing": {}}
    seq: dict[str, Any] = {"task": bundle.task}
    if bundle.tokenizer is not None:
        seq["tokenizer"] = bundle.tokenizer.fingerprint()
        seq["vocab_size"] = bundle.tokenizer.vocab_size
        seq["max_len"] = rec.data.text.max_len
        seq["truncation"] = rec.data.text.truncation
        seq["block_size"] = rec.data.text.block_size
        seq["add_special"] = rec.data.text.add_special
        seq["source_prefix"] = rec.data.text.source_prefix
    if bundle.class_names:
        seq["class_names"] = bundle.class_names
    if "src_tokenizer" in bundle.raw:
        seq["src_tokenizer"] = bundle.raw["src_tokenizer"].fingerprint()
    if bundle.series is not None:
        tf = bundle.series.transform
        seq["series"] = {**to_dict(bundle.series.cfg), "mean": tf.mean, "std": tf.std}
    meta["sequence"] = seq
    return meta


def _fit_and_finish(run_dir: Path, rec: Recipe, task: Task, bundle: SequenceBundle, callbacks, resume_from, notes):
    from deepkit import api

    trainer = Trainer(rec.trainer, run_dir=run_dir, callbacks=callbacks)
    trainer.checkpoint_meta = _meta(rec, bundle)
    for note in notes + bundle.notes:
        trainer.log(note)
    try:
        history = trainer.fit(task, bundle, resume=resume_from)
        if not api.rank0_goes_on(trainer):
            return api.RunResult(run_dir, {}, history)
        if trainer.dist and trainer.dist.strategy == "fsdp":  # the trained model is sharded: evaluate a plain one
            task = build_sequence_task(rec, bind_sequence_model(rec.model, bundle), bundle)
        metrics = _finish(run_dir, rec, task, bundle, trainer)
    except KeyboardInterrupt:
        if distributed.is_main_process():
            api._write_status(run_dir, "interrupted")
        raise
    except BaseException as e:
        if distributed.is_main_process():
            api._write_status(run_dir, "failed", error=f"{type(e).__name__}: {e}")
        raise
    finally:
        distributed.teardown()
    api._write_status(run_dir, "finished", metrics=metrics, peak_memory=trainer.peak_memory)
    return api.RunResult(run_dir, metrics, history, trainer.peak_memory)


def _finish(run_dir: Path, rec: Recipe, task: Task, bundle: SequenceBundle, trainer: Trainer) -> dict[str, float]:
    best = find_checkpoint(run_dir / "checkpoints" / "best")
    weights, _ = load_weights(best / "model.safetensors")
    load_state_dict_checked(task.model, weights, str(best))
    split = "test" if bundle.test else "val"
    metrics = trainer.evaluate(task, bundle, split)
    extra: dict[str, Any] = {}
    samples = run_dir / "samples"
    samples.mkdir(exist_ok=True)
    if bundle.task == "text_classification":
        train_y = bundle.raw["train"][1]
        majority = int(np.bincount(train_y).argmax())
        metrics["majority_baseline_accuracy"] = float((bundle.raw[split][1] == majority).mean())
        texts = bundle.raw[split][0][:8]
        (samples / "test_texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    elif bundle.task == "language_model":
        prompt = bundle.raw.get("val", bundle.raw["train"])[: min(40, getattr(task.model, "context_length", 40))]
        g = torch.Generator(device=trainer.device).manual_seed(0)
        text = generate_text(task.model, bundle.tokenizer, prompt, 400, 0.8, 20, trainer.device, g)
        (samples / "sample.txt").write_text(text, encoding="utf-8")
        extra["sample"] = text
    elif bundle.task == "translation":
        metrics.update(_translation_report(task.model, bundle, split, trainer, extra))
    elif bundle.task == "text_to_text":
        metrics.update(_text_to_text_report(task.model, bundle, split, trainer, extra))
    elif bundle.task in TRANSFORMER_TASKS:
        pass  # the evaluation metrics say it all (loss/perplexity, accuracy, exact match/F1)
    elif bundle.task == "long_range":
        metrics.update(_long_range_report(run_dir, task.model, bundle, trainer))
    elif bundle.task == "word2vec":
        extra.update(_export_vectors(run_dir, task.model, bundle.tokenizer))
    else:
        metrics.update(_forecast_report(run_dir, task, bundle, trainer, extra))
    metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
    atomic_write_text(run_dir / "results.json", json.dumps({"split": split, "metrics": metrics, **extra}, indent=1))
    return metrics


def _bleu_text(tokenizer: Tokenizer, text: str) -> str:
    """The form BLEU compares: word tokenizers' own split (lower-cased, punctuation apart), raw text otherwise."""
    return " ".join(tokenizer.split(text)) if hasattr(tokenizer, "split") else text


def translate_ids(model, src_ids: list[list[int]], device, beam_size: int = 1, max_len: int = 60) -> list[list[int]]:
    """Greedy (beam_size 1) or beam-search decoding of token-id sentences, in batches for greedy."""
    from deepkit.data.text import pad_batch

    model.eval()
    out: list[list[int]] = []
    step = 128 if beam_size == 1 else 32
    for i in range(0, len(src_ids), step):
        src, lengths = pad_batch(src_ids[i : i + step])
        src = src.to(device)
        if beam_size == 1:
            out += model.greedy_decode(src, lengths, max_len)
        else:
            out += model.beam_search(src, lengths, beam_size, max_len)
    return out


def _translation_report(model, bundle: SequenceBundle, split: str, trainer: Trainer, extra) -> dict[str, float]:
    """Corpus BLEU (sacrebleu) of greedy and beam-5 decoding on the split, and of copying the source."""
    import sacrebleu

    tok, src_tok = bundle.tokenizer, bundle.raw["src_tokenizer"]
    src_text, ref_text = bundle.raw["parts"][split]
    src_ids = bundle.raw["encoded"][split][0]
    refs = [_bleu_text(tok, r) for r in ref_text]
    out: dict[str, float] = {}
    examples = {}
    for name, beam in (("greedy", 1), ("beam5", 5)):
        hyps = [tok.decode(ids) for ids in translate_ids(model, src_ids, trainer.device, beam)]
        out[f"bleu_{name}"] = sacrebleu.corpus_bleu(hyps, [refs], force=True).score
        examples[name] = hyps[:5]
    copy = [_bleu_text(src_tok, s) for s in src_text]
    out["bleu_copy_source"] = sacrebleu.corpus_bleu(copy, [refs], force=True).score
    extra["examples"] = {"source": src_text[:5], "reference": ref_text[:5], **examples}
    return out


def _text_to_text_report(model, bundle: SequenceBundle, split: str, trainer: Trainer, extra) -> dict[str, float]:
    """Corpus BLEU (sacrebleu) of greedy and beam-5 decoding of a text-to-text run, scored as the GRU translation
    recipe scores it: hypotheses and references lower-cased and split into words and punctuation marks (the word
    tokenizer's split), whatever tokenizer the model reads."""
    import sacrebleu

    from deepkit.data.tokenizers import WordTokenizer

    tok = bundle.tokenizer
    words = WordTokenizer(["<pad>", "<unk>", "<bos>", "<eos>"], lowercase=True)  # any tokenizer: score on words

    def norm(text: str) -> str:
        return _bleu_text(words, text)

    pairs = bundle.raw["parts"][split]
    src_ids = bundle.raw["encoded"][split][0]
    refs = [norm(t) for _, t in pairs]
    out: dict[str, float] = {}
    examples = {}
    for name, beam in (("greedy", 1), ("beam5", 5)):
        hyps = [tok.decode(ids) for ids in translate_ids(model, src_ids, trainer.device, beam)]
        out[f"bleu_{name}"] = sacrebleu.corpus_bleu([norm(h) for h in hyps], [refs], force=True).score
        examples[name] = hyps[:5]
    out["bleu_copy_source"] = sacrebleu.corpus_bleu([norm(s) for s, _ in pairs], [refs], force=True).score
    extra["examples"] = {"source": [s for s, _ in pairs[:5]], "reference": [t for _, t in pairs[:5]], **examples}
    return out


def _gradient_norms(model: torch.nn.Module, bundle: SequenceBundle) -> list[float]:
    from deepkit.data.long_range import input_gradient_norms

    x, y = bundle.raw["splits"]["val"]
    device = next(model.parameters()).device
    return input_gradient_norms(model, x[:256].to(device), y[:256].to(device)).cpu().tolist()


def _long_range_report(run_dir: Path, model, bundle: SequenceBundle, trainer: Trainer) -> dict[str, float]:
    """Test accuracy within tolerance, MSE vs the predict-the-mean baseline, gradient norm per time step."""
    from deepkit.data.long_range import ADDING_BASELINE_MSE
    from deepkit.viz.sequence_plots import plot_gradient_norms

    x, y = bundle.raw["splits"]["test"]
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 1024].to(trainer.device)).float().cpu() for i in range(0, len(x), 1024)])
    err = (pred - y).abs()
    tol = bundle.raw.get("tolerance", 0.04)
    trained = _gradient_norms(model, bundle)
    init = bundle.raw.get("grad_init")
    norms = {"length": len(trained), "trained": trained, **({"init": init} if init else {})}
    atomic_write_text(run_dir / "gradient_norms.json", json.dumps(norms))
    name = getattr(model, "model_name", "model")
    curves = {f"{name} (trained)": np.array(trained), **({f"{name} (init)": np.array(init)} if init else {})}
    plot_gradient_norms(curves, run_dir / "plots" / "gradient_norms.png", "‖∂L/∂x_t‖ on the adding problem")
    return {
        "accuracy": float((err < tol).float().mean()),
        "mse": float(err.pow(2).mean()),
        "baseline_mse": ADDING_BASELINE_MSE,
        "grad_ratio_first_last": trained[0] / max(trained[-1], 1e-30),
    }


def _export_vectors(run_dir: Path, model, tokenizer: Tokenizer) -> dict[str, Any]:
    """vectors.txt (word2vec text format, specials left out) and a few neighbour/analogy probes for results.json."""
    from deepkit.embeddings import WordVectors

    words = [tokenizer.id_to_token(i) for i in range(4, tokenizer.vocab_size)]
    vecs = WordVectors(words, model.vectors()[4:].cpu())
    vecs.save(run_dir / "vectors.txt")
    probes: dict[str, Any] = {}
    for w in ("dog", "man", "woman", "red"):
        if w in vecs.index:
            probes[f"neighbours:{w}"] = vecs.neighbours(w, 5)
    for a, b, c in (("man", "woman", "boy"), ("dog", "dogs", "man"), ("man", "men", "woman")):
        if all(x in vecs.index for x in (a, b, c)):
            probes[f"analogy:{a}:{b}::{c}:?"] = vecs.analogy(a, b, c, 5)
    return {"probes": probes}


def _forecast_report(run_dir, task, bundle, trainer, extra) -> dict[str, float]:
    """Test-period forecasts (one-step with true history; multi-step from the end of validation) vs baselines."""
    from deepkit.viz.sequence_plots import plot_forecast

    s = bundle.series
    model = task.model.eval()

    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x.to(trainer.device)).float().cpu()

    true = s.values[s.test_start :]
    season = s.cfg.season
    rows = {
        "model_one_step": one_step_forecast(s, predict),
        "model_multi_step": multi_step_forecast(s, predict),
        "naive_one_step": naive_forecast(s.values, s.test_start, True),
        "naive_multi_step": naive_forecast(s.values, s.test_start, False),
        "seasonal_naive_one_step": seasonal_naive_forecast(s.values, s.test_start, season, True),
        "seasonal_naive_multi_step": seasonal_naive_forecast(s.values, s.test_start, season, False),
    }
    out = {}
    for name, pred in rows.items():
        for metric, v in forecast_errors(pred, true).items():
            out[f"{name}_{metric}"] = v
    extra["forecast"] = {
        "time": s.labels[s.test_start :],
        "true": true.tolist(),
        **{k: np.asarray(v).tolist() for k, v in rows.items()},
    }
    plot_forecast(
        s.labels,
        s.values,
        s.test_start,
        {k: v for k, v in rows.items() if k in ("model_one_step", "model_multi_step", "seasonal_naive_multi_step")},
        run_dir / "plots" / "forecast.png",
    )
    return out


# --- generation ----------------------------------------------------------------------------------------------------
def stream_text(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int = 200,
    device: torch.device | str = "cpu",
    stop: list[str] | tuple[str, ...] = (),
    **options,
):
    """Yield the continuation of ``prompt`` piece by piece (see :func:`deepkit.models.generation.stream_text`);
    ``options`` are ``generate``'s: temperature, top_k, top_p, repetition_penalty, num_beams, generator, ..."""
    opt = options.get
    check_sampling(opt("temperature", 1.0), opt("top_k"), opt("top_p"), opt("repetition_penalty", 1.0))
    if options.get("num_beams", 1) < 1:
        raise ConfigError(f"num_beams must be >= 1, got {options['num_beams']}")
    ids = tokenizer.encode(prompt)
    unknown = sum(i == tokenizer.unk_id for i in ids)
    if ids and unknown == len(ids):
        raise DataError(f"none of the prompt {prompt!r} is in the model's vocabulary")
    return stream_pieces(model, tokenizer, prompt, max_new_tokens, stop, device, **options)


def generate_text(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    **options,
) -> str:
    """Prompt text -> prompt + generated continuation, decoded with the run's tokenizer."""
    pieces = stream_text(
        model,
        tokenizer,
        prompt,
        max_new_tokens,
        device,
        temperature=temperature,
        top_k=top_k,
        generator=generator,
        **options,
    )
    return prompt + "".join(pieces)


# --- load / predict ------------------------------------------------------------------------------------------------
class SequencePredictor:
    """A trained sequence run: ``predict(texts)``, ``generate(prompt)``, ``forecast(values)``.

    Example:
        >>> p = deepkit.load("runs/sst2_bilstm")               # doctest: +SKIP
        >>> p.predict(["a gripping, funny film"])              # doctest: +SKIP  (class indices)
    """

    def __init__(self, model, task_name: str, seq_meta: dict, tokenizer: Tokenizer | None, run_dir: Path | None):
        self.model, self.task_name, self.meta, self.tokenizer, self.run_dir = (
            model,
            task_name,
            seq_meta,
            tokenizer,
            run_dir,
        )
        self.device = resolve_device("auto")
        self.model.to(self.device).eval()

    @property
    def class_names(self) -> list[str] | None:
        return self.meta.get("class_names")

    def _encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.tokenizer is None:
            raise ConfigError(f"this run ({self.task_name}) does not take text")
        max_len, policy = self.meta.get("max_len", 256), self.meta.get("truncation", "warn")
        ids = []
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise DataError(f"input {i} is a {type(t).__name__}, expected text")
            enc = self.tokenizer.encode(t, add_special=self.meta.get("add_special", False))
            ids.append(truncate(enc, max_len, policy, f"input {i}") or [self.tokenizer.unk_id])
        tokens, lengths = pad_batch(ids, self.tokenizer.pad_id)
        return tokens.to(self.device), lengths

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Class probabilities (N, K) for a list of texts."""
        if self.task_name != "text_classification":
            hint = {"language_model": " (use `deepkit generate`)", "word2vec": " (use `deepkit embeddings`)"}
            raise ConfigError(
                f"predicting classes needs a text classification run, this one is '{self.task_name}'"
                + hint.get(self.task_name, "")
            )
        if not texts:
            return np.zeros((0, len(self.class_names)))
        from deepkit.models.token_model import TokenModel
        from deepkit.tasks.token_tasks import encoder_inputs

        tokens, lengths = self._encode(list(texts))
        with torch.no_grad():
            if isinstance(self.model, TokenModel):
                return (
                    self.model(**encoder_inputs({"tokens": tokens, "lengths": lengths}))
                    .float()
                    .softmax(-1)
                    .cpu()
                    .numpy()
                )
            return self.model(tokens, lengths).float().softmax(-1).cpu().numpy()

    def predict(self, texts: list[str]) -> np.ndarray:
        return self.predict_proba(texts).argmax(1)

    def generate(
        self,
        prompt: str,
        max_new_tokens: int = 200,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        **options,
    ) -> str:
        """``prompt`` + its continuation. ``options``: top_p, repetition_penalty, num_beams, length_penalty,
        stop (a list of stop strings), use_cache, on_long_prompt ("truncate" or "error")."""
        return prompt + "".join(self.stream(prompt, max_new_tokens, temperature, top_k, seed, **options))

    def stream(
        self,
        prompt: str,
        max_new_tokens: int = 200,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        **options,
    ):
        """Yield the continuation of ``prompt`` piece by piece as it is generated (same options as ``generate``).

        Example:
            >>> lm = deepkit.load("runs/shakespeare_char_gpt")                # doctest: +SKIP
            >>> for piece in lm.stream("ROMEO:", 200, top_p=0.9):             # doctest: +SKIP
            ...     print(piece, end="", flush=True)
        """
        if self.task_name != "language_model":
            raise ConfigError(f"generate needs a language-model run, this one is '{self.task_name}'")
        g = None if seed is None else torch.Generator(device=self.device).manual_seed(seed)
        return stream_text(
            self.model,
            self.tokenizer,
            prompt,
            max_new_tokens,
            self.device,
            temperature=temperature,
            top_k=top_k,
            generator=g,
            **options,
        )

    def translate(self, texts: list[str], beam_size: int = 5, max_len: int = 60) -> list[str]:
        """Translate source sentences (a translation run): beam search, or greedy with ``beam_size=1``."""
        if self.task_name == "text_to_text":
            tok = self.tokenizer
            prefix = tok.encode(self.meta.get("source_prefix") or "") if self.meta.get("source_prefix") else []
            n = self.meta.get("max_len", 256) - 1 - len(prefix)
            ids = [[*prefix, *tok.encode(t)[:n], tok.eos_id] for t in texts]
            return [tok.decode(h) for h in translate_ids(self.model, ids, self.device, beam_size, max_len)]
        if self.task_name != "translation":
            raise ConfigError(f"translate needs a translation or text_to_text run, this one is '{self.task_name}'")
        ids = [
            self.src_tokenizer.encode(t)[: self.meta.get("max_len", 256)] or [self.src_tokenizer.unk_id] for t in texts
        ]
        return [self.tokenizer.decode(h) for h in translate_ids(self.model, ids, self.device, beam_size, max_len)]

    def forecast(self, values, steps: int | None = None) -> np.ndarray:
        """The next ``steps`` values (default: the trained horizon) after a history of raw ``values`` (forecast run);
        outputs are fed back as inputs when ``steps`` exceeds the model's horizon."""
        from deepkit.data.series import SeriesTransform

        if self.task_name != "forecast":
            raise ConfigError(f"forecast needs a forecasting run, this one is '{self.task_name}'")
        cfg = self.meta["series"]
        tf = SeriesTransform(cfg["log"], cfg["difference"], cfg["mean"], cfg["std"])
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        need = cfg["window"] + (1 if cfg["difference"] else 0)
        if len(v) < need or not np.isfinite(v).all():
            raise DataError(f"forecast needs at least {need} finite past values (the model's window), got {len(v)}")
        z = list(tf.forward(v))
        out: list[float] = []
        steps = steps or cfg["horizon"]
        while len(out) < steps:
            x = torch.tensor(z[-cfg["window"] :], dtype=torch.float32, device=self.device).view(1, -1, 1)
            with torch.no_grad():
                pred = self.model(x)[0].float().cpu().double().tolist()
            out += pred
            z += pred
        return tf.invert(np.asarray(out[:steps]), v[-1])

    def predict_files(self, paths: list[str | Path], top_k: int = 1) -> list[dict[str, Any]]:
        """Text files: every non-empty line is one input (text classification). CSV files of a forecasting run:
        the series' next values (``--top-k`` of them, at least the trained horizon)."""
        if self.task_name == "forecast":
            from deepkit.data.series import read_series_csv

            records = []
            for path in paths:
                _, values, _ = read_series_csv(path, self.meta["series"].get("column"))
                pred = self.forecast(values, max(top_k, self.meta["series"]["horizon"]))
                records.append({"input": str(path), "value": [round(float(p), 6) for p in pred]})
            return records
        records = []
        for path in paths:
            path = Path(path)
            lines = [ln for ln in read_lines(path) if ln.strip()]
            if not lines:
                raise DataError(f"{path} has no text lines")
            probs = self.predict_proba(lines)
            for i, (line, row) in enumerate(zip(lines, probs, strict=True)):
                order = np.argsort(-row)[:top_k]
                top = [{"class": self.class_names[j], "probability": float(row[j])} for j in order]
                name = f"{path}:{i + 1}" if len(lines) > 1 else str(path)
                records.append({"input": name, "text": line, **top[0], **({"top_k": top} if top_k > 1 else {})})
        return records


def load(path: Path, state: dict, meta: dict) -> SequencePredictor:
    """Build the predictor from weights already read by ``deepkit.api.load``; checks the vocabulary matches."""
    seq = meta["sequence"]
    run_dir = path if path.is_dir() and (path / "config.yaml").is_file() else None
    # RUN_DIR, RUN_DIR/checkpoints/best or RUN_DIR/checkpoints/best/model.safetensors: look upwards
    start = path if path.is_dir() else path.parent
    tok_file = next(
        (d / "tokenizer.json" for d in [start, *start.parents][:4] if (d / "tokenizer.json").is_file()), None
    )
    tokenizer = None
    if "tokenizer" in seq:
        if tok_file is None:
            raise CheckpointError(
                f"{path}: this model needs its tokenizer.json (the run directory's) and none was found"
            )
        tokenizer = load_tokenizer(tok_file)
        if tokenizer.fingerprint() != seq["tokenizer"]:
            raise CheckpointError(
                f"vocabulary mismatch: {tok_file} is not the tokenizer this model was trained with "
                f"(fingerprint {tokenizer.fingerprint()} vs {seq['tokenizer']}, vocab {tokenizer.vocab_size} vs "
                f"{seq['vocab_size']})"
            )
    model = create_model(meta["model"], **meta.get("model_config", {}))
    load_state_dict_checked(model, state, str(path))
    predictor = SequencePredictor(model, seq["task"], seq, tokenizer, run_dir)
    if "src_tokenizer" in seq:
        src_tok = load_tokenizer(tok_file.with_name("src_tokenizer.json"))
        if src_tok.fingerprint() != seq["src_tokenizer"]:
            raise CheckpointError(
                f"vocabulary mismatch: {tok_file.with_name('src_tokenizer.json')} is not the "
                "source tokenizer this model was trained with"
            )
        predictor.src_tokenizer = src_tok
    return predictor


def evaluate(run_dir: Path, rec: Recipe, split: str = "test", checkpoint: str = "best") -> dict[str, float]:
    found = find_checkpoint(run_dir / "checkpoints" / checkpoint)
    if found is None:
        raise CheckpointError(f"{run_dir} has no '{checkpoint}' checkpoint")
    state, meta = load_weights(found)
    predictor = load(run_dir, state, meta)
    bundle = build_sequence_data(
        rec.data, rec.task.name, tokenizer=predictor.tokenizer, src_tokenizer=getattr(predictor, "src_tokenizer", None)
    )
    if split == "test" and not bundle.test and bundle.val:
        split = "val"  # corpora without a test part (Tiny Shakespeare, word2vec): report the held-out validation
    if not bundle.split(split):
        raise DataError(f"the data has no '{split}' split")
    task = build_sequence_task(rec, predictor.model, bundle)
    trainer = Trainer(progress="none")
    trainer.device = predictor.device
    return {k: v for k, v in trainer.evaluate(task, bundle, split).items() if math.isfinite(v)}
