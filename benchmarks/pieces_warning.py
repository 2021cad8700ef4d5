"""Does the "shape in pieces" warning name wrong edits and only them? Fresh test edits of all ten types through
the pipeline (the model alone: ``allow_unknown_words=True``, as every benchmark), each judged by pixels
(``rm_edit.metrics.edit_success``) and by the warning ``rm-edit edit`` would print
(``InputChecks.result_problem``: codes unlike the whole scene they show).

    python benchmarks/pieces_warning.py [--n 500] [--start 95000] [--model DIR]

Prints the 2 x 2 table (right / wrong by pixels x warned / not) and each edit where the two disagree.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

import rm_edit
from rm_edit.data.shapes import EDIT_TYPES, ShapesWorld, ShapesWorldConfig
from rm_edit.metrics import edit_success
from rm_edit.pipelines import ReflectiveMaskingEditPipeline


@torch.no_grad()
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--start", type=int, default=95_000, help="first test-split index")
    p.add_argument("--model", help="a shapes model folder (default: the shipped default)")
    a = p.parse_args(argv)
    pipe = ReflectiveMaskingEditPipeline.from_pretrained(a.model) if a.model else rm_edit.load_default_pipeline()
    pipe.set_progress_bar_config(disable=True)
    world = ShapesWorld(ShapesWorldConfig(edit_types=EDIT_TYPES), split="test")
    table = Counter()
    for i in tqdm(range(a.start, a.start + a.n), desc="edits"):
        ex = world[i]
        out = pipe(Image.fromarray(ex.source), ex.instruction, allow_unknown_words=True,
                   generator=torch.Generator().manual_seed(i))
        right = edit_success(ex.source, np.asarray(out.images[0].convert("RGB")), ex.target).success
        warned = pipe.input_checks.result_problem(out.codes[0], out.source_codes[0]) is not None
        table[right, warned] += 1
        if right == warned:
            tqdm.write(f"{i} {ex.edit_type}: {ex.instruction!r}: {'right' if right else 'wrong'} by pixels, "
                       f"{'warned' if warned else 'not warned'}")
    print(f"{a.n} test edits from {a.start:,}\n| | warned | not warned |\n|---|---:|---:|")
    for right in (True, False):
        print(f"| {'right' if right else 'wrong'} by pixels | {table[right, True]} | {table[right, False]} |")


if __name__ == "__main__":
    main()
