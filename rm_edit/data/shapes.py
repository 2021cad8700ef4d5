"""The "shapes world": seeded synthetic editing triples with exact ground truth, on a token grid.

Each example is a small RGB image of 1-3 flat-coloured shapes on a solid background, an instruction naming
one edit, the edited image and the exact edit mask. The world is *well posed*: the target is fully
determined by the source and the instruction, every edit type included (an added or moved shape goes to the
named anchor at the named size, with no random jitter).

Geometry: the image is an 8x8 grid of cells (8 px each at 64 px). Shapes are snapped to the grid and sized
in whole cells: ``small`` = one cell, ``large`` = 2x2 cells. The nine anchors are the 2x2 blocks with
top-left cells at rows/columns 0, 3 and 6 (a small shape sits in its block's top-left cell), so shapes never
overlap or touch. Every cell is therefore one of :data:`NUM_CELL_CODES` exact patterns, identified by
(background, colour, kind, size, part): :meth:`ShapesWorld.codes` gives a scene's cell ids, which are the
image tokenizer's code ids (``rm_edit.training.exact_vq``). Shapes are drawn without anti-aliasing.

Determinism: example ``i`` of split ``s`` is generated from ``numpy.random.default_rng([SPLIT_SEEDS[s], i])``
and depends only on (split, i, config). The split seeds are fixed forever:

    train: 20_261_201    val: 20_261_202    test: 20_261_203

Changing them (or the templates/palettes below) changes every dataset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from rm_edit.data.manifest import EditRecord, write_manifest

RGB = tuple[int, int, int]

SPLIT_SEEDS: dict[str, int] = {"train": 20_261_201, "val": 20_261_202, "test": 20_261_203}

BACKGROUNDS: dict[str, RGB] = {
    "light gray": (200, 200, 200),
    "beige": (238, 228, 205),
    "dark slate": (47, 60, 72),
    "off white": (248, 248, 244),
    "pale blue": (208, 226, 242),
}
COLOURS: dict[str, RGB] = {
    "red": (220, 30, 35),
    "green": (30, 160, 60),
    "blue": (35, 75, 225),
    "yellow": (245, 205, 20),
    "purple": (140, 50, 180),
    "orange": (245, 125, 20),
}
KINDS: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
SIZES: dict[str, int] = {"small": 1, "large": 2}  # side in grid cells
ANCHORS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip
EDIT_TYPES: tuple[str, ...] = ("recolour", "remove", "add", "replace", "move")

GRID = 8  # cells per image side
ANCHOR_CELLS = (0, 3, 6)  # top-left cell row/column of the three anchor blocks per axis
# Cell ids: the backgrounds first, then one id per (background, colour, kind, part); part 0 is a small
# shape's only cell, parts 1-4 a large shape's top-left, top-right, bottom-left, bottom-right cells.
PARTS = 5
NUM_CELL_CODES = len(BACKGROUNDS) * (1 + len(COLOURS) * len(KINDS) * PARTS)

_MAX_SCAN = 10_000  # write_shapes_dataset: indices tried per example before select is deemed impossible

# Placeholders: {colour} {kind} of the edited shape, {new_colour}, {new_kind},
# {size} and {anchor} (destination). Keep every word lowercase, no punctuation.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "recolour": (
        "make the {colour} {kind} {new_colour}",
        "change the colour of the {colour} {kind} to {new_colour}",
        "recolour the {colour} {kind} {new_colour}",
        "paint the {colour} {kind} {new_colour}",
        "turn the {colour} {kind} {new_colour}",
    ),
    "remove": (
        "remove the {colour} {kind}",
        "delete the {colour} {kind}",
        "erase the {colour} {kind}",
        "take away the {colour} {kind}",
    ),
    "add": (
        "add a {size} {colour} {kind} at the {anchor}",
        "draw a {size} {colour} {kind} at the {anchor}",
        "put a {size} {colour} {kind} in the {anchor}",
        "place a {size} {colour} {kind} at the {anchor}",
    ),
    "replace": (
        "turn the {colour} {kind} into a {new_kind}",
        "replace the {colour} {kind} with a {colour} {new_kind}",
        "change the {colour} {kind} into a {new_kind}",
        "make the {colour} {kind} a {new_kind}",
    ),
    "move": (
        "move the {colour} {kind} to the {anchor}",
        "shift the {colour} {kind} to the {anchor}",
        "drag the {colour} {kind} to the {anchor}",
        "put the {colour} {kind} at the {anchor}",
    ),
}
_SLOT_VALUES: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "new_colour": tuple(COLOURS),
    "kind": KINDS,
    "new_kind": KINDS,
    "size": tuple(SIZES),
    "anchor": ANCHORS,
}


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    size: str  # a key of SIZES
    anchor: str

    @property
    def name(self) -> str:
        return f"{self.colour} {self.kind}"

    @property
    def cell(self) -> tuple[int, int]:
        """(row, column) of the shape's top-left grid cell."""
        row, col = divmod(ANCHORS.index(self.anchor), 3)
        return ANCHOR_CELLS[row], ANCHOR_CELLS[col]

    @property
    def span(self) -> int:
        return SIZES[self.size]


