"""rm-edit: Reflective Masking image editing with multimodal mask diffusion models."""

from __future__ import annotations

import importlib

from .layout import LUMINA_DIMOO, SHAPES, EditSequence, TokenLayout, build_edit_sequence, get_layout
from .transformer import LLaDATransformer

__version__ = "0.1.0"

# Consumers of the core (pipelines, training) load on first use, so `import rm_edit` stays light and the
# core modules never import them.
_LAZY = {
    "ReflectiveMaskingEditPipeline": "rm_edit.pipelines.pipeline_reflective_edit",
    "ReflectiveEditOutput": "rm_edit.pipelines.pipeline_reflective_edit",
    "load_default_pipeline": "rm_edit.pipelines.pipeline_reflective_edit",
    "ReflectiveMaskingScheduler": "rm_edit.schedulers",
    "LuminaRegenerateScheduler": "rm_edit.schedulers",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rm_edit' has no attribute {name!r}")


__all__ = [
    "LLaDATransformer", "TokenLayout", "EditSequence", "build_edit_sequence", "get_layout", "LUMINA_DIMOO",
    "SHAPES", *_LAZY,
]
