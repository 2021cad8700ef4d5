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
from rm_edit.pipelines.default_model import DEFAULT_MODEL as DEFAULT  # the folder the README's picture shows

from .train_mdm import MDMTrainConfig
from .train_mdm import train as train_mdm

STAGES = ("codes", "vq", "vq_sharpen", "base", "sft", "rm", "rm_her", "rm_lora", "package", "evaluate")
# run folder -> (shipped folder, RM post-trained: its default sampler is reflective, else regenerate)
MODELS = {"base": ("shapes-base", False), "sft": ("shapes-sft", False), "rm": ("shapes-rm", True),
          "rm_her": ("shapes-rm-her", True), "rm_lora": ("shapes-rm-lora", True)}
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
            # Re-read first: a stage run in another process meanwhile (recipes resume stage by stage) keeps its time.
            done = json.loads(self.times_path.read_text()) if self.times_path.exists() else {}
            self.times = {**self.times, **done, stage: round(time.time() - t0, 1)}
            self.times_path.write_text(json.dumps(self.times, indent=2))
            marker.write_text("ok\n")

    def adopt_base(self, folder: Path) -> None:
        """Post-train from an already trained base pipeline folder (e.g. ``rm_edit/models/shapes-base``): its
        transformer and image tokenizer stand in for the ``vq``, ``vq_sharpen`` and ``base`` stages, recorded in
        ``base/adopted.json`` (the folder and its weights' sha256, which every post-training's record repeats)."""
        from rm_edit.adapters import weights_sha256

        if (self.work / "base.done").exists():
            raise FileExistsError(f"{self.work}: has a base already; --base-from needs a fresh work folder")
        if not (folder / "transformer").is_dir() or not (folder / "vqvae").is_dir():
            raise FileNotFoundError(f"--base-from {folder}: not a pipeline folder (needs transformer/ and vqvae/)")
        shutil.copytree(folder, self.work / "base" / "final")
        shutil.copytree(folder / "vqvae", self.vq_dir)
        if (folder.parent / "vq_metrics.json").exists():  # shipped beside the models; the package stage copies it
            shutil.copy(folder.parent / "vq_metrics.json", self.vq_dir.parent / "vq_metrics.json")
        record = {"base_from": str(folder), "weights_sha256": weights_sha256(folder)}
        (self.work / "base" / "adopted.json").write_text(json.dumps(record, indent=2))
        for stage in ("vq", "vq_sharpen", "base"):
            (self.work / f"{stage}.done").write_text(f"adopted from {folder}\n")

    @property
    def vq_dir(self) -> Path:
        """The shipped tokenizer: the exact VQ after its decoder's shape-weighted second stage."""
        return self.work / "vq_sharpen" / "vq"

    # ---- stages -------------------------------------------------------------------------------------
    def stage_codes(self) -> None:
        """Training and validation data as code caches, straight from the world's scenes (exact codes): edits of
        the whole language (all ten types) and as many text-to-image captions (what the base also learns)."""
        from rm_edit.data.shapes import EDIT_TYPES

        from .world_codes import write_world_code_cache

        for split in ("train", "val"):
            n = self.sizes[split] // 2
            write_world_code_cache(self.work / "codes" / f"{split}.safetensors", split, n, progress=not self.smoke,
                                   edit_types=EDIT_TYPES, captions=n)

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
                             warmup_steps=1, val_every=2, snapshot_every=2)
        train_mdm(MDMTrainConfig.from_file(config_path(config), **overrides), progress=not self.smoke)

    def stage_base(self) -> None:
        # The base MDM: Lumina-DiMOO's masked objective on edits and captions, with its held-out loss curve.
        self._mdm("base", "mdm_grid_base.json", None, val_codes=str(self.work / "codes" / "val.safetensors"))

    # Post-training, each from the same base, on the same edits (no captions), the same steps x batch.
    def stage_sft(self) -> None:
        self._mdm("sft", "mdm_grid_sft.json", str(self.work / "base" / "final"))

    def stage_rm(self) -> None:
        self._mdm("rm", "mdm_grid_rm.json", str(self.work / "base" / "final"))

    def stage_rm_her(self) -> None:
        self._mdm("rm_her", "mdm_grid_rm_her.json", str(self.work / "base" / "final"))

    def stage_rm_lora(self) -> None:
        # The LoRA recipe documented for Lumina-DiMOO (adapters + the [MASK] row), on the shapes base.
        self._mdm("rm_lora", "mdm_grid_rm_lora.json", str(self.work / "base" / "final"))

    def stage_package(self) -> None:
        """The trainers' folders, as they wrote them (records included), under models/; the LoRA adapter names
        its base beside it; base and SFT edit with their regenerate setting tuned on validation edits."""
        from .fair_comparison import tune_regenerate
        from .model_folders import copy_adapter_folder

        models = self.work / "models"
        tuned_path = self.work / "tuned_regenerate.json"
        tuned = json.loads(tuned_path.read_text()) if tuned_path.exists() else {}
        for stage in ("base", "sft"):  # each model's choice is kept as soon as it is made (the stage resumes)
            if stage not in tuned:
                tuned[stage] = tune_regenerate(self.work / stage / "final", 4 if self.smoke else 96, progress=not self.smoke)
                tuned_path.write_text(json.dumps(tuned, indent=2))
        for stage, (name, _) in MODELS.items():
            final, out = self.work / stage / "final", models / name
            if out.exists():
                shutil.rmtree(out)
            if stage == "rm_lora":
                copy_adapter_folder(final, out, f"../{MODELS['base'][0]}")
            else:
                shutil.copytree(final, out)
            if stage in tuned:
                set_regenerate_defaults(out, tuned[stage]["guidance_scale"], tuned[stage]["temperature"])
        shutil.copy(self.vq_dir.parent / "vq_metrics.json", models / "vq_metrics.json")

    def stage_evaluate(self) -> None:
        from .fair_comparison import main as fair_comparison
        from rm_edit.data.shapes import EDIT_TYPES

        from .grid_report import render_edit_grid, write_model_cards

        models = self.work / "models"
        n = self.sizes["eval"]
        fair_comparison(["--work", str(self.work), "--out", str(self.work / "comparison"), "--n", str(n),
                         "--n-val", str(4 if self.smoke else 96), "--n-curve", str(4 if self.smoke else 100),
                         "--assets", str(self.work / "assets"), "--threads", str(self.threads or 1)])
        render_edit_grid(models / DEFAULT, self.work / "edit_grid.png", start=self.sizes["grid_start"], n=10,
                         edit_types=EDIT_TYPES)  # the whole language the models were trained on
        comparison = json.loads((self.work / "comparison" / "results.json").read_text())
        results = {name: comparison[row] for name, row in SHIPPED_ROWS.items() if row in comparison}
        (models / "heldout_results.json").write_text(json.dumps(results, indent=2))
        command = f"python -m rm_edit.training.recipe --work {self.work}" + (" --smoke" if self.smoke else "")
        write_model_cards(models, results, self.times, json.loads((models / "vq_metrics.json").read_text()), command,
                          (self.work / "comparison" / "table.md").read_text())


