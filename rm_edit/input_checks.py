"""Is an input inside what the loaded model knows? Warn once per kind when it is not.

Driven by what the model folder carries: the pipeline config's optional ``world`` entry, e.g.
``{"name": "shapes", "image_size": 64}`` (optional keys: ``max_colours``, ``max_scale``, ``edit_verbs``), the
tokenizer's vocabulary (words it can only read as its unknown token) and the transformer's ``history_reference``
flag. A world model's instruction must hold one of its edit verbs: "colour the red shape blue" uses only known
words, but "colour" is only ever a noun in the shapes world, and the model erased the shape it was asked to
recolour (11 of 12 fresh test edits), so such an instruction is refused like an unknown word, as is one whose
verb always comes with a slot it leaves out ("add a red circle at the top": every "add" names a size).
A model without a ``world`` entry gets no image checks. An instruction too long for the model's sequence
length is an error (one line), not a warning.
"""

from __future__ import annotations

import difflib
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import PIL.Image


# Known worlds' defaults, used when the ``world`` entry does not say. A shapes image holds a background and a
# few flat shapes (tens of colours with resampling edges); a photo holds thousands.
# max_read_back_error: the most an image may differ (mean |difference|, 0-255) from the decoding of the codes its
# world model reads (benchmarks/read_back_errors.py, 150 test scenes each: scenes of the world <= 1.4, bilinear
# resizes <= 2.2, 16 px copies <= 8.2, JPEG at quality 10 <= 10.0; a photo-like image 28.5, noise 70.9).
# grayscale_scenes false: every shape has a colour, so a gray picture with something on it is a grayscale copy (of
# 6,000 test images, the 40 all-gray ones are empty scenes of one colour, the light gray background).
WORLD_DEFAULTS: dict[str, dict] = {"shapes": {"max_colours": 256, "max_read_back_error": 12.0,
                                              "grayscale_scenes": False}}
DEFAULT_MAX_SCALE = 4  # an input this many times the world's image side (or more) is "far larger"
_COLOUR_SAMPLE_SIDE = 128  # colours are counted on a nearest-neighbour thumbnail: cheap, and a photo stays a photo


class InputOutsideWorldWarning(UserWarning):
    """An input unlike anything the loaded model was trained on: the edit is likely poor."""


def _warn(message: str) -> None:
    """Warn at the caller's line: the first frame outside rm_edit (and torch's no_grad wrapper)."""
    level, frame = 2, sys._getframe(1)  # stacklevel k warns at _getframe(k - 1)
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in ("rm_edit", "torch"):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, InputOutsideWorldWarning, stacklevel=level)


def main_colours(image: PIL.Image.Image, share: float = 0.95) -> int:
    """How many colours cover ``share`` of ``image``'s pixels, most common first, counted at 32 levels a channel
    (on a thumbnail of at most 128 px a side). A flat drawing needs a few even where a VQ decoder painted it
    (faint noise of a few levels over the whole region: a shapes edit has hundreds of exact colours); a photo
    or a gradient needs hundreds to thousands."""
    _, counts = np.unique(_thumbnail(image).reshape(-1, 3) >> 3, axis=0, return_counts=True)
    covered = np.cumsum(np.sort(counts)[::-1]) / counts.sum()
    return int(np.searchsorted(covered, share - 1e-9)) + 1


def _thumbnail(image: PIL.Image.Image) -> np.ndarray:
    """(h, w, 3) uint8 RGB of ``image``, at most 128 px a side (nearest neighbour: no colour is mixed in)."""
    img = image.convert("RGB")
    if max(img.size) > _COLOUR_SAMPLE_SIDE:
        scale = _COLOUR_SAMPLE_SIDE / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         PIL.Image.Resampling.NEAREST)
    return np.asarray(img)


def is_gray_picture(image: PIL.Image.Image, tolerance: int = 6) -> bool:
    """Every pixel gray (channels within ``tolerance``: a JPEG of a grayscale copy stays gray) and not all one value."""
    pixels = _thumbnail(image).astype(np.int16)
    gray = (np.abs(pixels[..., 0] - pixels[..., 1]) <= tolerance) & (np.abs(pixels[..., 1] - pixels[..., 2]) <= tolerance)
    return bool(gray.all()) and int(np.ptp(pixels)) > tolerance


