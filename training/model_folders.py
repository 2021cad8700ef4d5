"""The folders of MDM training: what it starts from and what it writes.

Start: the init folder (pipeline, RM adapter, Lumina-DiMOO / LLaDA checkpoint or bare transformer) loaded with the
parts the trained model ships with (tokenizer, VQ, pipeline config). Output: a complete pipeline folder (full
training) or an RM adapter folder naming its base (LoRA), each recording what it was trained as, so it loads with
``ReflectiveMaskingEditPipeline.from_pretrained`` and the sampler defaults follow the training without a
packaging step.

Records: the transformer config's ``rm_post_trained`` (reflective objective), ``history_reference`` with the
``history_alpha`` / ``history_decay`` it was trained with, the pipeline's ``world``, and ``training.json``
(the trainer's config, the init folder's path, kind, weights hash and transformer config, steps and examples).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

import rm_edit
from rm_edit.adapters import ADAPTER_INFO, save_rm_adapter, weights_sha256
from rm_edit.layout import TokenLayout
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
    if not Path(folder).is_dir():  # else transformers reads the path as a Hub repo id and fails with that
        raise FileNotFoundError(f"tokenizer {folder}: folder not found")
    if layout_name == "lumina-dimoo":
        from rm_edit.lumina_tokenizer import load_lumina_tokenizer

        return load_lumina_tokenizer(Path(folder))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def load_start(init_from: str | None, layout_name: str, tokenizer: str | None, vq: str | None,
               dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Start:
    """The init model and what its output will ship with; ``tokenizer`` / ``vq`` folders override the init's.
    ``device``: a LLaDA checkpoint loads straight onto it, one tensor at a time (no host copy of the model)."""
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

            pipe = load_lumina_dimoo(folder, torch_dtype=dtype, device=device)
            start = Start(pipe.transformer, pipe.tokenizer, pipe.vqvae, dict(LUMINA_PIPELINE_CONFIG), pipe.scheduler)
        else:
            start.transformer = LLaDATransformer.from_pretrained(folder, torch_dtype=dtype)
        start.transformer.train()
        start.record = {"path": str(folder), "kind": kind,
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


# ---- the output ----------------------------------------------------------------------------------------
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
                history_decay=float(cfg.history_decay) if her else None)


def output_scheduler(start: Start, cfg, layout: TokenLayout):
    """The sampler the folder edits with: reflective for an RM-trained model, else regenerate; the init's own
    when it is of that kind, else the layout's defaults; then the config's ``sampler`` overrides."""
    from rm_edit.schedulers import LuminaRegenerateScheduler, ReflectiveMaskingScheduler

    reflective = cfg.objective == "reflective"
    cls = ReflectiveMaskingScheduler if reflective else LuminaRegenerateScheduler
    if isinstance(start.scheduler, cls):
        config = {k: v for k, v in start.scheduler.config.items() if not k.startswith("_")}
    elif layout.name == "lumina-dimoo":
        from rm_edit.pipelines.lumina_checkpoint import lumina_regenerate_scheduler, lumina_scheduler

        config = dict((lumina_scheduler() if reflective else lumina_regenerate_scheduler()).config)
    else:
        config = dict(SHAPES_REFLECTIVE if reflective else SHAPES_REGENERATE)
    config = {k: v for k, v in {**config, **cfg.sampler}.items() if not k.startswith("_")}
    return cls(**{**config, "codebook_size": layout.codebook_size})


def output_pipeline_config(start: Start, cfg, layout: TokenLayout) -> dict:
    if layout.name == "lumina-dimoo":
        from rm_edit.pipelines.lumina_checkpoint import LUMINA_PIPELINE_CONFIG

        defaults = dict(LUMINA_PIPELINE_CONFIG)
    else:
        shapes = layout.name.startswith("shapes")
        # A shapes model knows one image size: smaller inputs are resized up onto its grid, as larger ones down
        # (a 32x32 scene read as 4x4 cells came back with its square erased).
        defaults = dict(SHAPES_PIPELINE, world=SHAPES_WORLD if shapes else None, crop_fill_budget=shapes)
    config = {**defaults, **start.pipeline_config, **cfg.pipeline, "layout": start.pipeline_config.get("layout", layout.name)}
    if cfg.world is not None:
        config["world"] = cfg.world
    return {k: v for k, v in config.items() if k in PIPELINE_KEYS}


def examples_with_init(folder: str | Path) -> int | None:
    """The examples a folder's weights have seen in all: its own run's and, down the chain of ``init_from``
    folders this project trained, theirs (a base trained in warm-restart cycles). None where the chain ends in a
    folder without a training record (a published checkpoint: what it saw is not known here)."""
    record_path = Path(folder) / TRAINING_RECORD
    if not record_path.is_file():
        return None
    record = json.loads(record_path.read_text())
    if "examples_with_init" in record:
        return record["examples_with_init"]
    init = record.get("init_from")
    earlier = 0 if init is None else examples_with_init(init["path"])
    return None if earlier is None else earlier + record["examples"]


def training_record(cfg, start: Start, steps_done: int, processes: int) -> dict:
    """training.json: the config, what training started from (with its weights' hash) and how much it saw, alone
    and with what its init saw (``examples_with_init``; None when that is not known)."""
    if start.record is not None and "weights_sha256" not in start.record:  # once per run (an 8B base: ~16 GB to read)
        start.record["weights_sha256"] = weights_sha256(start.record["path"])
    init = None if start.record is None else dict(start.record)
    examples = steps_done * cfg.batch_size * cfg.grad_accum * processes
    earlier = 0 if init is None else examples_with_init(init["path"])
    return {
        "trainer": "rm_edit.training.train_mdm", "kind": "lora" if cfg.lora_rank else "full",
        "init_from": init, "steps": steps_done, "examples": examples,
        "examples_with_init": None if earlier is None else earlier + examples, "processes": processes,
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
    folder = Path(save_rm_adapter(transformer, folder, state_dict=state_dict))
    info = json.loads((folder / ADAPTER_INFO).read_text())
    info.update(base_model=base_reference(cfg), base_weights_sha256=record["init_from"]["weights_sha256"],
                transformer_config=trained_flags(cfg), pipeline=output_pipeline_config(start, cfg, layout))
    (folder / ADAPTER_INFO).write_text(json.dumps(info, indent=2))
    output_scheduler(start, cfg, layout).save_pretrained(folder / "scheduler")
    (folder / TRAINING_RECORD).write_text(json.dumps(record, indent=2, default=str))
    return folder


def copy_adapter_folder(adapter: Path, out: Path, base_reference: str) -> Path:
    """Copy an adapter folder to ``out`` naming its base as ``base_reference`` (e.g. ``"../shapes-base"`` for a
    folder shipped beside its base: it then resolves wherever the pair is copied); the recorded base weights hash
    is kept, so the base must be the same bytes it was trained on."""
    import shutil

    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(adapter, out)
    info = json.loads((out / ADAPTER_INFO).read_text())
    info["base_model"] = base_reference
    (out / ADAPTER_INFO).write_text(json.dumps(info, indent=2))
    return out
