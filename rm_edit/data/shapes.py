"""The "shapes world": seeded synthetic editing triples with exact ground truth.

Each example is a small RGB image of 1-3 flat-coloured shapes on a solid
background, an instruction naming one edit, the edited image and the exact
edit mask. Shapes sit on a 3x3 grid of named anchors (at most one shape per
anchor) and are drawn without anti-aliasing, so every pixel is known exactly.

Determinism: example ``i`` of split ``s`` is generated from
``numpy.random.default_rng([SPLIT_SEEDS[s], i])`` and depends only on
(split, i, config). The split seeds are fixed forever:

    train: 20_251_001    val: 20_251_002    test: 20_251_003

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

SPLIT_SEEDS: dict[str, int] = {"train": 20_251_001, "val": 20_251_002, "test": 20_251_003}

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
# Half-sizes at 64 px. Smaller than a 21 px grid cell allows with jitter
# (2 * 8 < 21 - 2 * 2), which is what guarantees shapes never overlap.
SIZES: dict[str, int] = {"small": 4, "medium": 6, "large": 8}
ANCHORS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip
EDIT_TYPES: tuple[str, ...] = ("recolour", "remove", "add", "replace", "move")

_BASE_SIZE = 64
_BASE_JITTER = 2
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
    size: str
    anchor: str
    x: int  # centre column, px
    y: int  # centre row, px

    @property
    def name(self) -> str:
        return f"{self.colour} {self.kind}"


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
class _Geometry:
    """Pixel layout for one image size (anchor centres, half-sizes, jitter)."""

    image_size: int
    centres: tuple[int, int, int]
    half: dict[str, int]
    jitter: int

    @staticmethod
    def for_size(image_size: int) -> _Geometry:
        if image_size < 32:  # below this small/medium/large become indistinguishable
            raise ValueError(f"image_size must be >= 32, got {image_size}")
        scale = image_size / _BASE_SIZE
        # Pixel centres of the three grid cells; the -0.5 makes them mirror-symmetric.
        centres = tuple(round(image_size * (2 * k + 1) / 6 - 0.5) for k in range(3))
        half = {name: max(1, round(h * scale)) for name, h in SIZES.items()}
        h = max(half.values())
        # Largest jitter that keeps neighbours disjoint and shapes inside the image.
        fit = min(
            (min(centres[1] - centres[0], centres[2] - centres[1]) - 2 * h - 1) // 2,
            centres[0] - h,
            image_size - 1 - centres[2] - h,
        )
        if fit < 0:
            raise ValueError(f"image_size {image_size} is too small for non-overlapping shapes")
        jitter = min(round(_BASE_JITTER * scale), fit)
        return _Geometry(image_size, centres, half, jitter)  # type: ignore[arg-type]

    def anchor_centre(self, anchor: str) -> tuple[int, int]:
        row, col = divmod(ANCHORS.index(anchor), 3)
        return self.centres[col], self.centres[row]


@dataclass(frozen=True)
class ShapesWorldConfig:
    image_size: int = 64
    min_shapes: int = 1
    max_shapes: int = 3
    edit_types: tuple[str, ...] = EDIT_TYPES

    def __post_init__(self) -> None:
        if not 0 <= self.min_shapes <= self.max_shapes <= len(ANCHORS):
            raise ValueError(f"need 0 <= min_shapes <= max_shapes <= {len(ANCHORS)}")
        if not self.edit_types:
            raise ValueError("edit_types is empty")
        for edit_type in self.edit_types:
            if edit_type not in EDIT_TYPES:
                raise ValueError(f"unknown edit type '{edit_type}' (known: {', '.join(EDIT_TYPES)})")
            lo, hi = _source_count_range(self, edit_type)
            if lo > hi:
                raise ValueError(
                    f"edit type '{edit_type}' impossible with {self.min_shapes}-{self.max_shapes} shapes"
                )
        _Geometry.for_size(self.image_size)


def _source_count_range(config: ShapesWorldConfig, edit_type: str) -> tuple[int, int]:
    """Allowed shape counts in the source so the target also stays in range."""
    lo, hi = config.min_shapes, config.max_shapes
    if edit_type == "add":
        return lo, hi - 1
    if edit_type == "remove":
        return lo + 1, hi
    if edit_type == "move":  # needs a shape and a free anchor
        return max(lo, 1), min(hi, len(ANCHORS) - 1)
    return max(lo, 1), hi


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


@lru_cache(maxsize=None)
def _stencil(kind: str, half: int) -> np.ndarray:
    """Bool (2h+1, 2h+1) footprint, drawn once with aliased PIL primitives."""
    side = 2 * half + 1
    img = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(img)
    e = side - 1
    if kind == "circle":
        draw.ellipse((0, 0, e, e), fill=255)
    elif kind == "square":
        draw.rectangle((0, 0, e, e), fill=255)
    elif kind == "triangle":
        draw.polygon([(half, 0), (e, e), (0, e)], fill=255)
    elif kind == "diamond":
        draw.polygon([(half, 0), (e, half), (half, e), (0, half)], fill=255)
    else:
        raise ValueError(f"unknown shape kind '{kind}'")
    stencil = np.asarray(img) > 0
    stencil.setflags(write=False)
    return stencil


class ShapesWorld:
    """Indexable, deterministic generator of `EditExample`s.

    The world is unbounded; pass ``length`` to give it a ``len`` (e.g. for a
    torch DataLoader).
    """

    def __init__(
        self,
        config: ShapesWorldConfig | None = None,
        split: str = "train",
        *,
        length: int | None = None,
    ) -> None:
        if split not in SPLIT_SEEDS:
            raise ValueError(f"unknown split '{split}' (known: {', '.join(SPLIT_SEEDS)})")
        self.config = config or ShapesWorldConfig()
        self.split = split
        self.length = length
        self._geom = _Geometry.for_size(self.config.image_size)

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("ShapesWorld is unbounded; construct it with length=N")
        return self.length

    def __getitem__(self, index: int) -> EditExample:
        index = int(index)
        if index < 0 or (self.length is not None and index >= self.length):
            raise IndexError(f"index {index} out of range")
        rng = np.random.default_rng([SPLIT_SEEDS[self.split], index])
        edit_type = self.config.edit_types[rng.integers(len(self.config.edit_types))]
        lo, hi = _source_count_range(self.config, edit_type)
        # Some scenes admit no edit of this type (e.g. all colours of a kind
        # present); redraw the scene from the same stream, still deterministic.
        for _ in range(1000):
            scene = self._random_scene(rng, int(rng.integers(lo, hi + 1)))
            edit = self._random_edit(rng, scene, edit_type)
            if edit is not None:
                break
        else:  # pragma: no cover - needs a pathological config
            raise RuntimeError(f"could not generate a '{edit_type}' edit for index {index}")
        target_scene, affected, slots = edit
        template = TEMPLATES[edit_type][rng.integers(len(TEMPLATES[edit_type]))]

        mask = np.zeros((self._geom.image_size,) * 2, dtype=bool)
        for shape in affected:
            mask |= self.footprint(shape)
        return EditExample(
            source=self.render(scene),
            target=self.render(target_scene),
            mask=mask,
            instruction=template.format(**slots),
            edit_type=edit_type,
            id=f"{self.split}_{index:06d}",
            source_scene=scene,
            target_scene=target_scene,
        )

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

    def render(self, scene: Scene) -> np.ndarray:
        """Rasterise a scene to a uint8 (H, W, 3) array."""
        size = self._geom.image_size
        img = np.empty((size, size, 3), dtype=np.uint8)
        img[:] = BACKGROUNDS[scene.background]
        for shape in scene.shapes:
            self._paint(img, shape, COLOURS[shape.colour])
        return img

    def footprint(self, shape: Shape) -> np.ndarray:
        """The pixels ``shape`` covers, a bool (H, W) array."""
        mask = np.zeros((self._geom.image_size,) * 2, dtype=bool)
        self._paint(mask, shape, True)
        return mask

    def _paint(self, canvas: np.ndarray, shape: Shape, value: object) -> None:
        half = self._geom.half[shape.size]
        stencil = _stencil(shape.kind, half)
        window = canvas[shape.y - half : shape.y + half + 1, shape.x - half : shape.x + half + 1]
        window[stencil] = value

    def _place(self, rng: np.random.Generator, anchor: str) -> tuple[int, int]:
        cx, cy = self._geom.anchor_centre(anchor)
        j = self._geom.jitter
        dx, dy = rng.integers(-j, j + 1, size=2)
        return cx + int(dx), cy + int(dy)

    def _new_shape(self, rng: np.random.Generator, colour: str, kind: str, anchor: str) -> Shape:
        size = tuple(SIZES)[rng.integers(len(SIZES))]
        x, y = self._place(rng, anchor)
        return Shape(kind=kind, colour=colour, size=size, anchor=anchor, x=x, y=y)

    def _random_scene(self, rng: np.random.Generator, n: int) -> Scene:
        colours = tuple(COLOURS)
        background = tuple(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
        anchors = rng.choice(len(ANCHORS), size=n, replace=False)
        # Sampling (colour, kind) pairs without replacement keeps names unique.
        names = rng.choice(len(colours) * len(KINDS), size=n, replace=False)
        shapes = tuple(
            self._new_shape(rng, colours[k // len(KINDS)], KINDS[k % len(KINDS)], ANCHORS[a])
            for a, k in zip(anchors, names)
        )
        return Scene(background, shapes)

    def _random_edit(
        self, rng: np.random.Generator, scene: Scene, edit_type: str
    ) -> tuple[Scene, list[Shape], dict[str, str]] | None:
        """Return (target scene, affected shapes in source+target, template slots)."""
        names = scene.names()
        shapes = scene.shapes
        free = scene.free_anchors()

        def swap(old: Shape, new: Shape) -> Scene:
            return Scene(scene.background, tuple(new if s is old else s for s in shapes))

        if edit_type == "add":
            options = [(c, k) for c in COLOURS for k in KINDS if f"{c} {k}" not in names]
            if not free or not options:
                return None
            colour, kind = options[rng.integers(len(options))]
            new = self._new_shape(rng, colour, kind, free[rng.integers(len(free))])
            slots = {"size": new.size, "colour": colour, "kind": kind, "anchor": new.anchor}
            return Scene(scene.background, shapes + (new,)), [new], slots

        if not shapes:
            return None
        if edit_type == "remove":
            old = shapes[rng.integers(len(shapes))]
            target = Scene(scene.background, tuple(s for s in shapes if s is not old))
            return target, [old], {"colour": old.colour, "kind": old.kind}

        if edit_type == "move":
            if not free:
                return None
            old = shapes[rng.integers(len(shapes))]
            anchor = free[rng.integers(len(free))]
            x, y = self._place(rng, anchor)
            new = replace(old, anchor=anchor, x=x, y=y)
            return swap(old, new), [old, new], {"colour": old.colour, "kind": old.kind, "anchor": anchor}

        if edit_type == "recolour":
            pairs = [(s, c) for s in shapes for c in COLOURS if f"{c} {s.kind}" not in names]
            if not pairs:
                return None
            old, colour = pairs[rng.integers(len(pairs))]
            new = replace(old, colour=colour)
            slots = {"colour": old.colour, "kind": old.kind, "new_colour": colour}
            return swap(old, new), [old], slots

        if edit_type == "replace":
            pairs = [(s, k) for s in shapes for k in KINDS if f"{s.colour} {k}" not in names]
            if not pairs:
                return None
            old, kind = pairs[rng.integers(len(pairs))]
            new = replace(old, kind=kind)
            slots = {"colour": old.colour, "kind": old.kind, "new_kind": kind}
            return swap(old, new), [old, new], slots

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
