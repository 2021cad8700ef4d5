"""The rm-edit console script: edit, batch (errors, resume, batching invariance), help."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from rm_edit.cli import main
from rm_edit.data.manifest import write_manifest
from rm_edit.data.records import EditRecord
from rm_edit.data.shapes import ShapesWorld
from tests.conftest import make_tiny_pipeline

FAST = ["--num-turns", "2", "--reveal-steps", "2"]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("tiny_model")
    make_tiny_pipeline().save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def examples():
    world = ShapesWorld(split="test")
    return [world[i] for i in range(5)]


@pytest.fixture
def image_path(tmp_path, examples) -> Path:
    path = tmp_path / "in.png"
    PIL.Image.fromarray(examples[0].source).save(path)
    return path


def _one_line_error(capsys, *needles: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rm-edit: error: "), err
    for needle in needles:
        assert needle in err[0], err


def test_help_from_console_script():
    script = Path(sys.executable).with_name("rm-edit")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "rm_edit.cli"]
    res = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for word in ("edit", "batch", "data", "train", "examples:"):
        assert word in res.stdout


def test_edit_writes_output_mask_and_trajectories(tmp_path, image_path, model_dir, capsys):
    out, mask, strip, gif = (tmp_path / n for n in ("out.png", "mask.png", "traj.png", "traj.gif"))
    args = ["edit", str(image_path), "make the circle blue", "-o", str(out), "--model", model_dir, *FAST,
            "--save-mask", str(mask), "--device", "cpu"]
    assert main([*args, "--save-trajectory", str(strip)]) == 0
    assert str(out) in capsys.readouterr().out
    size = PIL.Image.open(image_path).size
    assert PIL.Image.open(out).size == size
    m = np.asarray(PIL.Image.open(mask))
    assert m.shape == size[::-1] and set(np.unique(m)) <= {0, 255}
    frame_strip = PIL.Image.open(strip)
    assert frame_strip.width > 2 * frame_strip.height  # several frames side by side

    assert main([*args, "--save-trajectory", str(gif), "--strategy", "regenerate", "--num-turns", "2"]) == 2
    _one_line_error(capsys, "--num-turns")
    regen = ["edit", str(image_path), "make the circle blue", "-o", str(out), "--model", model_dir,
             "--strategy", "regenerate", "--steps", "3", "--save-trajectory", str(gif)]
    assert main(regen) == 0
    with PIL.Image.open(gif) as anim:
        assert anim.format == "GIF" and anim.n_frames == 4  # the source plus one frame per step
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_edit_with_kv_cache_matches_without_on_a_one_layer_model(tmp_path, image_path, model_dir):
    """The test model has one layer, where the cache is exact: --kv-cache must write the same image."""
    outs = [tmp_path / "plain.png", tmp_path / "cached.png"]
    for out, extra in zip(outs, ([], ["--kv-cache"])):
        args = ["edit", str(image_path), "make the circle blue", "-o", str(out), "--model", model_dir,
                "--num-turns", "2", "--reveal-steps", "3", "--device", "cpu", *extra]
        assert main(args) == 0
    assert np.array_equal(np.asarray(PIL.Image.open(outs[0])), np.asarray(PIL.Image.open(outs[1])))


def test_remask_margin_and_held_code_bias_reach_the_sampler(tmp_path, image_path, model_dir, capsys):
    """Re-mask nothing, or re-mask everything and reveal it back to the held codes: the same image, nothing changed
    (an empty region both times), but every code re-masked the second time."""
    runs = {"none": ["--remask-margin", "1e9"], "all_back": ["--remask-margin=-1e9", "--held-code-bias", "1e4"]}
    images, masks, counts = {}, {}, {}
    for name, extra in runs.items():
        out, mask = tmp_path / f"{name}.png", tmp_path / f"{name}_mask.png"
        args = ["edit", str(image_path), "make the circle blue", "-o", str(out), "--model", model_dir,
                "--num-turns", "1", "--reveal-steps", "1", "--save-mask", str(mask), "--device", "cpu",
                "--no-paste-back", *extra]  # both decode every code: the same codes, the same image
        assert main(args) == 0
        images[name], masks[name] = np.asarray(PIL.Image.open(out)), np.asarray(PIL.Image.open(mask))
        remasked, changed, total = re.search(r"(\d+) re-masked, (\d+) of (\d+) image codes changed",
                                             capsys.readouterr().out).groups()
        counts[name] = (int(remasked), int(changed), int(total))
    assert np.array_equal(images["none"], images["all_back"])
    assert not masks["none"].any() and not masks["all_back"].any()
    total = counts["none"][2]
    assert counts == {"none": (0, 0, total), "all_back": (total, 0, total)}
    base = ["edit", str(image_path), "x", "-o", str(tmp_path / "o.png"), "--model", model_dir]
    assert main([*base, "--held-code-bias=-1"]) == 2
    _one_line_error(capsys, "--held-code-bias")
    assert main([*base, "--strategy", "regenerate", "--remask-margin", "1"]) == 2
    _one_line_error(capsys, "--remask-margin is not an option of the regenerate sampler (it takes --steps)")


def test_a_models_own_sampler_refuses_the_other_samplers_flags(tmp_path, image_path, capsys):
    """Without --strategy the flags are checked against the model's own sampler (here regenerate), before
    any item runs; the option list is the scheduler's."""
    from rm_edit.schedulers import LuminaRegenerateScheduler

    pipe = make_tiny_pipeline()
    pipe.scheduler = LuminaRegenerateScheduler(codebook_size=pipe.scheduler.config.codebook_size)
    pipe.save_pretrained(tmp_path / "regen")
    out = tmp_path / "o.png"
    assert main(["edit", str(image_path), "x", "-o", str(out), "--model", str(tmp_path / "regen"),
                 "--reveal-steps", "2"]) == 2
    _one_line_error(capsys, "--reveal-steps is not an option of the regenerate sampler")
    assert not out.exists()


