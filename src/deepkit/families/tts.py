"""Text to speech: a digit string ("4 1 7", "four one seven") spoken in a chosen FSDD voice.

Task ``text_to_speech``, data ``fsdd`` (DATA_ROOT/fsdd/recordings; training takes 5-49 of FSDD's official split,
``data.val_per_group`` of them per (speaker, digit) validate, takes 0-4 test; ``data.speakers`` limits the voices).
Every clip is one digit word: its phonemes (:mod:`deepkit.data.digit_text`), its speaker, and the log-mel frames of
the spoken part (silence trimmed at ``data.trim_db``) are one training example, so word durations come from the data
without an aligner. Model: ``duration_tts`` (:mod:`deepkit.models.duration_tts`: duration predictor, attention from
frames to phonemes inside the word, speaker embedding). A string is spoken word by word with the predicted
durations and ``pause_ms`` of silence between words; the vocoder is fast Griffin-Lim
(:mod:`deepkit.nn.griffinlim`: mel -> linear power by non-negative least squares, then Griffin-Lim with momentum).

Report: ``plots/alignment.png`` (frame-to-phoneme attention of a synthesized string per voice),
``plots/mels.png`` (true vs synthesized log-mel of test words), ``samples/<speaker>_417.wav``. Verb: ``speak``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deepkit.errors import ConfigError, DataError, ShapeError
from deepkit.families.base import Family, Finish, Predictor, Saved

if TYPE_CHECKING:
    import numpy as np
    import torch

    from deepkit.data.tts import WordData
    from deepkit.recipe import Recipe
    from deepkit.tasks.base import Task

TASKS = {
    "text_to_speech": "digit strings into speech in a chosen FSDD voice: duration-based acoustic model (speaker "
    "embedding, frame-to-phoneme attention) + Griffin-Lim vocoder"
}
DATASETS = {"fsdd": "Free Spoken Digit Dataset (DATA_ROOT/fsdd/recordings): 6 voices, one digit word per clip, 8 kHz"}


@dataclass
class TTSTaskConfig:
    """The ``task`` section of text-to-speech recipes."""

    name: str = "text_to_speech"
    duration_weight: float = 1.0  # weight of the log-duration squared error next to the mel L1


@dataclass
class TTSDataConfig:
    """The ``data`` section of text-to-speech recipes (the features are also the vocoder's)."""

    name: str = "fsdd"
    path: str | None = None  # default DATA_ROOT/fsdd/recordings
    speakers: list[str] | None = None  # the voices to learn (default: every speaker in the data)
    sample_rate: int = 8000
    n_fft: int = 256
    hop_length: int = 64
    n_mels: int = 40
    f_min: float = 0.0
    f_max: float | None = None
    eps: float = 1e-5  # log(mel + eps)
    trim_db: float = 30.0  # frames quieter than the loudest by more than this at both ends are cut
    val_per_group: int = 2
    split_seed: int = 0
    max_clips: int | None = None  # at most this many clips per split (quick runs)
    batch_size: int = 32
    eval_batch_size: int = 64


@dataclass
class TTSSaved(Saved):
    """What a TTS run keeps to speak: its voices, the feature settings (the vocoder inverts them) and the pause."""

    speakers: list[str]
    sample_rate: int
    features: dict[str, Any] = field(default_factory=dict)
    pause_ms: float = 120.0

    def meta(self) -> dict[str, Any]:
        return {"tts": {"speakers": self.speakers, "sample_rate": self.sample_rate, "features": self.features,
                        "pause_ms": self.pause_ms}}  # fmt: skip

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> TTSSaved:
        from deepkit.errors import CheckpointError

        d = meta.get("tts")
        if not d:
            raise CheckpointError("the checkpoint has no text-to-speech metadata (voices, features): not from deepkit")
        return cls(**d)


def _mel(cfg: TTSDataConfig | dict[str, Any], sample_rate: int) -> torch.nn.Module:
    from deepkit.nn.audio import MelSpectrogram

    f = cfg if isinstance(cfg, dict) else {k: getattr(cfg, k) for k in ("n_fft", "hop_length", "n_mels", "f_min",
                                                                          "f_max")}  # fmt: skip
    return MelSpectrogram(sample_rate, f["n_fft"], f["hop_length"], n_mels=f["n_mels"], f_min=f["f_min"],
                          f_max=f["f_max"])  # fmt: skip


def build_tts_data(cfg: TTSDataConfig, saved: TTSSaved | None = None) -> WordData:
    from deepkit.data import audio as da
    from deepkit.data.preprocess import Preprocessing
    from deepkit.data.sources import data_root
    from deepkit.data.tts import WordData, read_words
    from deepkit.families.speech import _spread

    if cfg.batch_size < 1 or cfg.eval_batch_size < 1:
        raise ConfigError(f"data.batch_size and eval_batch_size must be >= 1, got {cfg.batch_size}, "
                          f"{cfg.eval_batch_size}")  # fmt: skip
    if cfg.trim_db <= 0 or cfg.eps <= 0:
        raise ConfigError(f"data.trim_db and data.eps must be > 0, got {cfg.trim_db}, {cfg.eps}")
    root = Path(cfg.path).expanduser() if cfg.path else data_root() / "fsdd" / "recordings"
    clips = da.read_fsdd(root)
    known = sorted({c.speaker for c in clips})
    speakers = saved.speakers if saved else list(cfg.speakers or known)
    unknown = [s for s in speakers if s not in known]
    if unknown:
        raise ConfigError(f"data.speakers: {', '.join(unknown)} not in {root}; its speakers: {', '.join(known)}")
    clips = [c for c in clips if c.speaker in speakers]
    sets = da.fsdd_split(clips, None, cfg.val_per_group, cfg.split_seed)
    how = (f"FSDD official split: train = takes 5-49 less {cfg.val_per_group} per (speaker, digit) for validation "
           f"(seed {cfg.split_seed}), test = takes 0-4")  # fmt: skip
    reader = da.AudioReader(cfg.sample_rate, 0.05)
    mel = _mel(cfg, cfg.sample_rate)
    words = {k: read_words(_spread(v, cfg.max_clips), reader, mel, speakers, cfg.trim_db, cfg.eps)
             for k, v in sets.items() if v}  # fmt: skip
    if "train" not in words:
        raise DataError(f"{root}: no training clips for speakers {', '.join(speakers)}")
    feats = {"n_fft": cfg.n_fft, "hop_length": cfg.hop_length, "n_mels": cfg.n_mels, "f_min": cfg.f_min,
             "f_max": cfg.f_max, "eps": cfg.eps}  # fmt: skip
    frames = words["train"].frames.float()
    notes = [
        f"split: {how}",
        *(f"{k}: {len(s)} words" for k, s in words.items()),
        *reader.notes,
        f"words after trimming (trim_db={cfg.trim_db:g}): {frames.mean():.1f} frames on average "
        f"({frames.min():.0f}-{frames.max():.0f}), hop {1000 * cfg.hop_length / cfg.sample_rate:g} ms",
    ]
    prep = Preprocessing(kind="audio", input_shape=[0])
    return WordData(words, speakers, cfg.sample_rate, feats, cfg.batch_size, cfg.eval_batch_size, notes, how, prep)


def tts_model_names() -> list[str]:
    from deepkit.models import list_models
    from deepkit.models.duration_tts import DurationTTS
    from deepkit.models.registry import get_entry

    return [n for n in list_models() if issubclass(get_entry(n).cls, DurationTTS)]


def bind_tts_model(model_section: dict[str, Any], data: WordData) -> torch.nn.Module:
    from deepkit.data.digit_text import PHONEMES
    from deepkit.models.registry import create_model

    name = model_section["name"]
    if name not in tts_model_names():
        raise ShapeError(f"model '{name}' does not synthesize speech; task 'text_to_speech' needs one of "
                         f"{', '.join(tts_model_names())}")  # fmt: skip
    overrides = {k: v for k, v in model_section.items() if k != "name"}
    bound = {"num_phonemes": len(PHONEMES), "num_speakers": len(data.speakers), "n_mels": data.features["n_mels"]}
    for key, value in bound.items():
        if key in overrides and overrides[key] != value:
            raise ShapeError(f"model.{key}={overrides[key]} does not fit the data: expected {key}={value}")
        overrides[key] = value
    return create_model(name, **overrides)


def fit_mel_stats(model: torch.nn.Module, data: WordData) -> str:
    """The model's ``mel_mean``/``mel_std`` from every frame of the training words (per mel band)."""
    import torch

    frames = torch.cat(data.sets["train"].mels)
    model.mel_mean.copy_(frames.mean(0))
    model.mel_std.copy_(frames.std(0).clamp(min=1e-3))
    return f"log-mel normalization: mean/std per band fitted on the training words only ({len(frames):,} frames)"


class TTSFamily(Family):
    name = "tts"
    description = "text to speech: spoken digit strings in a chosen FSDD voice (duration model + Griffin-Lim)"
    tasks = TASKS

    def task_config(self, task: str) -> type:
        return TTSTaskConfig

    def data_config(self, task: str) -> type:
        return TTSDataConfig

    def datasets(self, task: str) -> dict[str, str]:
        return DATASETS

    def build_data(self, rec: Recipe, saved: Saved | None = None, given: Any = None) -> WordData:
        self.check_dataset(rec)
        if given is not None:
            return given
        return build_tts_data(rec.data, saved if isinstance(saved, TTSSaved) else None)

    def build_model(self, rec: Recipe, data: WordData) -> torch.nn.Module:
        return bind_tts_model(rec.model, data)

    def setup(self, rec: Recipe, model: torch.nn.Module, data: WordData, fresh: bool) -> list:
        if fresh:
            data.notes.append(fit_mel_stats(model, data))
        return []

    def build_task(self, rec: Recipe, model: torch.nn.Module, data: WordData) -> Task:
        from deepkit.tasks.tts import TextToSpeechTask

        if rec.task.duration_weight < 0:
            raise ConfigError(f"task.duration_weight must be >= 0, got {rec.task.duration_weight}")
        return TextToSpeechTask(model, rec.task.duration_weight)

    def saved(self, rec: Recipe, data: WordData) -> TTSSaved:
        return TTSSaved(list(data.speakers), data.sample_rate, dict(data.features))

    def load_saved(self, folder: Path, meta: dict[str, Any]) -> TTSSaved:
        return TTSSaved.from_meta(meta)

    def report(self, run: Finish) -> dict[str, Any]:
        return report_tts(run)

    def predictor(self, model: torch.nn.Module, task: str, saved: Saved, run_dir: Path | None) -> Predictor:
        return TTSPredictor(model, task, saved, run_dir)


# --- synthesis -------------------------------------------------------------------------------------------------------
class TTSPredictor(Predictor):
    """A trained TTS run: digit strings -> waveforms in one of its voices.

    Example:
        >>> p = deepkit.load("runs/fsdd_tts")                                  # doctest: +SKIP
        >>> p.speak_to_file("4 1 7", "jackson", "four17.wav")                   # doctest: +SKIP
    """

    kind = "text-to-speech run"
    verbs = {"speak": ("speak", "synthesize", "speak_to_file")}

    def __init__(self, model: torch.nn.Module, task_name: str, saved: TTSSaved, run_dir: Path | None = None):
        super().__init__(model, task_name, saved, run_dir)
        self.speakers = list(saved.speakers)
        self.sample_rate = saved.sample_rate
        self.mel = _mel(saved.features, saved.sample_rate)

    def _speaker_id(self, speaker: str) -> int:
        if speaker not in self.speakers:
            raise DataError(f"unknown speaker '{speaker}'; this run knows {', '.join(self.speakers)}")
        return self.speakers.index(speaker)

    def synthesize(
        self, text: str, speaker: str, pace: float = 1.0, pause_ms: float | None = None, n_iter: int = 60,
        seed: int = 0,
    ) -> dict[str, Any]:  # fmt: skip
        """Speak ``text`` (digits or digit words) in ``speaker``'s voice. Returns ``{"wave": (N,) float32 numpy,
        "sample_rate", "digits", "log_mel": (n_mels, T), "attention": (T, P) (zero across pauses), "phonemes",
        "words": [(digit, start_frame, stop_frame)], "seconds"}``."""
        import torch

        from deepkit.data.audio import pad_batch
        from deepkit.data.digit_text import PHONEMES, parse_digits, phoneme_ids
        from deepkit.nn.griffinlim import mel_to_audio

        digits = parse_digits(text)
        spk = self._speaker_id(speaker)
        if pace <= 0 or n_iter < 1:
            raise ConfigError(f"pace must be > 0 and n_iter >= 1, got {pace}, {n_iter}")
        f = self.saved.features
        hop, rate = f["hop_length"], self.sample_rate
        pause = round((self.saved.pause_ms if pause_ms is None else pause_ms) / 1000 * rate / hop)
        phon, _ = pad_batch([torch.tensor(phoneme_ids(d)) for d in digits])
        speakers = torch.full((len(digits),), spk, dtype=torch.long)
        with torch.no_grad():
            phon, speakers = phon.to(self.device), speakers.to(self.device)
            frames = self.model.predict_frames(phon, speakers, pace)
            mel, _, attn = self.model(phon, speakers, frames)
            log_mel = self.model.denormalize(mel).float().cpu()
        attn, frames = attn.float().cpu(), frames.cpu()
        n_mels, eps = log_mel.shape[-1], f["eps"]
        edge = torch.zeros(2, n_mels)
        pieces, words, spans, t = [edge], [], [], 2
        n_ph = [len(phoneme_ids(d)) for d in digits]
        for i, d in enumerate(digits):
            n = int(frames[i])
            pieces.append((log_mel[i, :n].exp() - eps).clamp(min=0))
            words.append((d, t, t + n))
            spans.append((t, sum(n_ph[:i])))
            t += n
            if i < len(digits) - 1:
                pieces.append(torch.zeros(pause, n_mels))
                t += pause
        pieces.append(edge)
        power = torch.cat(pieces).T  # (n_mels, T) mel power
        alignment = torch.zeros(power.shape[1], sum(n_ph))
        for i, ((start, p0), n) in enumerate(zip(spans, n_ph, strict=True)):
            alignment[start : start + int(frames[i]), p0 : p0 + n] = attn[i, : int(frames[i]), :n]
        wave = mel_to_audio(power, self.mel.filterbank, f["n_fft"], hop, n_iter, seed=seed)
        peak = float(wave.abs().max())
        if peak > 0.99:
            wave = wave * (0.99 / peak)
        phonemes = [PHONEMES[j] for d in digits for j in phoneme_ids(d)]
        return {"wave": wave.numpy().astype("float32"), "sample_rate": rate, "digits": digits,
                "log_mel": torch.log(power + eps), "attention": alignment, "phonemes": phonemes, "words": words,
                "seconds": len(wave) / rate}  # fmt: skip

    def speak(self, text: str, speaker: str, **options: Any) -> np.ndarray:
        """The waveform ``(N,)`` float32 of ``text`` in ``speaker``'s voice at :attr:`sample_rate` Hz."""
        return self.synthesize(text, speaker, **options)["wave"]

    def speak_to_file(self, text: str, speaker: str, out: str | Path, **options: Any) -> dict[str, Any]:
        """Write ``text`` in ``speaker``'s voice to the WAV file ``out`` (16-bit PCM); returns a summary."""
        import soundfile as sf

        out = Path(out)
        if out.suffix.lower() != ".wav":
            raise ConfigError(f"--out must name a .wav file, got {out}")
        r = self.synthesize(text, speaker, **options)
        out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(out), r["wave"], r["sample_rate"], subtype="PCM_16")
        return {"out": str(out), "speaker": speaker, "digits": r["digits"], "seconds": round(r["seconds"], 3),
                "sample_rate": r["sample_rate"]}  # fmt: skip


