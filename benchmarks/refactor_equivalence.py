"""Outputs unchanged by a refactor: record 64 edits' codes and images before it, compare after.

    python benchmarks/refactor_equivalence.py --record  /work/snap/before --models /work/snap/models
    python benchmarks/refactor_equivalence.py --compare /work/snap/before --models /work/snap/models

16 settings x 4 edits of shapes test scenes: both samplers (reflective; regenerate as a model's own scheduler
and swapped in by ``strategy=``, seeded at temperature > 0), History Reference on / off, paste-back on / off,
a user mask, an odd image size (70x54: resized and cropped onto the grid), the key/value cache and non-default
sampler settings. The inputs (images, instructions, masks) are recorded too and read back by ``--compare``, so
a change to the shapes world between the two runs does not count as a difference; ``--models`` should be a
snapshot folder that no one retrains meanwhile. Every keyword is passed explicitly: a change of a default is
not a difference of the code path it selects.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import torch

EDITS_PER_SETTING = 4
ODD_SIZE = (70, 54)

# name: (model folder, odd size, user mask, pipeline keywords). Keywords are the pipeline's own names.
SETTINGS: dict[str, tuple[str, bool, bool, dict]] = {
    "rmher_her_on_raw": ("shapes-rm-her", False, False, dict(use_history=True, paste_back=False)),
    "rmher_her_on_paste": ("shapes-rm-her", False, False, dict(use_history=True, paste_back=True)),
    "rmher_her_off_raw": ("shapes-rm-her", False, False, dict(use_history=False, paste_back=False)),
    "rmher_her_off_paste": ("shapes-rm-her", False, False, dict(use_history=False, paste_back=True)),
    "rmher_user_mask": ("shapes-rm-her", False, True, dict(use_history=True, paste_back=True)),
    "rmher_odd_size_paste": ("shapes-rm-her", True, False, dict(use_history=True, paste_back=True)),
    "rmher_odd_size_kv": ("shapes-rm-her", True, False, dict(use_history=True, paste_back=False, use_kv_cache=True)),
    "rmher_settings": ("shapes-rm-her", False, False, dict(
        use_history=True, paste_back=False, num_turns=2, reveal_steps=3, remask_margin=0.5, held_code_bias=1.0,
        history_alpha=0.5)),
    "rmher_regenerate_raw": ("shapes-rm-her", False, False, dict(strategy="regenerate", paste_back=False,
                                                                 use_history=False)),
    "rmher_regenerate_mask": ("shapes-rm-her", False, True, dict(strategy="regenerate", paste_back=True,
                                                                 use_history=False)),
    "rmher_regenerate_kv": ("shapes-rm-her", False, False, dict(
        strategy="regenerate", paste_back=False, use_history=False, use_kv_cache=True, kv_cache_refresh_every=2,
        num_inference_steps=8, temperature=0.5)),
    "sft_raw": ("shapes-sft", False, False, dict(paste_back=False, use_history=False)),
    "sft_odd_paste": ("shapes-sft", True, False, dict(paste_back=True, use_history=False)),
    "rm_raw": ("shapes-rm", False, False, dict(paste_back=False, use_history=False)),
    "rm_her_on_paste": ("shapes-rm", False, False, dict(paste_back=True, use_history=True)),
    "base_mask_odd": ("shapes-base", True, True, dict(paste_back=True, use_history=False, temperature=1.0)),
}


def make_inputs(index: int, odd: bool, user_mask: bool) -> tuple[np.ndarray, str, np.ndarray | None]:
    from rm_edit.data.shapes import ShapesWorld

    ex = ShapesWorld(split="test")[index]
    image = PIL.Image.fromarray(ex.source)
    mask = PIL.Image.fromarray(ex.mask.astype(np.uint8) * 255)
    if odd:
        image, mask = image.resize(ODD_SIZE, PIL.Image.Resampling.BICUBIC), mask.resize(ODD_SIZE)
    # The user's mask: the edit's footprint grown by a cell, so the model still has to choose inside it.
    m = np.asarray(mask) > 0
    grown = np.zeros_like(m)
    for dy in range(-8, 9, 8):
        for dx in range(-8, 9, 8):
            grown |= np.roll(np.roll(m, dy, 0), dx, 1)
    return np.asarray(image), ex.instruction, grown if user_mask else None


def run_setting(pipe, images, prompts, masks, kwargs) -> dict[str, np.ndarray]:
    generators = [torch.Generator().manual_seed(1000 + i) for i in range(len(images))]
    out = pipe([PIL.Image.fromarray(a) for a in images], prompts, generator=generators,
               mask_image=None if masks[0] is None else [PIL.Image.fromarray(m.astype(np.uint8) * 255) for m in masks],
               **kwargs)
    return {
        "images": np.stack([np.asarray(im.convert("RGB")) for im in out.images]),
        "codes": out.codes.numpy(),
        "edit_masks": np.stack(out.edit_masks),
        "region_tokens": out.edit_region_tokens.numpy(),
        "passes": np.array(out.num_forward_passes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/refactor_equivalence.py")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--record", type=Path, metavar="DIR", help="write inputs and outputs to DIR")
    mode.add_argument("--compare", type=Path, metavar="DIR", help="rerun DIR's inputs and count differences")
    parser.add_argument("--models", type=Path, required=True, help="folder of the model folders (a snapshot)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from rm_edit import ReflectiveMaskingEditPipeline

    folder = args.record or args.compare
    folder.mkdir(parents=True, exist_ok=True)
    pipes: dict[str, object] = {}
    totals = {"edits": 0, "codes": 0, "images": 0, "edit_masks": 0, "region_tokens": 0, "passes": 0}
    for s, (name, (model, odd, user_mask, kwargs)) in enumerate(SETTINGS.items()):
        if model not in pipes:
            pipes[model] = ReflectiveMaskingEditPipeline.from_pretrained(args.models / model)
            pipes[model].set_progress_bar_config(disable=True)
        path = folder / f"{name}.npz"
        if args.record:
            indices = range(s * EDITS_PER_SETTING, (s + 1) * EDITS_PER_SETTING)
            rows = [make_inputs(i, odd, user_mask) for i in indices]
            images, prompts, masks = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
            result = run_setting(pipes[model], images, prompts, masks, kwargs)
            extra = {} if masks[0] is None else {"in_masks": np.stack(masks)}
            np.savez_compressed(path, in_images=np.stack(images), in_prompts=np.array(prompts), **extra, **result)
            print(f"{name}: recorded {len(images)} edits ({int(result['passes'])} passes)")
            continue
        saved = np.load(path)
        masks = list(saved["in_masks"]) if "in_masks" in saved else [None] * len(saved["in_images"])
        result = run_setting(pipes[model], list(saved["in_images"]), [str(p) for p in saved["in_prompts"]], masks, kwargs)
        n = len(saved["in_images"])
        totals["edits"] += n
        line = []
        for key in ("codes", "images", "edit_masks", "region_tokens"):
            differ = sum(not np.array_equal(saved[key][i], result[key][i]) for i in range(n))
            totals[key] += differ
            line.append(f"{key} {differ}")
        totals["passes"] += int(int(saved["passes"]) != int(result["passes"]))
        print(f"{name}: {n} edits; differing " + ", ".join(line))
    if args.compare:
        print("TOTAL " + json.dumps(totals))
        return 0 if all(v == 0 for k, v in totals.items() if k != "edits") else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
