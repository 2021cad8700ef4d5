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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from rm_edit.data.shapes_language import (AMBIGUOUS_NULL_RATE, CLASSIC_EDIT_TYPES, EDIT_TYPES, LANGUAGE_EDIT_TYPES,
                                          TEMPLATES, caption, classic_edit, full_ref, language_edit,
                                          resolve_reference, vocabulary)
from rm_edit.data.shapes_scene import (ANCHOR_CELLS, ANCHORS, BACKGROUNDS, COLOURS, GRID, KINDS, NUM_CELL_CODES, PARTS,
                                       SIZES, SPLIT_SEEDS, Scene, Shape, _MAX_SCAN, _stencil, canonical_cells,
                                       cell_attributes, cell_code)
from rm_edit.data.world_base import SeededWorld, write_world_examples

__all__ = ["ANCHOR_CELLS", "ANCHORS", "BACKGROUNDS", "CLASSIC_EDIT_TYPES", "COLOURS", "EDIT_TYPES", "GRID", "KINDS",
           "LANGUAGE_EDIT_TYPES", "NUM_CELL_CODES", "PARTS", "SIZES", "SPLIT_SEEDS", "TEMPLATES", "EditExample",
           "Scene", "Shape", "ShapesWorld", "ShapesWorldConfig", "canonical_cells", "cell_attributes", "cell_code",
           "has_confusable_distractor", "named_shape", "write_shapes_dataset"]

@dataclass(frozen=True)
class ShapesWorldConfig:
    image_size: int = 64
    min_shapes: int = 1
    max_shapes: int = 3
    # The classic five until the retrained models that know the whole language ship; ``EDIT_TYPES`` = all ten.
    edit_types: tuple[str, ...] = CLASSIC_EDIT_TYPES
    # How often a singular null edit names one of several shapes (ambiguous) where the scene allows it; the
    # test and validation worlds keep the default, a training cache may raise it.
    ambiguous_null_rate: float = AMBIGUOUS_NULL_RATE

    def __post_init__(self) -> None:
        if not 1 <= self.min_shapes <= self.max_shapes <= len(ANCHORS) - 1:
            raise ValueError(f"need 1 <= min_shapes <= max_shapes <= {len(ANCHORS) - 1}")
        if not self.edit_types:
            raise ValueError("edit_types is empty")
        for edit_type in self.edit_types:
            if edit_type not in EDIT_TYPES:
                raise ValueError(f"unknown edit type '{edit_type}' (known: {', '.join(EDIT_TYPES)})")
        if not 0.0 <= self.ambiguous_null_rate <= 1.0:
            raise ValueError(f"ambiguous_null_rate must be in [0, 1], got {self.ambiguous_null_rate}")
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


