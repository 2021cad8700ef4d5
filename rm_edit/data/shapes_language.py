"""The shapes world's language: instruction templates, how an instruction names shapes, and edit generation.

A *reference* names the shape an edit acts on in one of three forms: ``full`` ("the red circle"), ``kind``
("the circle": only when the scene has exactly one circle) or ``colour`` ("the red shape": exactly one red
shape). A *group* names every shape of a kind or colour ("the circles", "all the red shapes").

Edit types (``edit_type`` in a manifest):

* the classic five, named by their full reference: ``recolour``, ``remove``, ``add``, ``replace`` (new kind,
  same colour), ``move`` (to a named anchor);
* ``partial-reference``: one of recolour / remove / replace / move naming its shape by kind or colour alone;
* ``plural``: recolour or remove every shape of a group;
* ``replace-kind-colour``: a new kind and a new colour at once ("replace the purple circle with a yellow diamond");
* ``relative-move``: one anchor in a direction ("move the square left");
* ``null``: an instruction that names nothing in the image, or names one of several shapes ambiguously
  ("remove the triangle" with two triangles): the target is the source, the edit region empty.

Randomness: the classic five consume the example's random stream exactly as they did before the other types
existed, so a world restricted to them (``CLASSIC_EDIT_TYPES``) gives the same examples as ever.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from rm_edit.data.shapes_scene import ANCHORS, BACKGROUNDS, COLOURS, KINDS, SIZES, Scene, Shape

if TYPE_CHECKING:  # pragma: no cover
    pass

CLASSIC_EDIT_TYPES: tuple[str, ...] = ("recolour", "remove", "add", "replace", "move")
LANGUAGE_EDIT_TYPES: tuple[str, ...] = ("partial-reference", "plural", "replace-kind-colour", "relative-move", "null")
EDIT_TYPES: tuple[str, ...] = CLASSIC_EDIT_TYPES + LANGUAGE_EDIT_TYPES
PLURAL_KINDS: dict[str, str] = {kind: kind + "s" for kind in KINDS}
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}

# Placeholders: {ref} (a reference to the edited shape), {group} (a plural group), {colour} (the edited shape's
# own colour), {new_colour}, {new_kind}, {size}, {kind}, {anchor} (destination), {direction}, {shapes} and
# {background} (captions). Every word lowercase, no punctuation.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "recolour": (
        "make the {ref} {new_colour}",
        "change the colour of the {ref} to {new_colour}",
        "recolour the {ref} {new_colour}",
        "paint the {ref} {new_colour}",
        "turn the {ref} {new_colour}",
    ),
    "remove": ("remove the {ref}", "delete the {ref}", "erase the {ref}", "take away the {ref}"),
    "add": (
        "add a {size} {colour} {kind} at the {anchor}",
        "draw a {size} {colour} {kind} at the {anchor}",
        "put a {size} {colour} {kind} in the {anchor}",
        "place a {size} {colour} {kind} at the {anchor}",
    ),
    "replace": (
        "turn the {ref} into a {new_kind}",
        "replace the {ref} with a {colour} {new_kind}",
        "change the {ref} into a {new_kind}",
        "make the {ref} a {new_kind}",
    ),
    "move": (
        "move the {ref} to the {anchor}",
        "shift the {ref} to the {anchor}",
        "drag the {ref} to the {anchor}",
        "put the {ref} at the {anchor}",
    ),
    "replace-kind-colour": (
        "replace the {ref} with a {new_colour} {new_kind}",
        "turn the {ref} into a {new_colour} {new_kind}",
        "change the {ref} into a {new_colour} {new_kind}",
        "make the {ref} a {new_colour} {new_kind}",
    ),
    "relative-move": (
        "move the {ref} {direction}",
        "shift the {ref} {direction}",
        "move the {ref} a bit {direction}",
        "move the {ref} one step {direction}",
    ),
    "plural-recolour": (
        "make all the {group} {new_colour}",
        "make the {group} {new_colour}",
        "paint all the {group} {new_colour}",
        "turn the {group} {new_colour}",
    ),
    "plural-remove": ("remove the {group}", "remove all the {group}", "delete all the {group}", "erase the {group}"),
    "caption": ("{shapes} on a {background} background", "a {background} background with {shapes}"),
}
_SLOT_VALUES: dict[str, tuple[str, ...]] = {
    "ref": tuple(COLOURS) + KINDS + ("shape",),
    "group": tuple(PLURAL_KINDS.values()) + tuple(COLOURS) + ("shapes",),
    "colour": tuple(COLOURS),
    "new_colour": tuple(COLOURS),
    "kind": KINDS,
    "new_kind": KINDS,
    "size": tuple(SIZES),
    "anchor": ANCHORS,
    "direction": tuple(DIRECTIONS),
    "shapes": ("a", "and") + tuple(SIZES) + tuple(COLOURS) + KINDS + ("at", "the") + ANCHORS,
    "background": tuple(BACKGROUNDS),
}
_EDIT_TEMPLATES: tuple[str, ...] = tuple(t for kind, ts in TEMPLATES.items() if kind != "caption" for t in ts)
# The word each edit instruction turns on: every edit template starts with one ("take" of "take away").
EDIT_VERBS: tuple[str, ...] = tuple(sorted({t.split()[0] for t in _EDIT_TEMPLATES}))
# The most edit verbs one instruction holds: one (a sentence asking two edits is none of the world's).
MAX_EDIT_VERBS: int = max(sum(w in EDIT_VERBS for w in t.split()) for t in _EDIT_TEMPLATES)
# Each slot's words; a plural group counts as a reference ("remove the {ref}", "remove the {group}": both name shapes).
_SLOT_WORDS = {slot: {w for value in values for w in value.split()} for slot, values in _SLOT_VALUES.items()}
_SLOT_WORDS["ref"] |= _SLOT_WORDS["group"]


def _required_slots(opening: list[str]) -> dict[str, tuple[str, ...]]:
    """{slot: its words} for the slots every edit template starting with the words ``opening`` (a verb, or a verb
    and the next word: "put a" adds, "put the" moves) has."""
    templates = [t for t in _EDIT_TEMPLATES if t.split()[:len(opening)] == opening]
    slots = set.intersection(*({s.replace("group", "ref") for s in re.findall(r"\{(\w+)\}", t)} for t in templates))
    return {slot: tuple(sorted(_SLOT_WORDS[slot])) for slot in sorted(slots)}


# {verb, or verb and next word: {slot: words}}: what an instruction so opened always names in the templates
# (every "add" and every "put a" names a size; every "move" a shape).
_OPENINGS = {" ".join(t.split()[:n]) for t in _EDIT_TEMPLATES for n in (1, 2) if "{" not in " ".join(t.split()[:n])}
REQUIRED_SLOTS: dict[str, dict[str, tuple[str, ...]]] = {o: _required_slots(o.split()) for o in sorted(_OPENINGS)}

# Words the model reads only in scene captions (the backgrounds' names), never in an edit instruction. Left in
# an edit they are read as a place to paint a background: "turn the green square dark red" made the square red
# and painted dark-slate patches beside it, "make the green square pale" pale-blue ones.
_EDIT_WORDS = {w for t in _EDIT_TEMPLATES for piece in t.split()
               for w in (_SLOT_WORDS[piece[1:-1]] if piece.startswith("{") else {piece})}
DESCRIPTION_ONLY_WORDS: tuple[str, ...] = tuple(sorted(
    ({w for name in BACKGROUNDS for w in name.split()} | {"background"}) - _EDIT_WORDS))
# "and" joins the shapes of a caption and stands in no edit instruction: in one it joins two requests (two edits,
# shapes, colours or directions): "move the green square left and up" moved it to the top and left half a square
# at the left, exit 0.
JOINING_WORDS: tuple[str, ...] = tuple(w for w in ("and",) if w not in _EDIT_WORDS)
# Classes of words no two of which stand side by side in an edit instruction: a reference names one colour and one
# kind, and a new value one of each ("make the green square red blue" painted a red, blue and green patchwork;
# "make the green square triangle red" a half-red triangle, exit 0).
ONE_AT_A_TIME: dict[str, tuple[str, ...]] = {"colours": tuple(COLOURS),
                                             "kinds": tuple(KINDS) + tuple(PLURAL_KINDS.values())}
# What no instruction of the world asks, each refused in one line naming what to say instead (``rm-edit info``
# lists them; the checks: rm_edit.input_checks, rm_edit.data.shapes_requests).
OUTSIDE_THE_LANGUAGE: tuple[str, ...] = (
    "two edits in one instruction ('... and ...')", "two colours or two kinds in a row ('red blue')",
    "a group by colour and kind ('the green squares')", "every shape at once ('all the shapes')",
    "a shape named by its place ('the shape at the top left')",
    "a second shape of a colour and kind the image holds", "an add or a move to a place a shape holds")
# Where an instruction may send a shape: one anchor ("the top left") or one step in one direction ("up"). Two
# ("move the green square up left", "... down right") are no place of the world's: the default moved the square
# elsewhere and moved the triangle too, exit 0.
PLACES: tuple[str, ...] = tuple(ANCHORS) + tuple(d for d in DIRECTIONS if d not in ANCHORS)
# Words people type for a word of the world's, named in the unknown-word hint: the model never read them, so they
# are not folded onto the world's word (as "color" is onto "colour"), and spelling alone points elsewhere ("big"
# is nearest "bit").
SYNONYMS: dict[str, str] = {"big": "large", "huge": "large", "little": "small", "tiny": "small", "middle": "center",
                            "rhombus": "diamond", "violet": "purple", "eliminate": "remove", "relocate": "move"}
DESCRIPTION_ONLY_HINT = (f"a shape is {', '.join(list(COLOURS)[:-1])} or {list(COLOURS)[-1]}; the background "
                         f"({', '.join(BACKGROUNDS)}) is never edited")


_SINGULAR_OPS = ("recolour", "remove", "replace", "move")
# How often a null edit on a scene with a repeated kind or colour names one of them ambiguously (the test
# and validation splits' rate; a training cache may draw them more often: ``ShapesWorldConfig``).
AMBIGUOUS_NULL_RATE = 0.4


def vocabulary() -> list[str]:
    """Every word any instruction or caption can contain, sorted."""
    words: set[str] = set()
    for templates in TEMPLATES.values():
        for template in templates:
            for piece in re.split(r"(\{\w+\})", template):
                if piece.startswith("{"):
                    for value in _SLOT_VALUES[piece[1:-1]]:
                        words.update(value.split())
                else:
                    words.update(piece.split())
    return sorted(words)


# ---- references ---------------------------------------------------------------------------------------
def full_ref(shape: Shape) -> str:
    return f"{shape.colour} {shape.kind}"


def unique_refs(scene: Scene, shape: Shape) -> list[str]:
    """The partial references that name ``shape`` alone in ``scene`` (kind-only, colour-only)."""
    refs = []
    if sum(s.kind == shape.kind for s in scene.shapes) == 1:
        refs.append(shape.kind)
    if sum(s.colour == shape.colour for s in scene.shapes) == 1:
        refs.append(f"{shape.colour} shape")
    return refs


def resolve_reference(scene: Scene, ref: str) -> list[Shape]:
    """The shapes a singular reference matches (exactly one: well posed; none: absent; several: ambiguous)."""
    words = ref.split()
    if words[-1] == "shape":
        return [s for s in scene.shapes if s.colour == words[0]]
    if len(words) == 1:
        return [s for s in scene.shapes if s.kind == words[0]]
    return [s for s in scene.shapes if (s.colour, s.kind) == (words[0], words[1])]


def resolve_group(scene: Scene, group: str) -> list[Shape]:
    """The shapes a plural group names ("circles", "red shapes")."""
    words = group.split()
    if words[-1] == "shapes":
        return [s for s in scene.shapes if s.colour == words[0]]
    kind = next(k for k, plural in PLURAL_KINDS.items() if plural == words[0])
    return [s for s in scene.shapes if s.kind == kind]


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


# ---- edits ---------------------------------------------------------------------------------------------
Edit = tuple[Scene, list[Shape], str]  # (target scene, affected shapes in source + target, instruction)


def classic_edit(rng: np.random.Generator, scene: Scene, edit_type: str, related_name) -> tuple[Scene, list[Shape], dict[str, str]] | None:
    """(target scene, affected shapes, template slots) of a classic edit of the scene's first shape (its focus)."""
    shapes, free = scene.shapes, scene.free_anchors()
    focus = shapes[0]
    used = {(list(COLOURS).index(s.colour), KINDS.index(s.kind)) for s in shapes}

    def swap(new: Shape) -> Scene:
        return Scene(scene.background, tuple(new if s is focus else s for s in shapes))

    ref = {"ref": full_ref(focus), "colour": focus.colour}
    if edit_type == "add":
        if not free:
            return None
        c, k = related_name(rng, list(COLOURS).index(focus.colour), KINDS.index(focus.kind), used)
        new = Shape(KINDS[k], tuple(COLOURS)[c], tuple(SIZES)[rng.integers(len(SIZES))], free[rng.integers(len(free))])
        slots = {"size": new.size, "colour": new.colour, "kind": new.kind, "anchor": new.anchor}
        return Scene(scene.background, shapes + (new,)), [new], slots
    if edit_type == "remove":
        return Scene(scene.background, shapes[1:]), [focus], ref
    if edit_type == "move":
        if not free:
            return None
        new = replace(focus, anchor=free[rng.integers(len(free))])
        return swap(new), [focus, new], {**ref, "anchor": new.anchor}
    if edit_type == "recolour":
        options = [c for c in COLOURS if c != focus.colour and (list(COLOURS).index(c), KINDS.index(focus.kind)) not in used]
        if not options:
            return None
        new = replace(focus, colour=options[rng.integers(len(options))])
        return swap(new), [focus], {**ref, "new_colour": new.colour}
    if edit_type == "replace":
        options = [k for k in KINDS if k != focus.kind and (list(COLOURS).index(focus.colour), KINDS.index(k)) not in used]
        if not options:
            return None
        new = replace(focus, kind=options[rng.integers(len(options))])
        return swap(new), [focus, new], {**ref, "new_kind": new.kind}
    raise ValueError(f"unknown edit type '{edit_type}'")


