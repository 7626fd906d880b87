"""``deepkit export``: parity of ONNX (onnxruntime) with eager PyTorch on fresh inputs, over every registered model
that can be exported today; the models that cannot are listed with the reason, and the two lists must cover the
registry exactly, so neither grows silently."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deepkit.data.preprocess import Preprocessing
from deepkit.errors import ExportError
from deepkit.export import PARITY_TOLERANCE, OnnxModel, export
from deepkit.families.supervised import FAMILY as SUPERVISED
from deepkit.families.supervised import Preprocessed
from deepkit.models.registry import create_model, list_models

pytest.importorskip("onnxruntime", reason="the serve extra is not installed: pip install 'deepkit[serve]'")

IMAGE = dict(kind="image", normalize="channel")
TABLE = dict(kind="tabular", normalize="feature")
# model -> (task, preprocessing kind, input shape, model overrides); exported through the supervised family
EXPORTABLE = {
    "mlp": ("classification", TABLE, [7], {}),
    "simple_cnn": ("classification", IMAGE, [1, 28, 28], {}),
}
VGG_SMALL_FC = {"hidden": 256}  # the same graph with 256-wide FC layers instead of 4096 (a 500 MB file otherwise)
SLOW_EXPORTABLE = {  # the same path, more or bigger graphs (seconds each): `make test-all`
    "lenet5": ("classification", IMAGE, [1, 28, 28], {}),
    "resnet20": ("classification", IMAGE, [3, 32, 32], {}),
    "resnet18": ("classification", IMAGE, [3, 32, 32], {}),
    "resnet32": ("classification", IMAGE, [3, 32, 32], {}),
    "resnet34": ("classification", IMAGE, [3, 32, 32], {}),
    "resnet50": ("classification", IMAGE, [3, 32, 32], {}),
    "resnet56": ("classification", IMAGE, [3, 32, 32], {}),
    "alexnet": ("classification", IMAGE, [3, 64, 64], {}),
    "vgg11": ("classification", IMAGE, [3, 32, 32], VGG_SMALL_FC),
    "vgg11_bn": ("classification", IMAGE, [3, 32, 32], VGG_SMALL_FC),
    "vgg16": ("classification", IMAGE, [3, 32, 32], VGG_SMALL_FC),
    "vgg16_bn": ("classification", IMAGE, [3, 32, 32], VGG_SMALL_FC),
}
# text classifiers exported through the text family: tokens + lengths in, probabilities out, tokenizer.json beside
TINY_ENCODER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
# model -> its size in the test ({}: the registered size)
TINY_RNN = dict(embed_dim=8, hidden_size=12, num_layers=2)
TEXT_EXPORTABLE = {"bert": TINY_ENCODER, "roberta": TINY_ENCODER, "deberta": TINY_ENCODER, "bert-small": {}}
# recurrent classifiers: the recurrence without packing (per-sequence reversal by gather for the backward direction)
TEXT_EXPORTABLE |= {n: TINY_RNN for n in ("bilstm_classifier", "gru_classifier", "lstm_classifier")}
TEXT = "text family: this head/size not in the parity test yet (the classifier path exports: see TEXT_EXPORTABLE)"
LM = "GPT-2 language model: its logits step with a KV cache in and out is not in a graph yet (recurrent LMs export)"
# recurrent language models: tokens + state in, logits + next state out (rnn_lm: one token per call)
LM_EXPORTABLE = ("char_lstm_lm", "gru_lm", "lstm_lm", "rnn_lm")
SEQ2SEQ = "sequence-to-sequence: encoder + decoder loop not exported yet"
# forecasters exported through the series family: raw history in, the next `horizon` values out
SERIES_EXPORTABLE = ("gru_forecaster", "lstm_forecaster")
# detectors exported through the detection family: image in, boxes/scores/labels/count (NMS inside) out
DETECTION_EXPORTABLE = ("retinanet_small", "fcos_small", "fasterrcnn_small")
DETECTION = (
    "detection: the same path as DETECTION_EXPORTABLE (same classes, full-size backbones); not in the parity test "
    "(an 800-px graph takes minutes to export on one CPU thread)"
)
# segmenters exported through the segmentation family: image in, class probabilities at the input size out
SEGMENTATION_EXPORTABLE = {  # model -> the run's resize (None: the graph takes the example's 64×64)
    "unet_small": [48, 48],
    "fcn_resnet18": None,
    "deeplabv3_resnet18": None,
    "unet": None,  # the full-width U-Net (64-1024 channels)
    "unet_encoder": None,  # U-Net decoder on ResNet-18 stages
    "fcn_resnet50": None,
    "deeplabv3_resnet50": None,
}
# generative models exported through the generative family: noise z [+ labels] in, images in [0, 1] out
GENERATIVE_EXPORTABLE = {"vae": "vae", "conv_vae": "vae", "dcgan": "gan", "cdcgan": "gan"}  # model -> task
GENERATIVE = "plain autoencoder: no prior to sample from; exporting its encoder (the encode verb) is not written yet"
WORD2VEC = "word vectors: a lookup table, exported as the vectors file (`deepkit word-vectors`), not a graph"
# audio classifiers exported through the speech family: waveforms + lengths in, class probabilities out
AUDIO_EXPORTABLE = ("audio_cnn",)
# CTC recognizers exported through the asr family: waveforms + lengths in, per-frame log probabilities + frames out
CTC_EXPORTABLE = ("ctc_conformer", "wav2vec2_ctc", "wav2vec2_large_ctc")
CTC = "ctc_lstm: its LSTM runs on packed sequences, which the dynamo ONNX exporter does not trace yet"
TTS = "duration_tts: text to speech is served by `deepkit speak` (Griffin-Lim runs outside the model); no export yet"
AUDIO = "audio_crnn: its GRU/LSTM runs on packed sequences, which the dynamo ONNX exporter does not trace yet"
# recommenders exported through their family: user index (sasrec: item history) in, every item's score out, the
# user's known items at -inf; model -> (recipe, overrides) on a generated table (untrained: parity needs no training)
FEATURES = ["data.user_features.categorical=[group]", "data.user_features.numeric=[age]"]
FEATURES += ["data.item_features.categorical=[kind]", "data.item_features.numeric=[year]"]
RANKING = ["data.eval_negatives=5"]
RECOMMENDER_EXPORTABLE = {
    "biased_mf": ("interactions_mf", []),
    "gmf": ("interactions_ranking", ["model.name=gmf", "model.dim=8", *RANKING]),
    "ncf_mlp": ("interactions_ranking", ["model.name=ncf_mlp", "model.layers=[16,8]", *RANKING]),
    "neumf": ("interactions_ranking", ["model.dim=8", "model.layers=[16,8]", *RANKING]),
    "two_tower": ("interactions_mf", ["model.name=two_tower", "model.hidden=16", "model.dim=8", "model.id_dim=8"]),
    "i_autorec": ("interactions_mf", ["model.name=i_autorec", "model.hidden=16"]),
    "gcmc": (
        "movielens_gcmc",
        [
            "data.name=interactions",
            "data.split=random",
            "model.hidden=20",
            "model.dense=8",
            "model.side_features=false",
        ],
    ),  # fmt: skip
    "sasrec": ("movielens_sasrec", ["data.name=interactions", "data.max_len=10", "model.dim=16", *RANKING]),
}
NOT_EXPORTABLE = {
    "rnn_classifier": "plain (tanh) RNN: the ONNX exporter unrolls nn.RNN over the traced length (one length only)",
    **dict.fromkeys(["bert-large", "roberta-large", "deberta-v2-xlarge", "deberta-v3-large"], TEXT),
    "bilstm_tagger": "token classification (tagging): its predictor has no export_spec yet",
    **dict.fromkeys(["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"], LM),
    **dict.fromkeys(["t5", "t5-small", "t5-large", "seq2seq_bahdanau", "seq2seq_luong"], SEQ2SEQ),
    **dict.fromkeys(["fasterrcnn_resnet18_fpn", "fasterrcnn_resnet50_fpn"], DETECTION),
    **dict.fromkeys(["fcos_resnet50_fpn", "retinanet_resnet50_fpn"], DETECTION),
    **dict.fromkeys(["autoencoder", "conv_autoencoder"], GENERATIVE),
    **dict.fromkeys(["word2vec_cbow", "word2vec_skipgram"], WORD2VEC),
    "audio_crnn": AUDIO,
    "duration_tts": TTS,
    "ctc_lstm": CTC,
}


def test_every_registered_model_is_exportable_or_listed_with_a_reason():
    exportable = set(EXPORTABLE) | set(SLOW_EXPORTABLE) | set(TEXT_EXPORTABLE) | set(SERIES_EXPORTABLE)
    exportable |= set(SEGMENTATION_EXPORTABLE) | set(GENERATIVE_EXPORTABLE) | set(DETECTION_EXPORTABLE)
    exportable |= set(AUDIO_EXPORTABLE) | set(RECOMMENDER_EXPORTABLE) | set(LM_EXPORTABLE) | set(CTC_EXPORTABLE)
    assert not exportable & set(NOT_EXPORTABLE), "a model is both exportable and listed as not"
    assert exportable | set(NOT_EXPORTABLE) == set(list_models()), (
        f"new models: {sorted(set(list_models()) - exportable - set(NOT_EXPORTABLE))}; "
        f"gone: {sorted((exportable | set(NOT_EXPORTABLE)) - set(list_models()))}"
    )
    assert all(reason.strip() for reason in NOT_EXPORTABLE.values())


def supervised_predictor(name: str, task: str, kind: dict, shape: list[int], overrides: dict, seed: int = 0):
    """An untrained model of the supervised family with fitted-looking preprocessing (parity needs no training)."""
    g = torch.Generator().manual_seed(seed)
    classes = ["a", "b", "c"] if task == "classification" else ["no", "yes"]
    stats = shape[:1] if kind["normalize"] == "channel" else shape
    prep = Preprocessing(
        input_shape=shape,
        mean=(torch.rand(stats, generator=g) * 0.5).tolist(),
        std=(torch.rand(stats, generator=g) + 0.5).tolist(),
        class_names=classes if task != "regression" else None,
        target_mean=[3.0] if task == "regression" else None,
        target_std=[2.0] if task == "regression" else None,
        **kind,
    )
    size = {"in_features": int(np.prod(shape))} if len(shape) == 1 else {"in_channels": shape[0]}
    outputs = {"classification": 3, "binary": 1, "regression": 1}[task]
    torch.manual_seed(seed)
    model = create_model(name, num_classes=outputs, **size, **overrides)
    return SUPERVISED.predictor(model, task, Preprocessed(prep), None)


def check_parity(predictor, folder: Path) -> float:
    """Export with a dynamic batch, then compare onnxruntime with the predictor on inputs of another seed and size."""
    result = export(predictor, "onnx", folder, dynamic_batch=True)
    assert result.max_diff is not None and result.max_diff <= PARITY_TOLERANCE
    spec = predictor.export_spec()
    fresh = spec.sample(5, 777)  # neither the export example (seed 0) nor the export check's inputs
    got = OnnxModel(folder).run({k: v.numpy() for k, v in fresh.items()})
    want = predictor.predict_proba(fresh["x"]) if predictor.task_name != "regression" else predictor.predict(fresh["x"])
    out = got[spec.outputs[0]]
    want = want.reshape(out.shape)
    assert np.abs(out - want).max() <= PARITY_TOLERANCE, np.abs(out - want).max()
    return float(np.abs(out - want).max())


@pytest.mark.parametrize("name", sorted(EXPORTABLE))
def test_onnx_matches_eager_on_fresh_inputs(name, tmp_path):
    check_parity(supervised_predictor(name, *EXPORTABLE[name]), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW_EXPORTABLE))
def test_onnx_matches_eager_on_fresh_inputs_big_models(name, tmp_path):
    check_parity(supervised_predictor(name, *SLOW_EXPORTABLE[name]), tmp_path)


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_binary_and_regression_outputs_are_what_predict_gives(task, tmp_path):
    """Sigmoid (binary) and the target's units (regression) are inside the graph, not left to the user."""
    predictor = supervised_predictor("mlp", task, TABLE, [5], {})
    check_parity(predictor, tmp_path)
    side = json.loads((tmp_path / "deepkit.json").read_text())
    assert side["outputs"] == (
        {"probability": {"shape": [], "positive": "yes"}} if task == "binary" else side["outputs"]
    )
    if task == "regression":
        assert list(side["outputs"]) == ["value"]