class ShapesWorld(SeededWorld):
    """Indexable, deterministic generator of `EditExample`s.

    The world is unbounded; pass ``length`` to give it a ``len`` (e.g. for a torch DataLoader).
    """

    split_seeds = SPLIT_SEEDS
    config_class = ShapesWorldConfig
    config: ShapesWorldConfig

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
        index = self._check_index(index)
        rng = np.random.default_rng([SPLIT_SEEDS[self.split], index])
        edit_type = self.config.edit_types[rng.integers(len(self.config.edit_types))]
        # Some scenes admit no edit of this type (e.g. no free anchor); redraw from the same stream.
        for _ in range(1000):
            scene = self._random_scene(rng, int(rng.integers(self.config.min_shapes, self.config.max_shapes + 1)))
            edit = _edit(rng, scene, edit_type, self.config.ambiguous_null_rate)
            if edit is not None:
                target, affected, instruction = edit
                return scene, target, instruction, edit_type, affected
        raise RuntimeError(f"could not generate a '{edit_type}' edit for index {index}")  # pragma: no cover

    def chain(self, index: int, length: int = 5) -> list[tuple[Scene, Scene, str, str]]:
        """Chain ``index`` of ``length`` successive edits, each applied to the previous one's target: a list of
        (source scene, target scene, instruction, edit type). Any shape may be the one edited; every scene keeps
        ``min_shapes .. max_shapes`` shapes with distinct names (as the world's own scenes do). Its own random
        stream, so single edits are unaffected."""
        rng = np.random.default_rng([SPLIT_SEEDS[self.split], 2, int(index)])
        lo, hi = self.config.min_shapes, self.config.max_shapes
        scene = self._random_scene(rng, int(rng.integers(lo, hi + 1)))
        steps: list[tuple[Scene, Scene, str, str]] = []
        while len(steps) < length:
            for _ in range(1000):
                edit_type = self.config.edit_types[rng.integers(len(self.config.edit_types))]
                first = int(rng.integers(len(scene.shapes)))  # the edit's focus is the scene's first shape
                shapes = (scene.shapes[first],) + scene.shapes[:first] + scene.shapes[first + 1:]
                edit = _edit(rng, Scene(scene.background, shapes), edit_type, self.config.ambiguous_null_rate)
                if edit is None:
                    continue
                target = scene if set(edit[0].shapes) == set(scene.shapes) else edit[0]  # a null edit: as it was
                if lo <= len(target.shapes) <= hi and len(target.names()) == len(target.shapes):
                    break
            else:  # pragma: no cover
                raise RuntimeError(f"could not continue chain {index} after {len(steps)} edits")
            steps.append((scene, target, edit[2], edit_type))
            scene = target
        return steps

    def caption_example(self, index: int) -> tuple[Scene, str]:
        """Text-to-image example ``index``: a scene and a caption that determines it (the base model's
        data beside the edits; its own random stream, so edits are unaffected)."""
        rng = np.random.default_rng([SPLIT_SEEDS[self.split], 1, int(index)])
        scene = self._random_scene(rng, int(rng.integers(self.config.min_shapes, self.config.max_shapes + 1)))
        return scene, caption(rng, scene)

    @staticmethod
    def vocabulary() -> list[str]:
        """Every word any instruction (or caption) can contain, sorted."""
        return vocabulary()

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


def _edit(rng: np.random.Generator, scene: Scene, edit_type: str,
          ambiguous_null_rate: float = AMBIGUOUS_NULL_RATE) -> tuple[Scene, list[Shape], str] | None:
    """(target scene, affected shapes, instruction) of an ``edit_type`` edit of ``scene``'s first shape, or None."""
    if edit_type in CLASSIC_EDIT_TYPES:
        edit = classic_edit(rng, scene, edit_type, _related_name)
        if edit is None:
            return None
        target, affected, slots = edit
        template = TEMPLATES[edit_type][rng.integers(len(TEMPLATES[edit_type]))]
        return target, affected, template.format(**slots)
    return language_edit(rng, scene, edit_type, _related_name, ambiguous_null_rate)


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


def cell_probe() -> tuple[np.ndarray, np.ndarray]:
    """(image, its cell ids) of one scene holding every part kind (a large and a small shape): a model whose image
    tokenizer reads it back exactly reads scenes as the world's cells, which the scene checks need."""
    scene = Scene("beige", (Shape("square", "green", "large", "top left"), Shape("triangle", "red", "small", "center"),
                            Shape("circle", "blue", "large", "bottom right")))
    return ShapesWorld().render(scene), ShapesWorld.codes(scene)


def named_shape(ex: EditExample) -> Shape | None:
    """The one source shape the instruction names and the edit acts on (None for an add, which names a new
    shape, a plural, which names a group, and a null edit, which names no shape of the image)."""
    if ex.edit_type in ("add", "plural", "null") or ex.source_scene is None:
        return None
    return ex.source_scene.shapes[0]  # every singular edit acts on the scene's first shape (its focus)


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
    world = ShapesWorld(config, split)

    def selected():
        index = start - 1
        for _ in tqdm(range(n), desc=f"shapes world ({split})", disable=not progress, unit="ex"):
            for index in range(index + 1, index + 1 + _MAX_SCAN):
                ex = world[index]
                if select is None or select(ex):
                    break
            else:
                raise RuntimeError(f"select accepted none of shapes-world {split} indices up to {index}")
            yield ex

    return write_world_examples(out_dir, selected())