# Each shipped folder's own figures: the comparison row of its own default sampler.
SHIPPED_ROWS = {"shapes-base": "base regenerate 16", "shapes-sft": "sft regenerate 16", "shapes-rm": "RM",
                "shapes-rm-her": "RM+HER", "shapes-rm-lora": "RM-LoRA (+HER)"}


def _update_json(path: Path, **fields) -> None:
    """Set ``fields`` in the JSON file at ``path`` (a folder's own defaults: its model index, its scheduler config)."""
    config = json.loads(path.read_text())
    config.update(fields)
    path.write_text(json.dumps(config, indent=2))


def set_regenerate_defaults(folder: Path, guidance_scale: float, temperature: float) -> None:
    """Record the tuned regenerate setting as the folder's own defaults (pipeline guidance, sampler temperature)."""
    _update_json(folder / "model_index.json", guidance_scale=guidance_scale)
    _update_json(folder / "scheduler" / "scheduler_config.json", temperature=temperature)


def set_reflective_defaults(folder: Path, reveal_steps: int, remask_margin: float = 0.0) -> None:
    """Record the tuned reveal steps per turn and re-mask margin as the folder's own reflective sampler default."""
    _update_json(folder / "scheduler" / "scheduler_config.json", reveal_steps=reveal_steps, remask_margin=remask_margin)


def recipe_parser(doc: str, stages: tuple[str, ...], work_help: str, smoke_help: str) -> argparse.ArgumentParser:
    """The command line every recipe shares: --work, --smoke, --stages (checked by :func:`selected_stages`), --threads."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help=work_help)
    parser.add_argument("--smoke", action="store_true", help=smoke_help)
    parser.add_argument("--stages", default=",".join(stages), help=f"comma list from {','.join(stages)}")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per training process")
    return parser


def selected_stages(parser: argparse.ArgumentParser, args: argparse.Namespace, stages: tuple[str, ...]) -> list[str]:
    """The stages asked for, in the order given (an unknown name: the parser's one-line error); sets --threads."""
    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(stages))
    if unknown:
        parser.error(f"unknown stages {unknown}; choose from {', '.join(stages)}")
    return chosen


def main(argv: list[str] | None = None) -> None:
    parser = recipe_parser(__doc__, STAGES, "working folder (codes, runs, models)",
                           "tiny sizes: exercises every stage in about a minute")
    parser.add_argument("--train-size", type=int, default=300_000)
    parser.add_argument("--eval-size", type=int, default=500, help="test edits per row of the comparison (default 500)")
    parser.add_argument("--base-from", type=Path, default=None,
                        help="post-train from this trained base pipeline folder (skips the vq, vq_sharpen, base stages)")
    args = parser.parse_args(argv)
    stages = selected_stages(parser, args, STAGES)
    sizes = dict(train=args.train_size, val=2000, eval=args.eval_size, grid_start=5000)
    if args.smoke:
        sizes = dict(train=24, val=4, eval=4, grid_start=5000)
    args.work.mkdir(parents=True, exist_ok=True)
    recipe = Recipe(args.work, args.smoke, args.threads, sizes)
    if args.base_from:
        recipe.adopt_base(args.base_from)
    recipe.run(stages)


if __name__ == "__main__":
    main()