def test_edit_bad_inputs_are_one_line_errors(tmp_path, image_path, model_dir, capsys):
    missing = tmp_path / "nope.png"
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    out = str(tmp_path / "o.png")
    for path in (missing, corrupt):
        assert main(["edit", str(path), "x", "-o", out, "--model", model_dir]) == 2
        _one_line_error(capsys, str(path))
    assert main(["edit", str(image_path), "x", "-o", out, "--model", str(tmp_path / "no_model")]) == 2
    _one_line_error(capsys, "no_model")
    assert main(["edit", str(image_path), "x", "-o", out, "--model", model_dir, "--num-turns", "0"]) == 2
    _one_line_error(capsys, "--num-turns")
    assert main(["edit", str(image_path), "x", "-o", str(tmp_path / "o.xyz"), "--model", model_dir]) == 2
    _one_line_error(capsys, "o.xyz")
    assert main(["edit", str(image_path)]) == 2
    _one_line_error(capsys, "required")
    assert not Path(out).exists()


def _manifest(folder: Path, examples, extra_lines: list[str] = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for ex in examples:
        src = folder / f"{ex.id}.png"
        PIL.Image.fromarray(ex.source).save(src)
        records.append(EditRecord(ex.id, src, ex.instruction))
    path = write_manifest(folder / "manifest.jsonl", records)
    if extra_lines:
        with path.open("a") as fh:
            fh.writelines(line + "\n" for line in extra_lines)
    return path


def test_batch_records_bad_items_and_goes_on(tmp_path, examples, model_dir, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "corrupt.png").write_bytes(b"GIF89a garbage")
    bad = [
        json.dumps({"id": "missing", "source": "nowhere.png", "instruction": "add a circle"}),
        json.dumps({"id": "corrupt", "source": "corrupt.png", "instruction": "add a circle"}),
        json.dumps({"id": "empty", "source": f"{examples[0].id}.png", "instruction": "  "}),
        '{"id": "broken", ',
    ]
    manifest = _manifest(data, examples[:3], bad)
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "--out", str(out), "--model", model_dir, *FAST, "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "done 3, skipped 0, failed 4" in captured.out
    for ex in examples[:3]:
        assert PIL.Image.open(out / f"{ex.id}.png").size == (ex.source.shape[1], ex.source.shape[0])
        assert (out / f"{ex.id}.mask.png").is_file()
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == 4
    by_key = {e.get("id", e.get("line")): e["reason"] for e in errors}
    assert "not found" in by_key["missing"] and "nowhere.png" in by_key["missing"]
    assert "corrupt" in by_key["corrupt"]
    assert "empty instruction" in by_key["empty"]  # manifest lines: 3 good, missing, corrupt, empty, broken
    assert "invalid JSON" in by_key[7]  # no id on that line: its number
    # Every entry names the item's id and its line (4 missing, 5 corrupt, 6 empty), or the line alone; so
    # does its stderr line.
    assert [(e.get("id"), e["line"]) for e in errors if "id" in e] == [("empty", 6), ("missing", 4), ("corrupt", 5)]
    err = captured.err.splitlines()
    assert any(line.startswith("rm-edit: id 'missing' line 4: image not found") for line in err)
    assert any(line.startswith("rm-edit: line 7: ") for line in err)
    assert not (out / "missing.png").exists()


def test_batch_resume_rewrites_only_missing_items(tmp_path, examples, model_dir, capsys):
    manifest = _manifest(tmp_path / "data", examples[:4])
    out = tmp_path / "out"
    args = ["batch", str(manifest), "--out", str(out), "--model", model_dir, *FAST, "--batch-size", "2",
            "--no-progress"]
    assert main(args) == 0
    first = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("*.png")}
    assert len(first) == 8  # image + mask per item
    lost = out / f"{examples[1].id}.png"
    lost.unlink()  # as if the run had been interrupted before writing it

    assert main(args) == 0
    captured = capsys.readouterr()
    assert "skipping 3" in captured.err and "done 1, skipped 3, failed 0" in captured.out
    again = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("*.png")}
    assert again.keys() == first.keys()
    for name, (ino, mtime, data) in first.items():
        if examples[1].id in name:
            assert again[name][2] == data  # same seed per item: the redo equals the lost result
        else:
            assert again[name][:2] == (ino, mtime)