def test_the_export_check_catches_a_graph_that_differs(tmp_path, monkeypatch):
    """The parity check is live: an ONNX graph that drifts from eager (here: eager changed after export) fails."""
    import deepkit.export as ex

    predictor = supervised_predictor("mlp", *EXPORTABLE["mlp"])
    real = ex.export_onnx

    def export_then_drift(spec, path, opset, dynamic_batch):
        real(spec, path, opset, dynamic_batch)
        with torch.no_grad():
            next(spec.module.parameters()).add_(0.5)  # eager no longer equals what was exported

    monkeypatch.setattr(ex, "export_onnx", export_then_drift)
    with pytest.raises(ExportError, match="differs from eager PyTorch"):
        export(predictor, "onnx", tmp_path)


def test_a_family_without_export_says_so():
    from deepkit.families.base import Predictor, Saved

    class Plain(Predictor):
        kind = "toy run"

    with pytest.raises(ExportError, match="'toy' run \\(toy run\\): its family cannot be exported yet"):
        Plain(torch.nn.Linear(2, 2), "toy", Saved()).export_spec()


def test_cli_export_of_a_trained_run_in_three_formats(digits_run, run_cli, tmp_path):
    """A trained digits run: ONNX agrees with `deepkit.load(run).predict_proba` on the run's own test images; pt2
    loads with torch.export.load; safetensors loads back with deepkit.load and predicts the same."""
    import deepkit

    run, _ = digits_run
    predictor = deepkit.load(run)
    shape = predictor.preprocessing.input_shape
    x = torch.rand(4, *shape, generator=torch.Generator().manual_seed(3))
    want = predictor.predict_proba(x)
    for fmt in ("onnx", "pt2", "safetensors"):
        proc = run_cli("export", run, "--format", fmt, "--out", tmp_path / fmt, "--dynamic-batch")
        assert proc.returncode == 0, proc.stderr
        side = json.loads((tmp_path / fmt / "deepkit.json").read_text())
        assert side["task"] == "classification" and side["batch"] == "dynamic"
        assert side["outputs"]["probabilities"]["labels"] == predictor.class_names
    assert "max |diff|" in run_cli("export", run, "--out", tmp_path / "again").stdout
    got = OnnxModel(tmp_path / "onnx").run({"x": x.numpy()})["probabilities"]
    assert np.abs(got - want).max() <= PARITY_TOLERANCE
    program = torch.export.load(str(tmp_path / "pt2" / "model.pt2"))
    with torch.no_grad():
        assert np.abs(program.module()(x).numpy() - want).max() <= PARITY_TOLERANCE
    back = deepkit.load(tmp_path / "safetensors" / "model.safetensors")
    assert np.array_equal(back.predict_proba(x), want)


