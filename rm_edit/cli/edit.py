"""``rm-edit edit``: edit one image; ``--save-trajectory`` pictures every step."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the pipeline drags in diffusers; only the command functions import it
    import numpy as np
    import PIL.Image
    import torch

    from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline

import sys

from rm_edit.files import DEFAULT_MAX_PIXELS, save_image

from .options import (PROG, CliError, SubParsers, add_sampler_options, check_image_suffix, load_pipeline, mask_image,
                      positive_int, sampler_kwargs, wrap)

# ---- edit -----------------------------------------------------------------------------------------------
_EDIT_EPILOG = """\
examples:
  rm-edit edit assets/example.png "turn the green square red" -o red.png
  rm-edit edit assets/example.png "remove the yellow square" -o out.png --save-mask region.png --save-trajectory steps.gif
  rm-edit edit assets/example.png "add a large blue circle at the top right" -o out.png --mask allowed.png
  rm-edit edit assets/example.png "move the green triangle to the bottom left" -o out.png --no-paste-back
  rm-edit info        # the default model's world, words and example instructions
"""


def add_edit_parser(subparsers: SubParsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "edit", help="edit one image with an instruction",
        description=wrap("Edit IMAGE as INSTRUCTION says and write the result (same size as IMAGE) to OUT. "
                          "With Reflective Masking the model itself picks the region to change; --save-mask shows it."),
        epilog=_EDIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", metavar="IMAGE", type=Path, help="input image (png, jpg, ...)")
    p.add_argument("instruction", metavar="INSTRUCTION", help='what to change, e.g. "make the circle blue"')
    p.add_argument("-o", "--out", type=Path, required=True, metavar="OUT", help="where to write the edited image")
    p.add_argument("--mask", type=Path, metavar="MASK.png",
                   help="only this region (white) may change; a mask of another size but the image's shape is "
                        "resized to it (with a notice), one of another shape is refused")
    p.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"refuse larger images before decoding them (default {DEFAULT_MAX_PIXELS})")
    p.add_argument("--save-mask", type=Path, metavar="MASK_OUT.png",
                   help="write the region the edit changed (white on black)")
    p.add_argument("--save-trajectory", type=Path, metavar="OUT.png|OUT.gif",
                   help="write every step (re-masked tokens tinted red): a strip (.png) or an animation (.gif)")
    add_sampler_options(p)
    return p


def run_edit(args: argparse.Namespace) -> int:
    import torch

    from rm_edit.data.manifest import open_image

    kwargs = sampler_kwargs(args)
    check_image_suffix(args.out)
    if args.save_mask is not None:
        check_image_suffix(args.save_mask, (".png",))
    if args.save_trajectory is not None:
        check_image_suffix(args.save_trajectory, (".png", ".gif"))
    if not args.instruction.strip():
        raise CliError("INSTRUCTION is empty")
    image = open_image(args.image, max_pixels=args.max_pixels)  # its own mode: grey / alpha come back as given
    region = None if args.mask is None else _load_mask_for(args.mask, image.size, args.max_pixels)
    pipe = load_pipeline(args.model, args.device, kwargs, args.compile)
    try:
        out = pipe(image, args.instruction, mask_image=region, generator=torch.Generator().manual_seed(args.seed),
                   return_trajectory=args.save_trajectory is not None, **kwargs)
    except ValueError as exc:  # unknown words, an instruction with no words, too long: one line, nothing written
        raise CliError(str(exc)) from None

    if args.save_mask is not None:
        save_image(args.save_mask, mask_image(out.edit_masks[0]))
    if args.save_trajectory is not None:
        frames = trajectory_frames(pipe, out.trajectory, item=0)
        if args.save_trajectory.suffix.lower() == ".gif":
            save_image(args.save_trajectory, frames[0], frames[1:], duration=600, loop=0)
        else:
            save_image(args.save_trajectory, filmstrip(frames))
    edited = out.images[0]
    if "A" in edited.mode and args.out.suffix.lower() in (".jpg", ".jpeg"):
        print(f"{PROG}: note: {args.out.suffix} has no alpha channel; the edit is saved without it", file=sys.stderr)
        edited = edited.convert("RGB" if edited.mode == "RGBA" else "L")
    save_image(args.out, edited)
    print(f"{args.image} -> {args.out}: {region_summary(out, 0)}")
    undone = pipe.input_checks.result_problem(out.codes[0], out.source_codes[0])
    if undone is not None:
        print(f"{PROG}: warning: {undone}", file=sys.stderr)
    if out.unchanged_because and out.unchanged_because[0]:
        print(f"nothing to change: {out.unchanged_because[0]} ({args.out} is the input as it was)")
    elif not out.edit_region_tokens[0].any():
        kept = 0 if out.remasked_tokens is None else int(out.remasked_tokens[0].sum())
        reconsidered = f"it re-masked {kept} code(s) and wrote them back as they were; " if kept else ""
        print(f"nothing to change: the model found nothing in {args.image} that {args.instruction!r} asks to "
              f"change ({reconsidered}{args.out} is the input as it was)")
    return 0


def region_summary(out, i: int) -> str:
    """Forward passes, the codes the model re-masked, those it changed, and the pixels that were repainted (the
    --save-mask region: the changed codes grown by the decoder's reach), one line."""
    tokens, pixels = out.edit_region_tokens[i], out.edit_masks[i]
    remasked = "" if out.remasked_tokens is None else f"{int(out.remasked_tokens[i].sum())} re-masked, "
    return (f"{out.num_forward_passes} forward passes, {remasked}{int(tokens.sum())} of {tokens.numel()} image codes "
            f"changed, {int(pixels.sum())} of {pixels.size} pixels repainted (the --save-mask region)")


def _load_mask_for(path: Path, size: tuple[int, int], max_pixels: int):
    """--mask at the image's size: same shape, other size -> resized (nearest) with a notice; other shape ->
    refused (it cannot be this image's mask)."""
    from rm_edit.data.manifest import load_mask, open_image

    mw, mh = open_image(path, max_pixels=max_pixels).size
    (w, h) = size
    if (mw, mh) != (w, h):
        if abs(mw * h - mh * w) > max(mw * h, mh * w) * 0.01:  # aspect ratios more than 1% apart
            raise CliError(f"--mask {path} is {mw}x{mh} but the image is {w}x{h} (another shape)")
        print(f"{PROG}: note: --mask {path} is {mw}x{mh}, the image {w}x{h}: mask resized (nearest)", file=sys.stderr)
    return load_mask(path, size, max_pixels=max_pixels)


def trajectory_frames(pipe: ReflectiveMaskingEditPipeline, trajectory: list[dict[str, torch.Tensor]],
                      item: int, min_side: int = 128) -> list[PIL.Image.Image]:
    """One picture per step: decoded codes, [MASK] cells grey, re-masked cells tinted red, step labelled."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    from rm_edit.vq import codebook_size, decode_codes

    codes = torch.stack([step["codes"][item] for step in trajectory])  # (T, h, w)
    remasked = torch.stack([step["remasked"][item] for step in trajectory]).bool()
    masked = codes >= codebook_size(pipe.vqvae)  # [MASK] has no picture: decode a stand-in, grey it out
    pixels = decode_codes(pipe.vqvae, torch.where(masked, 0, codes)).cpu()
    t, h, w = codes.shape
    cell = pixels.shape[-1] // w
    grow = lambda m: m.repeat_interleave(cell, 1).repeat_interleave(cell, 2)[..., None].numpy()  # noqa: E731
    rgb = pixels.permute(0, 2, 3, 1).numpy() * 255.0
    rgb = np.where(grow(masked), 0.3 * rgb + 0.7 * 128.0, rgb)
    rgb = np.where(grow(remasked), 0.5 * rgb + 0.5 * np.array([255.0, 0.0, 0.0]), rgb)
    scale = max(1, -(-min_side // min(rgb.shape[1:3])))  # tiny grids are unreadable at 1x
    frames = []
    for i, frame in enumerate(rgb.round().clip(0, 255).astype(np.uint8)):
        img = Image.fromarray(frame, "RGB").resize((frame.shape[1] * scale, frame.shape[0] * scale),
                                                   Image.Resampling.NEAREST)
        draw = ImageDraw.Draw(img)
        label = f"step {i}"
        box = draw.textbbox((3, 2), label)
        draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill=(0, 0, 0))
        draw.text((3, 2), label, fill=(255, 255, 255))
        frames.append(img)
    return frames


def filmstrip(frames: Sequence[PIL.Image.Image], gap: int = 4) -> PIL.Image.Image:
    from PIL import Image

    width = sum(f.width for f in frames) + gap * (len(frames) - 1)
    strip = Image.new("RGB", (width, max(f.height for f in frames)), (255, 255, 255))
    x = 0
    for f in frames:
        strip.paste(f, (x, 0))
        x += f.width + gap
    return strip


# The names rm_edit.cli.lazy_command looks for.
add_parser = add_edit_parser
run = run_edit