def test_batch_redoes_an_item_interrupted_between_its_writes(tmp_path, examples, model_dir, monkeypatch, capsys):
    """``<id>.png`` is the resume marker, so it is an item's last write: a run killed after the item's mask
    but before its image leaves no marker, and the next run redoes the item (both files, same result)."""
    import rm_edit.cli.batch as batch_module

    manifest = _manifest(tmp_path / "data", examples[:2])
    out = tmp_path / "out"
    args = ["batch", str(manifest), "--out", str(out), "--model", model_dir, *FAST, "--batch-size", "1",
            "--no-progress"]
    victim = {f"{examples[1].id}.png", f"{examples[1].id}.mask.png"}
    real, writes = batch_module.save_image, []

    def killed_on_the_second_write(path, *a, **kw):
        if path.name in victim:
            writes.append(path.name)
            if len(writes) == 2:
                raise KeyboardInterrupt  # the run dies between the item's two outputs
        return real(path, *a, **kw)

    monkeypatch.setattr(batch_module, "save_image", killed_on_the_second_write)
    assert main(args) == 130
    assert len(writes) == 2  # one of the item's outputs is on disk, the other is not
    monkeypatch.setattr(batch_module, "save_image", real)
    assert main(args) == 0
    assert "done 1, skipped 1, failed 0" in capsys.readouterr().out
    for ex in examples[:2]:
        assert (out / f"{ex.id}.png").is_file() and (out / f"{ex.id}.mask.png").is_file()


def test_batch_results_do_not_depend_on_batch_size(tmp_path, examples, model_dir):
    manifest = _manifest(tmp_path / "data", examples[:4])
    results = {}
    for size in ("1", "4"):
        out = tmp_path / f"out{size}"
        assert main(["batch", str(manifest), "--out", str(out), "--model", model_dir, *FAST,
                     "--batch-size", size, "--no-progress"]) == 0
        results[size] = {p.name: np.asarray(PIL.Image.open(p)) for p in out.glob("*.png")}
    assert results["1"].keys() == results["4"].keys() and len(results["1"]) == 8
    for name, image in results["1"].items():
        np.testing.assert_array_equal(image, results["4"][name], err_msg=name)


def test_batch_missing_manifest_is_usage_error(tmp_path, model_dir, capsys):
    assert main(["batch", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "o"), "--model", model_dir]) == 2
    _one_line_error(capsys, "m.jsonl")


def test_train_passes_options_through(monkeypatch):
    import rm_edit.training.train_vq as train_vq

    seen = []
    monkeypatch.setattr(train_vq, "main", lambda argv: seen.append(argv))
    assert main(["train", "vq", "--steps", "5", "--smoke", "--config=c.json"]) == 0
    assert seen == [["--steps", "5", "--smoke", "--config=c.json"]]
    assert main(["edit", "a.png", "x", "-o", "b.png", "--bogus"]) == 2


