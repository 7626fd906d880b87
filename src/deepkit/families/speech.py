"""Speech: audio clips into classes (spoken digits, keywords) with a CNN or a CRNN on log-mel features computed in
the model; the audio pipeline (:mod:`deepkit.data.audio`, :mod:`deepkit.nn.audio`) other speech families build on.

Data (``data.name``): ``fsdd`` (the Free Spoken Digit Dataset in DATA_ROOT/fsdd/recordings, 8 kHz; the official
split: takes 0-4 of every speaker and digit are the test set, 5-49 train; ``data.val_per_group`` training takes per
(speaker, digit) drawn with ``data.split_seed`` validate; ``data.holdout_speaker=NAME``: leave that speaker out as
the test set instead), ``folder`` (``data.path/CLASS/*.wav|flac``: class = sub-folder; ``data.val_split`` and
``data.test_split`` of the clips held out, drawn with ``data.split_seed``). Every clip is read as mono at
``data.sample_rate`` (stereo averaged, other rates resampled: noted once in the log); a clip shorter than
``data.min_seconds`` is an error naming it. Models: ``audio_cnn``, ``audio_crnn`` (waveform in; features,
normalization fitted on the training split only and SpecAugment in training, inside the model). Metrics: accuracy,
macro-F1, recall per class. Report: ``plots/confusion_matrix.png`` (+ ``confusion_matrix.json``),
``plots/logmel.png`` (the log-mel features of a few test clips), the misclassified clips in ``results.json``, a few
test clips in ``samples/``. Verbs: ``transcribe`` (label and probability per clip, ``--json``), ``predict``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deepkit.cli_options import flag
from deepkit.errors import ConfigError, DataError, ShapeError
from deepkit.families.base import ExportSpec, Family, Finish, Predictor, Saved

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from deepkit.data.audio import AudioData, Clip
    from deepkit.recipe import Recipe
    from deepkit.tasks.base import Task

TASKS = {
    "audio_classification": "audio clips into classes (spoken digits, keywords): CNN or CRNN on log-mel features; "
    "accuracy, recall per class, confusion matrix"
}
DATASETS = {
    "fsdd": "Free Spoken Digit Dataset (DATA_ROOT/fsdd/recordings): 3,000 clips, 6 speakers, 8 kHz; official split",
    "folder": "a folder of labelled clips: data.path/CLASS/*.wav (or .flac); class = sub-folder",
}
DEFAULT_RATE = {"fsdd": 8000, "folder": 16000}


@dataclass
class SpeechTaskConfig:
    """The ``task`` section of audio classification recipes."""

    name: str = "audio_classification"
    label_smoothing: float = 0.0


@dataclass
class SpeechAugmentSection:
    """``data.augment``: waveform augmentation of training clips (SpecAugment is a model setting)."""

    gain_db: float = 0.0  # random gain in [-gain_db, +gain_db] dB per clip
    shift_ms: float = 0.0  # random delay (silence put in front) of up to this many ms


@dataclass
class SpeechDataConfig:
    """The ``data`` section of audio classification recipes."""

    name: str = "fsdd"  # fsdd or folder
    path: str | None = None  # fsdd: the recordings folder (default DATA_ROOT/fsdd/recordings); folder: its root
    sample_rate: int | None = None  # every clip converted to this rate (default: fsdd 8000, folder 16000)
    holdout_speaker: str | None = None  # fsdd: leave this speaker out as the test set (instead of the official split)
    val_per_group: int = 2  # fsdd: validation clips per (speaker, digit), drawn from the training takes
    val_split: float = 0.1  # folder: fraction of clips for validation
    test_split: float = 0.1  # folder: fraction of clips for testing
    split_seed: int = 0
    min_seconds: float = 0.1  # shorter clips are an error naming them
    max_seconds: float | None = None  # longer clips are cut (noted); None: kept whole
    max_clips: int | None = None  # at most this many clips per split, spread over the split (quick runs)
    batch_size: int = 32
    eval_batch_size: int = 64
    augment: SpeechAugmentSection = field(default_factory=SpeechAugmentSection)


@dataclass
class SpeechSaved(Saved):
    """What a speech classification run keeps to predict: classes, the input rate and duration limits, and how the
    data was split (the normalization statistics are buffers in the weights; ``feature_stats.json`` shows them)."""

    class_names: list[str]
    sample_rate: int
    min_seconds: float = 0.1
    max_seconds: float | None = None
    split: str = ""

    def meta(self) -> dict[str, Any]:
        keys = ("class_names", "sample_rate", "min_seconds", "max_seconds", "split")
        return {"speech": {k: getattr(self, k) for k in keys}}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> SpeechSaved:
        from deepkit.errors import CheckpointError

        d = meta.get("speech")
        if not d:
            raise CheckpointError("the checkpoint has no speech metadata (class names, sample rate): not from deepkit")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})  # entries of other versions are ignored


# --- data ------------------------------------------------------------------------------------------------------------
def _spread(clips: list[Clip], n: int | None) -> list[Clip]:
    """At most ``n`` clips taken at even steps through ``clips`` (so every class of a sorted list keeps some)."""
    if n is None or len(clips) <= n:
        return clips
    step = len(clips) / n
    return [clips[int(i * step)] for i in range(n)]


def split_clips(cfg: SpeechDataConfig) -> tuple[dict[str, list[Clip]], str]:
    """The recipe's clips per split, and a sentence saying how they were split."""
    import numpy as np

    from deepkit.data import audio as da
    from deepkit.data.sources import data_root

    if cfg.name == "fsdd":
        root = Path(cfg.path).expanduser() if cfg.path else data_root() / "fsdd" / "recordings"
        clips = da.read_fsdd(root)
        sets = da.fsdd_split(clips, cfg.holdout_speaker, cfg.val_per_group, cfg.split_seed)
        if cfg.holdout_speaker:
            how = (f"leave-one-speaker-out: test = every clip of '{cfg.holdout_speaker}'; validation = "
                   f"{cfg.val_per_group} clips per (speaker, digit) of the other speakers "
                   f"(seed {cfg.split_seed})")  # fmt: skip
        else:
            how = (f"FSDD official split: test = takes 0-4, train = takes 5-49; validation = {cfg.val_per_group} "
                   f"training takes per (speaker, digit), seed {cfg.split_seed}")  # fmt: skip
        return sets, how
    if cfg.name == "folder":
        if not cfg.path:
            raise ConfigError("data.name=folder needs data.path: a folder with one sub-folder of clips per class")
        clips = da.read_labelled_folder(cfg.path)
        if not (0 <= cfg.val_split < 1 and 0 <= cfg.test_split < 1 and cfg.val_split + cfg.test_split < 1):
            raise ConfigError(f"data.val_split and data.test_split must be in [0, 1) with a sum below 1, got "
                              f"{cfg.val_split}, {cfg.test_split}")  # fmt: skip
        order = np.random.default_rng(cfg.split_seed).permutation(len(clips)).tolist()
        n_val, n_test = round(len(clips) * cfg.val_split), round(len(clips) * cfg.test_split)
        pick = {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}
        sets = {k: [clips[i] for i in sorted(v)] for k, v in pick.items()}
        how = (f"folder: {cfg.val_split:g} validation / {cfg.test_split:g} test of the clips at random "
               f"(seed {cfg.split_seed})")  # fmt: skip
        return sets, how
    raise ConfigError(f"unknown audio dataset '{cfg.name}'; expected one of {', '.join(DATASETS)}")


