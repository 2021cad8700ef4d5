"""The Sudoku world's models from one base, at equal cost: code caches -> exact VQ + word tokenizer -> base MDM ->
vanilla SFT; RM; RM+HER; RM+HER with decay -> model folders -> regenerate tuned on validation -> held-out
figures and the test-time scaling plot -> model cards.

    python -m rm_edit.training.sudoku_recipe --work runs/sudoku              # the real sizes (2 CPU cores)
    python -m rm_edit.training.sudoku_recipe --work /tmp/sudoku --smoke      # every stage on a tiny model

Stages (``--stages``, in order): ``codes`` (train / val caches straight from the boards, ``sudoku_codes``), ``vq``
(``sudoku_vq``: the decoder of the exact VQ, and the tokenizer), ``base`` (Lumina-DiMOO's masked objective on all
three tasks, held-out loss on val; ``--base-cycles`` (default 3) cosine cycles of 2,000 x 64, each a warm restart), then
from that base, each the same steps x batch (500 x 64, at most a quarter of the base's examples): ``sft`` (the masked objective), ``rm`` (Reflective Masking on the sampler's own passes), ``rm_her``
(with History Reference), ``rm_her_decay`` (History Reference with decay 0.7); ``package`` (the folders under
``WORK/models/sudoku-*``), ``tune`` (``sudoku_tuning``: base and SFT's regenerate guidance x temperature chosen
on validation boards, ``WORK/tuned_regenerate.json``, made the folders' defaults), ``tune_rm`` (the RM models'
reveal steps per turn x re-mask margin chosen the same way, ``WORK/tuned_reflective.json``), ``evaluate``
(``rm_edit.evaluation.sudoku_scaling``: every model on the test split, RM models at 1-8 turns, the others at
4-64 regenerate steps; ``WORK/scaling/scaling.md``, ``WORK/assets/sudoku_scaling.png``) and ``cards``
(``sudoku_cards``: each folder's ``README.md``, ``WORK/models/SUDOKU_MODEL_CARD.md`` and
``WORK/scaling/readme_section.md``, from those results). Configs: ``configs/vq_sudoku.json``,
``configs/mdm_sudoku_*.json``.

Each stage writes ``WORK/<stage>.done`` and is skipped when re-run; training resumes from its checkpoint, so an
interrupted recipe continues where it stopped. ``WORK/stage_times.json`` has each stage's wall time.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rm_edit.configs import path as config_path

from .model_folders import TRAINING_RECORD, examples_with_init
from .recipe import SMOKE_MODEL, Recipe, recipe_parser, selected_stages, set_reflective_defaults, set_regenerate_defaults
from .train_mdm import MDMTrainConfig
from .train_mdm import train as train_mdm

STAGES = ("codes", "vq", "base", "sft", "rm", "rm_her", "rm_her_decay", "package", "tune", "tune_rm", "evaluate",
          "cards")
# run folder -> (model folder, RM post-trained: its default sampler is reflective, else regenerate)
MODELS = {"base": ("sudoku-base", False), "sft": ("sudoku-sft", False), "rm": ("sudoku-rm", True),
          "rm_her": ("sudoku-rm-her", True), "rm_her_decay": ("sudoku-rm-her-decay", True)}
POST_TRAINING = {"sft": "mdm_sudoku_sft.json", "rm": "mdm_sudoku_rm.json", "rm_her": "mdm_sudoku_rm_her.json",
                 "rm_her_decay": "mdm_sudoku_rm_her_decay.json"}
REAL_SIZES = dict(train=200_000, val=2_000, eval=256, vq_heldout=64, turns=(1, 2, 4, 8), steps=(4, 8, 16, 32, 64),
                  tune=256, tune_steps=16,
                  reveal_grid=None)  # None: sudoku_tuning's reveal steps x re-mask margins
SMOKE_SIZES = dict(train=24, val=4, eval=3, vq_heldout=1, turns=(1, 2), steps=(2, 4), tune=2, tune_steps=2,
                   reveal_grid=((1, 0.0), (2, 0.0), (2, -1.0)))
# Every model's sampler setting is chosen on validation boards: guidance x temperature for the regenerate models,
# reveal steps per turn x re-mask margin for the RM models.
# The base: cosine cycles of mdm_sudoku_base.json's 2,000 steps, each a warm restart from the last one's weights
# (100 warm-up steps, a fresh optimizer). Held-out loss after one cycle 0.111 (still falling when the schedule ended),
# two 0.094, three 0.087 (RM from each, validation target score 0.840 / 0.879 / 0.914); 4 piloted (README).
BASE_CYCLES = 3  # the default of --base-cycles
RESTART_WARMUP_STEPS = 100
TUNED = ("base", "sft")
TUNED_RM = ("rm", "rm_her", "rm_her_decay")
PNG = "sudoku_scaling.png"


class SudokuRecipe(Recipe):
    @property
    def parts(self) -> Path:
        return self.work / "parts"

    @property
    def vq_dir(self) -> Path:
        return self.parts / "vqvae"

    def stage_codes(self) -> None:
        """Train and validation code caches of all three tasks, straight from the boards (exact codes)."""
        from .sudoku_codes import write_sudoku_code_cache

        for split in ("train", "val"):
            write_sudoku_code_cache(self.work / "codes" / f"{split}.safetensors", split, self.sizes[split],
                                    progress=not self.smoke)

    def stage_vq(self) -> None:
        """The exact VQ (Sudoku cells as its codebook; only the decoder trains) and the instructions' tokenizer."""
        from .sudoku_vq import write_sudoku_parts

        cfg = json.loads(config_path("vq_sudoku.json").read_text())
        write_sudoku_parts(self.parts, 2 if self.smoke else cfg["decoder_steps"], lr=cfg["decoder_lr"],
                           batch_examples=1 if self.smoke else cfg["batch_examples"], seed=cfg["seed"],
                           threads=self.threads or 1, progress=not self.smoke,
                           heldout_examples=self.sizes["vq_heldout"])

    @staticmethod
    def base_run(cycle: int) -> str:
        """The run folder of the base's ``cycle`` (1-based): ``base``, ``base_cycle2``, ..."""
        return "base" if cycle == 1 else f"base_cycle{cycle}"

    @property
    def base_cycles(self) -> int:
        return self.sizes.get("base_cycles", BASE_CYCLES)

    @property
    def base_final(self) -> Path:
        return self.work / self.base_run(self.base_cycles) / "final"

    def base_losses(self) -> list[float]:
        """The base's held-out loss at the end of each cycle run so far (its ``val_log.jsonl``'s last line)."""
        losses = []
        for cycle in range(1, self.base_cycles + 1):
            log = self.work / self.base_run(cycle) / "val_log.jsonl"
            lines = log.read_text().splitlines() if log.exists() else []
            if lines:
                losses.append(json.loads(lines[-1])["val_loss"])
        return losses

    def stage_base(self) -> None:
        """``--base-cycles`` cosine cycles, each from the last one's weights (a finished cycle resumes at its end)."""
        options = dict(tokenizer=str(self.parts / "tokenizer"), val_codes=str(self.work / "codes" / "val.safetensors"))
        self._mdm("base", "mdm_sudoku_base.json", None, **options)
        for cycle in range(2, self.base_cycles + 1):
            self._mdm(self.base_run(cycle), "mdm_sudoku_base.json", str(self.work / self.base_run(cycle - 1) / "final"),
                      warmup_steps=RESTART_WARMUP_STEPS, **options)

    # Post-training, each from the same base, on the same examples, the same steps x batch (this run's tokenizer
    # in place of the path a config names for training without the recipe).
    def _post_train(self, stage: str) -> None:
        self._mdm(stage, POST_TRAINING[stage], str(self.base_final), tokenizer=str(self.parts / "tokenizer"))

    def stage_sft(self) -> None:
        self._post_train("sft")

    def stage_rm(self) -> None:
        self._post_train("rm")

    def stage_rm_her(self) -> None:
        self._post_train("rm_her")

    def stage_rm_her_decay(self) -> None:
        self._post_train("rm_her_decay")

    @property
    def tuned_path(self) -> Path:
        return self.work / "tuned_regenerate.json"

    @property
    def tuned_rm_path(self) -> Path:
        return self.work / "tuned_reflective.json"

    def _apply_tuned(self) -> None:
        """The tuned settings as the folders' own defaults (regenerate: base, SFT; reveal steps: the RM models)."""
        tuned = json.loads(self.tuned_path.read_text()) if self.tuned_path.exists() else {}
        for name, setting in tuned.items():
            set_regenerate_defaults(self.work / "models" / name, setting["guidance_scale"], setting["temperature"])
        tuned = json.loads(self.tuned_rm_path.read_text()) if self.tuned_rm_path.exists() else {}
        for name, setting in tuned.items():
            set_reflective_defaults(self.work / "models" / name, setting["reveal_steps"], setting.get("remask_margin", 0.0))

    def stage_package(self) -> None:
        """The trainers' folders as they wrote them (training records included) under ``models/``, with the
        regenerate setting tuned already (a re-package keeps it)."""
        models = self.work / "models"
        for stage, (name, _) in MODELS.items():
            out = models / name
            if out.exists():
                shutil.rmtree(out)
            source = self.base_final if stage == "base" else self.work / stage / "final"
            shutil.copytree(source, out)
            # What each folder saw with its init, while the chain of run folders is here to read (the base's cycles).
            record = json.loads((out / TRAINING_RECORD).read_text())
            record["examples_with_init"] = examples_with_init(source)
            (out / TRAINING_RECORD).write_text(json.dumps(record, indent=2))
        shutil.copy(self.parts / "vq_metrics.json", models / "vq_metrics.json")
        self._apply_tuned()

    def _tune(self, stages: tuple[str, ...], tune, record: Path, **options) -> None:
        """Each stage's folder tuned on validation boards (``tune``: a ``sudoku_tuning`` function), the choices
        written to ``record`` and made the folders' defaults."""
        tuned = {}
        for stage in stages:
            name = MODELS[stage][0]
            tuned[name] = tune(self.work / "models" / name, self.work / "tune" / name, self.sizes["tune"],
                               batch_size=4 if self.smoke else 16, progress=not self.smoke, **options)
        record.write_text(json.dumps(tuned, indent=2))
        self._apply_tuned()

    def stage_tune(self) -> None:
        """Base and SFT: regenerate guidance x temperature chosen on validation boards (``sudoku_tuning``)."""
        from .sudoku_tuning import tune_regenerate

        self._tune(TUNED, tune_regenerate, self.tuned_path, steps=self.sizes["tune_steps"])

    def stage_tune_rm(self) -> None:
        """The RM models: reveal steps per turn x re-mask margin chosen on validation boards (``sudoku_tuning.tune_reflective``)."""
        from .sudoku_tuning import tune_reflective

        self._tune(TUNED_RM, tune_reflective, self.tuned_rm_path, grid=self.sizes["reveal_grid"])

    def stage_evaluate(self) -> None:
        from rm_edit.evaluation.sudoku_scaling import sudoku_scaling

        folders = [self.work / "models" / name for name, _ in MODELS.values()]
        sudoku_scaling(folders, self.work / "scaling", self.sizes["eval"], turns=self.sizes["turns"],
                       steps=self.sizes["steps"], png=self.work / "assets" / PNG,
                       batch_size=4 if self.smoke else 16, progress=not self.smoke)

    @property
    def command(self) -> str:
        cycles = "" if self.base_cycles == BASE_CYCLES else f" --base-cycles {self.base_cycles}"
        return f"python -m rm_edit.training.sudoku_recipe --work {self.work}{cycles}" + (" --smoke" if self.smoke else "")

    def stage_cards(self) -> None:
        """Each folder's card, ``models/SUDOKU_MODEL_CARD.md`` and ``scaling/readme_section.md``, from the tuning
        record, ``scaling/scaling.json`` (and any ``scaling_*/scaling.json`` on more test boards) and the stage times (the plot linked where it ships: ``assets/``)."""
        from .sudoku_cards import readme_section, write_sudoku_cards

        points = json.loads((self.work / "scaling" / "scaling.json").read_text())["points"]
        tuned = json.loads(self.tuned_path.read_text()) if self.tuned_path.exists() else {}
        tuned_rm = json.loads(self.tuned_rm_path.read_text()) if self.tuned_rm_path.exists() else {}
        vq = self.work / "models" / "vq_metrics.json"
        # Runs of chosen settings on more test boards (``sudoku_scaling --n 1024 --out WORK/scaling_1024``), if any.
        larger = [json.loads(f.read_text()) for f in sorted(self.work.glob("scaling_*/scaling.json"))]
        write_sudoku_cards(self.work / "models", points, self.times, self.command, tuned, f"../../assets/{PNG}",
                           json.loads(vq.read_text()) if vq.exists() else None, tuned_rm, self.base_losses(), larger)
        (self.work / "scaling" / "readme_section.md").write_text(readme_section(points, self.command, f"assets/{PNG}"))