def language_edit(rng: np.random.Generator, scene: Scene, edit_type: str, related_name,
                  ambiguous_null_rate: float = AMBIGUOUS_NULL_RATE) -> Edit | None:
    """An edit of one of ``LANGUAGE_EDIT_TYPES`` on ``scene`` (None when the scene admits none);
    ``ambiguous_null_rate``: see :func:`_null_edit`."""
    focus = scene.shapes[0]
    if edit_type == "partial-reference":
        refs = unique_refs(scene, focus)
        if not refs:
            return None
        op = _pick(rng, _SINGULAR_OPS)
        edit = classic_edit(rng, scene, op, related_name)
        if edit is None:
            return None
        target, affected, slots = edit
        return target, affected, _pick(rng, TEMPLATES[op]).format(**{**slots, "ref": _pick(rng, refs)})
    if edit_type == "replace-kind-colour":
        used = {(s.colour, s.kind) for s in scene.shapes}
        options = [(c, k) for c in COLOURS for k in KINDS if c != focus.colour and k != focus.kind and (c, k) not in used]
        colour, kind = _pick(rng, options)
        new = replace(focus, colour=colour, kind=kind)
        target = Scene(scene.background, tuple(new if s is focus else s for s in scene.shapes))
        ref = _pick(rng, [full_ref(focus)] + unique_refs(scene, focus))
        return target, [focus, new], _pick(rng, TEMPLATES[edit_type]).format(ref=ref, new_colour=colour, new_kind=kind)
    if edit_type == "relative-move":
        row, col = divmod(ANCHORS.index(focus.anchor), 3)
        free = set(scene.free_anchors())
        moves = [(d, ANCHORS[(row + dr) * 3 + col + dc]) for d, (dr, dc) in DIRECTIONS.items()
                 if 0 <= row + dr < 3 and 0 <= col + dc < 3 and ANCHORS[(row + dr) * 3 + col + dc] in free]
        if not moves:
            return None
        direction, anchor = _pick(rng, moves)
        new = replace(focus, anchor=anchor)
        target = Scene(scene.background, tuple(new if s is focus else s for s in scene.shapes))
        ref = _pick(rng, [full_ref(focus)] + unique_refs(scene, focus))
        return target, [focus, new], _pick(rng, TEMPLATES[edit_type]).format(ref=ref, direction=direction)
    if edit_type == "plural":
        return _plural_edit(rng, scene)
    if edit_type == "null":
        return _null_edit(rng, scene, ambiguous_null_rate)
    raise ValueError(f"unknown edit type '{edit_type}'")


