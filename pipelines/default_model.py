"""The models shipped inside the package (trained by this project on the shapes world)."""

from __future__ import annotations

from pathlib import Path

from .adapter_folder import is_adapter_folder
from .pipeline_reflective_edit import ReflectiveMaskingEditPipeline

DEFAULT_MODEL = "shapes-rm"  # the most accurate shipped model on validation edits (rm_edit/models/MODEL_CARD.md)


def shipped_models() -> dict[str, Path]:
    """{name: folder} of the pipeline and adapter folders shipped inside the package."""
    import rm_edit

    root = Path(rm_edit.__file__).parent / "models"
    return {p.name: p for p in sorted(root.glob("*")) if (p / "model_index.json").is_file() or is_adapter_folder(p)}


def load_default_pipeline(name: str = DEFAULT_MODEL, **kwargs) -> ReflectiveMaskingEditPipeline:
    """A model shipped inside the package (trained by this project on the shapes world): by default
    ``shapes-rm``, Reflective Masking post-trained from ``shapes-base`` (chosen on 1,000 validation edits:
    0.991 pixel edit success, null edits empty 0.981, against ``shapes-rm-her``'s 0.987 / 0.932);
    ``shapes-rm-her`` (with History Reference), ``shapes-rm-lora``, ``shapes-sft`` and ``shapes-base`` (regenerate
    baselines) are the others."""
    shipped = shipped_models()
    if name not in shipped:
        import rm_edit

        raise FileNotFoundError(f"no shipped model {name!r} in {Path(rm_edit.__file__).parent / 'models'}; "
                                f"available: {sorted(shipped)}")
    return ReflectiveMaskingEditPipeline.from_pretrained(shipped[name], **kwargs)
