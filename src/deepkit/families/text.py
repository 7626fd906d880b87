"""Text: classification of texts, language models, masked-LM pretraining, token tagging and extractive QA.

Data: ``deepkit.data.corpora`` and ``deepkit.data.token_data`` (SST-2, text tables, Tiny Shakespeare, text files,
Multi30k, CoNLL tags, SQuAD); the tokenizer is trained on the training split (or reused: ``data.text.tokenizer_file``,
a fine-tuned model's pretraining run) and saved in the run as ``tokenizer.json``. Models: recurrent networks and
Transformers (GPT, BERT, RoBERTa, DeBERTa). Verbs: ``predict`` (text classification), ``generate`` and ``chat``
(language models).

:class:`TokenFamily` holds what every family of token data shares (the data section, the tokenizer, pretrained
vectors, fine-tuning); the sequence-to-sequence and word-vector families build on it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deepkit.cli_options import flag
from deepkit.errors import CheckpointError, ConfigError, DataError, ShapeError
from deepkit.families.base import ExportSpec, Family, Finish, Predictor, Saved, ServeHook

if TYPE_CHECKING:
    import numpy as np
    import torch

    from deepkit.data.text import TextData
    from deepkit.data.tokenizers import Tokenizer
    from deepkit.recipe import Recipe
    from deepkit.tasks.base import Task

TASKS = {
    "text_classification": "classify texts (RNNs or encoder Transformers): accuracy, F1, majority baseline",
    "language_model": "next-token language model (RNNs, GPT): perplexity, generation",
    "masked_lm": "masked-LM pretraining of an encoder (BERT, RoBERTa, DeBERTa), dynamic masking",
    "token_classification": "tag every word (NER, POS) with an encoder Transformer: accuracy, macro-F1",
    "question_answering": "extractive QA (SQuAD): answer spans over long contexts, exact match and F1",
}


@dataclass
class TextTaskConfig:
    """The ``task`` section of the token families."""

    name: str = "text_classification"
    label_smoothing: float = 0.0  # classification; token prediction (LM, MLM, translation): training loss only


# --- what a run keeps ----------------------------------------------------------------------------------------------
@dataclass
class TextSaved(Saved):
    """A token run keeps its tokenizer(s) (``tokenizer.json``, ``src_tokenizer.json``) and how texts were encoded.

    In the checkpoint's metadata under ``sequence`` (the key releases before the family seam wrote), with each
    tokenizer's fingerprint, so a run never predicts through a vocabulary it was not trained with.
    """

    task: str
    tokenizer: Tokenizer | None = None
    src_tokenizer: Tokenizer | None = None  # translation: the source language's
    class_names: list[str] | None = None
    max_len: int = 256
    truncation: str = "warn"
    block_size: int = 128
    add_special: bool = False
    source_prefix: str = ""

    def meta(self) -> dict[str, Any]:
        seq: dict[str, Any] = {"task": self.task}
        if self.tokenizer is not None:
            seq["tokenizer"] = self.tokenizer.fingerprint()
            seq["vocab_size"] = self.tokenizer.vocab_size
            seq.update(
                max_len=self.max_len,
                truncation=self.truncation,
                block_size=self.block_size,
                add_special=self.add_special,
                source_prefix=self.source_prefix,
            )
        if self.class_names:
            seq["class_names"] = self.class_names
        if self.src_tokenizer is not None:
            seq["src_tokenizer"] = self.src_tokenizer.fingerprint()
        return {"sequence": seq}

    def write(self, run_dir: Path) -> None:
        if self.tokenizer is not None:
            self.tokenizer.save(run_dir / "tokenizer.json")
        if self.src_tokenizer is not None:
            self.src_tokenizer.save(run_dir / "src_tokenizer.json")

    @classmethod
    def from_meta(cls, folder: Path, meta: dict[str, Any]) -> TextSaved:
        """Read back from a checkpoint's metadata; the tokenizers are looked for in ``folder`` and up to 3 parents
        (RUN_DIR, RUN_DIR/checkpoints/best, ...) and must match their fingerprints."""
        from deepkit.data.tokenizers import load_tokenizer

        seq = meta.get("sequence") or {}
        start = folder if folder.is_dir() else folder.parent
        tok_file = next(
            (d / "tokenizer.json" for d in [start, *start.parents][:4] if (d / "tokenizer.json").is_file()), None
        )
        out = cls(
            task=seq.get("task", (meta.get("task") or {}).get("name", "")),
            class_names=seq.get("class_names"),
            max_len=seq.get("max_len", 256),
            truncation=seq.get("truncation", "warn"),
            block_size=seq.get("block_size", 128),
            add_special=seq.get("add_special", False),
            source_prefix=seq.get("source_prefix") or "",
        )
        if "tokenizer" in seq:
            if tok_file is None:
                raise CheckpointError(
                    f"{folder}: this model needs its tokenizer.json (the run directory's) and none was found"
                )
            out.tokenizer = load_tokenizer(tok_file)
            if out.tokenizer.fingerprint() != seq["tokenizer"]:
                raise CheckpointError(
                    f"vocabulary mismatch: {tok_file} is not the tokenizer this model was trained with "
                    f"(fingerprint {out.tokenizer.fingerprint()} vs {seq['tokenizer']}, vocab "
                    f"{out.tokenizer.vocab_size} vs {seq['vocab_size']})"
                )
        if "src_tokenizer" in seq:
            src_file = tok_file.with_name("src_tokenizer.json")
            out.src_tokenizer = load_tokenizer(src_file)
            if out.src_tokenizer.fingerprint() != seq["src_tokenizer"]:
                raise CheckpointError(
                    f"vocabulary mismatch: {src_file} is not the source tokenizer this model was trained with"
                )
        return out


# --- building blocks shared by the token families ------------------------------------------------------------------
def bind_token_model(model_section: dict[str, Any], data: TextData, task: str) -> torch.nn.Module:
    """Create the model with ``vocab_size``/``num_classes``/... taken from the data (``data.model_sizes``, checked)."""
    from deepkit.config import field_types
    from deepkit.data.token_data import check_vocab
    from deepkit.models.registry import create_model, get_entry

    name = model_section["name"]
    overrides = {k: v for k, v in model_section.items() if k != "name"}
    fields = field_types(get_entry(name).config_cls)
    for key, value in data.model_sizes.items():
        if key not in fields:
            if key in ("vocab_size", "num_classes"):
                raise ShapeError(
                    f"model '{name}' has no {key}; task '{task}' needs a model that takes token ids "
                    f"({'an *_lm model' if task == 'language_model' else 'e.g. lstm_classifier'})"
                )
            continue
        if key == "vocab_size" and key in overrides and data.vocab_at_least:
            check_vocab(data.tokenizer, overrides[key])  # a larger embedding (unused rows) is fine
            continue
        if key in overrides and overrides[key] != value:
            raise ShapeError(
                f"model.{key}={overrides[key]} does not fit the data; expected {key}={value} (or leave it out)"
            )
        overrides[key] = value
    return create_model(name, **overrides)


def reused_tokenizer(rec: Recipe) -> Tokenizer | None:
    """``data.text.tokenizer_file`` (a tokenizer.json or a run directory), else the tokenizer of the run named by
    ``finetune.weights``: a fine-tuned model must read the ids its pretrained embedding was trained on."""
    from deepkit.data.tokenizers import load_tokenizer

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


def check_pretrained_vocab(rec: Recipe, data: TextData) -> None:
    """Fine-tuning: the tokenizer must not produce ids beyond the pretrained embedding table."""
    if rec.finetune is None or not rec.finetune.weights or data.tokenizer is None:
        return
    from deepkit.data.token_data import check_vocab
    from deepkit.weights import load_weights

    state, _ = load_weights(rec.finetune.weights, trust_pickle=rec.finetune.trust_pickle)
    rows = next((v.shape[0] for k, v in state.items() if k.endswith(("word_embeddings.weight", "shared.weight"))), None)
    check_vocab(data.tokenizer, rows, where=f"pretrained weights ({rec.finetune.weights})")


def load_vectors(rec: Recipe, model: torch.nn.Module, data: TextData) -> str | None:
    """``data.text.vectors``: pretrained word vectors into the model's token embedding; returns a note."""
    import torch

    from deepkit.data.text import embedding_from_vectors, read_word_vectors

    path = rec.data.text.vectors
    if not path or data.tokenizer is None:
        return None
    emb = getattr(getattr(model, "inputs", None), "embedding", None)
    if emb is None:
        raise ConfigError(f"data.text.vectors is set, but model '{rec.model['name']}' has no token embedding")
    words, vectors = read_word_vectors(path)
    weight, found = embedding_from_vectors(data.tokenizer, words, vectors, emb.embedding_dim)
    with torch.no_grad():
        emb.weight.copy_(weight)
    return f"{found:.1%} of the vocabulary initialized from {path}"


