"""Speech recognition with CTC: waveforms to text by an encoder (BiLSTM or Conformer on log-mel features computed
in the model) trained with the CTC loss over a vocabulary whose index 0 is the blank; greedy and prefix beam-search
decoding.

Data (``data.name``): ``fsdd_strings`` (spoken digit strings assembled from the Free Spoken Digit Dataset in
DATA_ROOT/fsdd/recordings, 8 kHz: ``data.min_digits``-``data.max_digits`` digits of one speaker, random silences
(``data.gap_seconds``, ``data.edge_seconds``) and gains (``data.gain_db``), optional white noise
(``data.snr_db``); train strings only from training recordings (takes 5-49), test strings only from test
recordings (takes 0-4), validation strings from ``data.val_per_group`` training takes per (speaker, digit) held
out; ``data.holdout_speaker=NAME``: every recording of that speaker only in test strings. Strings are drawn from
``data.seed`` and assembled in memory; training strings are new every epoch unless ``data.fresh_train=false``.
Vocabulary: the ten digits, text ``"4 1 7"``), ``librispeech`` (LibriSpeech's layout under
DATA_ROOT/librispeech_mini/LibriSpeech or ``data.path``, 16 kHz; test = one speaker's utterances
(``data.holdout_speaker``, default the last), validation ``data.val_split`` of the others; vocabulary: the
characters of the training transcripts). Models: ``ctc_lstm``, ``ctc_conformer``. Before training, a clip too short
for its transcript (fewer output frames than labels + adjacent repeats) is a one-line error naming it, and a
transcript with characters outside the vocabulary names them and the utterance. Metrics: ``wer``, ``cer`` and, for
digit strings, ``der`` (digit error rate), greedy; the final evaluation and ``deepkit eval`` add ``*_beam`` (prefix
beam search of width ``task.beam``). Report: ``plots/ctc_alignment.png`` (log-mel of test clips with the frame-wise
posteriors), the test strings with their greedy and beam transcripts in ``results.json``, a few test clips in
``samples/``. Verb: ``transcribe`` (``--beam N``, ``--top-k K`` beam hypotheses, ``--json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepkit.errors import ConfigError, DataError, ShapeError
from deepkit.families.base import ExportSpec, Family, Finish, Predictor, Saved
from deepkit.families.speech import fit_normalization, transcribe, waveform_sample

if TYPE_CHECKING:
    import torch

    from deepkit.data.asr import ASRData, Vocabulary
    from deepkit.recipe import Recipe
    from deepkit.tasks.base import Task

TASKS = {
    "speech_recognition": "speech to text with CTC (BiLSTM or Conformer on log-mel; greedy and prefix beam search): "
    "spoken digit strings, LibriSpeech; WER, CER, digit error rate"
}
DATASETS = {
    "fsdd_strings": "spoken digit strings (3-7 digits) assembled in memory from FSDD recordings "
    "(DATA_ROOT/fsdd/recordings); official split of the recordings",
    "librispeech": "LibriSpeech layout (DATA_ROOT/librispeech_mini/LibriSpeech): SPK/CHAP/*.flac + SPK-CHAP.trans.txt",
}
DEFAULT_RATE = {"fsdd_strings": 8000, "librispeech": 16000}
VOCABULARIES = ("checkpoint", "data")


@dataclass
class ASRTaskConfig:
    """The ``task`` section of speech recognition recipes."""

    name: str = "speech_recognition"
    beam: int = 8  # prefix beam-search width of the final evaluation (0: greedy only)
    # with model.weights=DIR (a Hugging Face wav2vec2 checkpoint): "checkpoint" keeps its vocab.json and CTC head;
    # "data": the data's vocabulary (digits, the training characters) under a re-initialised CTC head
    vocabulary: str = "checkpoint"
    pretrained_lr_mult: float = 0.05  # with model.weights: the checkpoint's layers at this × trainer.optimizer.lr


@dataclass
class ASRDataConfig:
    """The ``data`` section of speech recognition recipes."""

    name: str = "fsdd_strings"  # fsdd_strings or librispeech
    path: str | None = None  # fsdd_strings: the recordings folder; librispeech: the corpus root
    sample_rate: int | None = None  # default: fsdd_strings 8000, librispeech 16000
    holdout_speaker: str | None = None  # this speaker's recordings only in the test set
    val_per_group: int = 2  # fsdd_strings: training takes per (speaker, digit) held out for validation strings
    val_split: float = 0.1  # librispeech: fraction of the non-test utterances for validation
    split_seed: int = 0
    seed: int = 0  # fsdd_strings: the strings drawn
    train_strings: int = 2000  # strings per training epoch
    val_strings: int = 200
    test_strings: int = 500
    fresh_train: bool = True  # new training strings every epoch
    min_digits: int = 3
    max_digits: int = 7
    gap_seconds: list[float] = field(default_factory=lambda: [0.05, 0.4])
    edge_seconds: list[float] = field(default_factory=lambda: [0.0, 0.3])
    gain_db: float = 6.0
    snr_db: float | None = None
    min_seconds: float = 0.1  # shorter recordings are an error naming them
    max_clips: int | None = None  # at most this many recordings (utterances) per split (quick runs)
    batch_size: int = 16
    eval_batch_size: int = 32


@dataclass
class ASRSaved(Saved):
    """What a CTC run keeps to transcribe: its vocabulary (blank first), how text splits into tokens, the rate."""

    tokens: list[str]
    unit: str
    sample_rate: int
    min_seconds: float = 0.1
    split: str = ""
    hf: dict[str, Any] | None = None  # a checkpoint's CTC tokenizer settings (Vocabulary.hf)
    pretrained: str | None = None  # the checkpoint directory the run fine-tuned

    def meta(self) -> dict[str, Any]:
        keys = ("tokens", "unit", "sample_rate", "min_seconds", "split", "hf", "pretrained")
        return {"asr": {k: getattr(self, k) for k in keys}}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> ASRSaved:
        from deepkit.errors import CheckpointError

        d = meta.get("asr")
        if not d:
            raise CheckpointError("the checkpoint has no speech recognition metadata (vocabulary): not from deepkit")
        return cls(**d)

    @property
    def vocab(self) -> Vocabulary:
        from deepkit.data.asr import Vocabulary

        return Vocabulary(list(self.tokens), self.unit, self.hf)


# --- data ------------------------------------------------------------------------------------------------------------
def _spread(items: list, n: int | None) -> list:
    return items if n is None or len(items) <= n else [items[int(i * len(items) / n)] for i in range(n)]


def build_asr_data(cfg: ASRDataConfig, saved: ASRSaved | None = None, model_rate: int | None = None,
                   vocab: Vocabulary | None = None) -> ASRData:  # fmt: skip
    """The splits of ``cfg``; ``model_rate``: the rate a raw-waveform model takes (the clips are resampled to it);
    ``vocab``: the vocabulary to use (a checkpoint's), else the run's or the data's."""
    from deepkit.data import asr
    from deepkit.data import audio as da
    from deepkit.data.preprocess import Preprocessing
    from deepkit.data.sources import data_root

    if cfg.batch_size < 1 or cfg.eval_batch_size < 1:
        raise ConfigError(f"data.batch_size and eval_batch_size must be >= 1, got {cfg.batch_size}, "
                          f"{cfg.eval_batch_size}")  # fmt: skip
    rate = cfg.sample_rate or model_rate or (saved.sample_rate if saved else DEFAULT_RATE.get(cfg.name, 16000))
    if saved is not None and rate != saved.sample_rate:
        raise ConfigError(f"data.sample_rate={rate} differs from the trained run's {saved.sample_rate} Hz")
    if model_rate is not None and rate != model_rate:
        raise ConfigError(f"data.sample_rate={rate} does not fit the model, which takes {model_rate} Hz waveforms; "
                          "leave data.sample_rate unset (the clips are resampled to the model's rate)")  # fmt: skip
    given_vocab = vocab
    reader = da.AudioReader(rate, cfg.min_seconds)
    if cfg.name == "fsdd_strings":
        settings = asr.StringSettings(cfg.min_digits, cfg.max_digits, tuple(cfg.gap_seconds), tuple(cfg.edge_seconds),
                                      cfg.gain_db, cfg.snr_db)  # fmt: skip
        settings.check()
        root = Path(cfg.path).expanduser() if cfg.path else data_root() / "fsdd" / "recordings"
        pools = da.fsdd_split(da.read_fsdd(root), cfg.holdout_speaker, cfg.val_per_group, cfg.split_seed)
        counts = {"train": cfg.train_strings, "val": cfg.val_strings, "test": cfg.test_strings}
        sets = {}
        for i, (k, clips) in enumerate(pools.items()):
            if clips and counts[k] > 0:
                pool = da.read_set(_spread(clips, cfg.max_clips), reader)
                sets[k] = asr.DigitStrings(pool, counts[k], settings, rate, seed=cfg.seed * 10 + i,
                                           fresh=k == "train" and cfg.fresh_train, name=k)  # fmt: skip
        test_rule = (f"every recording of '{cfg.holdout_speaker}'" if cfg.holdout_speaker
                     else "takes 0-4 of every speaker and digit")  # fmt: skip
        how = (f"FSDD digit strings ({cfg.min_digits}-{cfg.max_digits} digits, one speaker each): test strings from "
               f"{test_rule}, train strings from the other recordings less {cfg.val_per_group} per (speaker, "
               f"digit) for validation strings (seed {cfg.split_seed}); strings drawn with seed {cfg.seed}"
               + (", new training strings every epoch" if cfg.fresh_train else ""))  # fmt: skip
        vocab = given_vocab or (saved.vocab if saved else asr.digit_vocabulary())
    elif cfg.name == "librispeech":
        root = Path(cfg.path).expanduser() if cfg.path else data_root() / "librispeech_mini" / "LibriSpeech"
        clips = da.read_librispeech(root)
        speakers = sorted({c.speaker or "" for c in clips})
        held = cfg.holdout_speaker or speakers[-1]
        if held not in speakers:
            raise ConfigError(f"data.holdout_speaker={held!r} is not a speaker of {root}; expected one of "
                              f"{', '.join(speakers)}")  # fmt: skip
        if not 0 <= cfg.val_split < 1:
            raise ConfigError(f"data.val_split must be in [0, 1), got {cfg.val_split}")
        import numpy as np

        rest = [c for c in clips if c.speaker != held]
        order = np.random.default_rng(cfg.split_seed).permutation(len(rest)).tolist()
        n_val = round(len(rest) * cfg.val_split)
        chosen = {"train": sorted(order[n_val:]), "val": sorted(order[:n_val])}
        parts = {"train": [rest[i] for i in chosen["train"]], "val": [rest[i] for i in chosen["val"]],
                 "test": [c for c in clips if c.speaker == held]}  # fmt: skip
        if not parts["train"] and saved is None:
            raise DataError(f"{root}: no training utterances besides speaker {held}")
        vocab = given_vocab or (saved.vocab if saved else asr.char_vocabulary([c.text or "" for c in parts["train"]]))
        parts = {k: _spread(v, cfg.max_clips) for k, v in parts.items() if v}
        sets = {k: asr.Utterances([reader(c.path) for c in v], [c.text or "" for c in v], [c.id for c in v], k)
                for k, v in parts.items()}  # fmt: skip
        how = (f"LibriSpeech: test = speaker {held}'s utterances; validation = {cfg.val_split:g} of the others "
               f"(seed {cfg.split_seed})")  # fmt: skip
    else:
        raise ConfigError(f"unknown speech recognition dataset '{cfg.name}'; expected one of {', '.join(DATASETS)}")
    try:
        for s in sets.values():  # every transcript in the vocabulary, before anything trains
            for i in range(len(s)):
                vocab.encode(s.text(i), s.id(i))
    except DataError as e:
        if given_vocab is None:
            raise
        raise DataError(
            f"{e}; with task.vocabulary=data the vocabulary comes from the transcripts instead (under a new CTC head)"
        ) from None
    notes = [f"split: {how}", f"vocabulary: {vocab.describe()}", *(f"{k}: {len(s)} clips" for k, s in sets.items()),
             *reader.notes]  # fmt: skip
    prep = Preprocessing(kind="audio", input_shape=[0], class_names=list(vocab.tokens))
    return asr.ASRData(sets, vocab, rate, cfg.batch_size, cfg.eval_batch_size, notes, prep, how)


def check_ctc_lengths(model: torch.nn.Module, data: ASRData, show: int = 5) -> None:
    """Every clip must give at least as many output frames as its transcript needs (labels + adjacent repeats: CTC
    puts a blank between equal labels); otherwise a one-line error naming the clips (training strings drawn anew
    every epoch are checked for the first epoch)."""
    from deepkit.nn.ctc import ctc_min_frames

    bad, total = [], 0
    for split, s in data.sets.items():
        frames = model.output_lengths(s.lengths).tolist()
        for i, n in enumerate(frames):
            need = ctc_min_frames(data.vocab.encode(s.text(i), s.id(i)))
            if n < need:
                total += 1
                if len(bad) < show:
                    bad.append(f"{s.id(i)} ({split}: {n} output frames, {need} needed)")
    if total:
        raise DataError(f"{total} clip(s) too short for their transcripts under CTC: {'; '.join(bad)}"
                        + (" ..." if total > show else "")
                        + f"; the model emits one frame per {model.seconds_per_frame * 1000:g} ms: "
                        + ("lower model.subsample or " if hasattr(getattr(model, "cfg", None), "subsample") else "")
                        + "drop these clips")  # fmt: skip


def ctc_models() -> list[str]:
    """The registered CTC models: the log-mel encoders (``models/_ctc.CTCEncoder``) and the raw-waveform models with
    a CTC head (``raw_waveform``: wav2vec2)."""
    from deepkit.models._ctc import CTCEncoder
    from deepkit.models.registry import get_entry, list_models

    return [n for n in list_models() if issubclass(get_entry(n).cls, CTCEncoder)
            or getattr(get_entry(n).cls, "raw_waveform", False)]  # fmt: skip


def is_raw(model_section: dict[str, Any]) -> bool:
    from deepkit.models.registry import get_entry

    return bool(getattr(get_entry(model_section["name"]).cls, "raw_waveform", False))


@dataclass
class Checkpoint:
    """``model.weights``: a Hugging Face checkpoint directory to fine-tune, as far as the data needs it (its rate,
    its vocabulary) before the model is built."""

    path: Path
    sample_rate: int
    vocab: Vocabulary | None  # its vocab.json, blank first (None: no vocab.json, or task.vocabulary=data)
    order: list[int] = field(default_factory=list)  # the head's outputs in the vocabulary's order (blank first)
    note: str = ""


def read_checkpoint_dir(path: str, task_cfg: ASRTaskConfig) -> Checkpoint:
    """The checkpoint's rate and vocabulary; not a wav2vec2 checkpoint directory is a one-line error."""
    from deepkit.data.asr import Vocabulary
    from deepkit.interop import hf
    from deepkit.interop.wav2vec2 import CTCVocab, config_from_hf, read_preprocessor

    if task_cfg.vocabulary not in VOCABULARIES:
        raise ConfigError(f"task.vocabulary must be one of {', '.join(VOCABULARIES)}, got {task_cfg.vocabulary!r}")
    root = Path(path).expanduser()
    if not (root / "config.json").is_file():
        raise ConfigError(f"model.weights={path} is not a Hugging Face checkpoint directory (no config.json); "
                          "expected config.json + model.safetensors + vocab.json")  # fmt: skip
    hfc = hf.read_hf_config(root)
    if hfc.get("model_type") != "wav2vec2":
        raise ConfigError(f"model.weights={path} holds a '{hfc.get('model_type')}' checkpoint; expected a wav2vec2 "
                          "one (config.json model_type 'wav2vec2')")  # fmt: skip
    fields = config_from_hf(hfc, root)
    rate = read_preprocessor(root, fields.get("feat_extract_norm", "group"))["sampling_rate"]
    if not (root / "vocab.json").is_file():
        return Checkpoint(root, rate, None, note=f"{root} has no vocab.json: the data's vocabulary under a new CTC "
                                                "head (re-initialised)")  # fmt: skip
    ctc = CTCVocab.from_dir(root)
    if task_cfg.vocabulary == "data":
        return Checkpoint(root, rate, None, note="task.vocabulary=data: the data's vocabulary under a new CTC head "
                                                "(re-initialised), the checkpoint's vocab.json left aside")  # fmt: skip
    vocab, order = Vocabulary.from_ctc(ctc, max(len(ctc), int(fields.get("vocab_size", len(ctc)))))
    return Checkpoint(
        root,
        rate,
        vocab,
        order,
        f"vocabulary: the checkpoint's vocab.json ({len(vocab) - 1} tokens "
        f"+ its pad token {ctc.pad_token!r} as the blank), its CTC head kept",
    )


def bind_ctc_model(model_section: dict[str, Any], vocab_size: int, sample_rate: int) -> torch.nn.Module:
    """A log-mel CTC encoder at the data's rate, or a raw-waveform model (from scratch) at its own rate."""
    from deepkit.models.registry import create_bound

    name = model_section["name"]
    if name not in ctc_models():
        raise ShapeError(f"model '{name}' is not a CTC model; task 'speech_recognition' needs one of "
                         f"{', '.join(ctc_models())}")  # fmt: skip
    fits = f"(vocabulary of {vocab_size - 1} + blank, clips at {sample_rate} Hz)"
    if is_raw(model_section):  # its rate is its own (the data was resampled to it); output 0 is the blank
        section = {k: v for k, v in model_section.items() if k != "weights"}
        return create_bound(section, {"vocab_size": vocab_size, "pad_token_id": 0}, fits)
    return create_bound(model_section, {"num_classes": vocab_size, "sample_rate": sample_rate}, fits)


def finetune_model(rec: Recipe, data: ASRData) -> torch.nn.Module:
    """``model.weights``: the checkpoint directory's model, its head kept (reordered blank first) when the vocabulary
    is the checkpoint's, else re-initialised for the data's; the conv feature encoder frozen unless the recipe says
    ``model.freeze_feature_encoder=false``."""
    from deepkit.models.registry import create_model, get_entry

    fixed = get_entry(rec.model["name"]).cls.checkpoint_fixed
    ckpt: Checkpoint = data.checkpoint
    section = {k: v for k, v in rec.model.items() if k not in ("name", "weights", *fixed)}
    section.setdefault("freeze_feature_encoder", True)
    ignored = sorted(k for k in rec.model if k in fixed)
    if ignored:
        data.notes.append(f"model: the checkpoint's config.json sets the architecture; the recipe's "
                          f"{', '.join(ignored[:6])}{' ...' if len(ignored) > 6 else ''} left aside")  # fmt: skip
    if ckpt.vocab is not None:
        model = create_model(rec.model["name"], weights=str(ckpt.path), vocab_size=len(ckpt.order), **section)
        if ckpt.order != sorted(ckpt.order):
            model.reorder_outputs(ckpt.order)
            data.notes.append(f"CTC head: outputs reordered so that the pad token {ckpt.vocab.hf['pad_token']!r} "
                              "(the blank) is output 0")  # fmt: skip
    else:
        model = create_model(rec.model["name"], weights=str(ckpt.path), **section)
        model.reset_head(len(data.vocab))
        data.notes.append(f"CTC head: re-initialised for the data's vocabulary ({data.vocab.describe()}), as "
                          "fine-tuning on a new vocabulary starts")  # fmt: skip
    model.model_config = model.cfg  # vocab_size / pad_token_id as the head now is
    frozen = "frozen (model.freeze_feature_encoder=false trains it)" if model.cfg.freeze_feature_encoder else "trained"
    data.notes.append(f"fine-tuning {ckpt.path}: the conv feature encoder {frozen}")
    return model


class ASRFamily(Family):
    name = "asr"
    description = "speech recognition with CTC: BiLSTM and Conformer encoders, greedy and prefix beam search"
    tasks = TASKS

    def task_config(self, task: str) -> type:
        return ASRTaskConfig

    def data_config(self, task: str) -> type:
        return ASRDataConfig

    def datasets(self, task: str) -> dict[str, str]:
        return DATASETS

    def build_data(self, rec: Recipe, saved: Saved | None = None, given: Any = None) -> ASRData:
        from deepkit.models.registry import model_config

        self.check_dataset(rec)
        if given is not None:
            return given
        saved = saved if isinstance(saved, ASRSaved) else None
        if not is_raw(rec.model):
            return build_asr_data(rec.data, saved)
        ckpt = read_checkpoint_dir(rec.model["weights"], rec.task) if rec.model.get("weights") and not saved else None
        if saved is not None:
            rate = saved.sample_rate
        elif ckpt is not None:
            rate = ckpt.sample_rate
        else:
            rate = model_config(rec.model["name"], **{k: v for k, v in rec.model.items() if k != "name"}).sample_rate
        data = build_asr_data(rec.data, saved, rate, ckpt.vocab if ckpt else None)
        data.checkpoint = ckpt
        if ckpt is not None:
            data.notes.insert(0, ckpt.note)
        return data

    def build_model(self, rec: Recipe, data: ASRData) -> torch.nn.Module:
        if getattr(data, "checkpoint", None) is not None:
            return finetune_model(rec, data)
        return bind_ctc_model(rec.model, len(data.vocab), data.sample_rate)

    def setup(self, rec: Recipe, model: torch.nn.Module, data: ASRData, fresh: bool) -> list:
        check_ctc_lengths(model, data)
        if not fresh:
            return []
        if getattr(model, "frontend", None) is not None:
            line = fit_normalization(model, data)
        else:
            line = ("input: the raw waveform at {} Hz, {}".format(data.sample_rate, "each clip normalised to zero mean "
                    "and unit variance" if getattr(model.cfg, "do_normalize", False) else "not normalised")
                    + (", with an attention mask" if getattr(model, "uses_attention_mask", False) else ""))  # fmt: skip
        if line:
            data.notes.append(line)
        if getattr(data, "checkpoint", None) is not None:
            self._finetune_lr(rec, model, data)
        return []

    @staticmethod
    def _finetune_lr(rec: Recipe, model: torch.nn.Module, data: ASRData) -> None:
        """The checkpoint's layers at ``task.pretrained_lr_mult`` x the recipe's learning rate, a new head at 1x
        (unless the recipe sets ``trainer.optimizer.lr_mult``)."""
        mult = rec.task.pretrained_lr_mult
        if not 0 < mult <= 1:
            raise ConfigError(f"task.pretrained_lr_mult must be in (0, 1], got {mult}")
        opt = rec.trainer.optimizer
        if opt.lr_mult:
            return
        fresh_head = data.checkpoint.vocab is None
        opt.lr_mult = {**({"lm_head.*": 1.0} if fresh_head else {}), "*": mult}
        data.notes.append(f"optimizer: {opt.name}, the checkpoint's layers at lr {opt.lr * mult:g} ({mult:g} x "
                          f"trainer.optimizer.lr)" + (f", the new CTC head at {opt.lr:g}" if fresh_head else "")
                          + f"; warm-up {rec.trainer.schedule.warmup_steps} steps")  # fmt: skip

    def build_task(self, rec: Recipe, model: torch.nn.Module, data: ASRData) -> Task:
        from deepkit.tasks.ctc import CTCTask

        if rec.task.beam < 0:
            raise ConfigError(f"task.beam must be >= 0 (0: greedy only), got {rec.task.beam}")
        return CTCTask(model, data.vocab, data.preprocessing, rec.task.beam)

    def run_callbacks(self, rec: Recipe, run_dir: Path) -> list:
        from deepkit.train.callbacks import Callback

        class BeamAtTheEnd(Callback):
            """Beam-search metrics only outside training epochs (the final evaluation, ``deepkit eval``)."""

            def on_fit_start(self, trainer) -> None:
                trainer.task.final = False

            def on_fit_end(self, trainer) -> None:
                trainer.task.final = True

            def on_exception(self, trainer, error: BaseException) -> None:
                trainer.task.final = True

        return [BeamAtTheEnd()]

    def saved(self, rec: Recipe, data: ASRData) -> ASRSaved:
        ckpt = getattr(data, "checkpoint", None)
        return ASRSaved(list(data.vocab.tokens), data.vocab.unit, data.sample_rate, rec.data.min_seconds,
                        data.split_rule, data.vocab.hf, str(ckpt.path) if ckpt else None)  # fmt: skip

    def load_saved(self, folder: Path, meta: dict[str, Any]) -> ASRSaved:
        return ASRSaved.from_meta(meta)

    def report(self, run: Finish) -> dict[str, Any]:
        return report_asr(run)

    def metrics_text(self, metrics: dict[str, float], run: Any) -> str | None:
        return rates_table(metrics, getattr(run.task, "beam", 0))

    def predictor(self, model: torch.nn.Module, task: str, saved: Saved, run_dir: Path | None) -> Predictor:
        return ASRPredictor(model, task, saved, run_dir)

    opens = "a Hugging Face wav2vec2 checkpoint directory (config.json, model.safetensors, vocab.json)"

    def open_file(self, path: Path) -> Predictor | None:
        """A Hugging Face wav2vec2 checkpoint directory (``config.json`` with model_type ``wav2vec2``, its weights,
        ``vocab.json`` [+ ``preprocessor_config.json``]): a recognizer as a run's, greedy or beam decoding."""
        import json

        try:
            kind = json.loads((path / "config.json").read_text()).get("model_type") if path.is_dir() else None
        except (OSError, ValueError, AttributeError):
            return None
        if kind != "wav2vec2":
            return None
        return ASRPredictor.from_checkpoint(path)


# --- end of run ------------------------------------------------------------------------------------------------------
def rates_table(metrics: dict[str, float], beam: int = 0) -> str:
    """Error rates (%) by decoder: greedy, and the beam search when measured."""
    cols = [k for k in ("wer", "cer", "der") if k in metrics]
    lines = [f"{'decoder':>10}  " + "  ".join(f"{c.upper():>7}" for c in cols), "-" * (12 + 9 * len(cols))]
    for label, suffix in (("greedy", ""), (f"beam {beam}", "_beam")):
        if all(f"{c}{suffix}" in metrics for c in cols):
            lines.append(f"{label:>10}  " + "  ".join(f"{100 * metrics[c + suffix]:>6.2f}%" for c in cols))
    if "loss" in metrics:
        lines.append(f"CTC loss {metrics['loss']:.4f}")
    return "\n".join(lines)


def report_asr(run: Finish, n_plots: int = 3, n_samples: int = 8, n_listed: int = 50) -> dict[str, Any]:
    """Transcripts of the evaluated split (greedy and beam), the CTC alignment plot, a few clips in ``samples/``."""
    import soundfile as sf
    import torch

    from deepkit.data.audio import pad_batch
    from deepkit.tasks.ctc import ctc_forward
    from deepkit.viz.ctc import plot_ctc_alignments

    data, task, model = run.data, run.task, run.task.model
    s, vocab = data.sets[run.split], data.vocab
    n = min(len(s), n_listed)
    model.eval()
    device = run.trainer.device
    listed, plots = [], []
    frontend = getattr(model, "frontend", None)
    if frontend is not None:
        features, hop = (lambda x: frontend.features(x)[0]), frontend.hop_length / frontend.sample_rate
    else:  # a raw-waveform model: a 40-band log-mel of the clip (25 ms windows, 10 ms hop) to show
        from deepkit.nn.audio import LogMel

        rate = data.sample_rate
        features = LogMel(sample_rate=rate, n_fft=int(0.025 * rate), hop_length=int(0.01 * rate), n_mels=40).to(device)
        hop = 0.01
    with torch.no_grad():
        for start in range(0, n, data.eval_batch_size):
            idx = list(range(start, min(n, start + data.eval_batch_size)))
            audio, lengths = pad_batch([s.wave(i) for i in idx])
            logits, frames = ctc_forward(model, audio.to(device), lengths.to(device))
            greedy = task.decode(logits, frames)
            beam = task.decode(logits, frames, task.beam) if task.beam > 0 else greedy
            for j, i in enumerate(idx):
                rec = {"id": s.id(i), "reference": s.text(i), "greedy": vocab.decode(greedy[j][0][0]),
                       "beam": vocab.decode(beam[j][0][0])}  # fmt: skip
                listed.append(rec)
                if len(plots) < n_plots:
                    feats = features(audio[j : j + 1, : int(lengths[j])].to(device))
                    post = logits[j, : int(frames[j])].float().softmax(-1).cpu().numpy()
                    plots.append((feats[0].cpu().numpy(), post, f"{s.id(i)[:60]}\nref '{rec['reference']}', "
                                                                f"greedy '{rec['greedy']}'"))  # fmt: skip
    plot_ctc_alignments([p[0] for p in plots], [p[1] for p in plots], [p[2] for p in plots], vocab.tokens,
                        run.plots / "ctc_alignment.png", hop, model.seconds_per_frame)  # fmt: skip
    for i in range(min(n_samples, len(s))):
        name = f"{run.split}-{i:03d}_{s.text(i).replace(' ', '')[:40] if vocab.is_digits else 'utt'}.wav"
        sf.write(str(run.samples / name), s.wave(i).numpy(), data.sample_rate, subtype="FLOAT")
    wrong = [r for r in listed if r["beam"] != r["reference"]]
    run.trainer.log(f"{run.split}: {len(wrong)} of the first {len(listed)} clips transcribed wrongly by the beam"
                    + ("".join(f"; {r['reference']!r} -> {r['beam']!r}" for r in wrong[:5])), echo=False)  # fmt: skip
    return {"transcripts": listed, "split_rule": data.split_rule, "vocabulary": list(vocab.tokens)}


# --- using a trained run -------------------------------------------------------------------------------------------
class ASRPredictor(Predictor):
    """A trained CTC recognizer: clips (file paths, or 1-D sample arrays at the run's rate) -> text.

    Example:
        >>> p = deepkit.load("runs/fsdd_strings_ctc")                   # doctest: +SKIP
        >>> p.transcribe(["417.wav"], beam=8)                            # doctest: +SKIP
        ['4 1 7']
    """

    kind = "speech recognition (CTC) run"
    verbs = {"transcribe": ("transcribe", "transcribe_files", "hypotheses", "posteriors")}

    def __init__(self, model: torch.nn.Module, task_name: str, saved: ASRSaved, run_dir: Path | None = None):
        from deepkit.data.audio import AudioReader

        super().__init__(model, task_name, saved, run_dir)
        self.vocab = saved.vocab
        self.reader = AudioReader(saved.sample_rate, saved.min_seconds)

    @classmethod
    def from_checkpoint(cls, path: Path) -> ASRPredictor:
        """A Hugging Face wav2vec2 checkpoint directory as a recognizer (its vocab.json, rate and normalisation)."""
        from deepkit.data.asr import Vocabulary
        from deepkit.errors import CheckpointError
        from deepkit.interop.wav2vec2 import load_wav2vec2

        if not (path / "vocab.json").is_file():
            raise CheckpointError(f"{path} is a wav2vec2 checkpoint without vocab.json: transcribing needs its "
                                  "CTC vocabulary (fine-tune it: model.weights=DIR, task.vocabulary=data)")  # fmt: skip
        model = load_wav2vec2(path)
        vocab, order = Vocabulary.from_ctc(model.vocab, model.cfg.vocab_size)
        if order != sorted(order):
            model.reorder_outputs(order)
        saved = ASRSaved(vocab.tokens, vocab.unit, model.cfg.sample_rate, hf=vocab.hf, pretrained=str(path))
        return cls(model, "speech_recognition", saved, path)

    def export_spec(self) -> ExportSpec:
        """Waveforms ``(B, samples)`` at the run's rate, zero-padded, and their ``lengths`` -> per-frame CTC log
        probabilities ``(B, frames, V)`` (blank = 0) and each clip's valid ``frames``: features (log-mel, or wav2vec2's
        normalisation and attention mask) inside the graph; the vocabulary is in the sidecar and decoding (greedy:
        argmax per valid frame, merge repeats, drop blanks; or a prefix beam) stays outside."""

        from deepkit.tasks.ctc import CTCInference

        rate = self.saved.sample_rate
        sample = waveform_sample(rate)  # one second

        vocab = self.vocab
        sidecar = {
            "task": self.task_name,
            "inputs": {"audio": {"dtype": "float32", "shape": ["samples"], "kind": "audio", "sample_rate": rate,
                                 "range": [-1.0, 1.0], "mono": True},
                       "lengths": {"dtype": "int64", "shape": [], "meaning": "valid samples of each row"}},
            "outputs": {"log_probs": {"shape": ["frames", len(vocab)], "labels": list(vocab.tokens)},
                        "frames": {"dtype": "int64", "shape": [], "meaning": "valid output frames of each row"}},
            "vocabulary": {"tokens": list(vocab.tokens), "blank": 0, "unit": vocab.unit,
                           "join": " " if vocab.unit == "word" else "", **({"hf": vocab.hf} if vocab.hf else {})},
            "outside_the_graph": f"reading the file, averaging channels to mono, resampling to {rate} Hz, "
                                 "zero-padding a batch; CTC decoding: per row, the argmax of each of its valid "
                                 "frames, repeats merged, blanks (0) dropped, tokens joined (or a prefix beam search)",
        }  # fmt: skip
        module = CTCInference(self.model).eval()
        return ExportSpec(module, sample(2, 0), ["log_probs", "frames"], sidecar, sample, {"audio": {1: "samples"}})

    def export_hf(self, folder: Path) -> None:
        """A wav2vec2 run as a directory ``transformers.Wav2Vec2ForCTC.from_pretrained`` (and ``Wav2Vec2Processor``)
        load: config.json, model.safetensors, vocab.json + tokenizer_config.json (the run's vocabulary, the blank as
        the pad token, id 0), preprocessor_config.json (rate, normalisation, mask)."""
        if getattr(type(self.model), "hf_model_type", None) != "wav2vec2":
            super().export_hf(folder)
        from deepkit.interop.wav2vec2 import export_wav2vec2

        self.model.vocab = self.vocab.ctc()
        export_wav2vec2(self.model, folder)

    def _wave(self, clip: Any) -> torch.Tensor:
        if isinstance(clip, str | Path):
            return self.reader(clip)
        return self.reader.convert(clip, self.saved.sample_rate, "audio array")

    def posteriors(self, clips: list[Any], batch_size: int = 16) -> list[torch.Tensor]:
        """Per clip, ``(frames, V)`` CTC log probabilities (index 0: blank) over its valid output frames."""
        import torch

        from deepkit.data.audio import pad_batch
        from deepkit.tasks.ctc import ctc_forward

        waves = [self._wave(c) for c in clips]
        if not getattr(self.model, "padding_invariant", True):  # its scores would depend on the padding
            batch_size = 1
        out = []
        with torch.no_grad():
            for s in range(0, len(waves), batch_size):
                audio, lengths = pad_batch(waves[s : s + batch_size])
                logits, frames = ctc_forward(self.model, audio.to(self.device), lengths.to(self.device))
                lp = logits.float().log_softmax(-1).cpu()
                out += [lp[i, : int(n)] for i, n in enumerate(frames.tolist())]
        return out

    def hypotheses(self, clips: Any, beam: int = 0, top_k: int = 1) -> list[list[tuple[str, float]]]:
        """Per clip, up to ``top_k`` ``(text, log probability)`` best first: the beam's texts (scored over all their
        alignments), or greedy decoding's one text (scored by its best path)."""
        from deepkit.nn.ctc import greedy_decode, prefix_beam_search

        if beam < 0 or top_k < 1:
            raise ConfigError(f"--beam must be >= 0 and --top-k >= 1, got {beam}, {top_k}")
        if isinstance(clips, str | Path) or (hasattr(clips, "ndim") and clips.ndim == 1):
            clips = [clips]
        out = []
        for lp in self.posteriors(list(clips)):
            if beam > 0:
                out.append([(self.vocab.decode(ids), s) for ids, s in prefix_beam_search(lp, max(beam, top_k))[:top_k]])
            else:
                out.append([(self.vocab.decode(greedy_decode(lp)), float(lp.max(-1).values.sum()))])
        return out

    def transcribe(self, clips: Any, beam: int = 0) -> list[str]:
        """The text of each clip: greedy decoding, or prefix beam search of width ``beam``."""
        return [h[0][0] for h in self.hypotheses(clips, beam)]

    def transcribe_files(self, paths: list[str | Path], top_k: int = 1, beam: int = 0) -> list[dict[str, Any]]:
        """Per file: ``input``, ``text``, ``log_prob`` (of the best alignment when greedy, of the text summed over
        its alignments with a beam), ``decoder``, ``summary``; ``alternatives`` with ``top_k > 1``."""
        if top_k > 1 and beam == 0:
            beam = max(8, top_k)
        records = []
        for p, hyps in zip(paths, self.hypotheses(list(paths), beam, top_k), strict=True):
            text, score = hyps[0]
            rec = {"input": str(p), "text": text, "log_prob": round(score, 4), "decoder": f"beam {beam}" if beam
                   else "greedy"}  # fmt: skip
            if top_k > 1:
                rec["alternatives"] = [{"text": t, "log_prob": round(v, 4)} for t, v in hyps[1:]]
            alts = "; next: " + ", ".join(f"'{a['text']}'" for a in rec.get("alternatives", [])) if top_k > 1 else ""
            rec["summary"] = f"'{text}' ({rec['decoder']}, log p {score:.2f}){alts}"
            records.append(rec)
        return records

    def serve_hooks(self) -> dict[str, Any]:
        """``deepkit serve``: ``POST /transcribe`` takes an uploaded clip (checked and converted by the server) and
        answers its text; the page asks for an audio file and shows the transcript."""
        from deepkit.families.base import ServeHook

        def run(audio: Any, beam: int = 0) -> dict[str, Any]:
            text, score = self.hypotheses([audio], beam)[0][0]
            decoder = f"beam {beam}" if beam else "greedy"
            return {"text": text, "log_prob": round(score, 4), "decoder": decoder}

        rate = self.saved.sample_rate
        params = {"audio": {"type": "audio", "sample_rate": rate, "min_seconds": self.saved.min_seconds},
                  "beam": {"type": "integer", "default": 0, "minimum": 0, "maximum": 64}}  # fmt: skip
        return {"transcribe": ServeHook(run, params, description="the transcript of an audio clip")}

    def serve_page(self) -> dict[str, Any]:
        return {"input": "audio", "show": "text", "hook": "transcribe", "param": "audio"}


ASRFamily.commands = (transcribe,)
FAMILY = ASRFamily()
