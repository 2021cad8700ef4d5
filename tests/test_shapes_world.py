from __future__ import annotations

from collections import Counter
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rm_edit.data.manifest import load_image, load_mask, read_manifest
from rm_edit.data.shapes import (
    ANCHORS,
    BACKGROUNDS,
    CLASSIC_EDIT_TYPES,
    COLOURS,
    EDIT_TYPES,
    TEMPLATES,
    NUM_CELL_CODES,
    EditExample,
    Scene,
    ShapesWorld,
    ShapesWorldConfig,
    canonical_cells,
    cell_attributes,
    cell_code,
    has_confusable_distractor,
    named_shape,
    write_shapes_dataset,
)

N = 300


@lru_cache(maxsize=None)
def _examples(split: str = "train", n: int = N) -> tuple[EditExample, ...]:
    world = ShapesWorld(split=split)
    return tuple(world[i] for i in range(n))


def _pack(rgb: np.ndarray) -> np.ndarray:
    """RGB -> one int per pixel (fast colour sets)."""
    return rgb.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])


def _footprint(world: ShapesWorld, scene: Scene) -> np.ndarray:
    """Pixels covered by any shape, found independently of the mask code."""
    img = world.render(scene)
    return np.any(img != np.array(BACKGROUNDS[scene.background], dtype=np.uint8), axis=-1)


def test_determinism_and_splits() -> None:
    a, b = ShapesWorld(split="train")[7], ShapesWorld(split="train")[7]
    np.testing.assert_array_equal(a.source, b.source)
    np.testing.assert_array_equal(a.target, b.target)
    assert a.instruction == b.instruction and a.id == "train_000007"
    val = ShapesWorld(split="val")[7]
    assert val.id == "val_000007" and not (np.array_equal(val.source, a.source) and val.instruction == a.instruction)


def test_shapes_sit_on_the_grid_in_whole_cells() -> None:
    """Every shape's pixels lie inside its anchor block; large = 2x2 cells, small = 1 cell (8 px each)."""
    world = ShapesWorld()
    for ex in _examples():
        for scene in (ex.source_scene, ex.target_scene):
            assert len({s.name for s in scene.shapes}) == len(scene.shapes)  # names unique
            assert len({s.anchor for s in scene.shapes}) == len(scene.shapes)  # one shape per anchor
            for shape in scene.shapes:
                rows, cols = np.nonzero(world.footprint(shape))
                row, col = divmod(ANCHORS.index(shape.anchor), 3)
                top, left = (0, 3, 6)[row] * 8, (0, 3, 6)[col] * 8
                side = {"small": 8, "large": 16}[shape.size]
                assert rows.min() >= top and rows.max() < top + side and cols.min() >= left and cols.max() < left + side
        # Colours: the background's and the shapes' own, nothing else (no anti-aliasing).
        colours = set(_pack(ex.source.reshape(-1, 3)).tolist())
        expected = {_pack(np.array(BACKGROUNDS[ex.source_scene.background]))} | {
            _pack(np.array(COLOURS[s.colour])) for s in ex.source_scene.shapes}
        assert colours == {int(c) for c in expected}


def test_cells_are_exactly_the_canonical_patterns() -> None:
    """Each 8x8 cell of a rendered image equals the canonical pattern of its code, and codes map back to
    their attributes (a 605-code exact tokenizer)."""
    cells = canonical_cells(8)
    assert cells.shape == (605, 8, 8, 3) == (NUM_CELL_CODES, 8, 8, 3)
    assert len({c.tobytes() for c in cells}) == 605  # every pattern distinct
    for ex in _examples(n=60):
        for scene, image in ((ex.source_scene, ex.source), (ex.target_scene, ex.target)):
            codes = ShapesWorld.codes(scene)
            tiles = image.reshape(8, 8, 8, 8, 3).transpose(0, 2, 1, 3, 4)
            np.testing.assert_array_equal(cells[codes], tiles)
    # Hand-worked ids: 5 backgrounds first; then 5 + ((b * 6 + c) * 4 + k) * 5 + part.
    assert cell_code("light gray") == 0 and cell_code("pale blue") == 4
    assert cell_code("light gray", "red", "circle", 0) == 5
    assert cell_code("beige", "green", "triangle", 3) == 5 + ((1 * 6 + 1) * 4 + 2) * 5 + 3 == 158
    assert cell_attributes(158) == {"background": "beige", "colour": "green", "kind": "triangle", "size": "large", "part": 3}