def test_cli_export_errors_are_one_line(digits_run, run_cli, tmp_path):
    run, _ = digits_run
    proc = run_cli("export", run, "--format", "tflite", "--out", tmp_path)
    assert (
        proc.returncode == 2
        and "unknown export format 'tflite'; expected one of onnx, pt2, safetensors, hf" in proc.stderr
    )
    proc = run_cli("export", run, "--out", tmp_path / "model.onnx")
    assert proc.returncode == 2 and "--out is a folder" in proc.stderr


def tiny_text_predictor(name: str = "bert", size: dict | None = None):
    from deepkit.data.tokenizers import build_tokenizer
    from deepkit.families.text import FAMILY as TEXT_FAMILY
    from deepkit.families.text import TextSaved

    corpus = ["a good film", "a bad film", "what a gripping story it was", "dull", "slow and long and dull"]
    tok = build_tokenizer("word", corpus * 3)
    torch.manual_seed(0)
    size = TINY_ENCODER if size is None else size
    head = {} if name.endswith("_classifier") else {"head": "classification"}  # recurrent classifiers have no head
    model = create_model(name, vocab_size=tok.vocab_size, num_classes=3, **head, **size)
    saved = TextSaved(task="text_classification", tokenizer=tok, class_names=["neg", "mid", "pos"], max_len=32)
    return TEXT_FAMILY.predictor(model, "text_classification", saved, None)