def speak(
    predictor: Any,
    text: Annotated[str, typer.Argument(help='Digits to say: "4 1 7", "417" or "four one seven".')],
    speaker: Annotated[str, typer.Option("--speaker", help="The voice (one of the run's FSDD speakers).")],
    out: Annotated[Path, typer.Option("--out", help="The WAV file to write.")] = Path("speech.wav"),
    pace: Annotated[float, typer.Option("--pace", help="Word durations times this (>1: slower).")] = 1.0,
    pause_ms: Annotated[
        float | None, typer.Option("--pause-ms", help="Silence between words (default: the run's).")
    ] = None,
    iters: Annotated[int, typer.Option("--iters", help="Griffin-Lim iterations.")] = 60,
    seed: Annotated[int, typer.Option("--seed", help="Griffin-Lim's initial phases.")] = 0,
) -> None:
    """Speak a digit string in one of the run's voices and write it as a WAV file.

    Example: deepkit speak runs/fsdd_tts "4 1 7" --speaker jackson --out four17.wav
    """
    r = predictor.speak_to_file(text, speaker, out, pace=pace, pause_ms=pause_ms, n_iter=iters, seed=seed)
    typer.echo(json.dumps(r))


# --- end of run ------------------------------------------------------------------------------------------------------
def report_tts(run: Finish, text: str = "4 1 7", n_words: int = 4) -> dict[str, Any]:
    """Alignment plot of ``text`` per voice, true vs synthesized log-mel of test words, and one WAV per voice."""
    import soundfile as sf
    import torch

    from deepkit.viz.audio import plot_alignments, plot_spectrograms

    data, model = run.data, run.task.model
    predictor = TTSPredictor(model, run.recipe.task.name, TTSSaved(list(data.speakers), data.sample_rate,
                                                                     dict(data.features)), run.run_dir)  # fmt: skip
    maps, titles, samples = [], [], []
    for speaker in data.speakers:
        r = predictor.synthesize(text, speaker)
        maps.append((r["attention"].numpy(), r["phonemes"]))
        titles.append(f"{speaker}: '{text}' ({r['seconds']:.2f} s)")
        path = run.samples / f"{speaker}_{''.join(map(str, r['digits']))}.wav"
        sf.write(str(path), r["wave"], r["sample_rate"], subtype="PCM_16")
        samples.append(path.name)
    hop_s = data.features["hop_length"] / data.sample_rate
    plot_alignments(maps, titles, run.plots / "alignment.png", hop_s, "frame-to-phoneme attention (pauses blank)")
    split = run.split
    ws = data.sets[split]
    pick = torch.linspace(0, len(ws) - 1, min(n_words, len(ws))).round().long().tolist()
    specs, names = [], []
    model.eval()
    with torch.no_grad():
        for i in pick:
            dev = model.mel_mean.device
            ph = torch.tensor([ws.phonemes[i]], device=dev)
            spk, frames = ws.speakers[i : i + 1].to(dev), ws.frames[i : i + 1].to(dev)
            mel = model.denormalize(model(ph, spk, frames)[0])[0].float().cpu()
            specs += [ws.mels[i].T.numpy(), mel.T.numpy()]
            c = ws.clips[i]
            names += [f"{c.path.name}: recorded", f"{c.path.name}: synthesized (true duration)"]
    plot_spectrograms(specs, names, run.plots / "mels.png", hop_s, f"log-mel, {split} words")
    return {"samples": samples, "alignment_text": text}


TTSFamily.commands = (speak,)
FAMILY = TTSFamily()