def _plural_edit(rng: np.random.Generator, scene: Scene) -> Edit | None:
    """Recolour or remove every shape of the focus's kind or colour (mostly groups of two or more)."""
    focus = scene.shapes[0]
    groups = [PLURAL_KINDS[focus.kind], f"{focus.colour} shapes"]
    least = 2 if rng.random() < 0.75 else 1
    groups = [g for g in groups if len(resolve_group(scene, g)) >= least]
    if not groups:
        return None
    group = _pick(rng, groups)
    members = resolve_group(scene, group)
    if rng.random() < 0.5:
        target = Scene(scene.background, tuple(s for s in scene.shapes if s not in members))
        return target, members, _pick(rng, TEMPLATES["plural-remove"]).format(group=group)
    colours = [c for c in COLOURS if any(s.colour != c for s in members)]
    colour = _pick(rng, colours)
    changed = [s for s in members if s.colour != colour]
    target = Scene(scene.background, tuple(replace(s, colour=colour) if s in changed else s for s in scene.shapes))
    affected = changed + [replace(s, colour=colour) for s in changed]
    return target, affected, _pick(rng, TEMPLATES["plural-recolour"]).format(group=group, new_colour=colour)


def _null_edit(rng: np.random.Generator, scene: Scene, ambiguous_rate: float = AMBIGUOUS_NULL_RATE) -> Edit:
    """An instruction naming nothing in the scene (absent), or one of several shapes (ambiguous): no change. A
    singular instruction on a scene with a repeated kind or colour is ambiguous with probability
    ``ambiguous_rate`` (one draw either way, so the rate changes no other example of the stream)."""
    names = {(s.colour, s.kind) for s in scene.shapes}
    ambiguous = [k for k in KINDS if sum(s.kind == k for s in scene.shapes) > 1]
    ambiguous += [f"{c} shape" for c in COLOURS if sum(s.colour == c for s in scene.shapes) > 1]
    op = _pick(rng, _SINGULAR_OPS + ("replace-kind-colour", "relative-move", "plural-recolour", "plural-remove"))
    slots = {"new_colour": _pick(rng, tuple(COLOURS)), "new_kind": _pick(rng, KINDS), "anchor": _pick(rng, ANCHORS),
             "direction": _pick(rng, tuple(DIRECTIONS)), "colour": _pick(rng, tuple(COLOURS))}
    if op.startswith("plural"):
        absent = [PLURAL_KINDS[k] for k in KINDS if all(s.kind != k for s in scene.shapes)]
        absent += [f"{c} shapes" for c in COLOURS if all(s.colour != c for s in scene.shapes)]
        slots["group"] = _pick(rng, absent)
    elif ambiguous and rng.random() < ambiguous_rate:
        slots["ref"] = _pick(rng, ambiguous)
    else:
        form = rng.random()
        if form < 0.5:
            slots["ref"] = " ".join(_pick(rng, [(c, k) for c in COLOURS for k in KINDS if (c, k) not in names]))
        elif form < 0.75 and len({s.kind for s in scene.shapes}) < len(KINDS):
            slots["ref"] = _pick(rng, [k for k in KINDS if all(s.kind != k for s in scene.shapes)])
        else:
            slots["ref"] = _pick(rng, [f"{c} shape" for c in COLOURS if all(s.colour != c for s in scene.shapes)])
    return scene, [], _pick(rng, TEMPLATES[op]).format(**slots)


def caption(rng: np.random.Generator, scene: Scene) -> str:
    """A sentence that fully determines ``scene`` (the base model's text-to-image data)."""
    parts = [f"a {s.size} {s.colour} {s.kind} at the {s.anchor}" for s in scene.shapes]
    return _pick(rng, TEMPLATES["caption"]).format(shapes=" and ".join(parts), background=scene.background)