def build_speech_data(cfg: SpeechDataConfig, saved: SpeechSaved | None = None) -> AudioData:
    from deepkit.data import audio as da
    from deepkit.data.preprocess import Preprocessing

    if cfg.batch_size < 1 or cfg.eval_batch_size < 1:
        raise ConfigError(f"data.batch_size and eval_batch_size must be >= 1, got {cfg.batch_size}, "
                          f"{cfg.eval_batch_size}")  # fmt: skip
    if cfg.min_seconds < 0 or (cfg.max_seconds is not None and cfg.max_seconds <= cfg.min_seconds):
        raise ConfigError(f"data.min_seconds must be >= 0 and below data.max_seconds, got {cfg.min_seconds}, "
                          f"{cfg.max_seconds}")  # fmt: skip
    augment = da.WaveAugment(cfg.augment.gain_db, cfg.augment.shift_ms)
    augment.check()
    rate = cfg.sample_rate or (saved.sample_rate if saved else DEFAULT_RATE.get(cfg.name, 16000))
    if saved is not None and rate != saved.sample_rate:
        raise ConfigError(f"data.sample_rate={rate} differs from the trained run's {saved.sample_rate} Hz")
    clip_sets, how = split_clips(cfg)
    names = saved.class_names if saved else sorted({c.label for c in clip_sets["train"]}, key=_label_key)
    if not clip_sets["train"] and saved is None:
        raise DataError(f"{cfg.name}: the training split is empty")
    reader = da.AudioReader(rate, cfg.min_seconds, cfg.max_seconds)
    sets = {k: da.read_set(_spread(v, cfg.max_clips), reader, names) for k, v in clip_sets.items() if v}
    notes = [f"split: {how}", *(f"{k}: {len(s)} clips" for k, s in sets.items()), *reader.notes]
    prep = Preprocessing(kind="audio", input_shape=[0], class_names=list(names))
    return da.AudioData(sets, list(names), rate, cfg.batch_size, cfg.eval_batch_size, augment, notes, prep, how)


