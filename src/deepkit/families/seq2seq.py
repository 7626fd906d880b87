"""Sequence to sequence: translation (GRU encoder-decoders with attention), text-to-text and span corruption (T5).

Data: Multi30k German->English or any file of text pairs (``deepkit.data.corpora``, ``deepkit.data.token_data``);
translation trains one tokenizer per language (``tokenizer.json``, ``src_tokenizer.json``), T5 one shared tokenizer.
Report: corpus BLEU (sacrebleu) of greedy and beam-5 decoding against copying the source. Verb: ``translate``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deepkit.errors import ConfigError
from deepkit.families.base import Finish, Predictor, Saved, read_lines_arg
from deepkit.families.text import TextSaved, TokenFamily, TokenPredictor, reused_tokenizer

if TYPE_CHECKING:
    import torch

    from deepkit.data.text import TextData
    from deepkit.data.tokenizers import Tokenizer
    from deepkit.recipe import Recipe
    from deepkit.tasks.base import Task

TASKS = {
    "translation": "translate (GRU encoder-decoder with Bahdanau/Luong attention): BLEU, beam search",
    "text_to_text": "text-to-text with an encoder-decoder Transformer (T5): BLEU, beam search",
    "span_corruption": "T5 span-corruption pretraining (sentinel spans in, spans out)",
}


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


def bleu_text(tokenizer: Tokenizer, text: str) -> str:
    """The form BLEU compares: word tokenizers' own split (lower-cased, punctuation apart), raw text otherwise."""
    return " ".join(tokenizer.split(text)) if hasattr(tokenizer, "split") else text


def bleu_report(model, tok: Tokenizer, src_ids, refs: list[str], copies: list[str], norm, device) -> tuple[dict, dict]:
    """Corpus BLEU (sacrebleu) of greedy and beam-5 decoding of ``src_ids``, and of copying the source; the
    hypotheses and references are compared in the form ``norm`` gives them. Returns (metrics, examples)."""
    import sacrebleu

    out: dict[str, float] = {}
    examples = {}
    for name, beam in (("greedy", 1), ("beam5", 5)):
        hyps = [tok.decode(ids) for ids in translate_ids(model, src_ids, device, beam)]
        out[f"bleu_{name}"] = sacrebleu.corpus_bleu([norm(h) for h in hyps], [refs], force=True).score
        examples[name] = hyps[:5]
    out["bleu_copy_source"] = sacrebleu.corpus_bleu(copies, [refs], force=True).score
    return out, examples