def test_mask_is_exact_union_of_affected_footprints() -> None:
    world = ShapesWorld()
    for ex in _examples():
        changed = np.any(ex.source != ex.target, axis=-1)
        assert not (changed & ~ex.mask).any()  # every changed pixel is inside the mask
        if ex.edit_type in ("remove", "add"):
            np.testing.assert_array_equal(changed, ex.mask)


def test_target_is_determined_by_source_and_instruction() -> None:
    """Well posed: the same source image and instruction always give the same target (destinations too)."""
    world = ShapesWorld(split="train")
    seen: dict[tuple[bytes, str], bytes] = {}
    repeats = 0
    for i in range(20_000):
        source, target, instruction, _, _ = world.symbolic(i)
        key = (ShapesWorld.codes(source).tobytes(), instruction)
        value = ShapesWorld.codes(target).tobytes()
        repeats += key in seen
        assert seen.setdefault(key, value) == value, instruction
    assert repeats > 20  # the check actually met repeated (source, instruction) pairs


def test_each_edit_type_does_what_it_says() -> None:
    for ex in _examples():
        src, tgt = ex.source_scene, ex.target_scene
        assert src.background == tgt.background
        words = ex.instruction
        if ex.edit_type == "add":
            (new,) = set(tgt.shapes) - set(src.shapes)
            assert set(src.shapes) <= set(tgt.shapes)
            assert f"a {new.size} {new.name}" in words and words.endswith(f"the {new.anchor}")
        elif ex.edit_type == "remove":
            (gone,) = set(src.shapes) - set(tgt.shapes)
            assert f"the {gone.name}" in words and len(tgt.shapes) == len(src.shapes) - 1
        else:
            (old,) = set(src.shapes) - set(tgt.shapes)
            (new,) = set(tgt.shapes) - set(src.shapes)
            assert f"the {old.name}" in words and old.size == new.size
            if ex.edit_type == "recolour":
                assert (new.kind, new.anchor) == (old.kind, old.anchor) and new.colour != old.colour and new.colour in words
            elif ex.edit_type == "replace":
                assert (new.colour, new.anchor) == (old.colour, old.anchor) and new.kind != old.kind and new.kind in words
            elif ex.edit_type == "move":
                assert (new.colour, new.kind) == (old.colour, old.kind) and words.endswith(f"the {new.anchor}")
    assert Counter(ex.edit_type for ex in _examples()).keys() == set(CLASSIC_EDIT_TYPES)


def test_distractors_share_the_named_shapes_colour_or_kind() -> None:
    named = [(ex, named_shape(ex)) for ex in _examples() if named_shape(ex) is not None]
    share_colour = sum(any(s is not n and s.colour == n.colour for s in ex.source_scene.shapes) for ex, n in named)
    share_kind = sum(any(s is not n and s.kind == n.kind for s in ex.source_scene.shapes) for ex, n in named)
    assert share_colour > len(named) // 5 and share_kind > len(named) // 5


def test_instructions_phrasings_and_vocabulary() -> None:
    vocab = set(ShapesWorld.vocabulary())
    assert ShapesWorld.vocabulary() == sorted(vocab)
    assert all(len(t) >= 3 for e, t in TEMPLATES.items() if e != "caption")
    assert set(EDIT_TYPES) - {"plural", "partial-reference", "null"} <= set(TEMPLATES)
    phrasings = Counter()
    for ex in _examples():
        assert ex.instruction == ex.instruction.lower()
        assert all(w.isalpha() for w in ex.instruction.split())
        assert set(ex.instruction.split()) <= vocab, ex.instruction
        phrasings[(ex.edit_type, ex.instruction.split()[0])] += 1
    assert all(sum(1 for t, _ in phrasings if t == e) >= 3 for e in CLASSIC_EDIT_TYPES)
    for anchor in ANCHORS:
        assert set(anchor.split()) <= vocab


