"""Word vectors: word2vec (skip-gram or CBOW with negative sampling) on a text corpus, and queries of the vectors.

The run writes ``vectors.txt`` (word2vec text format, special tokens left out) and nearest-neighbour / analogy
probes in ``results.json``. Verb: ``word-vectors`` (``neighbours``, ``analogy``, ``export``), which also reads any
word2vec or GloVe text file.

    vecs = deepkit.load("runs/w2v")                 # or WordVectors.load("vectors.txt")
    vecs.neighbours("dog", k=5)                     # [("dogs", 0.71), ...]
    vecs.analogy("man", "woman", "boy")             # [("girl", 0.64), ...]  (woman - man + boy)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deepkit.errors import ConfigError, DataError
from deepkit.families.base import Finish, Predictor, Saved
from deepkit.families.text import TextSaved, TokenFamily, reused_tokenizer

if TYPE_CHECKING:
    import numpy as np
    import torch

    from deepkit.data.text import TextData
    from deepkit.data.tokenizers import Tokenizer
    from deepkit.recipe import Recipe
    from deepkit.tasks.base import Task

TASKS = {"word2vec": "word vectors (skip-gram or CBOW, negative sampling): neighbours, analogies, vectors.txt"}
SPECIALS = 4  # <pad>, <unk>, <bos>, <eos>: the first ids of every word tokenizer, left out of exported vectors


class WordVectors:
    """Words and their vectors, compared by cosine similarity."""

    def __init__(self, words: list[str], vectors: np.ndarray | torch.Tensor):
        import numpy as np
        import torch

        self.words = list(words)
        v = torch.as_tensor(np.asarray(vectors), dtype=torch.float32)
        if v.ndim != 2 or len(v) != len(self.words):
            raise DataError(f"{len(self.words)} words but vectors of shape {tuple(v.shape)}")
        self.vectors = v
        self.unit = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def load(cls, path: str | Path) -> WordVectors:
        """A word2vec text file (first line ``COUNT DIM``) or a GloVe file."""
        from deepkit.data.text import read_word_vectors

        words, vectors = read_word_vectors(path)
        return cls(words, vectors)

    @classmethod
    def from_run(cls, run_dir: str | Path) -> WordVectors:
        path = Path(run_dir) / "vectors.txt"
        if not path.is_file():
            raise ConfigError(f"{run_dir} has no vectors.txt; expected a word2vec run directory")
        return cls.load(path)

    @classmethod
    def from_model(cls, model: torch.nn.Module, tokenizer: Tokenizer) -> WordVectors:
        """The vectors of a word2vec model, one per word of its vocabulary (special tokens left out)."""
        words = [tokenizer.id_to_token(i) for i in range(SPECIALS, tokenizer.vocab_size)]
        return cls(words, model.vectors()[SPECIALS:].detach().cpu())

    def _id(self, word: str) -> int:
        i = self.index.get(word, self.index.get(word.lower()))
        if i is None:
            from deepkit.errors import suggest

            raise DataError(f"'{word}' is not in the vocabulary of {len(self.words)} words{suggest(word, self.words)}")
        return i

    def _top(self, query: torch.Tensor, k: int, exclude: set[int]) -> list[tuple[str, float]]:
        sims = self.unit @ (query / query.norm().clamp_min(1e-12))
        if exclude:
            sims[list(exclude)] = -float("inf")
        top = sims.topk(min(k, len(self.words) - len(exclude)))
        return [(self.words[i], float(s)) for s, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)]

    def neighbours(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` words with the highest cosine similarity to ``word`` (itself excluded)."""
        i = self._id(word)
        return self._top(self.unit[i], k, {i})

    def analogy(self, a: str, b: str, c: str, k: int = 5) -> list[tuple[str, float]]:
        """Words ``d`` with ``a : b :: c : d``, i.e. nearest to ``b - a + c`` (3CosAdd; the inputs are excluded)."""
        ia, ib, ic = self._id(a), self._id(b), self._id(c)
        return self._top(self.unit[ib] - self.unit[ia] + self.unit[ic], k, {ia, ib, ic})

    def save(self, path: str | Path) -> Path:
        """Write the standard word2vec text format: ``COUNT DIM`` then ``word v1 ... vD`` per line."""
        from deepkit.weights import atomic_write_text

        lines = [f"{len(self.words)} {self.vectors.shape[1]}"]
        lines += [
            w + " " + " ".join(f"{x:.6g}" for x in row)
            for w, row in zip(self.words, self.vectors.tolist(), strict=True)
        ]
        path = Path(path)
        atomic_write_text(path, "\n".join(lines) + "\n")
        return path


def probes(vecs: WordVectors) -> dict[str, Any]:
    """A few neighbour and analogy queries on common words, for results.json."""
    out: dict[str, Any] = {}
    for w in ("dog", "man", "woman", "red"):
        if w in vecs.index:
            out[f"neighbours:{w}"] = vecs.neighbours(w, 5)
    for a, b, c in (("man", "woman", "boy"), ("dog", "dogs", "man"), ("man", "men", "woman")):
        if all(x in vecs.index for x in (a, b, c)):
            out[f"analogy:{a}:{b}::{c}:?"] = vecs.analogy(a, b, c, 5)
    return out


