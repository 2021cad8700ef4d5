"""The shapes world's geometry: palettes, anchors, shapes and scenes on the 8x8 cell grid, and the exact cell ids.

See :mod:`rm_edit.data.shapes` for the world itself (examples, rendering, datasets).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

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

GRID = 8  # cells per image side
ANCHOR_CELLS = (0, 3, 6)  # top-left cell row/column of the three anchor blocks per axis
# Cell ids: the backgrounds first, then one id per (background, colour, kind, part); part 0 is a small
# shape's only cell, parts 1-4 a large shape's top-left, top-right, bottom-left, bottom-right cells.
PARTS = 5
NUM_CELL_CODES = len(BACKGROUNDS) * (1 + len(COLOURS) * len(KINDS) * PARTS)

_MAX_SCAN = 10_000  # write_shapes_dataset: indices tried per example before select is deemed impossible


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


def read_scene(codes) -> Scene:
    """The scene an 8x8 grid of cell ids shows: its background (the top-left cell's) and a shape wherever a
    shape's top-left cell sits at an anchor's cell; cells that are no cell id of the world show nothing."""
    codes = np.asarray(codes).reshape(GRID, GRID)

    def cell(code: int) -> dict:
        return cell_attributes(code) if 0 <= code < NUM_CELL_CODES else {"background": None, "part": None}

    shapes = []
    for i, row in enumerate(ANCHOR_CELLS):
        for j, col in enumerate(ANCHOR_CELLS):
            c = cell(int(codes[row, col]))
            if c["part"] in (0, 1):  # a small shape's cell, or a large one's top-left
                shapes.append(Shape(c["kind"], c["colour"], c["size"], ANCHORS[3 * i + j]))
    return Scene(cell(int(codes[0, 0]))["background"], tuple(shapes))


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
