"""Chains of successive edits: each edit is applied to the model's own previous output, and a chain is right
when every one of its edits is (pixel edit success against the world's exact target for that step).

    python benchmarks/edit_chains.py --chains 100 --length 5 [--model DIR] [--grid chains.png]

Chains come from ``ShapesWorld.chain`` on the test split (any shape of the scene may be the one named; the
world's edit types of the model's own world, null edits included: those must leave the image as it is).
Prints the share of chains right at every step, right up to each step, and per edit type.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch
from PIL import Image

from rm_edit.data.shapes import EDIT_TYPES, ShapesWorld, ShapesWorldConfig
from rm_edit.metrics import edit_success


@torch.no_grad()
def run_chains(pipe, world: ShapesWorld, chains: int, length: int, start: int = 0, batch_size: int = 20) -> dict:
    """{"right": (chains, length) bool array of each step's verdict, "types": the steps' edit types, "images"}."""
    right = np.zeros((chains, length), dtype=bool)
    types = [[""] * length for _ in range(chains)]
    images = [[None] * (length + 1) for _ in range(chains)]
    for b in range(0, chains, batch_size):
        rows = list(range(b, min(chains, b + batch_size)))
        steps = {r: world.chain(start + r, length) for r in rows}
        current = {r: world.render(steps[r][0][0]) for r in rows}
        for r in rows:
            images[r][0] = current[r]
        for t in range(length):
            gens = [torch.Generator().manual_seed(1000 * (start + r) + t) for r in rows]
            out = pipe([Image.fromarray(current[r]) for r in rows], [steps[r][t][2] for r in rows], generator=gens,
                       output_type="np", paste_back=True, allow_unknown_words=True)
            for r, img in zip(rows, out.images):
                source, target, _, edit_type = steps[r][t]
                output = np.asarray(img)
                if output.dtype != np.uint8:  # output_type "np": floats in [0, 1]
                    output = (output * 255).round().astype(np.uint8)
                right[r, t] = edit_success(world.render(source), output, world.render(target)).success
                types[r][t] = edit_type
                current[r] = images[r][t + 1] = output
    return {"right": right, "types": types, "images": images}


def summary(result: dict) -> list[str]:
    right = result["right"]
    upto = np.cumprod(right, axis=1).mean(0)
    lines = [f"chains right at every step: {int(right.all(1).sum())}/{len(right)} ({right.all(1).mean():.3f})",
             "right up to step: " + "  ".join(f"{t + 1}: {v:.3f}" for t, v in enumerate(upto))]
    by_type = defaultdict(list)
    for row_types, row_right in zip(result["types"], right):
        for edit_type, ok in zip(row_types, row_right):
            by_type[edit_type].append(bool(ok))
    lines.append("steps right by edit type: " + ", ".join(
        f"{k} {sum(v)}/{len(v)}" for k, v in sorted(by_type.items())))
    return lines


def save_grid(result: dict, path: str, rows: int = 12) -> None:
    """The first ``rows`` chains, one row each: the start image, then each output (a red frame = a wrong step)."""
    tiles = []
    for images, ok in zip(result["images"][:rows], result["right"][:rows]):
        row = [np.pad(images[0], ((2, 2), (2, 2), (0, 0)), constant_values=255)]
        for img, good in zip(images[1:], ok):
            frame = (40, 160, 40) if good else (220, 30, 30)
            row.append(np.pad(img, ((2, 2), (2, 2), (0, 0)), constant_values=0))
            row[-1][:2], row[-1][-2:], row[-1][:, :2], row[-1][:, -2:] = frame, frame, frame, frame
        tiles.append(np.concatenate(row, axis=1))
    Image.fromarray(np.concatenate(tiles, axis=0).astype(np.uint8)).save(path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a pipeline folder (default: the shipped default)")
    p.add_argument("--chains", type=int, default=100)
    p.add_argument("--length", type=int, default=5)
    p.add_argument("--start", type=int, default=0, help="first chain index (chains have their own random stream)")
    p.add_argument("--edit-types", nargs="+", default=None, help="default: the model's world (all ten types)")
    p.add_argument("--grid", help="write a PNG of the first chains here")
    args = p.parse_args(argv)
    import rm_edit
    from rm_edit.pipelines import ReflectiveMaskingEditPipeline

    pipe = ReflectiveMaskingEditPipeline.from_pretrained(args.model) if args.model else rm_edit.load_default_pipeline()
    pipe.set_progress_bar_config(disable=True)
    world = ShapesWorld(ShapesWorldConfig(edit_types=tuple(args.edit_types or EDIT_TYPES)), split="test")
    result = run_chains(pipe, world, args.chains, args.length, args.start)
    print("\n".join(summary(result)))
    if args.grid:
        save_grid(result, args.grid)
        print(f"grid: {args.grid}")


if __name__ == "__main__":
    main()
