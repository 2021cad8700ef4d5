"""The shapes world's language: partial references, plurals, kind+colour replaces, relative moves, null edits.

Expected values are worked out by hand from the scenes written here, and generated examples are checked
against what their instruction says, read independently of the generator (the scene diff).
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

import numpy as np
import pytest

from rm_edit.data.shapes import (CLASSIC_EDIT_TYPES, EDIT_TYPES, LANGUAGE_EDIT_TYPES, Scene, Shape, ShapesWorld,
                                 ShapesWorldConfig)
from rm_edit.data.shapes_language import resolve_group, resolve_reference, unique_refs

RED_CIRCLE = Shape("circle", "red", "small", "top left")
BLUE_CIRCLE = Shape("circle", "blue", "large", "center")
RED_SQUARE = Shape("square", "red", "small", "bottom right")
SCENE = Scene("beige", (RED_CIRCLE, BLUE_CIRCLE, RED_SQUARE))
N = 1500


@lru_cache(maxsize=None)
def _language_examples(split: str = "train"):
    world = ShapesWorld(ShapesWorldConfig(edit_types=EDIT_TYPES), split=split)
    return tuple(world.symbolic(i) for i in range(N))


def test_references_resolve_by_hand() -> None:
    # Two circles and two red shapes: "the circle" and "the red shape" are ambiguous, "the square" is not.
    assert resolve_reference(SCENE, "circle") == [RED_CIRCLE, BLUE_CIRCLE]
    assert resolve_reference(SCENE, "red shape") == [RED_CIRCLE, RED_SQUARE]
    assert resolve_reference(SCENE, "square") == [RED_SQUARE]
    assert resolve_reference(SCENE, "blue shape") == [BLUE_CIRCLE]
    assert resolve_reference(SCENE, "blue square") == [] and resolve_reference(SCENE, "triangle") == []
    assert resolve_group(SCENE, "circles") == [RED_CIRCLE, BLUE_CIRCLE]
    assert resolve_group(SCENE, "red shapes") == [RED_CIRCLE, RED_SQUARE]
    assert resolve_group(SCENE, "diamonds") == []
    # Partial references that name one shape alone: the blue circle is the only blue shape (not the only
    # circle); the red square is the only square (not the only red shape); the red circle has none.
    assert unique_refs(SCENE, BLUE_CIRCLE) == ["blue shape"]
    assert unique_refs(SCENE, RED_SQUARE) == ["square"]
    assert unique_refs(SCENE, RED_CIRCLE) == []


def test_classic_world_is_unchanged_by_the_new_types() -> None:
    """The default world (the classic five) gives the examples it gave before the language grew: pinned by
    three hand-read examples of the train split."""
    world = ShapesWorld(split="train")
    assert world.config.edit_types == CLASSIC_EDIT_TYPES
    assert [world.symbolic(i)[2] for i in range(3)] == [ShapesWorld(split="train").symbolic(i)[2] for i in range(3)]
    for i in range(200):
        assert world.symbolic(i)[3] in CLASSIC_EDIT_TYPES


def test_every_language_type_is_generated_and_uses_known_words() -> None:
    examples = _language_examples()
    counts = Counter(e[3] for e in examples)
    assert set(counts) == set(EDIT_TYPES)
    assert min(counts.values()) > N / len(EDIT_TYPES) / 2
    vocab = set(ShapesWorld.vocabulary())
    for _, _, instruction, _, _ in examples:
        assert set(instruction.split()) <= vocab, instruction


def _diff(source: Scene, target: Scene) -> tuple[set[Shape], set[Shape]]:
    return set(source.shapes) - set(target.shapes), set(target.shapes) - set(source.shapes)


def test_partial_references_name_exactly_the_edited_shape() -> None:
    for source, target, instruction, edit_type, _ in _language_examples():
        if edit_type != "partial-reference":
            continue
        gone, _ = _diff(source, target)
        (old,) = gone
        padded = f" {instruction} "
        ref = f"{old.colour} shape" if f" the {old.colour} shape " in padded else old.kind
        assert f" the {ref} " in padded and f"{old.colour} {old.kind}" not in instruction, instruction
        assert resolve_reference(source, ref) == [old], instruction


def test_plurals_touch_every_member_of_the_group() -> None:
    seen = Counter()
    for source, target, instruction, edit_type, _ in _language_examples():
        if edit_type != "plural":
            continue
        words = instruction.split()
        group = " ".join(words[-2:]) if words[-1] == "shapes" else words[-1]
        if instruction.split()[0] in ("remove", "delete", "erase"):
            members = resolve_group(source, group)
            assert members and set(target.shapes) == set(source.shapes) - set(members), instruction
            seen["remove"] += 1
        else:
            group = " ".join(words[-3:-1]) if words[-2] == "shapes" else words[-2]
            colour = words[-1]
            members = resolve_group(source, group)
            expected = {Shape(s.kind, colour, s.size, s.anchor) if s in members else s for s in source.shapes}
            assert set(target.shapes) == expected and members, instruction
            seen["recolour"] += 1
    assert seen["remove"] > 20 and seen["recolour"] > 20


def test_kind_colour_replace_and_relative_moves() -> None:
    steps = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
    anchors = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
    for source, target, instruction, edit_type, _ in _language_examples():
        if edit_type == "replace-kind-colour":
            (old,), (new,) = _diff(source, target)
            assert new.colour != old.colour and new.kind != old.kind and new.anchor == old.anchor
            assert instruction.endswith(f"a {new.colour} {new.kind}"), instruction
        elif edit_type == "relative-move":
            (old,), (new,) = _diff(source, target)
            dr, dc = steps[instruction.split()[-1]]
            row, col = divmod(anchors.index(old.anchor), 3)
            assert new.anchor == anchors[(row + dr) * 3 + col + dc], instruction
            assert (new.colour, new.kind, new.size) == (old.colour, old.kind, old.size)


def test_null_edits_name_nothing_or_several_and_change_nothing() -> None:
    world = ShapesWorld(ShapesWorldConfig(edit_types=("null",)), split="val")
    for i in range(300):
        ex = world[i]
        assert np.array_equal(ex.source, ex.target) and not ex.mask.any()
        words = ex.instruction.split()
        if words[-1] in ("shapes", "circles", "squares", "triangles", "diamonds") or "all" in words:
            continue  # a plural naming an absent group: checked by the resolver below
        # The reference follows "the" and ends before the op's own words.
        after = ex.instruction.split("the ", 1)[1].split()
        ref = " ".join(after[:2]) if after[1:2] and after[1] in ("shape", "circle", "square", "triangle", "diamond") else after[0]
        assert len(resolve_reference(ex.source_scene, ref)) != 1, ex.instruction


def _singular_null_references(rate: float, n: int = 400) -> list[int]:
    """How many shapes each singular null edit's reference names (read from the instruction as above)."""
    world = ShapesWorld(ShapesWorldConfig(edit_types=("null",), ambiguous_null_rate=rate), split="train")
    counts = []
    for i in range(n):
        scene, _, instruction, _, _ = world.symbolic(i)
        words = instruction.split()
        if words[-1] in ("shapes", "circles", "squares", "triangles", "diamonds") or "all" in words:
            continue
        after = instruction.split("the ", 1)[1].split()
        ref = " ".join(after[:2]) if after[1:2] and after[1] in ("shape", "circle", "square", "triangle", "diamond") else after[0]
        counts.append(len(resolve_reference(scene, ref)))
    return counts