@pytest.mark.parametrize(
    "name",
    [
        n if n in ("bert", "bilstm_classifier") else pytest.param(n, marks=pytest.mark.slow)
        for n in sorted(TEXT_EXPORTABLE)
    ],
)
def test_text_classifier_onnx_matches_predict_proba_on_texts(name, tmp_path):
    """The exported graph takes what the run's tokenizer gives: onnxruntime on the encoded texts equals
    ``predict_proba(texts)`` (texts of different lengths, so padding and the attention mask matter)."""
    from deepkit.data.tokenizers import load_tokenizer

    predictor = tiny_text_predictor(name, TEXT_EXPORTABLE[name])
    tok = predictor.tokenizer
    result = export(predictor, "onnx", tmp_path, dynamic_batch=True)
    assert result.max_diff is not None and result.max_diff <= PARITY_TOLERANCE
    texts = ["what a good story", "dull", "a gripping, slow film it was", "bad"]  # not the export's inputs
    back = load_tokenizer(tmp_path / "tokenizer.json")  # the exported tokenizer, as a user's code reads it
    ids = [back.encode(t) for t in texts]
    tokens = np.zeros((len(ids), max(map(len, ids))), dtype=np.int64) + back.pad_id
    for i, row in enumerate(ids):
        tokens[i, : len(row)] = row
    lengths = np.array([len(r) for r in ids], dtype=np.int64)
    got = OnnxModel(tmp_path).run({"tokens": tokens, "lengths": lengths})["probabilities"]
    want = predictor.predict_proba(texts)
    assert got.shape == (4, 3) and np.abs(got - want).max() <= PARITY_TOLERANCE
    assert np.abs(want - want[:1]).max() > 1e-4  # the texts give different outputs: the check compares something
    side = json.loads((tmp_path / "deepkit.json").read_text())
    assert side["tokenizer"]["pad_id"] == tok.pad_id and side["outputs"]["probabilities"]["labels"][2] == "pos"


@pytest.mark.parametrize(
    "name, log, difference",
    [
        ("lstm_forecaster", True, True),
        pytest.param("gru_forecaster", False, False, marks=pytest.mark.slow),
        pytest.param("gru_forecaster", True, True, marks=pytest.mark.slow),
        pytest.param("lstm_forecaster", False, False, marks=pytest.mark.slow),
    ],
)
def test_forecaster_onnx_matches_forecast_on_a_fresh_history(name, log, difference, tmp_path):
    """The fitted transform (log, difference, standardize) and its inverse are in the graph: onnxruntime on a raw
    history gives what ``forecast(history, steps=horizon)`` gives."""
    from deepkit.families.series import FAMILY as SERIES_FAMILY
    from deepkit.families.series import SeriesStats

    torch.manual_seed(0)
    model = create_model(name, vocab_size=0, in_features=1, num_classes=4, embed_dim=8, hidden_size=16)
    series = dict(window=12, horizon=4, log=log, difference=difference, column=None)
    series.update(mean=0.01, std=0.1) if difference else series.update(mean=5.5, std=0.4)
    predictor = SERIES_FAMILY.predictor(model, "forecast", SeriesStats(task="forecast", series=series), None)
    result = export(predictor, "onnx", tmp_path, dynamic_batch=True)
    assert result.max_diff is not None and result.max_diff <= PARITY_TOLERANCE
    history = predictor.export_spec().sample(3, 4242)["history"]
    got = OnnxModel(tmp_path).run({"history": history.numpy()})["forecast"]
    assert got.shape == (3, 4)
    for row, out in zip(history, got, strict=True):
        want = predictor.forecast(row.double().numpy(), steps=4)
        assert np.abs(out - want).max() <= PARITY_TOLERANCE * max(1.0, np.abs(want).max())


def segmentation_predictor(name: str, resize: list[int] | None, tile: int | None = None):
    from deepkit.families.segmentation import FAMILY as SEGMENTATION_FAMILY
    from deepkit.families.segmentation import SegmentationSaved

    torch.manual_seed(0)
    model = create_model(name, in_channels=3, num_classes=4)
    saved = SegmentationSaved(
        class_names=["bg", "a", "b", "c"],
        channels=3,
        mean=[0.4, 0.5, 0.6],
        std=[0.2, 0.25, 0.3],
        resize=resize,
        tile=tile,
    )
    return SEGMENTATION_FAMILY.predictor(model, "segmentation", saved, None)