class TokenFamily(Family):
    """What the families of token data share: the ``data`` section (``data.text``), the task section, building data
    with a trained or reused tokenizer, binding vocabulary sizes, pretrained vectors and fine-tuning."""

    sections = ("finetune",)

    def task_config(self, task: str) -> type:
        return TextTaskConfig

    def data_config(self, task: str) -> type:
        from deepkit.data.text import TextDataConfig

        return TextDataConfig

    def section_config(self, section: str) -> type:
        from deepkit.train.finetune import FinetuneConfig

        return FinetuneConfig

    def make_data(self, rec: Recipe, saved: TextSaved | None) -> TextData:  # pragma: no cover - abstract
        raise NotImplementedError

    def build_data(self, rec: Recipe, saved: Saved | None = None, given: Any = None) -> TextData:
        if given is not None:
            raise ConfigError(f"task '{rec.task.name}' reads its data from the recipe's data section, not arrays")
        self.check_dataset(rec)
        return self.make_data(rec, saved if isinstance(saved, TextSaved) else None)

    def build_model(self, rec: Recipe, data: TextData) -> torch.nn.Module:
        return bind_token_model(rec.model, data, rec.task.name)

    def setup(self, rec: Recipe, model: torch.nn.Module, data: TextData, fresh: bool) -> list:
        from deepkit.train.finetune import setup_finetune

        if fresh:
            note = load_vectors(rec, model, data)
            if note:
                data.notes.insert(0, note)
            check_pretrained_vocab(rec, data)
        return setup_finetune(rec.finetune, model, rec.trainer.optimizer, load=fresh)

    def saved(self, rec: Recipe, data: TextData) -> TextSaved:
        tc = rec.data.text
        return TextSaved(
            rec.task.name,
            data.tokenizer,
            data.src_tokenizer,
            data.class_names,
            tc.max_len,
            tc.truncation,
            tc.block_size,
            tc.add_special,
            tc.source_prefix,
        )

    def load_saved(self, folder: Path, meta: dict[str, Any]) -> TextSaved:
        return TextSaved.from_meta(folder, meta)


