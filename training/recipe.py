"""The whole default-model recipe: world codes -> exact VQ -> base MDM -> vanilla SFT; RM; RM+HER ->
pipeline folders -> held-out figures, model cards and the README's picture.

    python -m rm_edit.training.recipe --work runs/recipe            # the shipped models (2 CPU cores)
    python -m rm_edit.training.recipe --work /tmp/smoke --smoke     # the same code paths in a minute

Every stage writes a ``.done`` marker and is skipped when re-run, and the training stages resume from their
checkpoints, so an interrupted recipe continues where it stopped (run it in stages of at most two hours).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from rm_edit.configs import path as config_path
from rm_edit.layout import SHAPES_GRID

from .train_mdm import MDMTrainConfig
from .train_mdm import train as train_mdm

STAGES = ("codes", "vq", "vq_sharpen", "base", "sft", "rm", "rm_her", "package", "evaluate")
# run folder -> (shipped folder, RM post-trained: its default sampler is reflective, else regenerate)
MODELS = {"base": ("shapes-base", False), "sft": ("shapes-sft", False), "rm": ("shapes-rm", True),
          "rm_her": ("shapes-rm-her", True)}
DEFAULT = "shapes-rm-her"  # the folder the README's picture shows (rm_edit's default model)
# The samplers the folders ship with. Reflective: turn 1 re-masks what the edit needs and reveals it in one
# pass; turn 2 finds nothing wrong and stops (3 forward passes). Regenerate: 16 steps from all [MASK].
SHIPPED_REFLECTIVE = dict(num_turns=2, reveal_steps=1, remask_margin=0.0, temperature=0.0)
SHIPPED_REGENERATE = dict(num_inference_steps=16, temperature=0.0)
SMOKE_MODEL = dict(d_model=32, n_layers=1, n_heads=2, mlp_hidden_size=64)


class Recipe:
    def __init__(self, work: Path, smoke: bool, threads: int, sizes: dict):
        self.work, self.smoke, self.threads, self.sizes = work, smoke, threads, sizes
        self.times_path = work / "stage_times.json"
        self.times = json.loads(self.times_path.read_text()) if self.times_path.exists() else {}

    def run(self, stages: list[str]) -> None:
        for stage in stages:
            marker = self.work / f"{stage}.done"
            if marker.exists():
                print(f"[recipe] {stage}: done already")
                continue
            print(f"[recipe] {stage} ...", flush=True)
            t0 = time.time()
            getattr(self, f"stage_{stage}")()
            self.times[stage] = round(time.time() - t0, 1)
            self.times_path.write_text(json.dumps(self.times, indent=2))
            marker.write_text("ok\n")

    @property
    def vq_dir(self) -> Path:
        """The shipped tokenizer: the exact VQ after its decoder's shape-weighted second stage."""
        return self.work / "vq_sharpen" / "vq"

    # ---- stages -------------------------------------------------------------------------------------
    def stage_codes(self) -> None:
        """Training and validation edits as code caches, straight from the world's scenes (exact codes)."""
        from .world_codes import write_world_code_cache

        for split in ("train", "val"):
            write_world_code_cache(self.work / "codes" / f"{split}.safetensors", split, self.sizes[split],
                                   progress=not self.smoke)

    def stage_vq(self) -> None:
        """The exact tokenizer (``exact_vq``): canonical-cell codebook, decoder trained on the fixed codes."""
        from .exact_vq import train_decoder

        cfg = json.loads(config_path("vq_grid.json").read_text())
        train_decoder(self.work / "vq", steps=2 if self.smoke else cfg["decoder_steps"], lr=cfg["decoder_lr"],
                      batch_examples=1 if self.smoke else cfg["batch_examples"], seed=cfg["seed"],
                      threads=self.threads or 1, progress=not self.smoke)

    def stage_vq_sharpen(self) -> None:
        """The decoder trained further with shape-cell pixels weighted up: decoding the exact target codes of
        held-out edits, its blur at small shapes' edges was what failed the pixel test (``oracle_edit_success``)."""
        from .exact_vq import train_decoder

        cfg = json.loads(config_path("vq_grid_sharpen.json").read_text())
        train_decoder(self.work / "vq_sharpen", steps=2 if self.smoke else cfg["decoder_steps"], lr=cfg["decoder_lr"],
                      batch_examples=1 if self.smoke else cfg["batch_examples"], seed=cfg["seed"],
                      threads=self.threads or 1, progress=not self.smoke, init_from=self.work / "vq" / "vq",
                      shape_weight=cfg["shape_weight"])

    def _mdm(self, stage: str, config: str, init: str | None, **extra) -> None:
        overrides = dict(out=str(self.work / stage), train_codes=str(self.work / "codes" / "train.safetensors"),
                         init_from=init, threads=self.threads, vq=str(self.vq_dir), **extra)
        if self.smoke:
            overrides.update(model=SMOKE_MODEL, steps=4, stop_after=None, batch_size=4, save_every=2, log_every=1,
                             warmup_steps=1)
        train_mdm(MDMTrainConfig.from_file(config_path(config), **overrides), progress=not self.smoke)

    def stage_base(self) -> None:
        self._mdm("base", "mdm_grid_base.json", None)

    def stage_sft(self) -> None:
        self._mdm("sft", "mdm_grid_sft.json", str(self.work / "base" / "final"))

    def stage_rm(self) -> None:
        # RM trained on the sampler's own passes, from scratch: started from the base (the masked objective)
        # RM did not learn to read the instruction within the budget (MODEL_CARD.md).
        self._mdm("rm", "mdm_grid_rm.json", None)

    def stage_rm_her(self) -> None:
        # The same recipe with History Reference: each pass sees exactly the history the sampler has recorded.
        self._mdm("rm_her", "mdm_grid_rm_her.json", None)

    def stage_package(self) -> None:
        for stage, (name, rm) in MODELS.items():
            package_pipeline(self.vq_dir, self.work / stage / "final", self.work / "models" / name, rm_post_trained=rm,
                             history_reference=stage.startswith("rm_her"))
        shutil.copy(self.vq_dir.parent / "vq_metrics.json", self.work / "models" / "vq_metrics.json")

    def stage_evaluate(self) -> None:
        from .grid_report import evaluate_models, render_edit_grid, write_model_cards

        models = self.work / "models"
        results = evaluate_models(models, self.work / "eval", n=self.sizes["eval"], progress=not self.smoke)
        (models / "heldout_results.json").write_text(json.dumps(results, indent=2))
        render_edit_grid(models / DEFAULT, self.work / "edit_grid.png", start=self.sizes["grid_start"], n=8)
        command = f"python -m rm_edit.training.recipe --work {self.work}" + (" --smoke" if self.smoke else "")
        write_model_cards(models, results, self.times, json.loads((models / "vq_metrics.json").read_text()), command)