@pytest.mark.parametrize(
    "name",
    [n if n == "unet_small" else pytest.param(n, marks=pytest.mark.slow) for n in SEGMENTATION_EXPORTABLE],
)
def test_segmenter_onnx_argmax_is_predicts_mask(name, tmp_path):
    """Normalization, the run's resize (antialiased) and the way back are in the graph: the argmax of the
    probabilities onnxruntime gives is the mask ``predict`` gives, pixel for pixel, on fresh images."""
    predictor = segmentation_predictor(name, SEGMENTATION_EXPORTABLE[name])
    result = export(predictor, "onnx", tmp_path, dynamic_batch=True)
    assert result.max_diff is not None and result.max_diff <= PARITY_TOLERANCE
    x = predictor.export_spec().sample(2, 31337)["image"]
    probs = OnnxModel(tmp_path).run({"image": x.numpy()})["probabilities"]
    assert probs.shape == (2, 4, *x.shape[-2:])
    assert np.array_equal(probs.argmax(1), np.stack(predictor.predict(list(x.numpy()))))


def test_a_tiled_segmentation_run_is_refused_with_the_reason(tmp_path):
    with pytest.raises(ExportError, match="predicts in tiles of 32 px: tiled inference is not in a graph yet"):
        export(segmentation_predictor("unet_small", None, tile=32), "onnx", tmp_path)


def generative_predictor(name: str):
    from deepkit.families.generative import FAMILY as GENERATIVE_FAMILY

    torch.manual_seed(0)
    size = {"image_size": 28} if "gan" in name else {"input_size": [28, 28]}
    model = create_model(name, in_channels=1, **size)
    prep = Preprocessing(kind="image", input_shape=[1, 28, 28], class_names=[str(i) for i in range(10)])
    return GENERATIVE_FAMILY.predictor(model, GENERATIVE_EXPORTABLE[name], Preprocessed(prep), None)


@pytest.mark.parametrize(
    "name", [n if n == "vae" else pytest.param(n, marks=pytest.mark.slow) for n in GENERATIVE_EXPORTABLE]
)
def test_generator_onnx_gives_samples_images(name, tmp_path):
    """Fed the z that ``sample(n, seed)`` draws, the exported graph gives the images ``sample`` gives."""
    predictor = generative_predictor(name)
    result = export(predictor, "onnx", tmp_path, dynamic_batch=True)
    assert result.max_diff is not None and result.max_diff <= PARITY_TOLERANCE
    latent = predictor.model.cfg.latent_dim
    z = torch.randn(5, latent, generator=torch.Generator().manual_seed(21))  # as sample() draws it
    inputs = {"z": z.numpy()}
    label = None
    if name == "cdcgan":
        label = 7
        inputs["labels"] = np.full(5, label, dtype=np.int64)
    got = OnnxModel(tmp_path).run(inputs)["images"]
    want = predictor.sample(5, label=label, seed=21).numpy()
    assert got.shape == want.shape == (5, 1, 28, 28)
    assert np.abs(got - want).max() <= PARITY_TOLERANCE


def test_a_plain_autoencoder_is_refused_with_the_reason(tmp_path):
    from deepkit.families.generative import FAMILY as GENERATIVE_FAMILY

    model = create_model("autoencoder", in_channels=1, input_size=[28, 28])
    prep = Preprocessing(kind="image", input_shape=[1, 28, 28])
    predictor = GENERATIVE_FAMILY.predictor(model, "autoencoder", Preprocessed(prep), None)
    with pytest.raises(ExportError, match="plain autoencoder: no prior to sample from"):
        export(predictor, "onnx", tmp_path)


def detection_predictor(name: str):
    """An untrained detector whose class logits are spread out (std 0.2, bias -3) as a trained one's are: with the
    initial prior (every score near 0.01) detections would tie to 1e-7 and their order would be noise."""
    from deepkit.families.detection import FAMILY as DETECTION_FAMILY
    from deepkit.families.detection import DetectionSaved

    torch.manual_seed(0)
    model = create_model(name, num_classes=4, in_channels=3)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module_name, m in model.named_modules():
            if module_name.endswith(("cls_logits", "cls_score", "bbox_ctrness")):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.2)
                m.bias.fill_(-3.0)
    saved = DetectionSaved(["cat", "dog", "bird"], None, 3, [128, 128])
    return DETECTION_FAMILY.predictor(model, "detection", saved, None)


def assert_same_detections(got: dict[str, np.ndarray], model, images: torch.Tensor) -> int:
    """The fixed-size outputs hold, in their first ``count`` slots, exactly eager PyTorch's detections (background
    dropped, as ``predict`` drops it): same number, labels, order; boxes and scores within 1e-4; padding after."""
    from deepkit.tasks.detection import without_background

    with torch.no_grad():
        eager = [without_background(d) for d in model(list(images))]
    total = 0
    for i, want in enumerate(eager):
        c = int(got["count"][i])
        assert c == len(want["scores"]), f"image {i}: {c} detections exported, eager gives {len(want['scores'])}"
        assert np.array_equal(got["labels"][i, :c], want["labels"].numpy())
        assert np.abs(got["boxes"][i, :c] - want["boxes"].numpy()).max(initial=0) <= PARITY_TOLERANCE
        assert np.abs(got["scores"][i, :c] - want["scores"].numpy()).max(initial=0) <= PARITY_TOLERANCE
        assert (got["labels"][i, c:] == -1).all() and not got["scores"][i, c:].any()
        total += c
    return total