def unknown_words(tokenizer, text: str) -> list[str]:
    """Words of ``text``, as typed, that the tokenizer can only read as its unknown token (after its own
    normalizer: "Colour." is known when "colour" is); none for byte-level tokenizers."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        enc = backend.encode(text, add_special_tokens=False)
        return list(dict.fromkeys(text[a:b] for i, (a, b) in zip(enc.ids, enc.offsets) if i == unk))
    words = re.findall(r"[\w'-]+", text)
    return [w for w in dict.fromkeys(words) if unk in tokenizer(w, add_special_tokens=False)["input_ids"]]


def known_words(tokenizer) -> list[str]:
    """The tokenizer's ordinary words (letters only; no special tokens), sorted."""
    specials = set(getattr(tokenizer, "all_special_tokens", ()))
    return sorted(w for w in tokenizer.get_vocab() if w.isalpha() and w not in specials)


def unknown_words_message(tokenizer, text: str, unknown: Sequence[str], avoid: Sequence[str] = (),
                          instructions: Sequence[str] = (), synonyms: Mapping[str, str] = {}) -> str:
    """One line: the unknown words and the nearest known ones ("'colr' is not a word this model knows; did
    you mean 'colour'?"), a known word's ``synonyms`` first ("'big'": "'large'"), never one of ``avoid`` (words an
    edit may not hold: "bigger" is near "beige", a background's name); with none close, the model's
    ``instructions`` when it has a few fixed ones."""
    vocab = [w for w in known_words(tokenizer) if w not in set(avoid)]
    near = {w: [synonyms[w.lower()]] if synonyms.get(w.lower()) in vocab
            else difflib.get_close_matches(w.lower(), vocab, n=2, cutoff=0.6) for w in unknown}
    named = ", ".join(repr(w) for w in unknown)
    verb = "is not a word" if len(unknown) == 1 else "are not words"
    guesses = [" or ".join(repr(c) for c in near[w]) + ("" if len(unknown) == 1 else f" for {w!r}")
               for w in unknown if near[w]]
    known = (f"its instructions: {', '.join(repr(t) for t in instructions)}" if instructions
             else "rm-edit info lists them")
    hint = f"did you mean {'; '.join(guesses)}?" if guesses else f"nothing close among its words ({known})"
    return (f"{named} {verb} this model knows; {hint} (instruction {text[:80]!r}; "
            "allow_unknown_words=True or --allow-unknown-words edits anyway)")


class WorldGrammar(NamedTuple):
    """What a world's instructions look like: the verbs they turn on, what an instruction opened by a verb (or
    a verb and its next word) always names ({opening: {slot: words}}: every shapes "add" names a size), the
    most edit verbs one instruction holds (None: no limit), the words the model knows only from descriptions
    of a scene, never in an edit (with a hint at what an edit may say instead), the words that join two
    requests in one instruction, which the world's instructions never do (shapes: "and"), and the places an
    instruction may name, one at most (shapes: its anchors and directions); a world of a few fixed instructions
    lists them (Sudoku), to be named when an instruction's words are far from the model's; ``synonyms``: words
    people type for one of the world's, named in the unknown-word hint ("big": "large"); ``one_at_a_time``: classes
    of words no two of which stand side by side ({"colours": ...}: "red blue")."""

    edit_verbs: tuple[str, ...] = ()
    required_slots: dict[str, dict[str, tuple[str, ...]]] = {}
    max_edit_verbs: int | None = None
    description_only_words: tuple[str, ...] = ()
    description_only_hint: str = ""
    joining_words: tuple[str, ...] = ()
    places: tuple[str, ...] = ()
    instructions: tuple[str, ...] = ()
    synonyms: dict[str, str] = {}
    one_at_a_time: dict[str, tuple[str, ...]] = {}


def world_grammar(world: dict) -> WorldGrammar:
    """The ``world`` entry's own ``edit_verbs`` (no slots, no limit), else the named world's (shapes, sudoku: read
    off its templates); none (no check) for any other model."""
    if "edit_verbs" in world:
        return WorldGrammar(tuple(world["edit_verbs"]))
    if world.get("name") == "shapes":
        from .data import shapes_language as shapes

        return WorldGrammar(shapes.EDIT_VERBS, shapes.REQUIRED_SLOTS, shapes.MAX_EDIT_VERBS,
                            shapes.DESCRIPTION_ONLY_WORDS, shapes.DESCRIPTION_ONLY_HINT, shapes.JOINING_WORDS,
                            shapes.PLACES, synonyms=shapes.SYNONYMS, one_at_a_time=shapes.ONE_AT_A_TIME)
    if world.get("name") == "sudoku":
        from .data import sudoku

        return WorldGrammar(sudoku.EDIT_VERBS, {}, sudoku.MAX_EDIT_VERBS,
                            instructions=tuple(sudoku.INSTRUCTIONS.values()))
    return WorldGrammar()