class Word2VecFamily(TokenFamily):
    name = "word_vectors"
    description = "word vectors: word2vec (skip-gram, CBOW)"
    tasks = TASKS
    sections = ()

    def datasets(self, task: str) -> dict[str, str]:
        from deepkit.data.corpora import WORD_VECTORS

        return WORD_VECTORS

    def make_data(self, rec: Recipe, saved: TextSaved | None) -> TextData:
        from deepkit.data.corpora import word2vec_data
        from deepkit.models.registry import model_config

        rest = {k: v for k, v in rec.model.items() if k != "name"}
        mode = getattr(model_config(rec.model["name"], **rest), "mode", "skipgram")  # skip-gram or CBOW samples
        tok = saved.tokenizer if saved is not None else reused_tokenizer(rec)
        return word2vec_data(rec.data, mode, tokenizer=tok)

    def build_task(self, rec: Recipe, model: torch.nn.Module, data: TextData) -> Task:
        from deepkit.tasks.word2vec import Word2VecTask

        return Word2VecTask(model)

    def report(self, run: Finish) -> dict[str, Any]:
        """vectors.txt (word2vec text format, specials left out) and a few neighbour/analogy probes."""
        vecs = WordVectors.from_model(run.task.model, run.data.tokenizer)
        vecs.save(run.run_dir / "vectors.txt")
        return {"probes": probes(vecs)}

    def predictor(self, model: torch.nn.Module, task: str, saved: Saved, run_dir: Path | None) -> Predictor:
        return WordVectorsPredictor(model, task, saved, run_dir)

    def open_file(self, path: Path) -> Predictor | None:
        """A word2vec or GloVe text file (``.txt``, ``.vec``, ``.txt.gz``)."""
        if path.is_file() and path.name.endswith((".txt", ".vec", ".txt.gz")):
            return WordVectorsPredictor.from_vectors(WordVectors.load(path), path)
        return None


class WordVectorsPredictor(Predictor):
    """Word vectors of a word2vec run (or of a vectors file): ``neighbours``, ``analogy``, ``export``."""

    kind = "word2vec run (or word-vectors file)"
    verbs = {"word-vectors": ("neighbours", "analogy", "export")}

    def __init__(self, model: torch.nn.Module | None, task_name: str, saved: Saved, run_dir: Path | None = None):
        if model is None:  # a vectors file: no model
            self.model, self.task_name, self.saved, self.run_dir = None, task_name, saved, run_dir
            return
        super().__init__(model, task_name, saved, run_dir)
        self.vectors = WordVectors.from_model(model, saved.tokenizer)

    @classmethod
    def from_vectors(cls, vectors: WordVectors, path: Path) -> WordVectorsPredictor:
        out = cls(None, "word2vec", Saved(), path)
        out.vectors = vectors
        return out

    @property
    def words(self) -> list[str]:
        return self.vectors.words

    def neighbours(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` words nearest to ``word`` (cosine similarity)."""
        return self.vectors.neighbours(word, k)

    def analogy(self, a: str, b: str, c: str, k: int = 5) -> list[tuple[str, float]]:
        """Words ``d`` with ``a : b :: c : d`` (nearest to ``b - a + c``)."""
        return self.vectors.analogy(a, b, c, k)

    def export(self, path: str | Path) -> Path:
        """Write the vectors in the word2vec text format."""
        return self.vectors.save(path)


def word_vectors(
    predictor: WordVectorsPredictor,
    neighbours: Annotated[str | None, typer.Option("--neighbours", help="Show the words nearest to WORD.")] = None,
    analogy: Annotated[
        tuple[str, str, str] | None, typer.Option("--analogy", help="A B C: words D with A : B :: C : D.")
    ] = None,
    k: Annotated[int, typer.Option("-k", help="How many words to show.")] = 10,
    export: Annotated[Path | None, typer.Option("--export", help="Write the vectors in word2vec text format.")] = None,
) -> None:
    """Query word vectors (a word2vec run, or a word2vec/GloVe .txt file): nearest neighbours, analogies, export.

    Example: deepkit word-vectors runs/word2vec_multi30k --neighbours dog --analogy man woman boy
    """
    if not (neighbours or analogy or export):
        raise ConfigError("word-vectors needs --neighbours WORD, --analogy A B C or --export PATH")
    if neighbours:
        for word, sim in predictor.neighbours(neighbours, k):
            typer.echo(f"{word:<20} {sim:.3f}")
    if analogy:
        for word, sim in predictor.analogy(*analogy, k=k):
            typer.echo(f"{word:<20} {sim:.3f}")
    if export:
        vecs = predictor.vectors
        typer.echo(f"wrote {predictor.export(export)} ({len(vecs.words)} words, {vecs.vectors.shape[1]} dimensions)")


word_vectors.verb = "word-vectors"  # type: ignore[attr-defined]
word_vectors.aliases = ("embeddings",)  # type: ignore[attr-defined]  # its name before release 0.2
Word2VecFamily.commands = (word_vectors,)
FAMILY = Word2VecFamily()
