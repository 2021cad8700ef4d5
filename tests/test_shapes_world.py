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
    COLOURS,
    EDIT_TYPES,
    TEMPLATES,
    EditExample,
    Scene,
    ShapesWorld,
    ShapesWorldConfig,
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
    a, b = ShapesWorld()[17], ShapesWorld(ShapesWorldConfig())[17]
    for name in ("source", "target", "mask"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.instruction, a.edit_type, a.id) == (b.instruction, b.edit_type, b.id)
    # Example i must not depend on which examples were generated before it.
    world = ShapesWorld()
    _ = world[3], world[900]
    np.testing.assert_array_equal(world[17].source, a.source)

    keys = {
        split: {(ex.source.tobytes(), ex.instruction) for ex in _examples(split, 100)}
        for split in ("train", "val", "test")
    }
    assert not keys["train"] & keys["val"]
    assert not keys["train"] & keys["test"]
    assert not keys["val"] & keys["test"]
    assert _examples("val", 100)[0].id == "val_000000"


def test_images_and_shape_rules() -> None:
    world = ShapesWorld()
    counts = Counter()
    for ex in _examples():
        assert ex.source.shape == ex.target.shape == (64, 64, 3)
        assert ex.source.dtype == ex.target.dtype == np.uint8
        assert ex.mask.shape == (64, 64) and ex.mask.dtype == bool
        for scene, img in ((ex.source_scene, ex.source), (ex.target_scene, ex.target)):
            assert 1 <= len(scene.shapes) <= 3
            assert len(scene.names()) == len(scene.shapes)  # names unique
            assert len({s.anchor for s in scene.shapes}) == len(scene.shapes)  # one shape per anchor
            # No anti-aliasing: only the background and the shape colours occur.
            allowed = {BACKGROUNDS[scene.background]} | {COLOURS[s.colour] for s in scene.shapes}
            assert set(np.unique(_pack(img)).tolist()) == {int(_pack(np.array(c))) for c in allowed}
            # Shapes never overlap: individual footprints are disjoint and keep their colour.
            footprints = [_footprint(world, Scene(scene.background, (s,))) for s in scene.shapes]
            assert sum(int(f.sum()) for f in footprints) == int(_footprint(world, scene).sum())
            for shape, own in zip(scene.shapes, footprints):
                assert np.all(img[own] == COLOURS[shape.colour])
                np.testing.assert_array_equal(world.footprint(shape), own)
        counts[ex.edit_type] += 1
    assert set(counts) == set(EDIT_TYPES)


def test_mask_is_exact_union_of_affected_footprints() -> None:
    world = ShapesWorld()
    for ex in _examples():
        changed = np.any(ex.source != ex.target, axis=-1)
        assert not np.any(changed & ~ex.mask), ex.id  # every changed pixel is masked
        covered = _footprint(world, ex.source_scene) | _footprint(world, ex.target_scene)
        assert not np.any(ex.mask & ~covered), ex.id  # no mask pixel outside all shapes
        assert ex.mask.any()


def _only_difference(ex: EditExample) -> tuple[set, set]:
    src, tgt = set(ex.source_scene.shapes), set(ex.target_scene.shapes)
    return src - tgt, tgt - src


def test_each_edit_type_does_what_it_says() -> None:
    world = ShapesWorld()
    seen = set()
    for ex in _examples():
        removed, added = _only_difference(ex)
        words = ex.instruction
        bg = np.array(BACKGROUNDS[ex.source_scene.background], dtype=np.uint8)
        assert ex.target_scene.background == ex.source_scene.background
        if ex.edit_type == "recolour":
            (old,), (new,) = removed, added
            assert replace(new, colour=old.colour) == old
            assert new.colour != old.colour and old.name in words and words.split()[-1] == new.colour
            np.testing.assert_array_equal(
                _footprint(world, ex.source_scene), _footprint(world, ex.target_scene)
            )
            assert np.all(np.all(ex.target[ex.mask] == COLOURS[new.colour], axis=-1))
            assert np.all(np.all(ex.source[ex.mask] == COLOURS[old.colour], axis=-1))
        elif ex.edit_type == "remove":
            (old,), () = removed, tuple(added)
            assert old.name in words
            assert np.all(ex.target[ex.mask] == bg)
            assert np.all(np.all(ex.source[ex.mask] == COLOURS[old.colour], axis=-1))
        elif ex.edit_type == "add":
            (), (new,) = tuple(removed), added
            assert f"{new.size} {new.name}" in words and words.endswith(f"the {new.anchor}")
            assert new.anchor not in {s.anchor for s in ex.source_scene.shapes}
            assert np.all(ex.source[ex.mask] == bg)
            assert np.all(np.all(ex.target[ex.mask] == COLOURS[new.colour], axis=-1))
        elif ex.edit_type == "replace":
            (old,), (new,) = removed, added
            assert replace(new, kind=old.kind) == old
            assert new.kind != old.kind and old.name in words and words.endswith(new.kind)
            assert not np.array_equal(ex.source, ex.target)
        elif ex.edit_type == "move":
            (old,), (new,) = removed, added
            assert (new.colour, new.kind, new.size) == (old.colour, old.kind, old.size)
            assert new.anchor != old.anchor and words.endswith(f"the {new.anchor}")
            assert new.anchor not in {s.anchor for s in ex.source_scene.shapes}
            # The old spot becomes background and the shape appears at the new one.
            src_fp = _footprint(world, Scene(ex.source_scene.background, (old,)))
            tgt_fp = _footprint(world, Scene(ex.target_scene.background, (new,)))
            assert np.all(ex.target[src_fp & ~tgt_fp] == bg)
            assert np.all(np.all(ex.target[tgt_fp] == COLOURS[new.colour], axis=-1))
        seen.add(ex.edit_type)
        # The rest of the image is untouched.
        np.testing.assert_array_equal(ex.source[~ex.mask], ex.target[~ex.mask])
    assert seen == set(EDIT_TYPES)


def test_instructions_phrasings_and_vocabulary() -> None:
    vocab = set(ShapesWorld.vocabulary())
    assert ShapesWorld.vocabulary() == sorted(vocab)
    assert all(len(t) >= 3 for t in TEMPLATES.values())
    assert set(TEMPLATES) == set(EDIT_TYPES)
    phrasings = Counter()
    for ex in _examples():
        assert ex.instruction == ex.instruction.lower()
        assert all(w.isalpha() for w in ex.instruction.split())
        assert set(ex.instruction.split()) <= vocab, ex.instruction
        phrasings[(ex.edit_type, ex.instruction.split()[0])] += 1
    assert all(sum(1 for t, _ in phrasings if t == e) >= 3 for e in EDIT_TYPES)
    for anchor in ANCHORS:
        assert set(anchor.split()) <= vocab


def test_config_variants() -> None:
    config = ShapesWorldConfig(image_size=128, min_shapes=2, max_shapes=5, edit_types=("move", "add"))
    world = ShapesWorld(config, split="test", length=40)
    assert len(world) == 40
    for i in range(40):
        ex = world[i]
        assert ex.source.shape == (128, 128, 3) and ex.edit_type in {"move", "add"}
        assert 2 <= len(ex.source_scene.shapes) <= 5 and 2 <= len(ex.target_scene.shapes) <= 5
    with pytest.raises(IndexError):
        world[40]
    with pytest.raises(ValueError):
        ShapesWorldConfig(min_shapes=1, max_shapes=1, edit_types=("remove",))
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