# --- this family ---------------------------------------------------------------------------------------------------
class TextFamily(TokenFamily):
    name = "text"
    description = "text: classification, language models, masked-LM pretraining, token tagging, extractive QA"
    tasks = TASKS

    def datasets(self, task: str) -> dict[str, str]:
        from deepkit.data import corpora, token_data

        return {
            "text_classification": corpora.TEXT_CLASSIFICATION,
            "language_model": corpora.LANGUAGE_MODELLING,
            "masked_lm": token_data.PRETRAINING,
            "token_classification": token_data.TOKEN_TAGGING,
            "question_answering": token_data.QUESTION_ANSWERING,
        }[task]

    def make_data(self, rec: Recipe, saved: TextSaved | None) -> TextData:
        from deepkit.data import corpora, token_data

        tok = saved.tokenizer if saved is not None else reused_tokenizer(rec)
        build = {
            "text_classification": corpora.text_classification_data,
            "language_model": corpora.language_model_data,
            "masked_lm": token_data.masked_lm_data,
            "token_classification": token_data.token_classification_data,
            "question_answering": token_data.qa_data,
        }[rec.task.name]
        return build(rec.data, tokenizer=tok)

    def build_task(self, rec: Recipe, model: torch.nn.Module, data: TextData) -> Task:
        from deepkit.models.token_model import TokenModel
        from deepkit.tasks.masked_lm import MaskedLMTask
        from deepkit.tasks.sequence import LanguageModelTask, TextClassificationTask
        from deepkit.tasks.token_tasks import (
            QuestionAnsweringTask,
            SequenceClassificationTask,
            TokenClassificationTask,
        )

        name, smoothing = rec.task.name, rec.task.label_smoothing
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
        if name == "text_classification":
            cls = SequenceClassificationTask if isinstance(model, TokenModel) else TextClassificationTask
            return cls(model, len(data.class_names), label_smoothing=smoothing)
        if name == "language_model":
            return LanguageModelTask(model, data.tokenizer.vocab_size, label_smoothing=smoothing)
        if name == "masked_lm":
            return MaskedLMTask(model, data.tokenizer.vocab_size, label_smoothing=smoothing)
        if name == "token_classification":
            return TokenClassificationTask(model, len(data.class_names))
        return QuestionAnsweringTask(model, rec.data.text.max_answer_len)

    def report(self, run: Finish) -> dict[str, Any]:
        import numpy as np
        import torch

        data, name = run.data, run.recipe.task.name
        if name == "text_classification":
            from deepkit.families.supervised import write_confusion_matrix

            train_y = data.parts["train"][1]
            majority = int(np.bincount(train_y).argmax())
            run.metrics["majority_baseline_accuracy"] = float((data.parts[run.split][1] == majority).mean())
            texts = data.parts[run.split][0][:8]
            (run.samples / "test_texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
            true, pred = classify_split(run)
            write_confusion_matrix(run, true, pred, data.class_names)
        elif name == "language_model":
            model, device = run.task.model, run.trainer.device
            prompt = data.parts.get("val", data.parts["train"])[: min(40, getattr(model, "context_length", 40))]
            g = torch.Generator(device=device).manual_seed(0)
            text = generate_text(model, data.tokenizer, prompt, 400, 0.8, 20, device, g)
            (run.samples / "sample.txt").write_text(text, encoding="utf-8")
            return {"sample": text}
        return {}  # masked LM, tagging, QA: the evaluation metrics say it all

    def predictor(self, model: torch.nn.Module, task: str, saved: Saved, run_dir: Path | None) -> Predictor:
        cls = {"text_classification": TextClassifierPredictor, "language_model": LanguageModelPredictor}
        return cls.get(task, TokenPredictor)(model, task, saved, run_dir)


def classify_split(run: Finish) -> tuple[np.ndarray, np.ndarray]:
    """(true labels, predicted labels) of a text classifier on the run's report split."""
    import numpy as np
    import torch

    task, device = run.task, run.trainer.device
    task.model.eval()
    true, pred = [], []
    with torch.no_grad():
        for batch in run.data.loader(run.split):
            batch = {k: v.to(device) if k != "lengths" and hasattr(v, "to") else v for k, v in batch.items()}
            pred.append(task.predict_step(batch).argmax(-1).cpu())
            true.append(batch["target"].cpu())
    return torch.cat(true).numpy(), torch.cat(pred).numpy().astype(np.int64)


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
    from deepkit.models.generation import check_sampling
    from deepkit.models.generation import stream_text as stream_pieces

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


# --- using a trained run -------------------------------------------------------------------------------------------
class TokenPredictor(Predictor):
    """A trained token model with its tokenizer (masked LM, tagging, QA runs offer no verb besides ``eval``)."""

    def __init__(self, model: torch.nn.Module, task_name: str, saved: TextSaved, run_dir: Path | None = None):
        super().__init__(model, task_name, saved, run_dir)
        self.tokenizer = saved.tokenizer
        self.src_tokenizer = saved.src_tokenizer

    @property
    def class_names(self) -> list[str] | None:
        return self.saved.class_names

    def export_hf(self, folder: Path) -> None:
        """``config.json`` + ``model.safetensors`` (``interop.export_hf``: ``transformers`` loads them with the
        class in ``architectures``), the class names as ``id2label``, and the run's tokenizer as a Hugging Face
        ``tokenizer.json`` (+ ``tokenizer_config.json``, special tokens) that encodes as the run encoded."""
        import json

        from deepkit.data.tokenizers import hf_tokenizer
        from deepkit.models.token_model import TokenModel

        if not isinstance(self.model, TokenModel) or not getattr(type(self.model), "hf_model_type", None):
            super().export_hf(folder)
        from deepkit.interop.hf import export_hf

        folder.mkdir(parents=True, exist_ok=True)
        export_hf(self.model, folder)
        config = json.loads((folder / "config.json").read_text())
        if self.class_names and "num_labels" in config:
            config["id2label"] = {str(i): n for i, n in enumerate(self.class_names)}
            config["label2id"] = {n: i for i, n in enumerate(self.class_names)}
        tok = self.tokenizer
        specials = {"pad_token": tok.pad_id, "unk_token": tok.unk_id, "bos_token": tok.bos_id, "eos_token": tok.eos_id}
        config.update({k.replace("token", "token_id"): v for k, v in specials.items()})
        (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        hf_tokenizer(tok, self.saved.add_special).save(str(folder / "tokenizer.json"))
        tok_config = {k: tok.id_to_token(v) for k, v in specials.items()}
        tok_config.update(tokenizer_class="PreTrainedTokenizerFast", model_max_length=self.saved.max_len)
        (folder / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")

    def _encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        from deepkit.data.text import pad_batch, truncate

        if self.tokenizer is None:
            raise ConfigError(f"this run ({self.task_name}) does not take text")
        ids = []
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise DataError(f"input {i} is a {type(t).__name__}, expected text")
            enc = self.tokenizer.encode(t, add_special=self.saved.add_special)
            ids.append(
                truncate(enc, self.saved.max_len, self.saved.truncation, f"input {i}") or [self.tokenizer.unk_id]
            )
        tokens, lengths = pad_batch(ids, self.tokenizer.pad_id)
        return tokens.to(self.device), lengths


class TextClassifierPredictor(TokenPredictor):
    """A text classifier: ``predict(texts)`` -> class indices, ``predict_proba(texts)`` -> probabilities.

    Example:
        >>> p = deepkit.load("runs/sst2_bilstm")               # doctest: +SKIP
        >>> p.predict(["a gripping, funny film"])              # doctest: +SKIP  (class indices)
    """

    kind = "text-classification run"
    verbs = {"predict": ("predict", "predict_proba", "predict_files")}

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Class probabilities (N, K) for a list of texts (a single string counts as one text)."""
        import numpy as np
        import torch

        from deepkit.models.token_model import TokenModel
        from deepkit.tasks.token_tasks import encoder_inputs

        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            return np.zeros((0, len(self.class_names)))
        tokens, lengths = self._encode(list(texts))
        with torch.no_grad():
            if isinstance(self.model, TokenModel):
                logits = self.model(**encoder_inputs({"tokens": tokens, "lengths": lengths}))
            else:
                logits = self.model(tokens, lengths)
            return logits.float().softmax(-1).cpu().numpy()

    def export_spec(self) -> ExportSpec:
        """Token ids and lengths -> class probabilities (the tokenizer stays outside the graph: ``tokenizer.json``
        and how texts are encoded go in the sidecar)."""
        import tempfile

        import torch

        from deepkit.models.token_model import TokenModel
        from deepkit.tasks.token_tasks import TextClassifierInference

        tok, saved = self.tokenizer, self.saved
        module = TextClassifierInference(self.model, isinstance(self.model, TokenModel)).eval()
        longest = max(2, min(saved.max_len, 64))

        def sample(batch: int, seed: int) -> dict[str, torch.Tensor]:
            g = torch.Generator().manual_seed(seed)
            t = int(torch.randint(2, longest + 1, (), generator=g))
            lengths = torch.randint(1, t + 1, (batch,), generator=g)
            lengths[0] = t  # the longest fills the padded width, as pad_batch makes it
            tokens = torch.randint(0, tok.vocab_size, (batch, t), generator=g)
            tokens[torch.arange(t)[None] >= lengths[:, None]] = tok.pad_id
            return {"tokens": tokens, "lengths": lengths}

        names = list(self.class_names or [])
        sidecar = {
            "task": self.task_name,
            "inputs": {
                "tokens": {
                    "dtype": "int64",
                    "shape": ["sequence"],
                    "kind": "token_ids",
                    "range": [0, tok.vocab_size - 1],
                },
                "lengths": {"dtype": "int64", "shape": [], "range": [1, saved.max_len]},
            },
            "outputs": {"probabilities": {"shape": [len(names)], "labels": names}},
            "page": {"input": "text", "show": "bars"},
            "tokenizer": {
                "inputs": {"tokens": "tokens", "lengths": "lengths"},  # which inputs the encoded text fills
                "file": "tokenizer.json",
                "add_special": saved.add_special,
                "max_len": saved.max_len,
                "pad_id": tok.pad_id,
                "truncation": saved.truncation,
            },
        }
        folder = Path(tempfile.mkdtemp(prefix="deepkit-tokenizer-"))
        tok.save(folder / "tokenizer.json")
        return ExportSpec(
            module,
            sample(2, 0),
            ["probabilities"],
            sidecar,
            sample,
            dynamic={"tokens": {1: "sequence"}},
            files={"tokenizer.json": folder / "tokenizer.json"},
        )

    def predict(self, texts: list[str], names: bool = False) -> np.ndarray:
        """Class indices (N,) for a list of texts; their class names with ``names=True`` (what the CLI prints)."""
        import numpy as np

        idx = self.predict_proba(texts).argmax(1)
        return np.array([self.class_names[i] for i in idx]) if names else idx

    def predict_files(self, paths: list[str | Path], top_k: int = 1) -> list[dict[str, Any]]:
        """Text files: every non-empty line is one input."""
        import numpy as np

        from deepkit.data.inputs import IMAGE_SUFFIXES
        from deepkit.data.text import read_lines

        records = []
        for path in paths:
            path = Path(path)
            if path.suffix.lower() in IMAGE_SUFFIXES | {".npy", ".npz"}:
                raise DataError(
                    f"{path} is a {path.suffix} file; this '{self.task_name}' run reads text files "
                    "(one text per line, UTF-8)"
                )
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


class ChatSession:
    """A conversation with a language model: each line joins the history and the model continues it.

    Example:
        >>> chat = deepkit.load("runs/shakespeare_char_gpt").chat(stop=["\\n\\n"])   # doctest: +SKIP
        >>> print(chat.say("ROMEO: Is she here?"))                                   # doctest: +SKIP
    """

    def __init__(self, predictor: LanguageModelPredictor, seed: int | None = None, **options: Any):
        self.predictor, self.seed, self.options = predictor, seed, options
        self.history = ""
        self.turns = 0

    def stream(self, line: str) -> Iterator[str]:
        """Yield the reply to ``line`` piece by piece; the history grows by the line and the reply."""
        import warnings

        from deepkit.models.generation import LongPromptWarning

        self.history += line + "\n"
        seed = None if self.seed is None else self.seed + self.turns
        self.turns += 1
        reply = ""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LongPromptWarning)  # a long conversation is expected to outgrow it
            for piece in self.predictor.stream(self.history, seed=seed, **self.options):
                reply += piece
                yield piece
        self.history += reply + "\n"

    def say(self, line: str) -> str:
        """The whole reply to ``line``."""
        return "".join(self.stream(line))


class LanguageModelPredictor(TokenPredictor):
    """A language model: ``generate``/``stream`` a continuation of a prompt, ``chat`` line by line."""

    kind = "language-model run"
    verbs = {"generate": ("generate", "stream"), "chat": ("chat",)}

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
        import torch

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

    def export_spec(self) -> ExportSpec:
        """A recurrent language model's step: token ids + state in, next-token logits + the next state out (states
        batch first, ``(B, num_layers, hidden_size)``; zeros to start), so sampling runs outside the graph; the
        tokenizer goes beside it (``tokenizer.json``). Models without ``export_module`` (GPT-2) are refused."""
        import tempfile

        import torch

        if not hasattr(self.model, "export_module"):
            from deepkit.errors import ExportError

            raise ExportError(
                f"{self._where()} is a language model of a {type(self.model).__name__}: only recurrent language "
                "models export yet (a Transformer's logits step with its KV cache in and out is not in a graph yet)"
            )
        module = self.model.export_module()
        cfg, tok = self.model.cfg, self.tokenizer
        states = ["h", "c"] if cfg.cell == "lstm" else ["h"]
        layers, hidden, vocab = cfg.num_layers, cfg.hidden_size, cfg.vocab_size

        def sample(batch: int, seed: int) -> dict[str, torch.Tensor]:
            g = torch.Generator().manual_seed(seed)
            t = int(torch.randint(2, 17, (), generator=g)) if module.any_length else 1
            out = {"tokens": torch.randint(0, vocab, (batch, t), generator=g)}
            out.update({s: 0.5 * torch.randn(batch, layers, hidden, generator=g) for s in states})
            return out

        length = "sequence" if module.any_length else 1
        state = {"dtype": "float32", "shape": [layers, hidden]}
        sidecar = {
            "task": self.task_name,
            "inputs": {
                "tokens": {"dtype": "int64", "shape": [length], "kind": "token_ids", "range": [0, vocab - 1]},
                **dict.fromkeys(states, state),
            },
            "outputs": {"logits": {"shape": [length, vocab]}, **{f"{s}_next": state for s in states}},
            "page": self.serve_page(),
            "generation": (
                "feed the prompt's ids with zero states, sample the next id from logits[:, -1], then feed that id with "
                f"the returned {' and '.join(f'{s}_next' for s in states)}"
                + ("" if module.any_length else "; this graph takes one token per call (feed a prompt token by token)")
            ),
            "tokenizer": {"file": "tokenizer.json", "add_special": self.saved.add_special, "pad_id": tok.pad_id},
        }
        folder = Path(tempfile.mkdtemp(prefix="deepkit-tokenizer-"))
        tok.save(folder / "tokenizer.json")
        return ExportSpec(
            module,
            sample(2, 0),
            ["logits", *(f"{s}_next" for s in states)],
            sidecar,
            sample,
            dynamic={"tokens": {1: "sequence"}} if module.any_length else {},
            files={"tokenizer.json": folder / "tokenizer.json"},
        )

    def serve_hooks(self) -> dict[str, ServeHook]:
        """``deepkit serve``: ``POST /generate/stream``, the continuation of a prompt as server-sent events. A
        prompt longer than the model's context is refused (not cut)."""

        def run(prompt: str, max_new_tokens: int, temperature: float, top_k: int | None, seed: int | None):
            return self.stream(prompt, max_new_tokens, temperature, top_k, seed, on_long_prompt="error")

        params = {
            "prompt": {"type": "string", "maxLength": 20_000},
            "max_new_tokens": {"type": "integer", "default": 100, "minimum": 1, "maximum": 2000},
            "temperature": {"type": "number", "default": 1.0, "minimum": 0.0, "maximum": 10.0},
            "top_k": {"type": "integer", "default": None, "minimum": 1},
            "seed": {"type": "integer", "default": None, "minimum": 0},
        }
        return {"generate": ServeHook(run, params, stream=True, description="the continuation of a prompt")}

    def serve_page(self) -> dict[str, Any]:
        return {"input": "text", "show": "stream", "hook": "generate", "param": "prompt"}

    def chat(self, seed: int | None = None, **options: Any) -> ChatSession:
        """A :class:`ChatSession`; ``options`` are ``stream``'s (max_new_tokens, temperature, top_k, top_p,
        repetition_penalty, stop, ...). Turn ``n`` samples with ``seed + n``."""
        return ChatSession(self, seed, **options)


# --- CLI verbs -----------------------------------------------------------------------------------------------------
def _stops(stop: Iterable[str]) -> list[str]:
    return [s.encode("latin-1", "backslashreplace").decode("unicode_escape") for s in stop]


def generate(
    predictor: LanguageModelPredictor,
    prompt: Annotated[str, typer.Option("--prompt", help="Text to continue.", show_default="a newline")] = "\n",
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Tokens to generate.")] = 300,
    temperature: Annotated[float, typer.Option("--temperature", help="0 = greedy; <1 safer, >1 wilder.")] = 0.8,
    top_k: Annotated[int | None, typer.Option("--top-k", help="Sample among the K most likely tokens.")] = None,
    top_p: Annotated[
        float | None, typer.Option("--top-p", help="Sample from the smallest set of tokens with mass >= P (nucleus).")
    ] = None,
    repetition_penalty: Annotated[
        float, typer.Option("--repetition-penalty", help=">1 discourages tokens already present (CTRL); 1 = off.")
    ] = 1.0,
    num_beams: Annotated[
        int, typer.Option("--num-beams", help="Beam search with N beams (deterministic; ignores sampling options).")
    ] = 1,
    length_penalty: Annotated[
        float, typer.Option("--length-penalty", help="Beam search: rank by log p / length**L (>1 favours longer).")
    ] = 1.0,
    stop: Annotated[
        list[str] | None, typer.Option("--stop", help="Stop before this text (repeatable; '\\n' is a newline).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for reproducible samples.")] = None,
    on_long_prompt: Annotated[
        str, typer.Option("--on-long-prompt", help="Prompt longer than the context: truncate (keep the end) or error.")
    ] = "truncate",
    no_cache: Annotated[bool, flag("--no-cache", help="Do not reuse past keys/values (Transformers).")] = False,
    no_stream: Annotated[bool, flag("--no-stream", help="Print the text at the end, not as it comes.")] = False,
) -> None:
    """Generate text with a trained language model: prints the prompt and its continuation as it is generated.

    Example: deepkit generate runs/shakespeare_char_gpt --prompt "ROMEO:" --top-p 0.9 --stop "\\n\\n"
    """
    pieces = predictor.stream(
        prompt,
        max_new_tokens,
        temperature,
        top_k,
        seed,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        num_beams=num_beams,
        length_penalty=length_penalty,
        stop=_stops(stop or []),
        use_cache=not no_cache,
        on_long_prompt=on_long_prompt,
    )
    if no_stream:
        typer.echo(prompt + "".join(pieces))
        return
    typer.echo(prompt, nl=False)
    for piece in pieces:
        typer.echo(piece, nl=False)
        sys.stdout.flush()
    typer.echo()


def chat(
    predictor: LanguageModelPredictor,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Most tokens per reply.")] = 200,
    temperature: Annotated[float, typer.Option("--temperature", help="0 = greedy; <1 safer, >1 wilder.")] = 0.8,
    top_k: Annotated[int | None, typer.Option("--top-k", help="Sample among the K most likely tokens.")] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", help="Nucleus sampling mass.")] = None,
    repetition_penalty: Annotated[float, typer.Option("--repetition-penalty", help="CTRL penalty; 1 = off.")] = 1.0,
    stop: Annotated[
        list[str] | None,
        typer.Option("--stop", help="A reply ends before this text (repeatable; default a blank line)."),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for reproducible replies.")] = None,
) -> None:
    """Interactive generation: every line you type joins the conversation and the model continues it, streamed,
    until a stop string. The conversation so far is the prompt (its last tokens once it outgrows the context).
    An empty line or Ctrl-D ends the session.
    """
    session = predictor.chat(
        seed,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        stop=_stops(stop or ["\\n\\n"]),
    )
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line:
            break
        for piece in session.stream(line):
            typer.echo(piece, nl=False)
            sys.stdout.flush()
        typer.echo()


TextFamily.commands = (generate, chat)
FAMILY = TextFamily()