def normalized_words(tokenizer, text: str) -> list[str]:
    """``text``'s words as the tokenizer's own normalizer reads them ("Color the..." -> ["colour", "the", ...])."""
    normalizer = getattr(getattr(tokenizer, "backend_tokenizer", None), "normalizer", None)
    return (normalizer.normalize_str(text) if normalizer is not None else text.lower()).split()


def no_verb_message(text: str, words: Sequence[str], verbs: Sequence[str]) -> str:
    """One line: the instruction names no edit verb; the nearest verb in place of its first word, when close."""
    near = difflib.get_close_matches(words[0], verbs, n=1, cutoff=0.6) if words else []
    hint = f"; did you mean {' '.join(near + list(words[1:]))!r}?" if near else ""
    return (f"{text[:80]!r} has no edit verb this model knows{hint} (its verbs: {', '.join(verbs)}; "
            "allow_unknown_words=True or --allow-unknown-words edits anyway)")


def too_many_edits_message(text: str, used: Sequence[str], max_verbs: int) -> str:
    """One line: the instruction asks more edits (its edit verbs ``used``) than one of the world's instructions."""
    most = "one edit" if max_verbs == 1 else f"at most {max_verbs}"
    return (f"{text[:80]!r} asks {len(used)} edits at once ({', '.join(used)}): each instruction this model knows "
            f"asks {most}; run them one after another, each on the previous output "
            "(allow_unknown_words=True or --allow-unknown-words edits anyway)")


def joined_requests_message(text: str, joining: str) -> str:
    """One line: the instruction joins two requests with ``joining`` ("and"), which no instruction of the world does."""
    return (f"{text[:80]!r} joins two requests with {joining!r}: each instruction this model knows asks one edit of "
            "one shape or one group ('the squares', 'the red shapes'), in one direction; run them one after another, "
            "each on the previous output (allow_unknown_words=True or --allow-unknown-words edits anyway)")


def side_by_side_message(text: str, pair: Sequence[str], name: str) -> str:
    """One line: two words of one class (``name``: "colours") stand side by side, as in no instruction of the world."""
    return (f"{text[:80]!r} names two {name} in a row ({' '.join(pair)!r}), which no instruction this model knows does: "
            f"a shape is named by one of each, and so is what it becomes (allow_unknown_words=True or "
            "--allow-unknown-words edits anyway)")


def no_one_place_message(text: str, said: Sequence[str], places: Sequence[str]) -> str:
    """One line: the instruction's place words ``said`` make no one of the world's ``places`` ("up left")."""
    return (f"{text[:80]!r} names {' '.join(said)!r}, which is no one place: a shape goes to one place or one step in "
            f"one direction ({', '.join(places)}) (allow_unknown_words=True or --allow-unknown-words edits anyway)")


def description_only_message(text: str, found: Sequence[str], hint: str) -> str:
    """One line: the instruction holds words the model reads only in scene descriptions, never in an edit."""
    named = ", ".join(repr(w) for w in found)
    verb = "is a word" if len(found) == 1 else "are words"
    return (f"{named} {verb} this model knows only from scene descriptions, never in an edit ({hint}; instruction "
            f"{text[:80]!r}; allow_unknown_words=True or --allow-unknown-words edits anyway)")


SLOT_NAMES = {"ref": "shape", "new_colour": "new colour", "new_kind": "new kind", "anchor": "place"}


def missing_slot_message(text: str, verb: str, slot: str, words: Sequence[str]) -> str:
    """One line: an instruction with ``verb`` that names nothing of ``slot`` (its ``words``)."""
    shown = ", ".join(words[:8]) + (", ..." if len(words) > 8 else "")
    return (f"{text[:80]!r} names no {SLOT_NAMES.get(slot, slot)} ({shown}): every {verb!r} instruction this model "
            "knows does (allow_unknown_words=True or --allow-unknown-words edits anyway)")


def has_no_words(tokenizer, text: str) -> bool:
    """Nothing left once the tokenizer has normalised ``text`` (spaces or punctuation only)."""
    if not text.strip():
        return True
    return not tokenizer(text, add_special_tokens=False)["input_ids"]