def _label_key(label: str) -> tuple[int, Any]:
    """Numeric labels in numeric order (digits), others alphabetically after them."""
    return (0, int(label)) if label.isdigit() else (1, label)


# --- the model ---------------------------------------------------------------------------------------------------
def audio_model_names() -> list[str]:
    from deepkit.models._audio import AudioClassifier
    from deepkit.models.registry import models_of

    return models_of(AudioClassifier)


def bind_audio_model(model_section: dict[str, Any], num_classes: int, sample_rate: int) -> torch.nn.Module:
    """The audio classifier with ``num_classes`` and ``sample_rate`` from the data (a model section that disagrees is a
    one-line error)."""
    from deepkit.models.registry import create_bound

    if model_section["name"] not in audio_model_names():
        raise ShapeError(f"model '{model_section['name']}' does not take audio; task 'audio_classification' needs one "
                         f"of {', '.join(audio_model_names())}")  # fmt: skip
    bound = {"num_classes": num_classes, "sample_rate": sample_rate}
    return create_bound(model_section, bound, f"({num_classes} classes, clips at {sample_rate} Hz)")


def fit_normalization(model: torch.nn.Module, data: AudioData) -> str | None:
    """Fit the model's global feature statistics on the training split (in order, without augmentation); returns
    the log line, or None when the model normalizes otherwise."""
    import torch

    norm = model.frontend.norm
    if norm.mode != "global":
        return f"feature normalization: {norm.mode} (nothing fitted)"
    loader = data.loader("train", shuffle=False)
    loader.augment = None
    was = model.training
    model.eval()
    with torch.no_grad():
        frames = norm.fit(model.frontend.features(b["audio"], b["lengths"]) for b in loader)
    model.train(was)
    return (f"feature normalization: global mean/std of {norm.mean.numel()} features fitted on the training split "
            f"only ({data.sizes()['train']} clips, {frames:,} frames)")  # fmt: skip


