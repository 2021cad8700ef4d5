"""What MDM training writes: a complete pipeline folder (full training) or an RM adapter folder (LoRA), each
recording what it was trained as, so it loads with ``ReflectiveMaskingEditPipeline.from_pretrained`` and the
sampler defaults follow the training without a packaging step.

Records: the transformer config's ``rm_post_trained`` (reflective objective), ``history_reference`` with the
``history_alpha`` / ``history_decay`` it was trained with, the pipeline's ``world``, and ``training.json``
(the trainer's config, the init folder's path, kind, weights hash and transformer config, steps and examples).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from rm_edit.layout import TokenLayout
from rm_edit.transformer import LLaDATransformer

from .mdm_start import SHAPES_WORLD, SHIPPED_MODELS, Start

TRAINING_RECORD = "training.json"
# The shapes world's samplers (as the shipped folders): reflective turn 1 re-masks what the edit needs and
# reveals it in one pass, turn 2 finds nothing wrong and stops; regenerate: 16 argmax steps from all [MASK].
SHAPES_REFLECTIVE = dict(num_turns=2, reveal_steps=1, remask_margin=0.0, temperature=0.0)
SHAPES_REGENERATE = dict(num_inference_steps=16, temperature=0.0)
SHAPES_PIPELINE = dict(crop_multiple=8, max_crop_cells=64, guidance_scale=0.0, image_guidance_scale=0.0)
PIPELINE_KEYS = ("layout", "crop_multiple", "max_crop_cells", "guidance_scale", "image_guidance_scale",
                 "crop_fill_budget", "world")


def trained_flags(cfg) -> dict:
    """The transformer config entries a trainer records: what the samplers' defaults follow."""
    reflective = cfg.objective == "reflective"
    her = reflective and bool(cfg.history)
    return dict(rm_post_trained=reflective, history_reference=her,
                history_alpha=float(cfg.history_alpha) if her else None,
                history_decay=float(cfg.history_gamma) if her else None)


def output_scheduler(start: Start, cfg, layout: TokenLayout):
    """The sampler the folder edits with: reflective for an RM-trained model, else regenerate; the init's own
    when it is of that kind, else the layout's defaults; then the config's ``sampler`` overrides."""
    from rm_edit.schedulers import LuminaRegenerateScheduler, ReflectiveMaskingScheduler

    reflective = cfg.objective == "reflective"
    cls = ReflectiveMaskingScheduler if reflective else LuminaRegenerateScheduler
    if isinstance(start.scheduler, cls):
        config = {k: v for k, v in start.scheduler.config.items() if not k.startswith("_")}
    elif layout.name == "lumina-dimoo":
        from rm_edit.pipelines.lumina_dimoo import lumina_regenerate_scheduler, lumina_scheduler

        config = dict((lumina_scheduler() if reflective else lumina_regenerate_scheduler()).config)
    else:
        config = dict(SHAPES_REFLECTIVE if reflective else SHAPES_REGENERATE)
    config = {k: v for k, v in {**config, **cfg.sampler}.items() if not k.startswith("_")}
    return cls(**{**config, "codebook_size": layout.codebook_size})


def output_pipeline_config(start: Start, cfg, layout: TokenLayout) -> dict:
    if layout.name == "lumina-dimoo":
        from rm_edit.pipelines.lumina_dimoo import LUMINA_PIPELINE_CONFIG

        defaults = dict(LUMINA_PIPELINE_CONFIG)
    else:
        defaults = dict(SHAPES_PIPELINE, world=SHAPES_WORLD if layout.name.startswith("shapes") else None)
    config = {**defaults, **start.pipeline_config, **cfg.pipeline, "layout": start.pipeline_config.get("layout", layout.name)}
    if cfg.world is not None:
        config["world"] = cfg.world
    return {k: v for k, v in config.items() if k in PIPELINE_KEYS}


def training_record(cfg, start: Start, steps_done: int, processes: int) -> dict:
    return {
        "trainer": "rm_edit.training.train_mdm", "kind": "lora" if cfg.lora_rank else "full",
        "init_from": start.record, "steps": steps_done,
        "examples": steps_done * cfg.batch_size * cfg.grad_accum * processes, "processes": processes,
        "records": trained_flags(cfg), "config": asdict(cfg),
    }


def write_pipeline_folder(folder: Path, transformer: LLaDATransformer, start: Start, cfg, layout: TokenLayout,
                          record: dict) -> Path:
    """The trained transformer with the init's tokenizer and VQ as a pipeline folder (model_index.json, transformer/,
    tokenizer/, vqvae/, scheduler/) plus ``training.json``."""
    from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline

    transformer.register_to_config(**trained_flags(cfg))
    pipe = ReflectiveMaskingEditPipeline(vqvae=start.vq, transformer=transformer, tokenizer=start.tokenizer,
                                         scheduler=output_scheduler(start, cfg, layout),
                                         **output_pipeline_config(start, cfg, layout))
    folder = Path(folder)
    pipe.save_pretrained(folder, safe_serialization=True)
    (folder / TRAINING_RECORD).write_text(json.dumps(record, indent=2, default=str))
    return folder


def check_output_parts(start: Start, cfg) -> None:
    """Refuse before training when the output could not be a pipeline (no VQ to decode with)."""
    if start.vq is None:
        raise ValueError("no VQ for the output pipeline: set vq (the VQModel folder the codes were made with) "
                         "or init_from a pipeline folder")


def base_reference(cfg) -> str:
    """How an adapter names its base: ``cfg.base_reference``, else init_from, as ``rm_edit/models/NAME`` when it
    is a model shipped in the package (resolved against the installed package on load), else its absolute path."""
    if cfg.base_reference:
        return cfg.base_reference
    path = Path(cfg.init_from).resolve()
    shipped = SHIPPED_MODELS.resolve()
    if path.is_relative_to(shipped):
        return "rm_edit/models/" + path.relative_to(shipped).as_posix()
    return str(path)


def write_adapter_folder(folder: Path, transformer: LLaDATransformer, start: Start, cfg, layout: TokenLayout,
                         record: dict, state_dict=None) -> Path:
    """The LoRA adapter and [MASK] row (``rm_edit.adapters.save_rm_adapter``), with ``rm_adapter.json`` naming
    the base (``base_model``, its weights hash) and what loading records (``transformer_config``), the sampler it
    edits with (``scheduler/``), its pipeline config and ``training.json``."""
    from rm_edit.adapters import ADAPTER_INFO, save_rm_adapter

    folder = Path(save_rm_adapter(transformer, folder, state_dict=state_dict))
    info = json.loads((folder / ADAPTER_INFO).read_text())
    info.update(base_model=base_reference(cfg), base_weights_sha256=(start.record or {}).get("weights_sha256"),
                transformer_config=trained_flags(cfg), pipeline=output_pipeline_config(start, cfg, layout))
    (folder / ADAPTER_INFO).write_text(json.dumps(info, indent=2))
    output_scheduler(start, cfg, layout).save_pretrained(folder / "scheduler")
    (folder / TRAINING_RECORD).write_text(json.dumps(record, indent=2, default=str))
    return folder
