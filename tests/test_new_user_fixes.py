"""What a new user hit (issue #24 item 5): file permissions, the batch's one summary line, the documented
imports and diffusers' own loader, copies at temperature > 0."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from rm_edit.cli import main
from rm_edit.data.shapes import ShapesWorld
from rm_edit.files import save_image, write_text

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_respect_the_umask(tmp_path, umask, expected) -> None:
    old = os.umask(umask)
    try:
        save_image(tmp_path / "a.png", PIL.Image.new("RGB", (4, 4)))
        write_text(tmp_path / "b.json", "{}")
    finally:
        os.umask(old)
    for name in ("a.png", "b.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name


def test_batch_prints_one_summary_line_with_the_pixel_edit_success(tmp_path, capsys) -> None:
    world = ShapesWorld(split="test")
    rows = []
    for i in (0, 1, 2):
        ex = world[i]
        PIL.Image.fromarray(ex.source).save(tmp_path / f"{ex.id}.png")
        PIL.Image.fromarray(ex.target).save(tmp_path / f"{ex.id}_target.png")
        row = {"id": ex.id, "source": f"{ex.id}.png", "instruction": ex.instruction}
        if i < 2:  # two items with a target, one without
            row["target"] = f"{ex.id}_target.png"
        rows.append(row)
    # Item 1's target is a black image: no edit of its scene comes near it.
    PIL.Image.new("RGB", (64, 64)).save(tmp_path / "black.png")
    rows[1]["target"] = "black.png"
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "--out", str(out), "--progress-every", "1", "--batch-size", "1"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("done 3, skipped 0, failed 0 in "), lines
    # item 0 edited right (the default edits the first test edits right), item 1 judged against black: 1 of 2.
    assert lines[0].endswith("; pixel edit success 1/2 (0.500) against the targets"), lines[0]
    progress = [l for l in captured.err.splitlines() if " items, " in l]
    assert [l.split(":")[1].split()[0] for l in progress] == ["1/3", "2/3"]  # the end is the summary alone


def test_documented_import_and_diffusers_own_loader() -> None:
    """README: `from rm_edit.pipelines import ReflectiveMaskingEditPipeline`, then diffusers' own
    `DiffusionPipeline.from_pretrained(folder)` loads a saved folder (no remote code)."""
    from diffusers import DiffusionPipeline

    from rm_edit.pipelines import ReflectiveMaskingEditPipeline

    folder = ROOT / "rm_edit" / "models" / "shapes-rm-her"
    pipe = DiffusionPipeline.from_pretrained(folder)
    assert type(pipe) is ReflectiveMaskingEditPipeline
    out = pipe(PIL.Image.open(ROOT / "assets" / "example.png"), "turn the green square red", output_type="latent")
    assert int(out.edit_region_tokens.sum()) == 4  # the large green square: 2x2 cells


def test_copies_at_temperature_sample_or_say_they_came_out_identical(recwarn) -> None:
    import torch

    import rm_edit
    from rm_edit.input_checks import InputOutsideWorldWarning

    pipe = rm_edit.load_default_pipeline()
    image = PIL.Image.open(ROOT / "assets" / "example.png")
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    out = pipe(image, "turn the green square red", num_images_per_prompt=3, temperature=1.0, generator=gens,
               output_type="latent")
    identical = all(torch.equal(out.codes[0], c) for c in out.codes[1:])
    said = [str(w.message) for w in recwarn if w.category is InputOutsideWorldWarning and "identical" in str(w.message)]
    assert identical == bool(said), said
    # At temperature 5 the reveals are sampled: copies differ (the generators are seeded, so this is fixed).
    out = pipe(image, "turn the green square red", num_images_per_prompt=3, temperature=5.0,
               generator=[torch.Generator().manual_seed(i) for i in range(3)], output_type="latent")
    assert not all(torch.equal(out.codes[0], c) for c in out.codes[1:])