def waveform_sample(n: int) -> Callable[[int, int], dict[str, torch.Tensor]]:
    """An export's ``sample(batch, seed)``: zero-padded noise ``audio`` (batch, n) and its ``lengths`` (n/2 to n
    samples, the first row full)."""
    import torch

    def sample(batch: int, seed: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        lengths = torch.randint(n // 2, n + 1, (batch,), generator=g)
        lengths[0] = n
        audio = 0.1 * torch.randn(batch, n, generator=g)
        return {"audio": audio * (torch.arange(n)[None, :] < lengths[:, None]).float(), "lengths": lengths}

    return sample


class SpeechFamily(Family):
    name = "speech"
    description = "audio clips: spoken-digit and keyword classification on log-mel (CNN, CRNN); the audio pipeline"
    tasks = TASKS

    def task_config(self, task: str) -> type:
        return SpeechTaskConfig

    def data_config(self, task: str) -> type:
        return SpeechDataConfig

    def datasets(self, task: str) -> dict[str, str]:
        return DATASETS

    def build_data(self, rec: Recipe, saved: Saved | None = None, given: Any = None) -> AudioData:
        self.check_dataset(rec)
        if given is not None:
            return given
        return build_speech_data(rec.data, saved if isinstance(saved, SpeechSaved) else None)

    def build_model(self, rec: Recipe, data: AudioData) -> torch.nn.Module:
        return bind_audio_model(rec.model, len(data.class_names), data.sample_rate)

    def setup(self, rec: Recipe, model: torch.nn.Module, data: AudioData, fresh: bool) -> list:
        if fresh:
            line = fit_normalization(model, data)
            if line:
                data.notes.append(line)
        return []

    def build_task(self, rec: Recipe, model: torch.nn.Module, data: AudioData) -> Task:
        from deepkit.tasks.speech import AudioClassificationTask

        return AudioClassificationTask(model, data.class_names, data.preprocessing, rec.task.label_smoothing)

    def run_callbacks(self, rec: Recipe, run_dir: Path) -> list:
        from deepkit.train.callbacks import Callback

        class PerClassAtTheEnd(Callback):
            """Recall per class only outside training epochs (the final evaluation, ``deepkit eval``): the epoch
            logs, metrics.csv and the curves keep accuracy and F1."""

            def on_fit_start(self, trainer) -> None:
                trainer.task.per_class = False

            def on_fit_end(self, trainer) -> None:
                trainer.task.per_class = True

            def on_exception(self, trainer, error: BaseException) -> None:
                trainer.task.per_class = True

        return [PerClassAtTheEnd()]

    def saved(self, rec: Recipe, data: AudioData) -> SpeechSaved:
        return SpeechSaved(list(data.class_names), data.sample_rate, rec.data.min_seconds, rec.data.max_seconds,
                           split=data.split_rule)  # fmt: skip

    def on_create(self, rec: Recipe, run_dir: Path, model: torch.nn.Module, data: AudioData) -> None:
        norm = model.frontend.norm
        stats = {"mode": norm.mode, "fitted_on": "train", "mean": norm.mean.tolist(), "std": norm.std.tolist()}
        (run_dir / "feature_stats.json").write_text(json.dumps(stats, indent=1))

    def load_saved(self, folder: Path, meta: dict[str, Any]) -> SpeechSaved:
        return SpeechSaved.from_meta(meta)

    def report(self, run: Finish) -> dict[str, Any]:
        return report_speech(run)

    def metrics_text(self, metrics: dict[str, float], run: Any) -> str | None:
        conf = getattr(run.task, "confusion", None)
        return recall_table(metrics, run.data.class_names, conf)

    def predictor(self, model: torch.nn.Module, task: str, saved: Saved, run_dir: Path | None) -> Predictor:
        return SpeechPredictor(model, task, saved, run_dir)


# --- end of run ------------------------------------------------------------------------------------------------------
def recall_table(metrics: dict[str, float], names: list[str], confusion: Any = None) -> str:
    """One line per class: recall (share of its clips recognised), and correct/total when the counts are known."""
    lines = [f"{'class':>10}  {'recall':>7}  {'correct':>9}", f"{'-' * 10}  {'-' * 7}  {'-' * 9}"]
    for i, n in enumerate(names):
        r = metrics.get(f"recall_{n}", float("nan"))
        counts = f"{int(confusion[i, i])}/{int(confusion[i].sum())}" if confusion is not None else ""
        lines.append(f"{n:>10}  {r:>7.4f}  {counts:>9}")
    total = f"{int(confusion.trace())}/{int(confusion.sum())}" if confusion is not None else ""
    lines.append(f"{'all':>10}  {metrics.get('accuracy', float('nan')):>7.4f}  {total:>9}")
    rest = "  ".join(f"{k} {metrics[k]:.4f}" for k in ("f1", "loss") if k in metrics)
    return "\n".join(lines + ([f"(accuracy = recall over all clips; {rest})"] if rest else []))


def predict_set(model: torch.nn.Module, data: AudioData, split: str, device: Any) -> torch.Tensor:
    """Class probabilities ``(N, K)`` of a split, in the split's order."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for batch in data.loader(split, shuffle=False).to(device):
            out.append(model(batch["audio"], batch["lengths"]).float().softmax(-1).cpu())
    return torch.cat(out)


def report_speech(run: Finish, n_plots: int = 4, n_samples: int = 10) -> dict[str, Any]:
    """Confusion matrix, log-mel plot of a few clips, misclassified clips, and some clips in ``samples/``."""
    import shutil

    import torch

    from deepkit.families.supervised import sample_indices, write_confusion_matrix
    from deepkit.viz.audio import plot_spectrograms

    data, model = run.data, run.task.model
    names, split = data.class_names, run.split
    ds = data.sets[split]
    probs = predict_set(model, data, split, run.trainer.device)
    pred = probs.argmax(1)
    write_confusion_matrix(run, ds.labels.numpy(), pred.numpy(), names)
    wrong = [{"clip": str(c.path.name), "true": names[int(t)], "predicted": names[int(p)],
              "probability": round(float(probs[i, p]), 4)}
             for i, (c, t, p) in enumerate(zip(ds.clips, ds.labels, pred, strict=True)) if t != p]  # fmt: skip
    pick = sample_indices(ds.labels, True, max(n_plots, n_samples)).tolist()
    frontend = model.frontend
    specs, titles = [], []
    with torch.no_grad():
        for i in pick[:n_plots]:
            w = ds.waves[i].to(run.trainer.device)
            feats, _ = frontend.features(w[None])
            specs.append(feats[0].cpu().numpy())
            c = ds.clips[i]
            titles.append(f"{c.path.name}: true {names[int(ds.labels[i])]}, predicted {names[int(pred[i])]} "
                          f"({float(probs[i].max()):.2f})")  # fmt: skip
    kind = "log-mel" if model.cfg.features == "logmel" else "MFCC"
    plot_spectrograms(specs, titles, run.plots / "logmel.png", frontend.hop_length / frontend.sample_rate,
                      f"{kind} features ({split}), before normalization")  # fmt: skip
    for i in pick[:n_samples]:
        shutil.copyfile(ds.clips[i].path, run.samples / ds.clips[i].path.name)  # inputs for `deepkit transcribe`
    run.trainer.log(f"{split}: {len(wrong)} of {len(ds)} clips misclassified" +
                    (": " + ", ".join(f"{w['clip']} ({w['true']}->{w['predicted']})" for w in wrong[:10])
                     if wrong else ""), echo=False)  # fmt: skip
    return {"misclassified": wrong, "split_rule": data.split_rule}


# --- using a trained run -------------------------------------------------------------------------------------------
class SpeechPredictor(Predictor):
    """A trained audio classifier: clips (file paths, or 1-D sample arrays at the run's rate) -> label and
    probability.

    Example:
        >>> p = deepkit.load("runs/fsdd_cnn")                              # doctest: +SKIP
        >>> p.transcribe(["7_jackson_0.wav"])                               # doctest: +SKIP
        ['7']
    """

    kind = "speech classification run"
    verbs = {"transcribe": ("transcribe", "transcribe_files"), "predict": ("predict", "predict_files", "probabilities")}

    def __init__(self, model: torch.nn.Module, task_name: str, saved: SpeechSaved, run_dir: Path | None = None):
        from deepkit.data.audio import AudioReader

        super().__init__(model, task_name, saved, run_dir)
        self.class_names = saved.class_names
        self.reader = AudioReader(saved.sample_rate, saved.min_seconds, saved.max_seconds)

    def _wave(self, clip: Any) -> torch.Tensor:
        if isinstance(clip, str | Path):
            return self.reader(clip)
        return self.reader.convert(clip, self.saved.sample_rate, "audio array")

    def probabilities(self, clips: list[Any], batch_size: int = 32) -> torch.Tensor:
        """``(N, K)`` class probabilities of the clips (read, converted and checked first)."""
        import torch

        from deepkit.data.audio import pad_batch

        waves = [self._wave(c) for c in clips]
        out = []
        with torch.no_grad():
            for s in range(0, len(waves), batch_size):
                audio, lengths = pad_batch(waves[s : s + batch_size])
                out.append(self.model(audio.to(self.device), lengths.to(self.device)).float().softmax(-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, len(self.class_names))

    def predict(self, clips: Any, top_k: int = 1) -> list[dict[str, Any]]:
        """Per clip: ``{"class", "probability"}`` and, for ``top_k > 1``, ``"top_k"``: the best classes."""
        if isinstance(clips, str | Path) or (hasattr(clips, "ndim") and clips.ndim == 1):
            clips = [clips]
        probs = self.probabilities(list(clips))
        out = []
        for p in probs:
            vals, idx = p.topk(min(max(top_k, 1), len(self.class_names)))
            rec = {"class": self.class_names[int(idx[0])], "probability": float(vals[0])}
            if top_k > 1:
                rec["top_k"] = [{"class": self.class_names[int(i)], "probability": float(v)}
                                for v, i in zip(vals, idx, strict=True)]  # fmt: skip
            out.append(rec)
        return out

    def predict_files(self, paths: list[str | Path], top_k: int = 1) -> list[dict[str, Any]]:
        """``predict`` on files: each record also names its ``input``."""
        return [{"input": str(p), **r} for p, r in zip(paths, self.predict(list(paths), top_k), strict=True)]

    def export_spec(self) -> ExportSpec:
        """Waveforms ``(B, samples)`` at the run's rate, zero-padded, and their ``lengths`` (B,) -> class probabilities
        (B, K); ``predict``'s label is their argmax. The feature front end (STFT, mel, log, normalization) is in the
        graph; the number of samples may vary. Reading files, down-mixing and resampling stay outside."""

        from deepkit.tasks.speech import AudioInference

        rate = self.saved.sample_rate
        sample = waveform_sample(rate)

        sidecar = {
            "task": self.task_name,
            "inputs": {"audio": {"dtype": "float32", "shape": ["samples"], "kind": "audio", "sample_rate": rate,
                                 "range": [-1.0, 1.0], "mono": True},
                       "lengths": {"dtype": "int64", "shape": [], "meaning": "valid samples of each row"}},
            "outputs": {"probabilities": {"shape": [len(self.class_names)], "labels": list(self.class_names)}},
            "outside_the_graph": f"reading the file, averaging channels to mono, resampling to {rate} Hz, "
                                 f"zero-padding a batch; clips shorter than {self.saved.min_seconds:g} s are refused",
        }  # fmt: skip
        module = AudioInference(self.model).eval()
        return ExportSpec(module, sample(2, 0), ["probabilities"], sidecar, sample, {"audio": {1: "samples"}})

    def transcribe(self, clips: Any) -> list[str]:
        """The label of each clip (a digit for FSDD runs)."""
        return [r["class"] for r in self.predict(clips)]

    def transcribe_files(self, paths: list[str | Path], top_k: int = 1, beam: int = 0) -> list[dict[str, Any]]:
        """Per file: ``input``, ``text`` (the label), ``probability``, ``seconds`` and a one-line ``summary``."""
        if beam:
            raise ConfigError(f"--beam applies to CTC speech recognition runs; {self._where()} is a classifier")
        records = []
        for p, r in zip(paths, self.predict(list(paths), top_k), strict=True):
            rec = {"input": str(p), "text": r["class"], "probability": round(r["probability"], 4), **r}
            alts = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in r.get("top_k", [])[1:])
            rec["summary"] = f"{r['class']} (p={r['probability']:.3f})" + (f"; next: {alts}" if alts else "")
            records.append(rec)
        return records


def transcribe(
    predictor: Any,
    clips: Annotated[
        list[Path],
        typer.Argument(help="Audio files (WAV, FLAC, OGG, MP3): converted to mono at the run's rate (noted once)."),
    ],  # fmt: skip
    top_k: Annotated[
        int, typer.Option("--top-k", help="Classifier runs: the best K labels; CTC runs: the K best beam texts.")
    ] = 1,
    beam: Annotated[
        int, typer.Option("--beam", help="CTC runs: prefix beam search of this width (0: greedy decoding).")
    ] = 0,
    as_json: Annotated[bool, flag("--json", help="Print one JSON list of records.")] = False,
) -> None:
    """Transcribe audio clips: a classifier run prints its label and probability per clip, a CTC recognizer its text.

    RUN_DIR may also be a Hugging Face wav2vec2 checkpoint directory: config.json, model.safetensors, vocab.json
    and optionally preprocessor_config.json (its vocabulary, rate and normalisation; clips resampled to its rate).

    Example: deepkit transcribe runs/fsdd_cnn runs/fsdd_cnn/samples/*.wav --json;
    deepkit transcribe runs/fsdd_strings_ctc runs/fsdd_strings_ctc/samples/*.wav --beam 8;
    deepkit transcribe path/to/my-wav2vec2-dir clip.wav --json
    """
    records = predictor.transcribe_files(list(clips), top_k=top_k, **({"beam": beam} if beam else {}))
    for note in getattr(getattr(predictor, "reader", None), "notes", []):
        typer.echo(f"note: {note}", err=True)
    if as_json:
        typer.echo(json.dumps(records))
        return
    for r in records:
        typer.echo(f"{r['input']}: {r['summary']}")
    sys.stdout.flush()


SpeechFamily.commands = (transcribe,)
FAMILY = SpeechFamily()