@pytest.mark.parametrize("name", DETECTION_EXPORTABLE)
def test_detector_export_module_gives_eagers_detections(name):
    """The graph's fixed-shape post-processing (masks instead of filtering, the NMS operator, top-k into padded
    slots) gives what the detector's own eval mode gives, on fresh images."""
    predictor = detection_predictor(name)
    spec = predictor.export_spec()
    x = spec.sample(3, 4242)["image"]
    with torch.no_grad():
        out = dict(zip(spec.outputs, (t.numpy() for t in spec.module(x)), strict=True))
    d = predictor.model.export_limits()[1]
    assert out["boxes"].shape == (3, d, 4) and out["labels"].dtype == np.int64
    assert assert_same_detections(out, predictor.model, x) > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", DETECTION_EXPORTABLE)
def test_detector_onnx_and_pt2_give_eagers_detections(name, tmp_path):
    """ONNX (NMS as ``NonMaxSuppression``) and ``torch.export`` from raw images to boxes: the same detections as
    eager PyTorch on images used neither to export nor to check the export."""
    predictor = detection_predictor(name)
    result = export(predictor, "onnx", tmp_path / "onnx", dynamic_batch=True)
    assert result.max_diff is not None and result.max_diff <= PARITY_TOLERANCE
    x = predictor.export_spec().sample(2, 4242)["image"]
    got = OnnxModel(tmp_path / "onnx").run({"image": x.numpy()})
    assert assert_same_detections(got, predictor.model, x) > 0
    side = json.loads((tmp_path / "onnx" / "deepkit.json").read_text())
    assert side["outputs"]["labels"]["classes"] == ["cat", "dog", "bird"] and side["page"]["show"] == "boxes"
    export(predictor, "pt2", tmp_path / "pt2", dynamic_batch=True)
    import deepkit.nn.nms_export  # noqa: F401 - registers deepkit::batched_nms_mask, which the program calls

    program = torch.export.load(str(tmp_path / "pt2" / "model.pt2"))
    with torch.no_grad():
        pt2 = dict(zip(["boxes", "scores", "labels", "count"], (t.numpy() for t in program.module()(x)), strict=True))
    assert assert_same_detections(pt2, predictor.model, x) > 0


def test_hf_format_loads_in_transformers_with_equal_outputs(tmp_path):
    """``--format hf``: a text classifier's folder loads with ``transformers``' Auto classes; its tokenizer encodes
    as the run's does, and the logits equal deepkit's (softmax = ``predict_proba``); class names are id2label."""
    transformers = pytest.importorskip("transformers")
    predictor = tiny_text_predictor()
    texts = ["what a good story", "dull", "a gripping, slow film it was"]
    export(predictor, "hf", tmp_path)
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    enc = tok(texts, padding=True, return_tensors="pt")
    assert [tok(t)["input_ids"] for t in texts] == [predictor.tokenizer.encode(t) for t in texts]
    with torch.no_grad():
        probs = torch.softmax(model(**enc).logits, -1).numpy()
    assert np.abs(probs - predictor.predict_proba(texts)).max() <= PARITY_TOLERANCE
    assert model.config.id2label == {0: "neg", 1: "mid", 2: "pos"}
    assert json.loads((tmp_path / "deepkit.json").read_text())["format"] == "hf"


def test_hf_format_of_a_gpt2_language_model_and_a_refusal(tmp_path):
    transformers = pytest.importorskip("transformers")
    from deepkit.data.tokenizers import build_tokenizer
    from deepkit.families.text import FAMILY as TEXT_FAMILY
    from deepkit.families.text import TextSaved

    tok = build_tokenizer("char", ["the quick brown fox jumps over the lazy dog"])
    torch.manual_seed(0)
    model = create_model("gpt2", vocab_size=tok.vocab_size, n_layer=2, n_embd=32, n_head=2, n_positions=32)
    lm = TEXT_FAMILY.predictor(model, "language_model", TextSaved(task="language_model", tokenizer=tok), None)
    export(lm, "hf", tmp_path / "gpt2")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "gpt2").eval()
    ids = transformers.AutoTokenizer.from_pretrained(tmp_path / "gpt2")("the lazy fox", return_tensors="pt")
    assert ids["input_ids"][0].tolist() == tok.encode("the lazy fox")
    with torch.no_grad():
        assert (back(**ids).logits - lm.model(ids["input_ids"])).abs().max() <= PARITY_TOLERANCE
    rnn = create_model("lstm_lm", vocab_size=tok.vocab_size, embed_dim=8, hidden_size=8, num_layers=1)
    rnn_lm = TEXT_FAMILY.predictor(rnn, "language_model", TextSaved(task="language_model", tokenizer=tok), None)
    with pytest.raises(ExportError, match="--format hf needs a Transformer with Hugging Face parameter names"):
        export(rnn_lm, "hf", tmp_path / "rnn")
    with pytest.raises(ExportError, match="only recurrent language models export yet"):
        export(lm, "onnx", tmp_path / "gpt2-onnx")


@pytest.mark.parametrize("kind", ["char", "word", "bpe", "wordpiece"])
def test_hf_tokenizer_encodes_as_the_run_encodes(kind):
    """The Hugging Face ``tokenizer.json`` ``--format hf`` writes gives the run's ids (with and without BOS/EOS),
    on text with punctuation, accents, unseen words and odd whitespace."""
    pytest.importorskip("tokenizers")
    from deepkit.data.tokenizers import build_tokenizer, hf_tokenizer

    corpus = ["A good film, isn't it?", "a bad film...", "dull and slow, très lent", "naïve café's end"] * 20
    tok = build_tokenizer(kind, corpus, **({} if kind in ("char", "word") else {"vocab_size": 100}))
    texts = ["What's this? A GOOD film!!", "unknown wörds here", "  spaces\tand\nnewlines  ", "café"]
    for add in (False, True):
        hf = hf_tokenizer(tok, add)
        assert [hf.encode(t).ids for t in texts] == [tok.encode(t, add_special=add) for t in texts]


