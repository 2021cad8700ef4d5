from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rm_edit.data.manifest import (
    EditManifestDataset,
    ManifestError,
    load_image,
    load_mask,
    read_manifest,
    write_manifest,
)
from rm_edit.data.records import EditRecord


def _png(path: Path, size: tuple[int, int] = (8, 6), colour: tuple[int, int, int] = (10, 20, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _line(**fields: object) -> str:
    base = {"id": "a", "source": "s.png", "instruction": "make it red",
            "target": None, "mask": None, "edit_type": None}
    base.update(fields)
    return json.dumps(base)


def test_bad_lines_reported_and_good_lines_kept(tmp_path: Path) -> None:
    lines = [
        _line(id="ok1", target="t.png", mask="m.png", edit_type="recolour"),  # 1
        "{not json",  # 2
        json.dumps({"id": "x", "instruction": "hi"}),  # 3: no source
        _line(id="e", instruction="   "),  # 4
        _line(id="ok1"),  # 5: duplicate
        "",  # 6: blank lines are skipped silently
        _line(id="", source="s.png"),  # 7
        _line(id="n", source=5),  # 8
        "[1, 2]",  # 9
        _line(id="ok2", source="sub/s2.png"),  # 10
    ]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")

    records, errors = read_manifest(manifest)

    assert [r.id for r in records] == ["ok1", "ok2"]
    assert records[0].source == tmp_path.resolve() / "s.png"
    assert records[0].target == tmp_path.resolve() / "t.png"
    assert records[0].edit_type == "recolour"
    assert records[1].source.is_absolute() and records[1].mask is None
    by_line = {e.line_no: e.reason for e in errors}
    assert set(by_line) == {2, 3, 4, 5, 7, 8, 9}
    assert by_line[2].startswith("invalid JSON")
    assert by_line[3] == "missing field 'source'"
    assert by_line[4] == "empty instruction"
    assert by_line[5] == "duplicate id 'ok1' (first seen on line 1)"
    assert by_line[7] == "empty id"
    assert "'source'" in by_line[8] and "string" in by_line[8]
    assert "JSON object" in by_line[9]
    assert all("\n" not in e.reason for e in errors)
    assert str(ManifestError(4, "empty instruction")) == "line 4: empty instruction"
    # The likely slip, "image" for "source", is named with the fields there are.
    manifest.write_text(json.dumps({"id": "x", "image": "s.png", "instruction": "remove the red circle"}) + "\n")
    assert [e.reason for e in read_manifest(manifest)[1]] == [
        "missing field 'source' (the line holds 'image', which is none of a line's fields: id, source, instruction, "
        "target, mask, edit_type, metadata)"]


def test_strict_raises_on_first_bad_line(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join([_line(id="a"), _line(id="b", instruction=""), "{bad"]) + "\n")
    with pytest.raises(ValueError, match=r"^manifest\.jsonl line 2: empty instruction$"):
        read_manifest(manifest, strict=True)


def test_write_manifest_round_trip_relative_paths(tmp_path: Path) -> None:
    root = tmp_path / "data"
    recs = [
        EditRecord("r1", root / "images" / "a.png", "remove the red circle", root / "images" / "b.png",
                   root / "masks" / "a.png", "remove"),
        EditRecord("r2", tmp_path / "outside.png", "add a red circle at the top", None, None, None),
    ]
    manifest = write_manifest(root / "manifest.jsonl", recs)

    raw = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert raw[0]["source"] == "images/a.png"
    assert raw[0]["mask"] == "masks/a.png"
    assert raw[1]["source"] == "../outside.png"
    assert raw[1]["target"] is None
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]  # temp file moved into place

    loaded, errors = read_manifest(manifest)
    assert errors == []
    expected = [EditRecord(r.id, r.source.resolve(), r.instruction,
                           r.target and r.target.resolve(), r.mask and r.mask.resolve(), r.edit_type)
                for r in recs]
    assert loaded == expected


def test_load_image_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.png"
    with pytest.raises(ValueError, match="missing.png"):
        load_image(missing)

    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not an image at all")
    with pytest.raises(ValueError, match="garbage.png"):
        load_image(garbage)

    good = _png(tmp_path / "good.png", size=(64, 64))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ValueError, match="truncated.png") as info:
        load_image(truncated)
    assert "\n" not in str(info.value)

    big = _png(tmp_path / "big.png", size=(300, 200))
    with pytest.raises(ValueError, match=r"too large.*big\.png"):
        load_image(big, max_pixels=300 * 200 - 1)
    assert load_image(big, max_pixels=300 * 200).size == (300, 200)


def test_load_image_converts_to_rgb(tmp_path: Path) -> None:
    path = tmp_path / "gray.png"
    Image.new("L", (5, 4), 77).save(path)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (5, 4)
    assert img.getpixel((0, 0)) == (77, 77, 77)


def test_load_mask_thresholds_and_resizes(tmp_path: Path) -> None:
    arr = np.zeros((4, 6), dtype=np.uint8)
    arr[1:3, 2:5] = 255
    arr[0, 0] = 100  # below threshold -> not part of the mask
    path = tmp_path / "m.png"
    Image.fromarray(arr).save(path)

    mask = load_mask(path, (6, 4))
    assert mask.dtype == bool and mask.shape == (4, 6)
    np.testing.assert_array_equal(mask, arr > 127)

    big = load_mask(path, (12, 8))
    assert big.shape == (8, 12) and big.sum() == 4 * mask.sum()


def test_dataset_items(tmp_path: Path) -> None:
    src = _png(tmp_path / "img" / "s.png", colour=(255, 0, 51))
    tgt = _png(tmp_path / "img" / "t.png", colour=(0, 255, 0))
    mask_arr = np.zeros((6, 8), dtype=np.uint8)
    mask_arr[2:4, 1:3] = 255
    Image.fromarray(mask_arr).save(tmp_path / "m.png")
    write_manifest(tmp_path / "manifest.jsonl", [
        EditRecord("one", src, "make it green", tgt, tmp_path / "m.png", "recolour"),
        EditRecord("two", src, "do something", None, None, None),
    ])

    ds = EditManifestDataset(tmp_path / "manifest.jsonl")
    assert len(ds) == 2
    item = ds[0]
    assert item["id"] == "one" and item["instruction"] == "make it green" and item["edit_type"] == "recolour"
    assert item["source"].shape == (3, 6, 8) and item["source"].dtype == torch.float32
    assert torch.allclose(item["source"][:, 0, 0], torch.tensor([1.0, 0.0, 0.2]))
    assert torch.allclose(item["target"][:, 5, 7], torch.tensor([0.0, 1.0, 0.0]))
    assert item["mask"].dtype == torch.bool and item["mask"].shape == (6, 8)
    assert item["mask"].sum() == 4 and bool(item["mask"][2, 1])

    bare = ds[1]
    assert bare["target"] is None and bool(bare["mask"].all())


def test_dataset_strict_by_default(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(_line(id="a", instruction="") + "\n")
    with pytest.raises(ValueError, match="line 1: empty instruction"):
        EditManifestDataset(manifest)
    assert len(EditManifestDataset(manifest, strict=False)) == 0