def test_data_shapes_then_pretokenize(tmp_path, model_dir, capsys):
    data = tmp_path / "shapes"
    assert main(["data", "shapes", "--out", str(data), "--n", "2", "--split", "val"]) == 0
    assert len((data / "manifest.jsonl").read_text().splitlines()) == 2
    codes = tmp_path / "codes.safetensors"
    vq = str(Path(model_dir) / "vqvae")
    assert main(["data", "pretokenize", str(data / "manifest.jsonl"), "--vq", vq, "--out", str(codes)]) == 0
    assert codes.is_file() and codes.with_suffix(".json").is_file()
    capsys.readouterr()  # progress bars
    assert main(["data", "pretokenize", str(data / "manifest.jsonl"), "--vq", str(tmp_path), "--out", str(codes)]) == 2
    _one_line_error(capsys, str(tmp_path))


def test_data_shapes_confusable_from_a_start(tmp_path, capsys):
    data = tmp_path / "hard"
    assert main(["data", "shapes", "--out", str(data), "--n", "3", "--start", "40", "--confusable"]) == 0
    ids = [json.loads(line)["id"] for line in (data / "manifest.jsonl").read_text().splitlines()]
    assert len(ids) == 3 and all(int(i.rsplit("_", 1)[1]) >= 40 for i in ids)
    capsys.readouterr()
    assert main(["data", "shapes", "--out", str(data), "--n", "3", "--start", "-1"]) == 2
    assert "--start: must be >= 0, got -1" in capsys.readouterr().err


@pytest.mark.parametrize("size", [(77, 93), (150, 61)])  # resized up; resized down and centre-cropped
@pytest.mark.parametrize("strategy", ["reflective", "regenerate"])
def test_paste_back_outside_the_saved_mask_is_the_source_bit_for_bit(tmp_path, examples, model_dir, size, strategy):
    src_path, out, mask = tmp_path / "odd.png", tmp_path / "out.png", tmp_path / "mask.png"
    PIL.Image.fromarray(examples[1].source).resize(size, PIL.Image.Resampling.BICUBIC).save(src_path)
    allowed = tmp_path / "allowed.png"
    region = PIL.Image.new("L", size, 0)
    region.paste(255, (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    region.save(allowed)
    steps = ["--steps", "3"] if strategy == "regenerate" else ["--num-turns", "1"]
    assert main(["edit", str(src_path), "make the circle blue", "-o", str(out), "--model", model_dir,
                 "--strategy", strategy, *steps, "--mask", str(allowed), "--paste-back", "--save-mask", str(mask),
                 "--device", "cpu", "--seed", "2"]) == 0
    src, edited = np.asarray(PIL.Image.open(src_path).convert("RGB")), np.asarray(PIL.Image.open(out))
    inside = np.asarray(PIL.Image.open(mask)) > 127
    assert inside.shape == src.shape[:2] and inside.any() and (~inside).any()
    np.testing.assert_array_equal(edited[~inside], src[~inside])
    assert (edited[inside] != src[inside]).any()


def test_compile_flag_compiles_the_transformers_blocks_once_on_the_device(tmp_path, image_path, examples, model_dir,
                                                                          monkeypatch):
    """--compile (edit, batch) reaches LLaDATransformer.compile_blocks once the model is on --device; recorded,
    not run (torch.compile is measured on GPU by benchmarks/gpu_check.py --compile)."""
    from rm_edit import LLaDATransformer

    calls = []
    monkeypatch.setattr(LLaDATransformer, "compile_blocks",
                        lambda self, **kw: calls.append((next(self.parameters()).device.type, kw)) or self)
    edit = ["edit", str(image_path), "make the circle blue", "-o", str(tmp_path / "out.png"), "--model", model_dir,
            *FAST, "--device", "cpu"]
    assert main(edit) == 0 and calls == []
    assert main([*edit, "--compile"]) == 0 and calls == [("cpu", {})]
    manifest = _manifest(tmp_path / "data", examples[:1], [])
    assert main(["batch", str(manifest), "--out", str(tmp_path / "batch"), "--model", model_dir, *FAST,
                 "--device", "cpu", "--no-progress", "--compile"]) == 0
    assert calls == [("cpu", {})] * 2