@pytest.mark.slow
@pytest.mark.parametrize("name", AUDIO_EXPORTABLE)
def test_audio_classifier_onnx_takes_any_number_of_samples(name, tmp_path):
    """The feature front end (STFT, mel, log, normalization) is in the graph; the number of samples is a dynamic axis:
    onnxruntime gives ``probabilities`` on clips of another length than the traced example's."""
    from deepkit.families.speech import FAMILY as SPEECH
    from deepkit.families.speech import SpeechSaved

    torch.manual_seed(0)
    model = create_model(name, channels=[4, 8], n_mels=16, sample_rate=8000, num_classes=3)
    predictor = SPEECH.predictor(model, "audio_classification", SpeechSaved(["a", "b", "c"], 8000), None)
    result = export(predictor, "onnx", tmp_path, dynamic_batch=True)
    assert result.max_diff is not None and result.max_diff <= PARITY_TOLERANCE
    g = torch.Generator().manual_seed(5)
    clips = [0.1 * torch.randn(n, generator=g) for n in (2500, 3100, 1700)]
    audio = torch.zeros(3, 3100)
    for i, c in enumerate(clips):
        audio[i, : len(c)] = c
    lengths = torch.tensor([len(c) for c in clips])
    probs = OnnxModel(tmp_path).run({"audio": audio.numpy(), "lengths": lengths.numpy()})["probabilities"]
    np.testing.assert_allclose(probs, predictor.probabilities([c.numpy() for c in clips]).numpy(), atol=1e-4)


def recommender_predictor(name: str, folder: Path, rec_table):
    from deepkit import api
    from deepkit.recipe import resolve_recipe

    table = rec_table(folder, users=20, items=15, per_user=8, features=True)
    recipe, extra = RECOMMENDER_EXPORTABLE[name]
    if name == "two_tower":
        paths = [f"data.{k}_features.path={folder / f'{k}s.csv'}" for k in ("user", "item")]
        extra = [*extra, *paths, *FEATURES]
    rec = resolve_recipe(recipe, [f"data.path={table}", "trainer.progress=none", *extra])
    built = api.build(rec)
    return rec.family.predictor(built.task.model, rec.task.name, rec.family.saved(rec, built.data), None)


@pytest.mark.parametrize(
    "name",
    [n if n == "biased_mf" else pytest.param(n, marks=pytest.mark.slow) for n in RECOMMENDER_EXPORTABLE],
)
def test_recommender_onnx_gives_the_scores_recommend_ranks(name, tmp_path, rec_table):
    """onnxruntime on user indices (SASRec: the users' histories, as the run builds them) gives every item's score as
    the predictor computes it, the items the run knows for the user at -inf (SASRec: the history's items), and the
    sidecar maps indices back to the run's user and item ids."""
    predictor = recommender_predictor(name, tmp_path / "data", rec_table)
    result = export(predictor, "onnx", tmp_path / "export", dynamic_batch=True)
    assert result.max_diff is not None and result.max_diff <= PARITY_TOLERANCE
    side = json.loads((tmp_path / "export" / "deepkit.json").read_text())
    cat = predictor.catalogue
    assert side["recommender"]["users"] == cat.users and side["outputs"]["scores"]["labels"] == cat.items
    users = [3, 0, 17, 8]  # not the export's example (drawn from seed 0)
    want = predictor._score_users(users).numpy()
    if name == "sasrec":
        history = predictor._sequences(users).numpy()
        got = OnnxModel(tmp_path / "export").run({"history": history})["scores"]
        known = np.stack([np.isin(np.arange(cat.num_items), row) for row in history])
    else:
        got = OnnxModel(tmp_path / "export").run({"user": np.array(users)})["scores"]
        known = np.stack([predictor.known.contains(np.full(cat.num_items, u), np.arange(cat.num_items)) for u in users])
    assert got.shape == (4, cat.num_items) and known.any() and not known.all()
    assert np.array_equal(np.isneginf(got), known)
    assert np.abs(got[~known] - want[~known]).max() <= PARITY_TOLERANCE
    assert np.abs(want - want[:, :1]).max() > 1e-6  # the scores differ across items: the check compares something
    top = np.argsort(-got[0], kind="stable")[:3]
    assert set(top) <= set(np.nonzero(~known[0])[0])


def test_a_plain_rnn_classifier_is_refused_with_the_reason(tmp_path):
    """The tanh RNN's graph would be unrolled to the traced length and silently take no other: refused, saying why."""
    with pytest.raises(ExportError, match="plain \\(tanh\\) RNN cannot be exported yet"):
        export(tiny_text_predictor("rnn_classifier", TINY_RNN), "onnx", tmp_path)


