"""``rm_edit.pipelines``: the diffusers pipelines of this project.

Importing it registers :class:`ReflectiveMaskingEditPipeline` where diffusers looks a saved folder's
``_class_name`` up (the ``diffusers`` module's namespace), so ``DiffusionPipeline.from_pretrained(folder)``
loads a folder this project saved with the installed code alone: no custom or downloaded pipeline code is ever run.
"""

from __future__ import annotations

from .pipeline_reflective_edit import ReflectiveMaskingEditPipeline


def register_with_diffusers() -> None:
    """diffusers resolves ``model_index.json``'s ``_class_name`` as an attribute of its own module."""
    import diffusers

    if getattr(diffusers, ReflectiveMaskingEditPipeline.__name__, None) is not ReflectiveMaskingEditPipeline:
        setattr(diffusers, ReflectiveMaskingEditPipeline.__name__, ReflectiveMaskingEditPipeline)


register_with_diffusers()

__all__ = ["ReflectiveMaskingEditPipeline"]
