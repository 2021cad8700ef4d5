"""Paste-back's seam on tinted backgrounds: mean |edit - source| on the 2-px ring around the pasted region.

    python benchmarks/benchmark_seam.py            # the shipped default model, 32 shapes test edits
    python benchmarks/benchmark_seam.py --model DIR --n 64

Each shapes test image gets its background (its most common colour) replaced by a tint the shapes world never
uses, so the decoder cannot reproduce it exactly; the edit is made with and without paste-back and both are
measured on the same ring (the pasted region's border, 2 px either side). With paste-back the outer half of
the ring is the source's bit for bit, and the feathered blend keeps the inner half close to it.
"""

from __future__ import annotations

import argparse

import numpy as np
import PIL.Image
import torch

from rm_edit.image_processor import seam_error

TINTS = [(236, 214, 200), (205, 228, 214), (200, 210, 236), (240, 232, 190)]


def tinted(source: np.ndarray, tint: tuple[int, int, int]) -> PIL.Image.Image:
    colours, counts = np.unique(source.reshape(-1, 3), axis=0, return_counts=True)
    background = colours[counts.argmax()]
    out = source.copy()
    out[(source == background).all(-1)] = tint
    return PIL.Image.fromarray(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python benchmarks/benchmark_seam.py")
    parser.add_argument("--model", help="a saved pipeline folder (default: the shipped model)")
    parser.add_argument("--n", type=int, default=32)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    import rm_edit
    from rm_edit.data.shapes import ShapesWorld

    pipe = (rm_edit.ReflectiveMaskingEditPipeline.from_pretrained(args.model) if args.model
            else rm_edit.load_default_pipeline())
    pipe.set_progress_bar_config(disable=True)
    world = ShapesWorld(split="test")
    seams = {"paste-back": [], "no paste-back": []}
    for i in range(args.n):
        ex = world[i]
        image = tinted(np.asarray(ex.source), TINTS[i % len(TINTS)])
        pasted = pipe(image, ex.instruction, paste_back=True)
        region = pasted.edit_masks[0]
        raw = pipe(image, ex.instruction, paste_back=False)
        seams["paste-back"].append(seam_error(pasted.images[0], image, region))
        seams["no paste-back"].append(seam_error(raw.images[0], image, region))
    for name, values in seams.items():
        v = np.asarray(values)
        print(f"{name:>14}: seam mean |edit - source| on the 2-px ring = {v.mean():.4f} (0-1 scale; "
              f"x255 = {v.mean() * 255:.2f} levels; max {v.max():.4f}) over {len(v)} edits")


if __name__ == "__main__":
    main()