def package_pipeline(vq_dir: Path, transformer_dir: Path, out: Path, rm_post_trained: bool,
                     history_reference: bool = False) -> Path:
    """Assemble a diffusers pipeline folder (model_index.json, vqvae, transformer, tokenizer, scheduler)."""
    from rm_edit.data.text_tokenizer import build_shapes_tokenizer
    from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline
    from rm_edit.schedulers import LuminaRegenerateScheduler, ReflectiveMaskingScheduler
    from rm_edit.transformer import LLaDATransformer
    from diffusers import VQModel

    from rm_edit.vq import as_vq_tokenizer

    # A trainer's final/ is a pipeline folder (older runs: a bare transformer folder).
    is_pipeline = (transformer_dir / "model_index.json").is_file()
    transformer = LLaDATransformer.from_pretrained(transformer_dir, subfolder="transformer" if is_pipeline else None)
    # Recorded so the pipeline picks the right defaults: reflective only for RM models, History Reference on
    # for a model trained with it.
    transformer.register_to_config(rm_post_trained=rm_post_trained, history_reference=history_reference)
    if rm_post_trained:
        scheduler = ReflectiveMaskingScheduler(codebook_size=SHAPES_GRID.codebook_size, **SHIPPED_REFLECTIVE)
    else:
        scheduler = LuminaRegenerateScheduler(codebook_size=SHAPES_GRID.codebook_size, **SHIPPED_REGENERATE)
    pipe = ReflectiveMaskingEditPipeline(
        vqvae=as_vq_tokenizer(VQModel.from_pretrained(vq_dir), cell_local=True), transformer=transformer,
        tokenizer=build_shapes_tokenizer(), scheduler=scheduler, layout=SHAPES_GRID.name, crop_multiple=8,
        max_crop_cells=64, guidance_scale=0.0, image_guidance_scale=0.0,
    )
    pipe.register_to_config(world={"name": "shapes", "image_size": 64})
    if out.exists():
        shutil.rmtree(out)
    # fp16 on disk keeps the shipped folders small; the pipeline loads them back as fp32 on CPU.
    pipe.to(torch.float16).save_pretrained(out, safe_serialization=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="working folder (codes, runs, models)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: exercises every stage in about a minute")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma list from {','.join(STAGES)}")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per training process")
    parser.add_argument("--train-size", type=int, default=300_000)
    parser.add_argument("--eval-size", type=int, default=500)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stages {unknown}; choose from {', '.join(STAGES)}")
    sizes = dict(train=args.train_size, val=2000, eval=args.eval_size, grid_start=5000)
    if args.smoke:
        sizes = dict(train=24, val=4, eval=4, grid_start=5000)
    args.work.mkdir(parents=True, exist_ok=True)
    Recipe(args.work, args.smoke, args.threads, sizes).run(stages)


if __name__ == "__main__":
    main()