@dataclass(frozen=True)
class Scene:
    background: str
    shapes: tuple[Shape, ...]

    def names(self) -> set[str]:
        return {s.name for s in self.shapes}

    def free_anchors(self) -> list[str]:
        used = {s.anchor for s in self.shapes}
        return [a for a in ANCHORS if a not in used]


@dataclass(frozen=True)
class ShapesWorldConfig:
    image_size: int = 64
    min_shapes: int = 1
    max_shapes: int = 3
    edit_types: tuple[str, ...] = EDIT_TYPES

    def __post_init__(self) -> None:
        if not 1 <= self.min_shapes <= self.max_shapes <= len(ANCHORS) - 1:
            raise ValueError(f"need 1 <= min_shapes <= max_shapes <= {len(ANCHORS) - 1}")
        if not self.edit_types:
            raise ValueError("edit_types is empty")
        for edit_type in self.edit_types:
            if edit_type not in EDIT_TYPES:
                raise ValueError(f"unknown edit type '{edit_type}' (known: {', '.join(EDIT_TYPES)})")
        if self.image_size < 64 or self.image_size % (8 * GRID):
            raise ValueError(f"image_size must be a multiple of {8 * GRID} (whole cells of >= 8 px), got {self.image_size}")

    @property
    def cell_px(self) -> int:
        return self.image_size // GRID


@dataclass
class EditExample:
    source: np.ndarray  # uint8 (H, W, 3)
    target: np.ndarray  # uint8 (H, W, 3)
    mask: np.ndarray  # bool (H, W); union of affected shapes' footprints
    instruction: str
    edit_type: str
    id: str
    # Symbolic ground truth, handy for evaluation and tests.
    source_scene: Scene | None = field(default=None, repr=False)
    target_scene: Scene | None = field(default=None, repr=False)


def cell_code(background: str, colour: str | None = None, kind: str | None = None, part: int = 0) -> int:
    """The id of one grid cell: a plain background cell, or one part of a shape on that background."""
    b = list(BACKGROUNDS).index(background)
    if colour is None:
        return b
    c, k = list(COLOURS).index(colour), KINDS.index(kind)
    return len(BACKGROUNDS) + ((b * len(COLOURS) + c) * len(KINDS) + k) * PARTS + part


def cell_attributes(code: int) -> dict[str, str | int | None]:
    """The inverse of :func:`cell_code`: background, colour, kind, size and part of a cell id."""
    if not 0 <= code < NUM_CELL_CODES:
        raise ValueError(f"cell id {code} out of range [0, {NUM_CELL_CODES})")
    if code < len(BACKGROUNDS):
        return {"background": list(BACKGROUNDS)[code], "colour": None, "kind": None, "size": None, "part": None}
    j, part = divmod(code - len(BACKGROUNDS), PARTS)
    j, k = divmod(j, len(KINDS))
    b, c = divmod(j, len(COLOURS))
    return {"background": list(BACKGROUNDS)[b], "colour": list(COLOURS)[c], "kind": KINDS[k],
            "size": "small" if part == 0 else "large", "part": part}


