"""Lumina-DiMOO checkpoints: load the shipped folder as a :class:`ReflectiveMaskingEditPipeline`, or convert it.

A Lumina-DiMOO folder (REFERENCE.md section 1) holds LLaDA's ``config.json`` and safetensors shards with
``model.safetensors.index.json`` at the root, the text tokenizer files at the root, and aMUSEd's VQ-GAN as a
diffusers ``VQModel`` in ``vqvae/``. Nothing here runs remote code or unpickles anything.

    from rm_edit.pipelines.lumina_dimoo import load_lumina_dimoo
    pipe = load_lumina_dimoo("Lumina-DiMOO", device="cuda")   # bf16 on CUDA, fp32 on CPU
    out = pipe(image, "make the sky red")                     # the released model: Lumina's own sampler
    pipe = load_lumina_dimoo("Lumina-DiMOO", device="cuda", rm_adapter="runs/dimoo_rm/final")
    out = pipe(image, "make the sky red")                     # RM post-trained: reflective editing

    rm-edit convert lumina-dimoo SRC DST     # this project's pipeline format (model_index.json + subfolders)
    python -m rm_edit.pipelines.lumina_dimoo convert lumina-dimoo SRC DST   # the same

As released, Lumina-DiMOO never learned to predict [MASK], so reflective editing would return the source
unchanged: its pipeline samples with Lumina's own sampler (64 steps, temperature 1, one code left masked until
the last step) and refuses reflective editing with a message naming the fix, until an RM adapter is loaded
(``rm_adapter=``; train one with ``python -m rm_edit.training.lora_rm``).

Editing resolution is Lumina's rule: every input is resized (up or down) and centre-cropped onto its crop-size
frontier, multiples of 32 px with about 256 cells of 32x32 and aspect <= 4 (a 256x256 input too: 1024
codes, the VQ downsamples 16x); the edit comes back at the input's size. Weights load one tensor at a time
straight into the target device and dtype.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rm_edit.schedulers import LuminaRegenerateScheduler, ReflectiveMaskingScheduler

from .lumina_checkpoint import (LUMINA_PIPELINE_CONFIG, _check_folder, _checkpoint_dtype, default_dtype,
                                lumina_components, lumina_regenerate_scheduler, lumina_scheduler, stand_in_vq_config)
from .pipeline_reflective_edit import ReflectiveMaskingEditPipeline

__all__ = [
    "LUMINA_PIPELINE_CONFIG",
    "add_convert_parser",
    "convert_lumina_dimoo",
    "default_dtype",
    "load_lumina_dimoo",
    "lumina_regenerate_scheduler",
    "lumina_scheduler",
    "run_convert",
    "stand_in_vq_config",
]

def load_lumina_dimoo(
    folder: str | Path,
    torch_dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    vq_dtype: torch.dtype = torch.float32,
    scheduler: ReflectiveMaskingScheduler | LuminaRegenerateScheduler | None = None,
    rm_adapter: str | Path | None = None,
    merge_adapter: bool = True,
    compile: bool = False,
    **pipeline_config,
) -> ReflectiveMaskingEditPipeline:
    """A Lumina-DiMOO checkpoint folder as it ships -> :class:`ReflectiveMaskingEditPipeline` (the other arguments:
    :func:`rm_edit.pipelines.lumina_checkpoint.lumina_components`). ``compile``: ``torch.compile`` each transformer
    block (:meth:`rm_edit.LLaDATransformer.compile_blocks`) once the model is on ``device``."""
    pipe = ReflectiveMaskingEditPipeline(**lumina_components(folder, torch_dtype, device, vq_dtype, scheduler,
                                                             rm_adapter, merge_adapter, **pipeline_config))
    if device is not None:
        pipe.to(device)
    if compile:
        pipe.transformer.compile_blocks()
    return pipe


def convert_lumina_dimoo(
    src: str | Path, dst: str | Path, max_shard_size: str | int = "5GB", torch_dtype: torch.dtype | None = None
) -> Path:
    """Write a Lumina-DiMOO folder in this project's pipeline format (sharded safetensors + model_index.json).

    The weights keep the dtype they are stored in unless ``torch_dtype`` is given; the result loads with
    ``ReflectiveMaskingEditPipeline.from_pretrained(dst)``.
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise ValueError("convert: the destination must differ from the source")
    _check_folder(src)
    dtype = torch_dtype or _checkpoint_dtype(src)
    pipe = load_lumina_dimoo(src, torch_dtype=dtype, device="cpu")
    pipe.save_pretrained(str(dst), safe_serialization=True, max_shard_size=max_shard_size)
    return dst


# ---- command line -------------------------------------------------------------------------------------------
def add_convert_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``convert lumina-dimoo SRC DST`` on an argparse subparsers object (``rm-edit convert ...``)."""
    parser = subparsers.add_parser(
        "convert", help="convert a released checkpoint to this project's pipeline format",
        description="Convert a released checkpoint folder to this project's pipeline format (safetensors only).",
    )
    parser.add_argument("format", choices=["lumina-dimoo"], help="the source checkpoint's layout")
    parser.add_argument("src", help="checkpoint folder as released (config.json, shards, tokenizer, vqvae/)")
    parser.add_argument("dst", help="output folder (model_index.json + subfolders)")
    parser.add_argument("--max-shard-size", default="5GB", help="largest safetensors shard (default 5GB)")
    parser.add_argument("--dtype", choices=["stored", "bf16", "fp16", "fp32"], default="stored",
                        help="dtype of the written weights (default: as stored)")
    parser.set_defaults(func=run_convert)
    return parser


def run_convert(args: argparse.Namespace) -> int:
    dtypes = {"stored": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    dst = convert_lumina_dimoo(args.src, args.dst, max_shard_size=args.max_shard_size, torch_dtype=dtypes[args.dtype])
    print(f"wrote {dst} (load with ReflectiveMaskingEditPipeline.from_pretrained({str(dst)!r}))")
    return 0


# rm_edit.cli's lazy_command("rm_edit.pipelines.lumina_dimoo") looks these names up.
add_parser = add_convert_parser
run = run_convert


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rm_edit.pipelines.lumina_dimoo")
    add_convert_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
