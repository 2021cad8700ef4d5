"""Phrasings outside the shapes world's templates, in words the model knows: how often does the default edit right,
leave the image as it was, or do something else? (The README's paragraph on instructions as people type them.)

    python benchmarks/off_template_phrasings.py [--per-rule 12] [--start 91000] [--model DIR] [--png sheet.png]

Each rule rewrites fresh test edits' own instructions (``--start`` of the test split on; the first ``--per-rule``
whose type and wording fit) and edits with ``allow_unknown_words=True``, so even a phrasing the pipeline refuses
is measured. Prints one line per rule: right (pixel edit success against the edit's target) / unchanged / other,
and whether the pipeline would refuse it. ``--png``: source, edit and target of the first three of each rule.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, ImageDraw

from rm_edit.data.shapes import CLASSIC_EDIT_TYPES, EDIT_TYPES, EditExample, ShapesWorld, ShapesWorldConfig
from rm_edit.data.shapes_language import resolve_group
from rm_edit.metrics import edit_success


def by_colour_and_kind(example) -> str | None:
    """A plural edit's group reworded by colour and kind ("remove the circles" -> "remove the red circles") where
    its members share both; None otherwise."""
    found = re.search(r"\bthe ((\w+ )?shapes|circles|squares|triangles|diamonds)\b", example.instruction)
    members = resolve_group(example.source_scene, found.group(1))
    if len({(s.colour, s.kind) for s in members}) != 1:
        return None
    group = f"{members[0].colour} {members[0].kind}s"
    return example.instruction[:found.start(1)] + group + example.instruction[found.end(1):]


# (name, edit types it applies to, pattern on the world's instruction, rewrite: a re.sub replacement, or a function
# of the edit giving its new instruction or None to pass it over)
RULES: tuple[tuple[str, tuple[str, ...], str, str | Callable[[EditExample], str | None]], ...] = (
    ("colour the X Y", ("recolour",), r"^(make|paint|turn|recolour) the (.+) (\w+)$", r"colour the \2 \3"),
    ("change the X to Y", ("recolour",), r"^(make|paint|turn|recolour) the (.+) (\w+)$", r"change the \2 to \3"),
    ("please ...", ("recolour", "remove", "move"), r"^(.*)$", r"please \1"),
    ("remove X (no 'the')", ("remove",), r"^(remove|delete|erase) the (.+)$", r"\1 \2"),
    ("take the X away", ("remove",), r"^(remove|delete|erase|take away) the (.+)$", r"take the \2 away"),
    ("put the X on the A", ("move",), r"^(move|shift|drag|put) the (.+) (to|at) the (.+)$", r"put the \2 on the \4"),
    ("add without a size", ("add",), r"^(\w+) a (small|large) (.+)$", r"\1 a \3"),
    ("a background word: dark Y", ("recolour",), r"^(make|paint|turn|recolour) the (.+) (\w+)$", r"\1 the \2 dark \3"),
    ("a background word: pale Y", ("recolour",), r"^(make|paint|turn|recolour) the (.+) (\w+)$", r"\1 the \2 pale \3"),
    ("the C Ks (colour + kind)", ("plural",), r"^", by_colour_and_kind),
)


@torch.no_grad()
def run_rule(pipe, world, rule, per_rule: int, start: int) -> tuple[dict, list]:
    name, types, pattern, rewrite = rule
    counts, shown, i = {"right": 0, "unchanged": 0, "other": 0, "refused": 0}, [], start
    while sum(counts[k] for k in ("right", "unchanged", "other")) < per_rule:
        example, i = world[i], i + 1
        if example.edit_type not in types or not re.match(pattern, example.instruction):
            continue
        text = re.sub(pattern, rewrite, example.instruction) if isinstance(rewrite, str) else rewrite(example)
        if text is None:
            continue
        source = Image.fromarray(example.source)
        try:  # the pipeline's own checks, the scene's included: a one-line ValueError is a refusal
            edited = pipe(source, text, generator=torch.Generator().manual_seed(i))
        except ValueError:
            counts["refused"] += 1
            edited = None
        if edited is None or edited.unchanged_because[0] is not None:  # measure what the model alone would do
            edited = pipe(source, text, generator=torch.Generator().manual_seed(i), allow_unknown_words=True)
        out = np.asarray(edited.images[0].convert("RGB"))
        outcome = ("right" if edit_success(example.source, out, example.target).success
                   else "unchanged" if np.array_equal(out, example.source) else "other")
        counts[outcome] += 1
        if len(shown) < 3:
            shown.append((example.source, out, example.target, f"{text} -> {outcome}"))
    return counts, shown


def sheet(rows: list, path: str) -> None:
    img = Image.new("RGB", (3 * 136 + 400, 132 * len(rows)), "white")
    draw = ImageDraw.Draw(img)
    for r, (source, out, target, label) in enumerate(rows):
        for c, a in enumerate((source, out, target)):
            img.paste(Image.fromarray(a).resize((128, 128), Image.Resampling.NEAREST), (c * 136, r * 132))
        draw.text((3 * 136 + 4, r * 132 + 58), label, fill="black")
    img.save(path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a pipeline folder (default: the shipped default)")
    p.add_argument("--per-rule", type=int, default=12)
    p.add_argument("--start", type=int, default=91000, help="first test-split index (fresh: no other figure uses it)")
    p.add_argument("--png", help="a sheet of the first three edits of each rule (source, edit, target)")
    args = p.parse_args(argv)
    import rm_edit
    from rm_edit.pipelines import ReflectiveMaskingEditPipeline

    pipe = (ReflectiveMaskingEditPipeline.from_pretrained(args.model) if args.model
            else rm_edit.load_default_pipeline())
    pipe.set_progress_bar_config(disable=True)
    shown = []
    classic, language = ShapesWorld(split="test"), ShapesWorld(ShapesWorldConfig(edit_types=EDIT_TYPES), split="test")
    for rule in RULES:
        world = classic if set(rule[1]) <= set(CLASSIC_EDIT_TYPES) else language
        counts, rows = run_rule(pipe, world, rule, args.per_rule, args.start)
        shown += rows
        refused = f"; refused by the pipeline: {counts['refused']}" if counts["refused"] else ""
        print(f"{rule[0]:>22}: right {counts['right']}, unchanged {counts['unchanged']}, other {counts['other']}"
              f" of {args.per_rule}{refused}", flush=True)
    if args.png:
        sheet(shown, args.png)


if __name__ == "__main__":
    main()