class InputChecks:
    """The checks of one pipeline; each kind of warning is given once per pipeline."""

    def __init__(self, world: dict | None, tokenizer=None, cell: int | None = None):
        """``cell``: pixels per code of the pipeline's image grid; with the world's ``image_size`` it says which
        grid of codes the model edits (shapes: 64 / 8 = 8x8) and an image read as another is refused."""
        world = dict(world or {})
        self.world = {**WORLD_DEFAULTS.get(world.get("name"), {}), **world}
        self.tokenizer = tokenizer
        side = self.world.get("image_size")
        self.grid = side // cell if side and cell else None
        # Whether the model's codes are the world's own cells (its tokenizer reads cell_probe() back exactly): the
        # scene and board checks read them; None until the pipeline has probed its tokenizer.
        self.reads_cells: bool | None = None
        self.grammar = world_grammar(self.world)
        self.warned: set[str] = set()

    def cell_probe(self):
        """(image, codes) a world model's tokenizer must read back exactly for the scene checks; None: no world."""
        name = self.world.get("name")
        if name == "shapes":
            from .data.shapes import cell_probe

            return cell_probe()
        if name == "sudoku":
            from .data.sudoku import cell_probe

            return cell_probe()
        return None

    def _once(self, kind: str, message: str) -> None:
        if kind not in self.warned:
            self.warned.add(kind)
            _warn(message)

    @property
    def _name(self) -> str:
        return f"the {self.world['name']} model" if "name" in self.world else "this model"

    def check_images(self, images: Sequence[PIL.Image.Image], grid: tuple[int, int] | None = None,
                     allow_unknown_words: bool = False) -> None:
        """Images outside the world: refused when they read as another grid of codes (``grid``: the call's, see
        :meth:`check_grid`) or are gray in a world of coloured shapes, else a warning once per kind (not square,
        far larger or smaller, a photo's colours)."""
        if grid is not None:
            self.check_grid(grid, allow_unknown_words)
        side = self.world.get("image_size")
        max_colours = self.world.get("max_colours")
        for i, image in enumerate(images):
            w, h = image.size
            if side is not None:
                if w != h and self.grid is None:  # with a grid, check_grid refuses what reads as another
                    self._once("aspect", f"image {i} is {w}x{h}, not square: {self._name} was trained on "
                                         f"{side}x{side} images, so edits of it are likely poor")
                if max(w, h) < side:
                    self._once("small", f"image {i} is {w}x{h}, smaller than the {side}x{side} images {self._name} "
                                        "was trained on: its edits are likely poor")
                if max(w, h) >= self.world.get("max_scale", DEFAULT_MAX_SCALE) * side:
                    self._once("size", f"image {i} is {w}x{h}, far larger than the {side}x{side} images "
                                       f"{self._name} was trained on; it is resized down first")
            if self.world.get("grayscale_scenes") is False and is_gray_picture(image):
                message = (f"image {i} is gray: every shape of the {self.world.get('name')} world has a colour, so its "
                           "model would read gray shapes as colours it guesses; give it the colour picture")
                if not allow_unknown_words:
                    raise ValueError(message)
                self._once("gray", message)
            if max_colours is not None:
                n = main_colours(image)
                if n > max_colours:
                    self._once("colours", f"image {i} needs {n} colours for 95% of its pixels (a photo?): {self._name} "
                                          f"knows flat images of at most {max_colours}, so edits of it are likely poor")

    @property
    def reads_back(self) -> bool:
        """Whether the pipeline should measure how far each image is from the decoding of its codes."""
        return bool(self.reads_cells) and self.world.get("max_read_back_error") is not None

    def check_read_back(self, errors: Sequence[float], allow_unknown_words: bool = False) -> None:
        """A one-line ValueError (a warning with ``allow_unknown_words``) for an image that is no scene of the world:
        ``errors``, each image's mean |difference| (0-255) from the decoding of the codes the model reads. A photo or
        a grayscale copy of a scene was read as shapes of the world's colours and edited ("remove the purple square"
        on a grayscale example removed a gray one), exit 0."""
        limit = self.world.get("max_read_back_error")
        if not self.reads_back:
            return
        for i, error in enumerate(errors):
            if error <= limit:
                continue
            message = (f"image {i} is no {self.world.get('name')} scene: decoded from the codes the model reads, it "
                       f"differs from the input by {error:.1f} of 255 a pixel on average (the world's scenes: under 2, "
                       f"a JPEG of one at quality 10: under 10, the limit: {limit:g}); a photo or a grayscale copy?")
            if not allow_unknown_words:
                raise ValueError(message)
            self._once("read_back", message)

    def check_prompts(self, prompts: Sequence[str], allow_unknown_words: bool = False) -> None:
        """A one-line ValueError for an instruction with no words, with words the model does not know, or (a world
        model) with none of its edit verbs or without a slot its verb always fills; unless ``allow_unknown_words``:
        then a warning, once."""
        if self.tokenizer is None:
            return
        for i, text in enumerate(dict.fromkeys(prompts)):
            if has_no_words(self.tokenizer, text):
                raise ValueError(f"instruction {text!r} has no words: say what to change, e.g. "
                                 "'make the red circle blue'")
            unknown = unknown_words(self.tokenizer, text)
            if unknown and not allow_unknown_words:
                raise ValueError(unknown_words_message(self.tokenizer, text, unknown,
                                                       self.grammar.description_only_words, self.grammar.instructions,
                                                       self.grammar.synonyms))
            if unknown:
                shown = ", ".join(repr(w) for w in unknown[:5])
                self._once("words", f"instruction {text[:60]!r}: {shown} not in the model's vocabulary; "
                                    "it reads them as an unknown word")
                return
            problem = self._grammar_problem(text)
            if problem and not allow_unknown_words:
                raise ValueError(problem)
            if problem:
                self._once("grammar", f"instruction {text[:60]!r} is unlike every instruction {self._name} was "
                                      "trained on (see the error it gives without allow_unknown_words); its edit is likely poor")

    def _grammar_problem(self, text: str) -> str | None:
        """The one-line reason a world model cannot read ``text``: a word it knows only from scene descriptions,
        no edit verb, more edits than one instruction of the world asks (more verbs, or a joining word), more than
        one place ("up left"), or its first verb without a slot that verb's every instruction fills; None when it
        reads like the world's own."""
        g = self.grammar
        if not g.edit_verbs:
            return None
        words = normalized_words(self.tokenizer, text)
        found = [w for w in dict.fromkeys(words) if w in g.description_only_words]
        if found:
            return description_only_message(text, found, g.description_only_hint)
        used = [w for w in words if w in g.edit_verbs]
        if not used:
            return no_verb_message(text, words, g.edit_verbs)
        if g.max_edit_verbs is not None and len(used) > g.max_edit_verbs:
            return too_many_edits_message(text, used, g.max_edit_verbs)
        joined = [w for w in words if w in g.joining_words]
        if joined:
            return joined_requests_message(text, joined[0])
        for name, members in g.one_at_a_time.items():
            pair = next(((a, b) for a, b in zip(words, words[1:]) if a in members and b in members), None)
            if pair is not None:
                return side_by_side_message(text, pair, name)
        place_words = {w for place in g.places for w in place.split()}
        said = [w for w in words if w in place_words]
        if said and " ".join(said) not in g.places:
            return no_one_place_message(text, said, g.places)
        at = words.index(used[0])
        opening = " ".join(words[at:at + 2])  # "put a" (an add) reads differently from "put the" (a move)
        if opening not in g.required_slots:
            opening = words[at]
        for slot, slot_words in g.required_slots.get(opening, {}).items():
            if not set(words) & set(slot_words):
                return missing_slot_message(text, opening, slot, slot_words)
        return None

    def check_grid(self, grid: tuple[int, int], allow_unknown_words: bool = False) -> None:
        """A one-line ValueError when the images read as another grid of codes than the world's square one (a
        warning with ``allow_unknown_words``; a Sudoku board of another grid is no board at all: always an error).
        ``grid``: (cells across, cells down). A 64x40 shapes scene read as 10x6 cells came back with shapes erased
        or turned into others."""
        if self.grid is None or tuple(grid) == (self.grid, self.grid):
            return
        (w, h), n = grid, self.grid
        if self.world.get("name") == "sudoku":
            raise ValueError(f"the image reads as {w}x{h} cells, not a Sudoku board's {n}x{n}: the model reads boards "
                             "of 72x72 px or larger, 8 px a cell (rm-edit data sudoku writes some)")
        message = (f"the image reads as {w}x{h} cells, not the {n}x{n} of the square scenes {self._name} edits: crop or "
                   "pad it to a square (allow_unknown_words=True or --allow-unknown-words edits anyway)")
        if not allow_unknown_words:
            raise ValueError(message)
        self._once("grid", message)

    def check_requests(self, source_codes, prompts: Sequence[str], allow_unknown_words: bool = False) -> None:
        """A one-line ValueError (a warning with ``allow_unknown_words``) for an image that is no puzzle of the
        world or an instruction that asks for what its image does not have, where the world can tell from the codes
        (Sudoku: fewer than 17 given clues or clues in conflict; "fill" on a board with no empty cell; shapes: an
        add or a move to a place a shape holds). ``source_codes``: (B, h, w), one row per prompt."""
        name = self.world.get("name")
        if name not in ("sudoku", "shapes") or self.tokenizer is None or not self.reads_cells:
            return
        for i, (codes, text) in enumerate(zip(source_codes, prompts)):
            message = self._request_problem(name, i, codes, normalized_words(self.tokenizer, text), text)
            if message is None:
                continue
            if not allow_unknown_words:
                raise ValueError(message)
            self._once("request", message)

    def _request_problem(self, name: str, i: int, codes, words: list[str], text: str) -> str | None:
        if name == "sudoku":
            from .data.sudoku import instruction_problem, puzzle_problem

            if (problem := puzzle_problem(codes)) is not None:
                return f"image {i} is no Sudoku puzzle: {problem}"
        else:
            from .data.shapes_requests import instruction_problem

            if tuple(codes.shape) != (self.grid, self.grid):  # another grid, edited anyway: no scene to read
                return None
        problem = instruction_problem(codes, words)
        return None if problem is None else f"{text[:60]!r} does not fit image {i}: {problem}"

    def nothing_to_change(self, source_codes, prompts: Sequence[str]) -> list[str | None]:
        """Per prompt, why its instruction names nothing to edit in its image, where the world can tell from the
        codes (shapes: a shape or group the scene does not hold, or one of several shapes), else None: the
        pipeline then changes nothing there, whatever the model would have done."""
        if self.world.get("name") != "shapes" or self.tokenizer is None or not self.reads_cells:
            return [None] * len(prompts)
        from .data.shapes_requests import reference_problem

        return [reference_problem(codes, normalized_words(self.tokenizer, text))
                if tuple(codes.shape) == (self.grid, self.grid) else None for codes, text in zip(source_codes, prompts)]

    def result_problem(self, codes, source_codes=None) -> str | None:
        """What an edit's (h, w) codes leave undone or broken, where the world can tell (Sudoku: empty cells, cells
        in conflict; shapes, given the ``source_codes``: a shape in pieces), one line; None when nothing is or the
        world cannot tell."""
        if not self.reads_cells:
            return None
        if self.world.get("name") == "sudoku":
            from .data.sudoku import board_problem

            return board_problem(codes)
        if self.world.get("name") == "shapes" and source_codes is not None and tuple(codes.shape) == (self.grid, self.grid):
            from .data.shapes_requests import scene_problem

            return scene_problem(codes.cpu(), source_codes.cpu())
        return None

    def check_history(self, transformer) -> None:
        """``use_history`` on a transformer recorded as trained without History Reference."""
        if transformer.config.get("history_reference") is False:
            self._once("history", "use_history=True on a model trained without History Reference "
                                  "(transformer config history_reference: false); its edits may get worse")


def check_sequence_length(lengths: Sequence[int], prompts: Sequence[str], max_length: int | None) -> None:
    """One-line error when an instruction makes its editing sequence longer than the model can read."""
    if max_length is None:
        return
    for i, (n, text) in enumerate(zip(lengths, prompts)):
        if n > max_length:
            raise ValueError(f"prompt {i}: the instruction is too long for this model at this image size "
                             f"({n} tokens with the image, at most {max_length}); shorten it by "
                             f"{n - max_length} token(s): {text[:60]!r}")


def warn_identical_copies(codes, copies: int, temperature: float) -> None:
    """``num_images_per_prompt`` copies sampled at temperature > 0 that came out identical: say so (the model
    was sure of that edit: each reveal's distribution is peaked; a higher temperature varies more)."""
    import torch

    rows = [r for r in range(0, len(codes), copies)
            if all(torch.equal(codes[r], codes[r + j]) for j in range(1, copies))]
    if rows:
        _warn(f"num_images_per_prompt={copies} at temperature {temperature:g}: the copies of edit(s) {rows[:5]} "
              "came out identical (sampled, but the model is sure of them; a higher temperature varies more)")