@lru_cache(maxsize=None)
def _stencil(kind: str, side: int) -> np.ndarray:
    """Bool (side, side) footprint with a margin, drawn once with aliased PIL primitives."""
    img = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(img)
    m = max(1, side // 16)
    lo, hi = m, side - 1 - m
    mid = (lo + hi) / 2
    if kind == "circle":
        draw.ellipse((lo, lo, hi, hi), fill=255)
    elif kind == "square":
        draw.rectangle((lo + m, lo + m, hi - m, hi - m), fill=255)
    elif kind == "triangle":
        draw.polygon([(mid, lo), (hi, hi), (lo, hi)], fill=255)
    elif kind == "diamond":
        draw.polygon([(mid, lo), (hi, mid), (mid, hi), (lo, mid)], fill=255)
    else:
        raise ValueError(f"unknown shape kind '{kind}'")
    stencil = np.asarray(img) > 0
    stencil.setflags(write=False)
    return stencil


def canonical_cells(cell_px: int = 8) -> np.ndarray:
    """Every cell pattern, indexed by cell id: uint8 (NUM_CELL_CODES, cell_px, cell_px, 3)."""
    cells = np.empty((NUM_CELL_CODES, cell_px, cell_px, 3), dtype=np.uint8)
    for code in range(NUM_CELL_CODES):
        a = cell_attributes(code)
        cells[code] = BACKGROUNDS[a["background"]]
        if a["colour"] is not None:
            span = 1 if a["part"] == 0 else 2
            row, col = (0, 0) if a["part"] == 0 else divmod(a["part"] - 1, 2)
            stencil = _stencil(a["kind"], span * cell_px)[row * cell_px : (row + 1) * cell_px, col * cell_px : (col + 1) * cell_px]
            cells[code][stencil] = COLOURS[a["colour"]]
    return cells


class ShapesWorld:
    """Indexable, deterministic generator of `EditExample`s.

    The world is unbounded; pass ``length`` to give it a ``len`` (e.g. for a torch DataLoader).
    """

    def __init__(self, config: ShapesWorldConfig | None = None, split: str = "train", *, length: int | None = None) -> None:
        if split not in SPLIT_SEEDS:
            raise ValueError(f"unknown split '{split}' (known: {', '.join(SPLIT_SEEDS)})")
        self.config = config or ShapesWorldConfig()
        self.split = split
        self.length = length

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("ShapesWorld is unbounded; construct it with length=N")
        return self.length

    def __getitem__(self, index: int) -> EditExample:
        source, target, instruction, edit_type, affected = self.symbolic(index)
        mask = np.zeros((self.config.image_size,) * 2, dtype=bool)
        for shape in affected:
            mask |= self.footprint(shape)
        return EditExample(
            source=self.render(source), target=self.render(target), mask=mask, instruction=instruction,
            edit_type=edit_type, id=f"{self.split}_{int(index):06d}", source_scene=source, target_scene=target,
        )

    def symbolic(self, index: int) -> tuple[Scene, Scene, str, str, list[Shape]]:
        """Example ``index`` without pixels: (source scene, target scene, instruction, edit type, affected shapes)."""
        index = int(index)
        if index < 0 or (self.length is not None and index >= self.length):
            raise IndexError(f"index {index} out of range")
        rng = np.random.default_rng([SPLIT_SEEDS[self.split], index])
        edit_type = self.config.edit_types[rng.integers(len(self.config.edit_types))]
        # Some scenes admit no edit of this type (e.g. no free anchor); redraw from the same stream.
        for _ in range(1000):
            scene = self._random_scene(rng, int(rng.integers(self.config.min_shapes, self.config.max_shapes + 1)))
            edit = _random_edit(rng, scene, edit_type)
            if edit is not None:
                break
        else:  # pragma: no cover - needs a pathological config
            raise RuntimeError(f"could not generate a '{edit_type}' edit for index {index}")
        target, affected, slots = edit
        template = TEMPLATES[edit_type][rng.integers(len(TEMPLATES[edit_type]))]
        return scene, target, template.format(**slots), edit_type, affected

    @staticmethod
    def vocabulary() -> list[str]:
        """Every word any instruction can contain, sorted."""
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

    @staticmethod
    def codes(scene: Scene) -> np.ndarray:
        """The scene's cell ids, an int64 (GRID, GRID) array (the exact tokenizer's codes)."""
        grid = np.full((GRID, GRID), cell_code(scene.background), dtype=np.int64)
        for shape in scene.shapes:
            row, col = shape.cell
            if shape.span == 1:
                grid[row, col] = cell_code(scene.background, shape.colour, shape.kind, 0)
            else:
                for part, (dr, dc) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1)), start=1):
                    grid[row + dr, col + dc] = cell_code(scene.background, shape.colour, shape.kind, part)
        return grid

    def render(self, scene: Scene) -> np.ndarray:
        """Rasterise a scene to a uint8 (H, W, 3) array."""
        size = self.config.image_size
        img = np.empty((size, size, 3), dtype=np.uint8)
        img[:] = BACKGROUNDS[scene.background]
        for shape in scene.shapes:
            self._paint(img, shape, COLOURS[shape.colour])
        return img

    def footprint(self, shape: Shape) -> np.ndarray:
        """The pixels ``shape`` covers, a bool (H, W) array."""
        mask = np.zeros((self.config.image_size,) * 2, dtype=bool)
        self._paint(mask, shape, True)
        return mask

    def _paint(self, canvas: np.ndarray, shape: Shape, value: object) -> None:
        px = self.config.cell_px
        side = shape.span * px
        row, col = shape.cell
        window = canvas[row * px : row * px + side, col * px : col * px + side]
        window[_stencil(shape.kind, side)] = value

    def _random_scene(self, rng: np.random.Generator, n: int) -> Scene:
        """``n`` shapes with unique names; the first is the likely edit focus and the others are often
        distractors sharing its colour or its kind (so both words of a name matter)."""
        background = tuple(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
        anchors = rng.choice(len(ANCHORS), size=n, replace=False)
        colour, kind = int(rng.integers(len(COLOURS))), int(rng.integers(len(KINDS)))
        names = [(colour, kind)]
        while len(names) < n:
            names.append(_related_name(rng, colour, kind, set(names)))
        shapes = [
            Shape(KINDS[k], tuple(COLOURS)[c], tuple(SIZES)[rng.integers(len(SIZES))], ANCHORS[a])
            for (c, k), a in zip(names, anchors)
        ]
        return Scene(background, tuple(shapes))


def _related_name(rng: np.random.Generator, colour: int, kind: int, used: set[tuple[int, int]]) -> tuple[int, int]:
    """A (colour, kind) not in ``used``: same colour 35%, same kind 35%, anything 30%."""
    while True:
        u = rng.random()
        if u < 0.35:
            name = (colour, int(rng.integers(len(KINDS))))
        elif u < 0.7:
            name = (int(rng.integers(len(COLOURS))), kind)
        else:
            name = (int(rng.integers(len(COLOURS))), int(rng.integers(len(KINDS))))
        if name not in used:
            return name


def _random_edit(rng: np.random.Generator, scene: Scene, edit_type: str) -> tuple[Scene, list[Shape], dict[str, str]] | None:
    """(target scene, affected shapes in source + target, template slots); the first shape is the focus."""
    shapes, free = scene.shapes, scene.free_anchors()
    focus = shapes[0]
    used = {(list(COLOURS).index(s.colour), KINDS.index(s.kind)) for s in shapes}

    def swap(new: Shape) -> Scene:
        return Scene(scene.background, tuple(new if s is focus else s for s in shapes))

    if edit_type == "add":
        if not free:
            return None
        c, k = _related_name(rng, list(COLOURS).index(focus.colour), KINDS.index(focus.kind), used)
        new = Shape(KINDS[k], tuple(COLOURS)[c], tuple(SIZES)[rng.integers(len(SIZES))], free[rng.integers(len(free))])
        slots = {"size": new.size, "colour": new.colour, "kind": new.kind, "anchor": new.anchor}
        return Scene(scene.background, shapes + (new,)), [new], slots
    if edit_type == "remove":
        return Scene(scene.background, shapes[1:]), [focus], {"colour": focus.colour, "kind": focus.kind}
    if edit_type == "move":
        if not free:
            return None
        new = replace(focus, anchor=free[rng.integers(len(free))])
        return swap(new), [focus, new], {"colour": focus.colour, "kind": focus.kind, "anchor": new.anchor}
    if edit_type == "recolour":
        options = [c for c in COLOURS if c != focus.colour and (list(COLOURS).index(c), KINDS.index(focus.kind)) not in used]
        if not options:
            return None
        new = replace(focus, colour=options[rng.integers(len(options))])
        return swap(new), [focus], {"colour": focus.colour, "kind": focus.kind, "new_colour": new.colour}
    if edit_type == "replace":
        options = [k for k in KINDS if k != focus.kind and (list(COLOURS).index(focus.colour), KINDS.index(k)) not in used]
        if not options:
            return None
        new = replace(focus, kind=options[rng.integers(len(options))])
        return swap(new), [focus, new], {"colour": focus.colour, "kind": focus.kind, "new_kind": new.kind}
    raise ValueError(f"unknown edit type '{edit_type}'")


def named_shape(ex: EditExample) -> Shape | None:
    """The source shape the instruction names (None for an add edit, which names a new shape)."""
    if ex.edit_type == "add" or ex.source_scene is None:
        return None
    return next(s for s in ex.source_scene.shapes if f"the {s.name}" in ex.instruction)


def has_confusable_distractor(ex: EditExample) -> bool:
    """True when another source shape has the named shape's colour (and so, names being unique, another
    kind): only the kind word tells the two apart."""
    named = named_shape(ex)
    return named is not None and any(s is not named and s.colour == named.colour for s in ex.source_scene.shapes)


def write_shapes_dataset(
    out_dir: str | Path,
    n: int,
    split: str = "train",
    config: ShapesWorldConfig | None = None,
    progress: bool = True,
    *,
    start: int = 0,
    select: Callable[[EditExample], bool] | None = None,
) -> Path:
    """Write ``n`` examples as PNGs plus ``manifest.jsonl``; returns the manifest path.

    Examples are the world's indices ``start, start + 1, ...``; with ``select``, only those it accepts
    (e.g. :func:`has_confusable_distractor`), scanning on until ``n`` are written.
    Layout: ``images/{id}_source.png``, ``images/{id}_target.png``,
    ``masks/{id}.png`` (white = edit region).
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    world = ShapesWorld(config, split)
    records: list[EditRecord] = []
    index = start - 1
    for _ in tqdm(range(n), desc=f"shapes world ({split})", disable=not progress, unit="ex"):
        for index in range(index + 1, index + 1 + _MAX_SCAN):
            ex = world[index]
            if select is None or select(ex):
                break
        else:
            raise RuntimeError(f"select accepted none of shapes-world {split} indices up to {index}")
        source = out_dir / "images" / f"{ex.id}_source.png"
        target = out_dir / "images" / f"{ex.id}_target.png"
        mask = out_dir / "masks" / f"{ex.id}.png"
        # Tiny flat images: fast compression loses almost nothing in size.
        Image.fromarray(ex.source).save(source, compress_level=1)
        Image.fromarray(ex.target).save(target, compress_level=1)
        Image.fromarray(ex.mask.astype(np.uint8) * 255).save(mask, compress_level=1)
        records.append(EditRecord(ex.id, source, ex.instruction, target, mask, ex.edit_type))
    return write_manifest(out_dir / "manifest.jsonl", records)
