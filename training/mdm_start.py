"""What MDM training starts from: the init folder (pipeline, RM adapter, Lumina-DiMOO / LLaDA checkpoint or bare
transformer) loaded with the parts the trained model ships with (tokenizer, VQ, pipeline config), and a record of
it (path + weights hash) that the output folder keeps."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

import rm_edit
from rm_edit.transformer import LLaDATransformer

# The VQ of the shapes-grid layout when neither the init folder nor the config names one: the shipped tokenizer.
SHIPPED_MODELS = Path(rm_edit.__file__).resolve().parent / "models"
SHAPES_GRID_VQ = SHIPPED_MODELS / "shapes-base" / "vqvae"
SHAPES_WORLD = {"name": "shapes", "image_size": 64}


@dataclass
class Start:
    transformer: LLaDATransformer | None  # None: a fresh model is built by the trainer
    tokenizer: object
    vq: object | None  # a VQTokenizer (None: no VQ known; the trainer refuses before training)
    pipeline_config: dict = field(default_factory=dict)  # the init pipeline's config (layout, crops, guidance, world)
    scheduler: object | None = None  # the init pipeline's scheduler
    record: dict | None = None  # what training started from (written to the output's training.json)


def folder_kind(folder: Path) -> str:
    """"pipeline", "adapter", "llada" (a Lumina-DiMOO / LLaDA checkpoint as released) or "transformer"."""
    if (folder / "model_index.json").is_file():
        return "pipeline"
    if (folder / "rm_adapter.json").is_file():
        return "adapter"
    config = folder / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"init_from {folder}: not a pipeline, adapter, checkpoint or transformer folder")
    raw = json.loads(config.read_text())
    return "transformer" if raw.get("_class_name") == "LLaDATransformer" else "llada"


def _load_vq(folder: str | Path):
    from diffusers import VQModel

    from rm_edit.vq import as_vq_tokenizer

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"vq {folder}: not a saved VQModel folder (no config.json)")
    return as_vq_tokenizer(VQModel.from_pretrained(folder).eval())


def _load_tokenizer(folder: str | Path, layout_name: str):
    if layout_name == "lumina-dimoo":
        from rm_edit.pipelines.lumina_tokenizer import load_lumina_tokenizer

        return load_lumina_tokenizer(Path(folder))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def load_start(init_from: str | None, layout_name: str, tokenizer: str | None, vq: str | None,
               dtype: torch.dtype = torch.float32) -> Start:
    """The init model and what its output will ship with; ``tokenizer`` / ``vq`` folders override the init's."""
    start = Start(None, None, None)
    if init_from:
        folder = Path(init_from)
        if not folder.is_dir():
            raise FileNotFoundError(f"init_from {folder}: folder not found")
        kind = folder_kind(folder)
        if kind in ("pipeline", "adapter"):
            from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline

            pipe = ReflectiveMaskingEditPipeline.from_pretrained(folder, torch_dtype=dtype)
            config = {k: v for k, v in pipe.config.items() if not k.startswith("_") and not isinstance(v, (list, tuple))}
            start = Start(pipe.transformer, pipe.tokenizer, pipe.vqvae, config, pipe.scheduler)
        elif kind == "llada":
            from rm_edit.pipelines.lumina_dimoo import LUMINA_PIPELINE_CONFIG, load_lumina_dimoo

            pipe = load_lumina_dimoo(folder, torch_dtype=dtype)
            start = Start(pipe.transformer, pipe.tokenizer, pipe.vqvae, dict(LUMINA_PIPELINE_CONFIG), pipe.scheduler)
        else:
            start.transformer = LLaDATransformer.from_pretrained(folder, torch_dtype=dtype)
        start.transformer.train()
        from rm_edit.pipelines.adapter_folder import weights_sha256

        start.record = {"path": str(folder), "kind": kind, "weights_sha256": weights_sha256(folder),
                        "transformer_config": {k: v for k, v in start.transformer.config.items() if not k.startswith("_")}}
        if start.pipeline_config.get("layout", layout_name) != layout_name:
            raise ValueError(f"init_from {folder}: its layout is {start.pipeline_config['layout']!r}, "
                             f"the config's {layout_name!r}")
    if tokenizer:
        start.tokenizer = _load_tokenizer(tokenizer, layout_name)
    elif start.tokenizer is None:
        if not layout_name.startswith("shapes"):
            raise ValueError(f"layout {layout_name!r}: set tokenizer (or init_from a folder that has one)")
        from rm_edit.data.text_tokenizer import build_shapes_tokenizer

        start.tokenizer = build_shapes_tokenizer()
    if vq:
        start.vq = _load_vq(vq)
    elif start.vq is None and layout_name == "shapes-grid" and SHAPES_GRID_VQ.is_dir():
        start.vq = _load_vq(SHAPES_GRID_VQ)
    return start
