"""Weight import/export with other libraries' formats (Hugging Face checkpoint directories)."""

from deepkit.interop.hf import export_hf, is_hf_checkpoint, load_hf
from deepkit.interop.wav2vec2 import load_wav2vec2, transcribe

__all__ = ["export_hf", "is_hf_checkpoint", "load_hf", "load_wav2vec2", "transcribe"]