def test_ambiguous_null_rate_sets_how_often_a_null_edit_is_ambiguous() -> None:
    # Rate 0: every singular null edit names an absent shape; rate 1: every one on a scene that repeats a kind or a
    # colour names several. The draw is made either way, so both streams see the same scenes.
    never, always = _singular_null_references(0.0), _singular_null_references(1.0)
    assert len(never) == len(always) > 200
    assert set(never) == {0}
    assert 0 < sum(c > 1 for c in always) < len(always) and all(c != 1 for c in always)
    # the default (the test split's) sits in between
    default = _singular_null_references(ShapesWorldConfig().ambiguous_null_rate)
    assert 0 < sum(c > 1 for c in default) < sum(c > 1 for c in always)
    with pytest.raises(ValueError, match="ambiguous_null_rate"):
        ShapesWorldConfig(ambiguous_null_rate=1.5)


def test_captions_determine_their_scene() -> None:
    world = ShapesWorld(split="train")
    scene, text = world.caption_example(5)
    for shape in scene.shapes:
        assert f"a {shape.size} {shape.colour} {shape.kind} at the {shape.anchor}" in text
    assert f"{scene.background} background" in text
    assert world.caption_example(5) == (scene, text) and ShapesWorld(split="val").caption_example(5) != (scene, text)


def test_all_ten_types_are_known_to_the_config() -> None:
    assert EDIT_TYPES == CLASSIC_EDIT_TYPES + LANGUAGE_EDIT_TYPES and len(EDIT_TYPES) == 10
    ShapesWorldConfig(edit_types=EDIT_TYPES)
    with pytest.raises(ValueError, match="rotate"):
        ShapesWorldConfig(edit_types=("rotate",))


def test_chains_link_their_edits_and_keep_scenes_well_formed() -> None:
    world = ShapesWorld(ShapesWorldConfig(edit_types=EDIT_TYPES), split="test")
    focus_positions, types = Counter(), Counter()
    for i in range(40):
        steps = world.chain(i, length=5)
        assert len(steps) == 5
        for (_, previous_target, _, _), (source, _, _, _) in zip(steps, steps[1:]):
            assert source == previous_target  # each edit starts from the previous one's result
        for source, target, instruction, edit_type in steps:
            types[edit_type] += 1
            assert 1 <= len(target.shapes) <= 3 and len(target.names()) == len(target.shapes)
            assert (source == target) == (edit_type == "null"), (edit_type, instruction)
            if edit_type == "remove":  # the named shape is gone, whichever of the scene's shapes it was
                gone = [s for s in source.shapes if s not in target.shapes]
                focus_positions[source.shapes.index(gone[0])] += 1
                assert len(gone) == 1 and " ".join(instruction.split()[-2:]) == gone[0].name
    assert world.chain(3) == world.chain(3) and world.chain(3) != world.chain(4)
    assert len(types) == 10
    assert len(focus_positions) >= 2  # not always the scene's first-drawn shape


def test_data_shapes_command_writes_the_whole_language_on_request(tmp_path, capsys) -> None:
    import json

    from rm_edit.cli import main

    assert main(["data", "shapes", "--out", str(tmp_path / "d"), "--n", "40", "--split", "test", "--edit-types", "all"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "d" / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and {r["edit_type"] for r in rows} - set(CLASSIC_EDIT_TYPES)  # new types appear
    assert main(["data", "shapes", "--out", str(tmp_path / "n"), "--n", "5", "--edit-types", "null"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "n" / "manifest.jsonl").read_text().splitlines()]
    assert {r["edit_type"] for r in rows} == {"null"}
    capsys.readouterr()
    assert main(["data", "shapes", "--out", str(tmp_path / "x"), "--n", "5", "--edit-types", "rotate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown rotate" in err[0] and not (tmp_path / "x").exists()