def main(argv: list[str] | None = None) -> None:
    parser = recipe_parser(__doc__, STAGES, "working folder (codes, parts, runs, models)",
                           "tiny sizes: every stage on a tiny model")
    parser.add_argument("--train-size", type=int, help=f"training examples (default {REAL_SIZES['train']:,})")
    parser.add_argument("--eval-size", type=int, help=f"test boards (default {REAL_SIZES['eval']})")
    parser.add_argument("--base-cycles", type=int, help=f"the base's cosine cycles, each from the last one's weights "
                        f"(default {BASE_CYCLES}; the Sudoku folders shipped before the longer base used 1)")
    args = parser.parse_args(argv)
    stages = selected_stages(parser, args, STAGES)
    sizes = dict(SMOKE_SIZES if args.smoke else REAL_SIZES)
    sizes.update({k: v for k, v in (("train", args.train_size), ("eval", args.eval_size),
                                    ("base_cycles", args.base_cycles)) if v is not None})
    if sizes.get("base_cycles", BASE_CYCLES) < 1:
        parser.error(f"--base-cycles: at least 1, got {sizes['base_cycles']}")
    args.work.mkdir(parents=True, exist_ok=True)
    SudokuRecipe(args.work, args.smoke, args.threads, sizes).run(stages)


if __name__ == "__main__":
    main()
