"""Null edits (an instruction naming a shape the scene lacks, or one of several): how often the region comes back
empty and how many pixels change, through the pipeline's defaults and with the model alone.

    python benchmarks/null_edits.py [--n 500] [--start 60000] [--model DIR]

``--start``: the first test index of a world of null edits only (60,000+: no table of the README uses them). The
defaults read the scene off the codes and change nothing where the instruction names nothing
(``out.unchanged_because``) or refuse a request its image cannot hold (counted as empty); ``allow_unknown_words=True`` leaves the decision to the model, as every benchmark does.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from rm_edit.data.shapes import ShapesWorld, ShapesWorldConfig
from rm_edit.pipelines import ReflectiveMaskingEditPipeline
from rm_edit.pipelines.default_model import DEFAULT_MODEL, shipped_models


@torch.no_grad()
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--start", type=int, default=60_000)
    p.add_argument("--model", default=None, help="a model folder (default: the shipped default)")
    a = p.parse_args()
    pipe = ReflectiveMaskingEditPipeline.from_pretrained(a.model or shipped_models()[DEFAULT_MODEL])
    pipe.set_progress_bar_config(disable=True)
    world = ShapesWorld(ShapesWorldConfig(edit_types=("null",)), split="test")
    results, refused = {"defaults": [], "model alone": []}, 0
    for i in tqdm(range(a.start, a.start + a.n), desc="null edits"):
        example = world[i]
        for name, allow in (("defaults", False), ("model alone", True)):
            try:
                out = pipe(Image.fromarray(example.source), example.instruction, allow_unknown_words=allow,
                           generator=torch.Generator().manual_seed(i))
            except ValueError:  # refused in one line (a move to a taken place): nothing written, nothing changed
                refused += 1
                results[name].append((True, 0.0))
                continue
            changed = np.any(np.asarray(out.images[0].convert("RGB")) != example.source, axis=-1).mean()
            results[name].append((not bool(out.edit_region_tokens[0].any()), float(changed)))
    for name, rows in results.items():
        empty, changed = np.array(rows).T
        print(f"{name:>12}: empty region {empty.mean():.3f} ({int(empty.sum())} of {len(rows)}), "
              f"pixels changed {changed.mean() * 100:.3f}%")
    print(f"refused by the defaults (counted empty, nothing written): {refused}")


if __name__ == "__main__":
    main()
