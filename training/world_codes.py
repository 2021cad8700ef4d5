"""Code caches of the shapes world straight from its scenes (no PNGs, no VQ pass).

The exact tokenizer maps every cell to its (background, colour, kind, part) id, so a scene's codes are
:meth:`ShapesWorld.codes`; ``tests/test_exact_vq.py`` checks they equal the VQ's own encoding of the
rendered images. Writing 200k training edits this way takes seconds instead of an hour of encoding.

    python -m rm_edit.training.world_codes --split train --n 200000 --out runs/codes/train.safetensors
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from rm_edit.data.shapes import CLASSIC_EDIT_TYPES, ShapesWorld, ShapesWorldConfig

CAPTION = "caption"  # the edit type of a text-to-image example: no source image, the caption determines the target


def write_world_code_cache(out: str | Path, split: str, n: int, start: int = 0, progress: bool = True, *,
                           edit_types: tuple[str, ...] = CLASSIC_EDIT_TYPES, captions: int = 0) -> Path:
    """Codes of edits ``start .. start + n - 1`` of ``split`` (of ``edit_types``), then ``captions``
    text-to-image examples (``edit_type`` "caption", source = target, which training never shows), in the
    ``load_code_cache`` format."""
    world = ShapesWorld(ShapesWorldConfig(edit_types=tuple(edit_types)), split=split)
    sources, targets, meta = [], [], {"ids": [], "instructions": [], "edit_types": [], "split": split, "start": start}
    for i in tqdm(range(start, start + n), desc=f"world codes ({split})", disable=not progress, unit="ex"):
        source, target, instruction, edit_type, _ = world.symbolic(i)
        sources.append(ShapesWorld.codes(source))
        targets.append(ShapesWorld.codes(target))
        meta["ids"].append(f"{split}_{i:06d}")
        meta["instructions"].append(instruction)
        meta["edit_types"].append(edit_type)
    for i in tqdm(range(captions), desc=f"world captions ({split})", disable=not progress, unit="ex"):
        scene, text = world.caption_example(i)
        sources.append(ShapesWorld.codes(scene))
        targets.append(ShapesWorld.codes(scene))
        meta["ids"].append(f"{split}_caption_{i:06d}")
        meta["instructions"].append(text)
        meta["edit_types"].append(CAPTION)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    save_file({"source": torch.from_numpy(np.stack(sources)).to(torch.int16),
               "target": torch.from_numpy(np.stack(targets)).to(torch.int16)}, str(tmp))
    os.replace(tmp, out)
    out.with_suffix(".json").write_text(json.dumps(meta))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", default="train")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--edit-types", nargs="+", default=list(CLASSIC_EDIT_TYPES))
    p.add_argument("--captions", type=int, default=0, help="text-to-image examples after the edits")
    a = p.parse_args(argv)
    print(write_world_code_cache(a.out, a.split, a.n, a.start, edit_types=tuple(a.edit_types), captions=a.captions))


if __name__ == "__main__":
    main()
