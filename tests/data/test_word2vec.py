"""word2vec samples (windows inside sentences, subsampling, negatives), model, task, end to end with the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import deepkit
from deepkit import create_model
from deepkit.data.word2vec import Word2VecLoader
from deepkit.errors import DataError
from deepkit.families.word2vec import WordVectors
from deepkit.tasks.word2vec import Word2VecTask

SENTS = [[4, 5, 6, 7], [8, 9], [10, 4, 1, 5]]  # id 1 = <unk>: dropped


def test_skipgram_pairs_stay_inside_sentences_and_respect_the_window():
    loader = Word2VecLoader(SENTS, 11, batch_size=100, window=2, subsample=0)
    pairs = {(int(c), int(o)) for b in loader for c, o in zip(b["center"], b["context"], strict=True)}
    assert (4, 5) in pairs and (4, 6) in pairs and (4, 7) not in pairs  # distance 3 > window 2
    assert (7, 8) not in pairs and (9, 10) not in pairs  # never across sentence boundaries
    assert (10, 5) in pairs  # <unk> removed first, so 10 4 5 are neighbours
    assert all(1 not in p for p in pairs)
    # no shuffle: full windows, every pair once in each direction: 10 + 2 + 6 (the last sentence is 10 4 5)
    assert loader.num_samples == 18


def test_cbow_context_is_the_padded_window():
    loader = Word2VecLoader(SENTS, 11, batch_size=100, mode="cbow", window=2, subsample=0)
    batch = next(iter(loader))
    assert batch["context"].shape[1] == 4
    row = batch["center"].tolist().index(6)
    assert sorted(batch["context"][row].tolist()) == [0, 4, 5, 7]  # 0 = padding past the sentence start


def test_subsampling_drops_frequent_words_and_negatives_follow_unigram_power():
    rng = np.random.default_rng(0)
    sents = [[4] * 50 + list(rng.integers(5, 200, 50)) for _ in range(50)]  # word 4 is half the corpus
    loader = Word2VecLoader(sents, 200, batch_size=10_000, subsample=1e-3, shuffle=True, negatives=5)
    assert loader.keep_prob[4] < 0.1 and loader.keep_prob[150] > loader.keep_prob[4]
    centers = torch.cat([b["center"] for b in loader])
    assert (centers == 4).float().mean() < 0.2
    negs = torch.cat([b["negatives"] for b in loader]).flatten()
    share = (negs == 4).float().mean()
    expected = float(loader.noise[4])
    assert abs(share - expected) < 0.02 and expected < 0.5  # 3/4 power flattens the distribution


def test_epochs_are_reproducible_and_resume_mid_epoch():
    sents = [list(range(4, 30))] * 20
    a = Word2VecLoader(sents, 30, 64, shuffle=True, seed=1)
    a.set_epoch(1)
    full = [b["center"] for b in a]
    b = Word2VecLoader(sents, 30, 64, shuffle=True, seed=1)
    b.set_epoch(1, start_batch=3)
    rest = list(b)
    assert all(torch.equal(x["center"], y) for x, y in zip(rest, full[3:], strict=True))
    with pytest.raises(DataError, match="no in-vocabulary words"):
        Word2VecLoader([[1, 1]], 10, 4)


def test_negative_sampling_loss_matches_its_formula():
    model = create_model("word2vec_skipgram", vocab_size=20, embed_dim=4)
    torch.nn.init.normal_(model.out_embed.weight)
    batch = {
        "center": torch.tensor([4, 5]),
        "context": torch.tensor([6, 7]),
        "negatives": torch.tensor([[8, 9], [10, 11]]),
    }
    loss = Word2VecTask(model).training_step(batch)["loss"]
    v, u = model.in_embed.weight, model.out_embed.weight
    expect = 0.0
    for c, o, ns in [(4, 6, (8, 9)), (5, 7, (10, 11))]:
        expect -= torch.log(torch.sigmoid(u[o] @ v[c])) + sum(torch.log(torch.sigmoid(-(u[n] @ v[c]))) for n in ns)
    torch.testing.assert_close(loss, expect / 2)


@pytest.mark.parametrize("name", ["word2vec_skipgram", "word2vec_cbow"])
def test_word2vec_learns_a_toy_analogy_and_the_cli_queries_it(name, tmp_path, capsys):
    # two "genders" x two "ages", each word seen with its own context words
    rng = np.random.default_rng(0)
    ctx = {"man": ["tall", "beard"], "woman": ["tall", "dress"], "boy": ["small", "beard"], "girl": ["small", "dress"]}
    lines = []
    for _ in range(600):
        w = str(rng.choice(list(ctx)))
        lines.append(" ".join([*rng.permutation(ctx[w]), w, str(rng.choice(["walks", "runs", "sits"]))]))
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(lines) + "\n")
    recipe = {
        "name": "toy_w2v",
        "task": {"name": "word2vec"},
        "model": {"name": name, "embed_dim": 16},
        "data": {"name": "text_file", "path": str(corpus), "batch_size": 256, "text": {"window": 3, "subsample": 0}},
        "trainer": {"epochs": 8, "optimizer": {"name": "adam", "lr": 0.02}, "progress": "none", "threads": 1},
    }
    res = deepkit.train(recipe, out=tmp_path / "w2v")
    vecs = WordVectors.from_run(res.run_dir)
    assert deepkit.evaluate(res.run_dir)["loss"] == pytest.approx(res.metrics["loss"], rel=1e-5)  # no test: val
    assert vecs.analogy("man", "woman", "boy", k=1)[0][0] == "girl"
    assert (res.run_dir / "vectors.txt").read_text().splitlines()[0] == f"{len(vecs.words)} 16"
    from deepkit.cli import main

    def cli(*args):
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main(["embeddings", str(res.run_dir), *args])
        out, err = capsys.readouterr()
        return info.value.code, out, err

    code, out, _ = cli("--analogy", "man", "woman", "boy", "-k", "1")
    assert code == 0 and out.split()[0] == "girl"
    code, _, err = cli("--neighbours", "giraffe")
    assert code == 2 and "'giraffe' is not in the vocabulary" in err
    assert cli("--export", str(tmp_path / "out.txt"))[0] == 0
    assert WordVectors.load(tmp_path / "out.txt").neighbours("man", 2) == vecs.neighbours("man", 2)