@pytest.mark.parametrize(
    "name", [n if n == "lstm_lm" else pytest.param(n, marks=pytest.mark.slow) for n in LM_EXPORTABLE]
)
def test_recurrent_lm_generates_outside_the_graph_as_eager_does(name, tmp_path):
    """Greedy generation with onnxruntime (the prompt, then one token at a time with the returned state) gives the
    tokens eager ``step`` gives, with logits within 1e-4 at every step."""
    from deepkit.data.tokenizers import build_tokenizer, load_tokenizer
    from deepkit.families.text import FAMILY as TEXT_FAMILY
    from deepkit.families.text import TextSaved

    tok = build_tokenizer("char", ["the quick brown fox jumps over the lazy dog"])
    torch.manual_seed(0)
    model = create_model(name, vocab_size=tok.vocab_size, embed_dim=8, hidden_size=16, num_layers=2)
    lm = TEXT_FAMILY.predictor(model, "language_model", TextSaved(task="language_model", tokenizer=tok), None)
    result = export(lm, "onnx", tmp_path, dynamic_batch=True)
    assert result.max_diff is not None and result.max_diff <= PARITY_TOLERANCE
    side = json.loads((tmp_path / "deepkit.json").read_text())
    states = [k for k in side["input_order"] if k != "tokens"]
    assert states == (["h", "c"] if "lstm" in name else ["h"])
    onnx = OnnxModel(tmp_path)
    prompt = load_tokenizer(tmp_path / "tokenizer.json").encode("the lazy")
    feeds = [prompt] if side["inputs"]["tokens"]["shape"] == ["sequence"] else [[t] for t in prompt]
    state = {k: np.zeros((1, 2, 16), np.float32) for k in states}
    eager_state = None
    out, want = [], []
    with torch.no_grad():
        for step in range(8):
            ids = feeds[step] if step < len(feeds) else [out[-1]]
            got = onnx.run({"tokens": np.array([ids]), **state})
            state = {k: got[f"{k}_next"] for k in states}
            logits, eager_state = model.step(torch.tensor([ids]), eager_state)
            assert np.abs(got["logits"] - logits.numpy()).max() <= PARITY_TOLERANCE
            if step >= len(feeds) - 1:
                out.append(int(got["logits"][0, -1].argmax()))
                want.append(int(logits[0, -1].argmax()))
    assert out == want
    fresh = onnx.run({"tokens": np.array([[out[-1]]]), **{k: np.zeros((1, 2, 16), np.float32) for k in states}})
    assert np.abs(fresh["logits"][0, -1] - got["logits"][0, -1]).max() > 1e-4  # the carried state matters


CTC_SIZES = {
    "ctc_conformer": dict(dim=32, num_layers=1, num_heads=2, n_mels=24, conv_channels=8, sample_rate=8000),
    "wav2vec2_ctc": dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
                         conv_dim=[8, 8, 12], conv_kernel=[10, 5, 4], conv_stride=[5, 4, 4], num_conv_pos_embeddings=4,
                         num_conv_pos_embedding_groups=2, sample_rate=8000),
}  # fmt: skip
CTC_SIZES["wav2vec2_large_ctc"] = CTC_SIZES["wav2vec2_ctc"]


@pytest.mark.slow
@pytest.mark.parametrize("name", CTC_EXPORTABLE)
def test_ctc_recognizer_onnx_gives_the_frame_log_probabilities_of_transcribe(name, tmp_path):
    """Waveform + lengths -> per-frame CTC log probabilities and valid frames (features, wav2vec2's normalisation and
    mask inside the graph; the vocabulary in the sidecar): within 1e-4 of eager on fresh inputs and of the
    predictor's ``posteriors`` on clips of other lengths, greedy decoding of them giving ``transcribe``'s text."""
    from deepkit.data.asr import digit_vocabulary
    from deepkit.families.asr import ASRPredictor, ASRSaved
    from deepkit.nn.ctc import greedy_decode

    torch.manual_seed(0)
    size = "vocab_size" if name.startswith("wav2vec2") else "num_classes"
    model = create_model(name, **CTC_SIZES[name], **{size: 11})
    vocab = digit_vocabulary()
    predictor = ASRPredictor(model, "speech_recognition", ASRSaved(vocab.tokens, vocab.unit, 8000))
    result = export(predictor, "onnx", tmp_path, dynamic_batch=True)
    assert result.max_diff is not None and result.max_diff <= PARITY_TOLERANCE
    sidecar = json.loads((tmp_path / "deepkit.json").read_text())
    assert sidecar["vocabulary"]["tokens"] == vocab.tokens and sidecar["vocabulary"]["blank"] == 0
    g = torch.Generator().manual_seed(5)
    clips = [0.1 * torch.randn(n, generator=g) for n in (2500, 3100, 1700)]
    audio = torch.zeros(3, 3100)
    for i, c in enumerate(clips):
        audio[i, : len(c)] = c
    out = OnnxModel(tmp_path).run({"audio": audio.numpy(), "lengths": np.array([len(c) for c in clips])})
    want = predictor.posteriors([c.numpy() for c in clips])
    texts = predictor.transcribe([c.numpy() for c in clips])
    # a group-norm wav2vec2 (base layout) sees the padding, as in transformers: only its unpadded row is compared
    rows = range(3) if getattr(model, "padding_invariant", True) else [1]
    for i in rows:
        n = int(out["frames"][i])
        assert n == len(want[i])
        np.testing.assert_allclose(out["log_probs"][i, :n], want[i].numpy(), atol=PARITY_TOLERANCE)
        assert vocab.decode(greedy_decode(torch.from_numpy(out["log_probs"][i, :n]))) == texts[i]
