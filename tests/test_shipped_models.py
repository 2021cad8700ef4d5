"""The shipped shapes models: one architecture post-trained from one base, each folder recording what it was
trained as, and the RM-LoRA adapter folder usable exactly like the others (``from_pretrained`` and the CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rm_edit.metrics import edit_success

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "rm_edit" / "models"
FULL = ("shapes-base", "shapes-sft", "shapes-rm", "shapes-rm-her")
# What may differ between post-trained folders of one architecture: the flags saying how each was trained.
TRAINING_FLAGS = {"rm_post_trained", "history_reference", "history_alpha", "history_decay", "_name_or_path"}


def _config(name: str) -> dict:
    return json.loads((MODELS / name / "transformer" / "config.json").read_text())


def _folder_sha256(folder: Path) -> str:
    """The documented record of a base's weights, written out here: sha256 over every ``*.safetensors`` under
    the folder in path order, each file's relative path then its bytes."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.safetensors")):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_every_full_folder_has_the_base_architecture():
    base = {k: v for k, v in _config("shapes-base").items() if k not in TRAINING_FLAGS}
    assert base["d_model"] == 128 and base["n_layers"] == 4 and base["mlp_hidden_size"] == 512
    assert base["grid_position_size"] == 8
    for name in FULL[1:]:
        assert {k: v for k, v in _config(name).items() if k not in TRAINING_FLAGS} == base, name


def test_each_folder_records_its_training_and_its_base():
    expected = {"shapes-base": (False, False), "shapes-sft": (False, False), "shapes-rm": (True, False),
                "shapes-rm-her": (True, True)}
    base_weights = _folder_sha256(MODELS / "shapes-base")
    for name, (rm, her) in expected.items():
        config = _config(name)
        assert (config["rm_post_trained"], config["history_reference"]) == (rm, her), name
        record = json.loads((MODELS / name / "training.json").read_text())
        if name != "shapes-base":  # post-trained from the shipped base's exact weights
            assert record["init_from"]["weights_sha256"] == base_weights, name
    adapter = json.loads((MODELS / "shapes-rm-lora" / "rm_adapter.json").read_text())
    assert adapter["base_model"] == "../shapes-base" and adapter["base_weights_sha256"] == base_weights
    assert adapter["transformer_config"]["rm_post_trained"] is True
    assert adapter["transformer_config"]["history_reference"] is True


def test_post_training_used_the_same_examples_for_every_model():
    """Equal cost: SFT, RM, RM+HER and RM-LoRA each saw the same steps x batch, a quarter of the base's at most."""
    def examples(name: str) -> int:
        record = json.loads((MODELS / name / "training.json").read_text())
        assert record["examples"] == record["steps"] * record["config"]["batch_size"], name
        return record["examples"]

    post = {name: examples(name) for name in ("shapes-sft", "shapes-rm", "shapes-rm-her", "shapes-rm-lora")}
    assert len(set(post.values())) == 1, post
    assert 4 * next(iter(post.values())) <= examples("shapes-base")


@pytest.fixture(scope="module")
def lora_pipe():
    from rm_edit.pipelines import ReflectiveMaskingEditPipeline

    torch.set_num_threads(2)
    return ReflectiveMaskingEditPipeline.from_pretrained(str(MODELS / "shapes-rm-lora"))


def test_lora_folder_loads_as_a_reflective_pipeline_with_history_reference(lora_pipe):
    assert lora_pipe.transformer.config.rm_post_trained is True
    assert lora_pipe.transformer.config.history_reference is True
    assert lora_pipe.scheduler.strategy == "reflective"


def test_lora_folder_edits_the_readme_example_through_the_cli(tmp_path):
    from rm_edit.cli import main

    out = tmp_path / "edited.png"
    rc = main(["edit", str(ROOT / "assets" / "example.png"), "turn the green square red", "--model",
               str(MODELS / "shapes-rm-lora"), "--out", str(out)])
    assert rc == 0 and out.is_file()
    source = np.asarray(Image.open(ROOT / "assets" / "example.png").convert("RGB"))
    target = np.asarray(Image.open(ROOT / "assets" / "example_target.png").convert("RGB"))
    edited = np.asarray(Image.open(out).convert("RGB"))
    assert edit_success(source, edited, target).success
    # By hand: the small square's centre in cell (0, 0) is now red (220, 30, 35); the yellow square's cells stay.
    assert np.abs(edited[3:5, 3:5].astype(int) - (220, 30, 35)).max() <= 12
    assert (edited[48:64, 48:64] == source[48:64, 48:64]).all()


def test_lora_folder_runs_a_batch_of_fresh_test_edits(tmp_path):
    """`rm-edit data shapes` writes fresh test edits (indices 9,000+, the classic five: the CLI's default world);
    `rm-edit batch --model shapes-rm-lora` edits them all, each right in pixels against its exact target."""
    from rm_edit.cli import main

    data, out = tmp_path / "data", tmp_path / "out"
    assert main(["data", "shapes", "--out", str(data), "--n", "6", "--split", "test", "--start", "9000"]) == 0
    assert main(["batch", str(data / "manifest.jsonl"), "--out", str(out), "--model", str(MODELS / "shapes-rm-lora"),
                 "--no-progress"]) == 0
    items = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    assert len(items) == 6
    for item in items:
        source = np.asarray(Image.open(data / item["source"]).convert("RGB"))
        target = np.asarray(Image.open(data / item["target"]).convert("RGB"))
        edited = np.asarray(Image.open(out / f"{item['id']}.png").convert("RGB"))
        assert edit_success(source, edited, target).success, (item["id"], item["instruction"])


def test_every_shapes_folder_resizes_a_small_scene_up_onto_its_grid_and_edits_it(lora_pipe, tmp_path, capsys):
    """A 32x32 copy of the README example, read at its own size, was 4x4 cells (a grid no shapes model saw) and
    came back with the green square erased. Every shapes folder resizes smaller inputs up onto its 8x8 grid (as
    larger ones down), says the image is small, and edits it; the output has the input's size."""
    from rm_edit.cli import main

    for name in FULL:
        assert json.loads((MODELS / name / "model_index.json").read_text())["crop_fill_budget"] is True, name
    assert lora_pipe.image_processor.config.fill_budget is True
    small, out = tmp_path / "small.png", tmp_path / "edited.png"
    Image.open(ROOT / "assets" / "example.png").convert("RGB").resize((32, 32), Image.Resampling.BICUBIC).save(small)
    assert main(["edit", str(small), "turn the green square red", "--out", str(out)]) == 0
    assert "image 0 is 32x32, smaller than the 64x64 images the shapes model was trained on" in capsys.readouterr().err
    edited = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert edited.shape == (32, 32, 3)
    # By hand: the green square spans pixels 2-13 of 64, so 1-6 of 32; its middle is now red (220, 30, 35); the
    # yellow square (245, 205, 20) at the bottom right (pixels 50-61 of 64: 25-30 of 32) stays.
    assert np.abs(edited[3:5, 3:5] - (220, 30, 35)).max() <= 30
    assert np.abs(edited[27:29, 27:29] - (245, 205, 20)).max() <= 30
