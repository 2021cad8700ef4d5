"""rm-edit: Reflective Masking image editing with multimodal mask diffusion models."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Everything loads on first use, so `import rm_edit` (and `rm-edit --help`) does not import torch, and the
# core modules never import their consumers (pipelines, training).
_LAZY = {
    **{name: "rm_edit.layout" for name in ("LUMINA_DIMOO", "SHAPES", "EditSequence", "TokenLayout",
                                           "build_edit_sequence", "get_layout")},
    "LLaDATransformer": "rm_edit.transformer",
    "ReflectiveMaskingEditPipeline": "rm_edit.pipelines.pipeline_reflective_edit",
    "ReflectiveEditOutput": "rm_edit.pipelines.pipeline_reflective_edit",
    "load_default_pipeline": "rm_edit.pipelines.default_model",
    "ReflectiveMaskingScheduler": "rm_edit.schedulers",
    "LuminaRegenerateScheduler": "rm_edit.schedulers",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rm_edit' has no attribute {name!r}")


__all__ = [*_LAZY]
