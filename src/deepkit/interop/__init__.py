"""Weight import/export with other libraries' formats (Hugging Face checkpoint directories)."""

from deepkit.interop.hf import export_hf, is_hf_checkpoint, load_hf

__all__ = ["export_hf", "is_hf_checkpoint", "load_hf"]
