"""The whole default-model recipe: shapes data -> VQ -> codes -> base MDM -> {vanilla SFT, RM, RM+HER} ->
pipeline folders -> held-out figures and a model card.

    python -m rm_edit.training.recipe --work runs/recipe            # the shipped models (CPU, ~2-3 h)
    python -m rm_edit.training.recipe --work /tmp/smoke --smoke     # the same code paths in a minute

Every stage writes a ``.done`` marker and is skipped when re-run, and the MDM stages resume from their
checkpoints, so an interrupted recipe continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from rm_edit.layout import SHAPES_1K

from .train_mdm import MDMTrainConfig
from .train_mdm import train as train_mdm

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
STAGES = ("data", "vq", "codes", "base", "sft", "rm", "rm_her", "package", "evaluate")
MODELS = {  # run folder whose final weights ship -> (shipped folder name, default strategy)
    "base": ("shapes-base", "regenerate"),
    "sft": ("shapes-sft", "regenerate"),
    "rm_mix4": ("shapes-rm", "reflective"),
    "rm_her_mix4": ("shapes-rm-her", "reflective"),
}
# Reflective Masking post-training runs in phases: RM on all edit types (its own config), then the phases
# below (run-folder suffix, config, training data folders), shared by RM and RM+HER: twice a grounding phase
# on remove edits only from the untouched source (one instruction family: the model learns to find the shape
# the words name, by colour) followed by all edit types again (mostly first-reflect-step states); then twice a
# kind phase on the confusable edits (the named shape has a same-colour twin, so only the kind word tells them
# apart) followed by all edit types with the confusable edits mixed in, the second time with the keep loss
# weighed 3x (the twin's tokens must be kept while the named shape's are re-masked). On the mixed data alone
# grounding was not learned within 2,200 steps; see MODEL_CARD.md.
RM_LATER_PHASES = (("_ground", "mdm_shapes_rm_ground.json", ("train",)), ("_mix", "mdm_shapes_rm_mix.json", ("train",)),
                   ("_ground2", "mdm_shapes_rm_ground.json", ("train",)), ("_mix2", "mdm_shapes_rm_mix.json", ("train",)),
                   ("_kind", "mdm_shapes_rm_kind.json", ("train_confusable",)),
                   ("_mix3", "mdm_shapes_rm_mix.json", ("train", "train_confusable")),
                   ("_kind2", "mdm_shapes_rm_kind_keep3.json", ("train_confusable",)),
                   ("_mix4", "mdm_shapes_rm_mix_keep3.json", ("train", "train_confusable")))
# The reflective sampler the folders ship with (chosen on validation edits, see MODEL_CARD.md).
SHIPPED_SAMPLER = dict(num_turns=2, reveal_steps=1, remask_margin=0.5)
SMOKE_MODEL = dict(d_model=32, n_layers=1, n_heads=2, mlp_hidden_size=64)


class Recipe:
    def __init__(self, work: Path, smoke: bool, vq: str | None, threads: int, sizes: dict):
        self.work, self.smoke, self.vq_override, self.threads, self.sizes = work, smoke, vq, threads, sizes
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
            self.times[stage] = round(time.time() - t0, 1) + self.times.get(stage + "_partial", 0.0)
            self.times_path.write_text(json.dumps(self.times, indent=2))
            marker.write_text("ok\n")

    # ---- stages -------------------------------------------------------------------------------------
    def stage_data(self) -> None:
        from rm_edit.data.shapes import has_confusable_distractor, write_shapes_dataset

        for split in ("train", "val", "test"):
            write_shapes_dataset(self.work / "data" / split, self.sizes[split], split=split, progress=not self.smoke)
        # More training edits, after the training set's indices, whose named shape has a same-colour twin.
        write_shapes_dataset(self.work / "data" / "train_confusable", self.sizes["train_confusable"], split="train",
                             start=self.sizes["train"], select=has_confusable_distractor, progress=not self.smoke)

    @property
    def vq_dir(self) -> Path:
        return Path(self.vq_override) if self.vq_override else self.work / "vq" / "vq"

    def stage_vq(self) -> None:
        """The shapes tokenizer (configs/vq_shapes.json): a hand-set colour-preserving cell encoder inside a
        diffusers VQModel (``training/vq_cell_encoder.py``: a cell's latent is its 2x2-averaged pixels), a
        k-means codebook over those latents, and a spatial-norm decoder trained on the fixed codes.

        End-to-end VQ-GAN training collapsed to the mean image on this flat-coloured world within a CPU budget
        (GroupNorm normalises a flat colour field away); fixing the codes first and training only a MoVQ-style
        decoder learns quickly, and the codes are local by construction.
        """
        if self.vq_override:
            print(f"[recipe] using the image tokenizer at {self.vq_override}")
            return
        from .finetune_vq_decoder import finetune_decoder
        from .vq_cell_encoder import build_cell_pixel_vq

        cfg = json.loads((CONFIGS / "vq_shapes.json").read_text())
        out = self.work / "vq"
        build_cell_pixel_vq(cfg["codebook_size"], seed=cfg["seed"]).save_pretrained(out / "init")
        final = finetune_decoder(str(out / "init"), str(out / "decoder"), steps=2 if self.smoke else cfg["decoder_steps"],
                                 lr=cfg["decoder_lr"], seed=cfg["seed"], threads=self.threads or 1,
                                 kmeans_images=64 if self.smoke else cfg["kmeans_images"], progress=not self.smoke,
                                 eval_images=8 if self.smoke else 256)
        shutil.copytree(final, out / "vq", dirs_exist_ok=True)
        shutil.copy(out / "decoder" / "vq_metrics.json", out / "vq_metrics.json")

    def stage_codes(self) -> None:
        from diffusers import VQModel

        from rm_edit.data.pretokenize import pretokenize_manifest

        vq = VQModel.from_pretrained(self.vq_dir).eval()
        vq.rm_edit_cell_local = True  # the shapes tokenizer's codes are cell-local (rm_edit.vq.cell_latents)
        for split in ("train", "train_confusable", "val", "test"):
            pretokenize_manifest(self.work / "data" / split / "manifest.jsonl", vq,
                                 self.work / "data" / split / "codes.safetensors", progress=not self.smoke)

    def _mdm(self, stage: str, config: str, init: str | None, data: tuple[str, ...] = ("train",), **extra) -> None:
        """Train one MDM run from ``configs/<config>`` on the code caches of the ``data`` folders."""
        codes = [str(self.work / "data" / name / "codes.safetensors") for name in data]
        overrides = dict(out=str(self.work / stage), train_codes=codes[0], extra_codes=codes[1:] or None,
                         init_from=init, threads=self.threads, **extra)
        if init is None:  # a fresh model: seed its code rows from this run's codebook
            overrides["code_embedding_init"] = str(self.vq_dir)
        if self.smoke:
            overrides.update(model=SMOKE_MODEL, steps=4, batch_size=4, save_every=2, log_every=1, warmup_steps=1)
        cfg = MDMTrainConfig.from_file(CONFIGS / config, **overrides)
        train_mdm(cfg, progress=not self.smoke)

    def stage_base(self) -> None:
        self._mdm("base", "mdm_shapes_base.json", None)

    def stage_sft(self) -> None:
        self._mdm("sft", "mdm_shapes_sft.json", str(self.work / "base" / "final"))

    def _rm_phases(self, stage: str, first_config: str, **later_overrides) -> None:
        self._mdm(stage, first_config, str(self.work / "base" / "final"))
        init = self.work / stage / "final"
        for suffix, config, data in RM_LATER_PHASES:
            self._mdm(stage + suffix, config, str(init), data, **later_overrides)
            init = self.work / (stage + suffix) / "final"

    def stage_rm(self) -> None:
        self._rm_phases("rm", "mdm_shapes_rm.json")

    def stage_rm_her(self) -> None:
        self._rm_phases("rm_her", "mdm_shapes_rm_her.json", history=True, seed=3)

    def stage_package(self) -> None:
        for stage, (name, _) in MODELS.items():
            # Guidance off: on held-out val edits it lowered the small model's edit accuracy (0.21 -> 0.01 at
            # Lumina's 2.5 / 4.0); the scales stay available per call.
            package_pipeline(self.vq_dir, self.work / stage / "final", self.work / "models" / name,
                             guidance_scale=0.0, image_guidance_scale=0.0)
        if (self.work / "vq" / "vq_metrics.json").exists():
            shutil.copy(self.work / "vq" / "vq_metrics.json", self.work / "models" / "vq_metrics.json")

    def stage_evaluate(self) -> None:
        from .shapes_report import evaluate_shipped_models, plot_loss_curves, write_model_card

        n = self.sizes["eval"]
        results = evaluate_shipped_models(self.work / "models", n=n, progress=not self.smoke)
        (self.work / "models" / "heldout_results.json").write_text(json.dumps(results, indent=2))
        logs = {s: [self.work / (s + suffix) / "log.jsonl" for suffix, *_ in (("",), *RM_LATER_PHASES)]
                for s in ("rm", "rm_her")}
        plot_loss_curves(logs, self.work / "models" / "rm_losses.png")
        vq_metrics_path = self.work / "models" / "vq_metrics.json"
        vq_metrics = json.loads(vq_metrics_path.read_text()) if vq_metrics_path.exists() else None
        times = {k: v for k, v in self.times.items() if not k.endswith("_partial")}
        command = f"python -m rm_edit.training.recipe --work {self.work}" + (" --smoke" if self.smoke else "")
        write_model_card(self.work / "models", results, times, vq_metrics, command)


def package_pipeline(vq_dir: Path, transformer_dir: Path, out: Path, **pipeline_config) -> Path:
    """Assemble a diffusers pipeline folder (model_index.json, vqvae, transformer, tokenizer, scheduler)."""
    from diffusers import VQModel

    from rm_edit.data.text_tokenizer import build_shapes_tokenizer
    from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline
    from rm_edit.schedulers import ReflectiveMaskingScheduler
    from rm_edit.transformer import LLaDATransformer

    pipe = ReflectiveMaskingEditPipeline(
        vqvae=VQModel.from_pretrained(vq_dir),
        transformer=LLaDATransformer.from_pretrained(transformer_dir),
        tokenizer=build_shapes_tokenizer(),
        scheduler=ReflectiveMaskingScheduler(codebook_size=SHAPES_1K.codebook_size, **SHIPPED_SAMPLER),
        layout=SHAPES_1K.name, crop_multiple=8, max_crop_cells=64, vq_cell_local=True, **pipeline_config,
    )
    if out.exists():
        shutil.rmtree(out)
    # fp16 on disk keeps the four shipped folders small; the pipeline loads them back as fp32 on CPU.
    pipe.to(torch.float16).save_pretrained(out, safe_serialization=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="working folder (data, runs, models)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: exercises every stage in about a minute")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma list from {','.join(STAGES)}")
    parser.add_argument("--vq", help="use this trained VQModel folder instead of training one")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--train-size", type=int, default=12000)
    parser.add_argument("--eval-size", type=int, default=256)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stages {unknown}; choose from {', '.join(STAGES)}")
    sizes = dict(train=args.train_size, train_confusable=4000, val=256, test=512, eval=args.eval_size)
    if args.smoke:
        sizes = dict(train=24, train_confusable=6, val=4, test=8, eval=4)
    args.work.mkdir(parents=True, exist_ok=True)
    Recipe(args.work, args.smoke, args.vq, args.threads, sizes).run(stages)


if __name__ == "__main__":
    main()