def test_config_variants() -> None:
    config = ShapesWorldConfig(image_size=128, min_shapes=2, max_shapes=5, edit_types=("move", "add"))
    world = ShapesWorld(config, split="test", length=40)
    assert len(world) == 40
    for i in range(40):
        ex = world[i]
        assert ex.source.shape == (128, 128, 3) and ex.edit_type in {"move", "add"}
        assert 2 <= len(ex.source_scene.shapes) <= 5 and 2 <= len(ex.target_scene.shapes) <= 6
    with pytest.raises(IndexError):
        world[40]
    with pytest.raises(ValueError):
        ShapesWorldConfig(min_shapes=0)
    with pytest.raises(ValueError):
        ShapesWorldConfig(image_size=96)  # not whole 8-px cells of an 8x8 grid
    with pytest.raises(ValueError):
        ShapesWorldConfig(edit_types=("rotate",))
    with pytest.raises(ValueError):
        ShapesWorld(split="dev")
    with pytest.raises(TypeError):
        len(ShapesWorld())


def test_write_shapes_dataset(tmp_path: Path) -> None:
    manifest = write_shapes_dataset(tmp_path / "ds", 12, split="val", progress=False)
    assert manifest == tmp_path / "ds" / "manifest.jsonl"
    records, errors = read_manifest(manifest)
    assert errors == [] and len(records) == 12
    world = ShapesWorld(split="val")
    for i, rec in enumerate(records):
        ex = world[i]
        assert rec.id == ex.id and rec.instruction == ex.instruction and rec.edit_type == ex.edit_type
        assert rec.source == (tmp_path / "ds" / "images" / f"{ex.id}_source.png").resolve()
        np.testing.assert_array_equal(np.asarray(load_image(rec.source)), ex.source)
        np.testing.assert_array_equal(np.asarray(load_image(rec.target)), ex.target)
        np.testing.assert_array_equal(load_mask(rec.mask, (64, 64)), ex.mask)
        assert Image.open(rec.mask).mode == "L"


def test_named_shape_is_the_edited_source_shape() -> None:
    for ex in _examples():
        named = named_shape(ex)
        if ex.edit_type == "add":
            assert named is None
            continue
        assert named in ex.source_scene.shapes and named.name in ex.instruction
        # The named shape is the one the edit touches: its footprint lies inside the edit mask.
        assert ex.mask[ShapesWorld().footprint(named)].all()


def test_write_confusable_edits_from_a_later_start(tmp_path: Path) -> None:
    manifest = write_shapes_dataset(tmp_path / "hard", 6, split="train", progress=False, start=500,
                                    select=has_confusable_distractor)
    records, errors = read_manifest(manifest)
    assert errors == [] and len(records) == 6
    world = ShapesWorld(split="train")
    indices = [int(rec.id.rsplit("_", 1)[1]) for rec in records]
    assert indices == sorted(indices) and indices[0] >= 500
    skipped = [i for i in range(500, indices[-1]) if i not in indices]
    assert skipped and not any(has_confusable_distractor(world[i]) for i in skipped)
    for i in indices:
        ex = world[i]
        named = named_shape(ex)
        twins = [s for s in ex.source_scene.shapes if s is not named and s.colour == named.colour]
        assert twins and all(s.kind != named.kind for s in twins)


def test_every_split_has_its_own_seed_and_its_own_scenes():
    """Held-out figures mean something only if the splits never share examples: each split's seed is its own,
    and no (source, instruction) of one split's first examples appears in another's."""
    from itertools import combinations

    from rm_edit.data.shapes import SPLIT_SEEDS

    assert len(set(SPLIT_SEEDS.values())) == len(SPLIT_SEEDS) == 3
    firsts = {}
    for split in SPLIT_SEEDS:
        world = ShapesWorld(split=split)
        firsts[split] = {(world[i].source.tobytes(), world[i].instruction) for i in range(12)}
    for a, b in combinations(SPLIT_SEEDS, 2):
        assert not firsts[a] & firsts[b], (a, b)
