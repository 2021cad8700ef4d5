"""``rm_edit.pipelines``: the diffusers pipelines of this project.

``from rm_edit.pipelines import ReflectiveMaskingEditPipeline`` imports it on first use (so ``import
rm_edit.pipelines.lumina_dimoo`` etc. stay light).
"""

from __future__ import annotations

__all__ = ["ReflectiveMaskingEditPipeline"]


def __getattr__(name: str):
    if name == "ReflectiveMaskingEditPipeline":
        from .pipeline_reflective_edit import ReflectiveMaskingEditPipeline

        return ReflectiveMaskingEditPipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
