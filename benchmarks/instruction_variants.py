"""Instructions as people type them: pixel edit success of fresh test edits in the world's own phrasing, with a
capital first letter and a full stop, and in the other English spelling of its words (US "color" for the
world's "colour", "centre" for its "center").

    python benchmarks/instruction_variants.py --n 120 --start 30000 [--model DIR]

Prints one line per variant: successes / edits (all the edit's instructions) and, for the spelling variant,
on the edits whose instruction has a word with another spelling.
"""

from __future__ import annotations

import argparse
import re

import numpy as np
import torch
from PIL import Image

from rm_edit.data.shapes import ShapesWorld
from rm_edit.metrics import edit_success

# The world's words -> how a person with the other spelling types them.
OTHER_SPELLING = {"colour": "color", "recolour": "recolor", "center": "centre"}


def capital_and_full_stop(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def other_spelling(text: str) -> str:
    return re.sub(r"\b(\w+)\b", lambda m: OTHER_SPELLING.get(m.group(1), m.group(1)), text)


VARIANTS = {"plain": lambda t: t, "capital + full stop": capital_and_full_stop, "other spelling": other_spelling}


@torch.no_grad()
def run(pipe, n: int, start: int, batch_size: int = 16) -> dict[str, list[bool]]:
    world = ShapesWorld(split="test")
    examples = [world[i] for i in range(start, start + n)]
    results: dict[str, list[bool]] = {name: [] for name in VARIANTS}
    for name, variant in VARIANTS.items():
        for b in range(0, n, batch_size):
            chunk = examples[b : b + batch_size]
            gens = [torch.Generator().manual_seed(start + b + i) for i in range(len(chunk))]
            out = pipe([Image.fromarray(e.source) for e in chunk], [variant(e.instruction) for e in chunk],
                       generator=gens, output_type="np", paste_back=True, allow_unknown_words=True)
            results[name] += [bool(edit_success(e.source, np.asarray(img), e.target).success)
                              for e, img in zip(chunk, out.images)]
    results["_spelled"] = [other_spelling(e.instruction) != e.instruction for e in examples]
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a pipeline folder (default: the shipped default)")
    p.add_argument("--n", type=int, default=120)
    p.add_argument("--start", type=int, default=30000, help="first test-split index (fresh: no figure uses it)")
    args = p.parse_args(argv)
    import rm_edit
    from rm_edit.pipelines import ReflectiveMaskingEditPipeline

    pipe = (ReflectiveMaskingEditPipeline.from_pretrained(args.model) if args.model
            else rm_edit.load_default_pipeline())
    res = run(pipe, args.n, args.start)
    spelled = res.pop("_spelled")
    for name, ok in res.items():
        line = f"{name:>20}: {sum(ok)}/{len(ok)}"
        if name in ("plain", "other spelling"):
            line += f"  (instructions with a respellable word: {sum(o for o, s in zip(ok, spelled) if s)}/{sum(spelled)})"
        print(line)


if __name__ == "__main__":
    main()