class Seq2SeqFamily(TokenFamily):
    name = "seq2seq"
    description = "sequence to sequence: translation, text-to-text and span corruption (T5)"
    tasks = TASKS

    def datasets(self, task: str) -> dict[str, str]:
        from deepkit.data import corpora, token_data

        return {
            "translation": corpora.TRANSLATION,
            "text_to_text": token_data.TEXT_PAIRS,
            "span_corruption": token_data.PRETRAINING,
        }[task]

    def make_data(self, rec: Recipe, saved: TextSaved | None) -> TextData:
        from deepkit.data import corpora, token_data

        if rec.task.name == "translation":
            if saved is not None:
                return corpora.translation_data(rec.data, saved.tokenizer, saved.src_tokenizer)
            return corpora.translation_data(rec.data)
        tok = saved.tokenizer if saved is not None else reused_tokenizer(rec)
        build = token_data.text_to_text_data if rec.task.name == "text_to_text" else token_data.span_corruption_data
        return build(rec.data, tokenizer=tok)

    def build_task(self, rec: Recipe, model: torch.nn.Module, data: TextData) -> Task:
        from deepkit.tasks.sequence import Seq2SeqTask
        from deepkit.tasks.text_to_text import SpanCorruptionTask, TextToTextTask

        name, smoothing = rec.task.name, rec.task.label_smoothing
        if name == "translation":
            return Seq2SeqTask(model, data.tokenizer.vocab_size, label_smoothing=smoothing)
        if not hasattr(model, "shift_right"):
            raise ConfigError(f"task '{name}' needs an encoder-decoder model (t5), got model '{rec.model['name']}'")
        cls = TextToTextTask if name == "text_to_text" else SpanCorruptionTask
        return cls(model, data.tokenizer.vocab_size, label_smoothing=smoothing)

    def report(self, run: Finish) -> dict[str, Any]:
        """BLEU of a translation or text-to-text run (span corruption: the evaluation metrics say it all)."""
        from deepkit.data.tokenizers import WordTokenizer

        data, split, name = run.data, run.split, run.recipe.task.name
        if name == "span_corruption":
            return {}
        src_ids = data.encoded[split][0]
        tok = data.tokenizer
        if name == "translation":
            src_text, ref_text = data.parts[split]
            metrics, examples = bleu_report(
                run.task.model,
                tok,
                src_ids,
                [bleu_text(tok, r) for r in ref_text],
                [bleu_text(data.src_tokenizer, s) for s in src_text],
                lambda h: h,
                run.trainer.device,
            )
            sources, references = src_text[:5], ref_text[:5]
        else:
            # scored as the GRU translation recipe scores it: hypotheses and references lower-cased and split into
            # words and punctuation marks (the word tokenizer's split), whatever tokenizer the model reads
            words = WordTokenizer(["<pad>", "<unk>", "<bos>", "<eos>"], lowercase=True)
            pairs = data.parts[split]

            def norm(text: str) -> str:
                return bleu_text(words, text)

            metrics, examples = bleu_report(
                run.task.model,
                tok,
                src_ids,
                [norm(t) for _, t in pairs],
                [norm(s) for s, _ in pairs],
                norm,
                run.trainer.device,
            )
            sources, references = [s for s, _ in pairs[:5]], [t for _, t in pairs[:5]]
        run.metrics.update(metrics)
        return {"examples": {"source": sources, "reference": references, **examples}}

    def predictor(self, model: torch.nn.Module, task: str, saved: Saved, run_dir: Path | None) -> Predictor:
        cls = TranslatorPredictor if task in ("translation", "text_to_text") else TokenPredictor
        return cls(model, task, saved, run_dir)


class TranslatorPredictor(TokenPredictor):
    """A translation or text-to-text model: ``translate(texts)`` -> the decoded outputs.

    Example:
        >>> t = deepkit.load("runs/multi30k_translation")               # doctest: +SKIP
        >>> t.translate(["ein hund läuft im schnee ."])                 # doctest: +SKIP
    """

    kind = "translation or text-to-text run"
    verbs = {"translate": ("translate",)}

    def translate(self, texts: list[str], beam_size: int = 5, max_len: int = 60) -> list[str]:
        """Translate source sentences: beam search, or greedy with ``beam_size=1``."""
        if beam_size < 1 or max_len < 1:
            raise ConfigError(f"beam_size and max_len must be >= 1, got {beam_size} and {max_len}")
        if self.src_tokenizer is None:  # text-to-text: one tokenizer, an optional task prefix
            tok, prefix_text = self.tokenizer, self.saved.source_prefix
            prefix = tok.encode(prefix_text) if prefix_text else []
            n = self.saved.max_len - 1 - len(prefix)
            ids = [[*prefix, *tok.encode(t)[:n], tok.eos_id] for t in texts]
        else:
            src = self.src_tokenizer
            ids = [src.encode(t)[: self.saved.max_len] or [src.unk_id] for t in texts]
        return [self.tokenizer.decode(h) for h in translate_ids(self.model, ids, self.device, beam_size, max_len)]


def translate(
    predictor: TranslatorPredictor,
    texts: Annotated[list[str] | None, typer.Argument(help="Sentences to translate (or --file).")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="A text file: one sentence per line.")] = None,
    beam_size: Annotated[int, typer.Option("--beam-size", help="Beam width; 1 = greedy decoding.")] = 5,
    max_len: Annotated[int, typer.Option("--max-len", help="Most tokens per translation.")] = 60,
) -> None:
    """Translate sentences with a trained translation or text-to-text run: one output line per input.

    Example: deepkit translate runs/multi30k_translation "ein mann fährt fahrrad ."
    """
    for line in predictor.translate(read_lines_arg(texts, file, "sentences"), beam_size, max_len):
        typer.echo(line)
    sys.stdout.flush()


Seq2SeqFamily.commands = (translate,)
FAMILY = Seq2SeqFamily()
