"""What the MDM trainer writes loads as a pipeline, with no packaging step, and records what it was trained as:
full runs write a pipeline folder, LoRA runs an adapter folder naming its base (merged on load)."""

import json
import shutil

import PIL.Image
import pytest
import torch

from rm_edit.cli import main as cli
from rm_edit.data.pretokenize import pretokenize_manifest
from rm_edit.data.shapes import write_shapes_dataset
from rm_edit.pipelines import pipeline_reflective_edit as pipeline_module
from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline
from rm_edit.schedulers import LuminaRegenerateScheduler, ReflectiveMaskingScheduler
from rm_edit.vq import build_vq

TINY = dict(d_model=32, n_layers=1, n_heads=2, mlp_hidden_size=64)
COMMON = dict(model=TINY, steps=4, batch_size=4, warmup_steps=1, save_every=100, log_every=1, seed=0)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    manifest = write_shapes_dataset(root / "train", 16, split="train", progress=False)
    vq = build_vq(seed=0).eval()
    vq.save_pretrained(root / "vq")
    codes = pretokenize_manifest(manifest, vq, root / "codes.safetensors", batch_size=8, progress=False)
    return root, codes


def _train(root, codes, name, **config):
    path = root / f"{name}.json"
    path.write_text(json.dumps({**COMMON, **config}))
    before = torch.get_num_threads()
    try:
        assert cli(["train", "mdm", "--config", str(path), "--train-codes", str(codes), "--vq", str(root / "vq"),
                    "--out", str(root / name), "--no-progress", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(before)
    return root / name / "final"


@pytest.fixture(scope="module")
def folders(world):
    root, codes = world
    base = _train(root, codes, "base", objective="vanilla")
    her = _train(root, codes, "her", objective="reflective", history=True, history_alpha=3.0, history_decay=0.5,
                 init_from=str(base))
    lora = _train(root, codes, "lora", objective="reflective", init_from=str(base), lora_rank=4, lr=1e-2,
                  save_merged=True)
    return base, her, lora


@pytest.fixture(scope="module")
def image(world):
    return PIL.Image.open(world[0] / "train" / "images" / "train_000001_source.png").convert("RGB")


def test_a_vanilla_run_is_a_regenerate_pipeline_recorded_as_not_rm_post_trained(folders):
    base, _, _ = folders
    pipe = ReflectiveMaskingEditPipeline.from_pretrained(base)
    assert pipe.transformer.config.rm_post_trained is False and pipe.transformer.config.history_reference is False
    assert isinstance(pipe.scheduler, LuminaRegenerateScheduler)
    assert pipe.config.world == {"name": "shapes", "image_size": 64}
    record = json.loads((base / "training.json").read_text())
    assert record["init_from"] is None and record["kind"] == "full" and record["examples"] == 4 * 4
    assert record["examples_with_init"] == 4 * 4


def test_a_reflective_history_run_records_it_and_edits_with_history_by_default(folders, image, monkeypatch):
    base, her, _ = folders
    pipe = ReflectiveMaskingEditPipeline.from_pretrained(her)
    c = pipe.transformer.config
    assert (c.rm_post_trained, c.history_reference, c.history_alpha, c.history_decay) == (True, True, 3.0, 0.5)
    assert isinstance(pipe.scheduler, ReflectiveMaskingScheduler)
    record = json.loads((her / "training.json").read_text())
    assert record["init_from"]["path"] == str(base) and record["init_from"]["kind"] == "pipeline"
    assert len(record["init_from"]["weights_sha256"]) == 64 and record["init_from"]["transformer_config"]["d_model"] == 32
    assert record["examples"] == 4 * 4 and record["examples_with_init"] == 4 * 4 + 4 * 4  # its own and the base's

    built = []

    class Spy(pipeline_module.HistoryRecorder):
        def __init__(self, embedding, layout, batch, positions, alpha, decay, device=None):
            built.append((alpha, decay))
            super().__init__(embedding, layout, batch, positions, alpha, decay, device)

    monkeypatch.setattr(pipeline_module, "HistoryRecorder", Spy)
    pipe.set_progress_bar_config(disable=True)
    pipe(image, "recolour the blue circle yellow", output_type="latent")  # no use_history: the model's record decides
    pipe(image, "recolour the blue circle yellow", output_type="latent", history_decay=0.9)
    pipe(image, "recolour the blue circle yellow", output_type="latent", use_history=False)
    assert built == [(3.0, 0.5), (3.0, 0.9)]


def test_a_lora_run_is_an_adapter_folder_whose_edits_equal_the_merged_models(folders, image):
    base, _, lora = folders
    info = json.loads((lora / "rm_adapter.json").read_text())
    assert info["base_model"] == str(base.resolve()) and info["transformer_config"]["rm_post_trained"] is True
    adapted = ReflectiveMaskingEditPipeline.from_pretrained(lora)
    merged = ReflectiveMaskingEditPipeline.from_pretrained(lora.parent / "merged")
    plain = ReflectiveMaskingEditPipeline.from_pretrained(base)
    assert adapted.transformer.config.rm_post_trained is True and not getattr(adapted.transformer, "peft_config", None)
    assert isinstance(adapted.scheduler, ReflectiveMaskingScheduler)
    a, m, p = (x.transformer.state_dict() for x in (adapted, merged, plain))
    assert set(a) == set(m)
    for k in a:
        torch.testing.assert_close(a[k], m[k], atol=1e-6, rtol=1e-5)
    assert not torch.equal(a["transformer.blocks.0.q_proj.weight"], p["transformer.blocks.0.q_proj.weight"])
    edits = []
    for pipe in (adapted, merged):
        pipe.set_progress_bar_config(disable=True)
        out = pipe(image, "recolour the blue circle yellow", output_type="latent", num_turns=2)
        edits.append((out.codes, out.edit_region_tokens))
    assert torch.equal(edits[0][0], edits[1][0]) and torch.equal(edits[0][1], edits[1][1])
    assert edits[0][1].any()  # the adapted model did re-mask something: the comparison is not of two no-ops


def test_the_cli_edits_with_an_adapter_folder_and_names_a_missing_base_in_one_line(folders, image, tmp_path, capsys):
    base, _, lora = folders
    image.save(tmp_path / "in.png")
    assert cli(["edit", str(tmp_path / "in.png"), "recolour the blue circle yellow", "-o", str(tmp_path / "out.png"),
                "--model", str(lora), "--device", "cpu"]) == 0
    assert PIL.Image.open(tmp_path / "out.png").size == (64, 64)
    moved = tmp_path / "lora"
    shutil.copytree(lora, moved)
    info = json.loads((moved / "rm_adapter.json").read_text())
    info["base_model"] = str(tmp_path / "no-such-base")
    (moved / "rm_adapter.json").write_text(json.dumps(info))
    with pytest.raises(FileNotFoundError, match="no-such-base"):
        ReflectiveMaskingEditPipeline.from_pretrained(moved)
    capsys.readouterr()
    assert cli(["edit", str(tmp_path / "in.png"), "remove", "-o", str(tmp_path / "x.png"), "--model", str(moved)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no-such-base" in err and "base model" in err


def test_the_cli_batch_edits_with_an_adapter_folder(world, folders, tmp_path, capsys):
    root, _ = world
    _, _, lora = folders
    lines = (root / "train" / "manifest.jsonl").read_text().splitlines()[:3]
    manifest = root / "train" / "three.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    out = tmp_path / "batch"
    assert cli(["batch", str(manifest), "--out", str(out), "--model", str(lora), "--no-progress"]) == 0
    assert "done 3, skipped 0, failed 0" in capsys.readouterr().out
    edits = {p.name for p in out.glob("*.png") if not p.name.endswith(".mask.png")}
    assert edits == {f"train_00000{i}.png" for i in range(3)}


def test_a_relative_base_resolves_beside_the_adapter_then_in_the_package(folders, tmp_path):
    from rm_edit.pipelines.adapter_folder import resolve_base
    from rm_edit.training.model_folders import copy_adapter_folder

    base, _, lora = folders
    assert resolve_base(lora, "../../base/final") == lora / "../../base/final"
    shutil.copytree(base, tmp_path / "models" / "tiny-base")  # shipped side by side: found wherever the pair goes
    copy_adapter_folder(lora, tmp_path / "models" / "tiny-lora", "../tiny-base")
    pipe = ReflectiveMaskingEditPipeline.from_pretrained(tmp_path / "models" / "tiny-lora")
    assert pipe.transformer.config.rm_post_trained is True
    shipped = resolve_base(tmp_path, "rm_edit/models/shapes-base")
    assert (shipped / "model_index.json").is_file() and shipped.parent.name == "models"


def test_an_adapter_of_a_shipped_base_names_it_package_relative_and_loads_as_a_shipped_model(folders, monkeypatch, tmp_path):
    import rm_edit
    from rm_edit.pipelines.default_model import load_default_pipeline
    from rm_edit.training.mdm_config import MDMTrainConfig
    from rm_edit.training.model_folders import SHIPPED_MODELS, base_reference

    assert base_reference(MDMTrainConfig(init_from=str(SHIPPED_MODELS / "shapes-base"))) == "rm_edit/models/shapes-base"
    assert base_reference(MDMTrainConfig(init_from="x", base_reference="../shapes-base")) == "../shapes-base"
    _, _, lora = folders
    package = tmp_path / "rm_edit"
    shutil.copytree(lora, package / "models" / "tiny-lora")  # its base_model is an absolute path
    monkeypatch.setattr(rm_edit, "__file__", str(package / "__init__.py"))
    pipe = load_default_pipeline("tiny-lora")
    assert pipe.transformer.config.rm_post_trained is True and isinstance(pipe.scheduler, ReflectiveMaskingScheduler)


def test_examples_with_init_is_unknown_past_a_folder_without_a_training_record(folders, tmp_path):
    from rm_edit.training.model_folders import examples_with_init

    base, her, _ = folders
    assert examples_with_init(her) == 32 and examples_with_init(tmp_path) is None
    record = json.loads((her / "training.json").read_text())
    del record["examples_with_init"]
    record["init_from"]["path"] = str(tmp_path)  # as if started from a published checkpoint
    (tmp_path / "her").mkdir()
    (tmp_path / "her" / "training.json").write_text(json.dumps(record))
    assert examples_with_init(tmp_path / "her") is None


def test_scene_checks_stay_off_when_the_tokenizer_does_not_read_the_worlds_cells(folders, image):
    """A shapes-world folder with a learned (here random) image tokenizer: its codes are not the world's cell ids, so
    no scene is read off them (a reference would otherwise be judged against a scene that is not there)."""
    base, _, _ = folders
    pipe = ReflectiveMaskingEditPipeline.from_pretrained(base)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(image, "remove the blue circle")
    assert pipe.input_checks.reads_cells is False and out.unchanged_because == [None]
