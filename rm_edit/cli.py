"""The ``rm-edit`` command line: edit images, edit a manifest in batches, make data, train.

Subcommands live in :data:`COMMANDS` (name -> ``(add_parser, run)``). To add one, write in your module::

    def add_parser(subparsers) -> argparse.ArgumentParser:
        return subparsers.add_parser("eval", help="...", description="...")

    def run(args: argparse.Namespace) -> int:
        ...  # import heavy modules here, not at module level

and add one line to :data:`COMMANDS`: ``"eval": lazy_command("rm_edit.evaluation.cli"),``.
Raise ``ValueError`` / ``FileNotFoundError`` (or :class:`CliError`) with a one-line message for user
errors: :func:`main` prints ``rm-edit: error: <message>`` and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import textwrap
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the pipeline drags in diffusers; only the command functions import it
    import numpy as np
    import PIL.Image
    import torch

    from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline

PROG = "rm-edit"
USAGE_ERROR = 2
SubParsers = Any  # argparse._SubParsersAction is private
AddParser = Callable[[SubParsers], argparse.ArgumentParser]
Run = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse prints usage plus a message on bad options; we want one line and no exit from inside."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(f"{message} (see `{self.prog} --help`)")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _wrap(text: str) -> str:
    """Descriptions of parsers with raw (example-keeping) epilogs are not wrapped by argparse."""
    return textwrap.fill(text, 90, break_on_hyphens=False)


# ---- option types ---------------------------------------------------------------------------------------
def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _non_negative_int(text: str) -> int:
    return _whole_number(text, 0)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _unit_float(text: str) -> float:
    value = _number(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = _number(text)
    if not value >= 0.0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


# ---- shared helpers -------------------------------------------------------------------------------------
def _check_image_suffix(path: Path, allowed: Sequence[str] | None = None) -> None:
    """Fail before the (slow) model runs if the output can't be written in the asked format."""
    from PIL import Image

    suffix = path.suffix.lower()
    ok = suffix in allowed if allowed is not None else suffix in Image.registered_extensions()
    if not ok:
        expected = ", ".join(allowed) if allowed is not None else "an image suffix such as .png"
        raise CliError(f"{path}: unsupported output type {suffix or '(no suffix)'!r}; use {expected}")


def save_atomic(path: Path, image: PIL.Image.Image, frames: Sequence[PIL.Image.Image] = (), **save_kwargs: Any) -> None:
    """Write to a temp file in the target's folder, then rename: readers never see half an image."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise CliError(f"{path}: unsupported output type {path.suffix!r}")
    if frames:
        save_kwargs = {"save_all": True, "append_images": list(frames), **save_kwargs}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            image.save(fh, format=fmt, **save_kwargs)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def mask_image(mask: np.ndarray) -> PIL.Image.Image:
    """(H, W) bool -> white-on-black L image."""
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255, "L")


def _resolve_device(name: str | None) -> str:
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda: no CUDA device is available")
    return name


def load_pipeline(model: str | None, device: str | None) -> ReflectiveMaskingEditPipeline:
    """``--model DIR`` (a saved pipeline) or the model shipped with the package."""
    from diffusers.utils import logging as diffusers_logging

    import rm_edit
    from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline

    diffusers_logging.disable_progress_bar()  # the "Loading pipeline components" bar is noise in a CLI
    if model is None:
        try:
            pipe = rm_edit.load_default_pipeline()
        except FileNotFoundError as exc:
            raise CliError(f"{exc}; pass --model DIR to use a saved pipeline") from None
    else:
        folder = Path(model)
        if not (folder / "model_index.json").is_file():
            what = "does not exist" if not folder.exists() else "is not a saved pipeline (no model_index.json)"
            raise CliError(f"model folder {folder} {what}")
        try:
            pipe = ReflectiveMaskingEditPipeline.from_pretrained(folder)
        except Exception as exc:  # diffusers raises many kinds; the user needs to know which folder is bad
            raise CliError(f"cannot load model from {folder}: {_one_line(exc)}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(_resolve_device(device))


# ---- sampler options (shared by edit and batch) ----------------------------------------------------------
def add_sampler_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model and sampler")
    g.add_argument("--model", metavar="DIR", help="a saved pipeline folder (default: the model shipped with rm-edit)")
    g.add_argument("--strategy", choices=("reflective", "regenerate"), default="reflective",
                   help="reflective: re-generate only the tokens the model chooses (default); "
                        "regenerate: re-generate the whole image from all-[MASK] (baseline)")
    g.add_argument("--num-turns", type=_positive_int, metavar="N", help="reflective: keep/re-mask/reveal turns")
    g.add_argument("--reveal-steps", type=_positive_int, metavar="N", help="reflective: reveal steps per turn")
    g.add_argument("--remask-margin", type=float, metavar="F",
                   help="reflective: re-mask only where log p(MASK) - log p(code) > F (default: the model's)")
    g.add_argument("--held-code-bias", type=_non_negative_float, metavar="F",
                   help="reflective: tilt each reveal toward the code the position held, by F nats (default: the "
                        "model's, 0): higher keeps more of the source, at some cost to the edit")
    g.add_argument("--steps", type=_positive_int, metavar="N", help="regenerate: sampling steps (default 16)")
    g.add_argument("--guidance-scale", type=float, metavar="F", help="instruction guidance (default: the model's)")
    g.add_argument("--image-guidance-scale", type=float, metavar="F", help="source-image guidance (default: the model's)")
    g.add_argument("--history", action=argparse.BooleanOptionalAction, default=False,
                   help="History Reference: condition each turn on the codes seen before (default: off)")
    g.add_argument("--history-decay", type=_unit_float, default=1.0, metavar="F",
                   help="history weight decay per turn, in (0, 1] (default 1.0)")
    g.add_argument("--paste-back", action="store_true",
                   help="blend the edit into the original so pixels outside the region stay exact")
    g.add_argument("--kv-cache", action="store_true",
                   help="reuse keys/values between steps: reveal steps recompute only masked and changed codes")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0: runs are reproducible)")
    g.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")


def sampler_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline keywords the sampler options select; rejects options of the other strategy."""
    if args.strategy == "reflective" and args.steps is not None:
        raise CliError("--steps applies to --strategy regenerate; use --num-turns / --reveal-steps")
    reflective_only = {"--num-turns": args.num_turns, "--reveal-steps": args.reveal_steps,
                       "--remask-margin": args.remask_margin, "--held-code-bias": args.held_code_bias}
    given = [flag for flag, value in reflective_only.items() if value is not None]
    if args.strategy == "regenerate" and given:
        raise CliError(f"{' / '.join(given)} apply to --strategy reflective; use --steps")
    kwargs: dict[str, Any] = dict(
        strategy=args.strategy, num_turns=args.num_turns, reveal_steps=args.reveal_steps,
        remask_margin=args.remask_margin, held_code_bias=args.held_code_bias,
        guidance_scale=args.guidance_scale, image_guidance_scale=args.image_guidance_scale,
        use_history=args.history, history_decay=args.history_decay, paste_back=args.paste_back,
        use_kv_cache=args.kv_cache,
    )
    if args.steps is not None:
        kwargs["num_inference_steps"] = args.steps
    return kwargs


# ---- edit -----------------------------------------------------------------------------------------------
_EDIT_EPILOG = """\
examples:
  rm-edit edit cat.png "make the cat blue" -o blue.png
  rm-edit edit in.png "remove the red circle" -o out.png --save-mask region.png --save-trajectory steps.gif
  rm-edit edit in.png "add a green square" -o out.png --mask allowed.png --paste-back --seed 3
  rm-edit edit in.png "turn the square red" -o out.png --strategy regenerate --steps 16
"""


def add_edit_parser(subparsers: SubParsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "edit", help="edit one image with an instruction",
        description=_wrap("Edit IMAGE as INSTRUCTION says and write the result (same size as IMAGE) to OUT. "
                          "With Reflective Masking the model itself picks the region to change; --save-mask shows it."),
        epilog=_EDIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", metavar="IMAGE", type=Path, help="input image (png, jpg, ...)")
    p.add_argument("instruction", metavar="INSTRUCTION", help='what to change, e.g. "make the circle blue"')
    p.add_argument("-o", "--out", type=Path, required=True, metavar="OUT", help="where to write the edited image")
    p.add_argument("--mask", type=Path, metavar="MASK.png", help="only this region (white) may change")
    p.add_argument("--save-mask", type=Path, metavar="MASK_OUT.png",
                   help="write the region the model chose (white on black)")
    p.add_argument("--save-trajectory", type=Path, metavar="OUT.png|OUT.gif",
                   help="write every step (re-masked tokens tinted red): a strip (.png) or an animation (.gif)")
    add_sampler_options(p)
    return p


def run_edit(args: argparse.Namespace) -> int:
    import torch

    from rm_edit.data.manifest import load_image, load_mask

    kwargs = sampler_kwargs(args)
    _check_image_suffix(args.out)
    if args.save_mask is not None:
        _check_image_suffix(args.save_mask, (".png",))
    if args.save_trajectory is not None:
        _check_image_suffix(args.save_trajectory, (".png", ".gif"))
    if not args.instruction.strip():
        raise CliError("INSTRUCTION is empty")
    image = load_image(args.image)
    region = None if args.mask is None else load_mask(args.mask, image.size)
    pipe = load_pipeline(args.model, args.device)
    out = pipe(image, args.instruction, mask_image=region, generator=torch.Generator().manual_seed(args.seed),
               return_trajectory=args.save_trajectory is not None, **kwargs)

    if args.save_mask is not None:
        save_atomic(args.save_mask, mask_image(out.edit_masks[0]))
    if args.save_trajectory is not None:
        frames = trajectory_frames(pipe, out.trajectory, item=0)
        if args.save_trajectory.suffix.lower() == ".gif":
            save_atomic(args.save_trajectory, frames[0], frames[1:], duration=600, loop=0)
        else:
            save_atomic(args.save_trajectory, filmstrip(frames))
    save_atomic(args.out, out.images[0])
    tokens = out.edit_region_tokens[0]
    print(f"{args.image} -> {args.out}: {out.num_forward_passes} forward passes, "
          f"{int(tokens.sum())} of {tokens.numel()} tokens in the edit region")
    return 0


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


# ---- batch ----------------------------------------------------------------------------------------------
_BATCH_EPILOG = """\
Each manifest line is a JSON object {"id", "source", "instruction", ...} (paths relative to the manifest).
Writes OUT/<id>.png and OUT/<id>.mask.png (the region the model chose). Items whose OUT/<id>.png exists
are skipped, so re-running after an interruption finishes the job. Bad items are listed in
OUT/errors.jsonl and the rest go on. Exit status: 0 all done, 1 some items failed, 2 usage error.

examples:
  rm-edit batch data/test/manifest.jsonl --out results/rm
  rm-edit batch manifest.jsonl --out results/baseline --strategy regenerate --steps 16 --batch-size 16
"""


def add_batch_parser(subparsers: SubParsers) -> argparse.ArgumentParser:
    from rm_edit.data.manifest import DEFAULT_MAX_PIXELS

    p = subparsers.add_parser(
        "batch", help="edit every item of a JSONL manifest (resumable)",
        description="Edit every item of MANIFEST, a few images per model call.",
        epilog=_BATCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("manifest", metavar="MANIFEST.jsonl", type=Path)
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--batch-size", type=_positive_int, default=8, metavar="N",
                   help="images per model call (default 8); results do not depend on it")
    p.add_argument("--use-manifest-masks", action="store_true",
                   help="only let the region of each item's mask (white) change")
    p.add_argument("--max-pixels", type=_positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"skip images with more pixels (default {DEFAULT_MAX_PIXELS})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_sampler_options(p)
    return p


def item_seed(seed: int, item_id: str) -> int:
    """Per-item seed from the id (stable across runs, batch sizes and manifest order)."""
    return seed + zlib.crc32(item_id.encode("utf-8"))


def _peek_size(path: Path, max_pixels: int) -> tuple[int, int]:
    """Image size from the header only, so grouping never holds a whole manifest's pixels."""
    import warnings

    from PIL import Image

    if not path.is_file():
        raise ValueError(f"image not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                size = img.size
    except Image.DecompressionBombError:
        raise ValueError(f"image too large: {path}") from None
    except Exception as exc:  # PIL raises many kinds for unreadable files
        raise ValueError(f"corrupt or truncated image: {path} ({_one_line(exc)})") from None
    if size[0] * size[1] > max_pixels:
        raise ValueError(f"image too large: {path} is {size[0]}x{size[1]} (> {max_pixels} pixels)")
    return size


def _safe_id(item_id: str) -> bool:
    # The id becomes a file name: no folders, no hidden files (our temp files start with a dot).
    return bool(item_id) and not item_id.startswith(".") and not any(c in item_id for c in "/\\\0")


class _ErrorLog:
    """OUT/errors.jsonl: this run's failures, one JSON object per line, written as they happen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        path.unlink(missing_ok=True)  # a previous run's failures are retried, not inherited

    def add(self, reason: str, *, item_id: str | None = None, line: int | None = None) -> None:
        entry: dict[str, Any] = {"id": item_id} if item_id is not None else {"line": line}
        entry["reason"] = _one_line(reason)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.count += 1


def run_batch(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from rm_edit.data.manifest import read_manifest
    from rm_edit.vq import crop_for_vq

    kwargs = sampler_kwargs(args)
    if not args.manifest.is_file():
        raise CliError(f"manifest not found: {args.manifest}")
    records, bad_lines = read_manifest(args.manifest)
    args.out.mkdir(parents=True, exist_ok=True)
    errors = _ErrorLog(args.out / "errors.jsonl")
    for bad in bad_lines:
        errors.add(bad.reason, line=bad.line_no)

    start = time.perf_counter()
    pending, skipped = [], 0
    for rec in records:
        if not _safe_id(rec.id):
            errors.add(f"id {rec.id!r} cannot be a file name", item_id=rec.id)
        elif (args.out / f"{rec.id}.png").exists():
            skipped += 1
        else:
            pending.append(rec)
    if skipped:
        print(f"{PROG}: skipping {skipped} item(s) already in {args.out}", file=sys.stderr)

    done = 0
    if pending:
        pipe = load_pipeline(args.model, args.device)
        # One model call needs one token grid, so group by the grid each image is cropped to.
        groups: dict[tuple[int, int], list] = {}
        for rec in pending:
            try:
                w, h = _peek_size(rec.source, args.max_pixels)
            except ValueError as exc:
                errors.add(str(exc), item_id=rec.id)
                continue
            grid = crop_for_vq(w, h, pipe.config.crop_multiple, pipe.config.max_crop_cells).grid
            groups.setdefault(grid, []).append(rec)
        with tqdm(total=sum(map(len, groups.values())), unit="edit", desc="editing",
                  disable=True if args.no_progress else None) as bar:
            for group in groups.values():
                for i in range(0, len(group), args.batch_size):
                    chunk = group[i : i + args.batch_size]
                    done += _edit_chunk(pipe, chunk, args, kwargs, errors)
                    bar.update(len(chunk))

    seconds = time.perf_counter() - start
    rate = done / seconds if seconds > 0 else 0.0
    print(f"done {done}, skipped {skipped}, failed {errors.count} in {seconds:.1f}s ({rate:.2f} edits/s)")
    if errors.count:
        print(f"failures are listed in {errors.path}")
    return 1 if errors.count else 0


def _edit_chunk(pipe: ReflectiveMaskingEditPipeline, chunk: list, args: argparse.Namespace,
                kwargs: dict[str, Any], errors: _ErrorLog) -> int:
    """Edit one group of same-grid items in a single call; returns how many were written."""
    import numpy as np

    from rm_edit.data.manifest import load_image, load_mask

    items = []  # (record, image, region)
    for rec in chunk:
        try:
            image = load_image(rec.source, max_pixels=args.max_pixels)
            region = None
            if args.use_manifest_masks:
                region = (load_mask(rec.mask, image.size, max_pixels=args.max_pixels) if rec.mask is not None
                          else np.ones((image.height, image.width), dtype=bool))
            items.append((rec, image, region))
        except ValueError as exc:  # one unreadable item must not sink its group
            errors.add(str(exc), item_id=rec.id)
    if not items:
        return 0
    try:
        return _edit_items(pipe, items, args, kwargs)
    except Exception as exc:
        if args.debug:
            raise
        if len(items) == 1:
            errors.add(f"{type(exc).__name__}: {exc}", item_id=items[0][0].id)
            return 0
    # Something in the group broke the call: edit one by one so only the culprit fails (same results,
    # since each item has its own generator).
    written = 0
    for item in items:
        try:
            written += _edit_items(pipe, [item], args, kwargs)
        except Exception as exc:
            if args.debug:
                raise
            errors.add(f"{type(exc).__name__}: {exc}", item_id=item[0].id)
    return written


def _edit_items(pipe: ReflectiveMaskingEditPipeline, items: list, args: argparse.Namespace,
                kwargs: dict[str, Any]) -> int:
    import torch

    from rm_edit.vq import crop_for_vq, decode_codes

    records = [rec for rec, _, _ in items]
    images = [image for _, image, _ in items]
    out = pipe(
        images, [rec.instruction for rec in records],
        mask_image=[region for _, _, region in items] if args.use_manifest_masks else None,
        generator=[torch.Generator().manual_seed(item_seed(args.seed, rec.id)) for rec in records],
        output_type="latent", **kwargs,
    )
    # The VQ decoder's convolutions round differently for different batch sizes (~1e-5, enough to flip
    # uint8 pixels), so decode one image at a time: results must not depend on --batch-size.
    # TODO: drop once the pipeline decodes per image itself.
    edited = []
    for i, image in enumerate(images):
        crop = crop_for_vq(image.width, image.height, pipe.config.crop_multiple, pipe.config.max_crop_cells)
        pixels = decode_codes(pipe.vqvae, out.images[i : i + 1]).cpu()
        edited += pipe._postprocess(pixels, [crop], [image], out.edit_region_tokens[i : i + 1],
                                    args.paste_back, "pil")
    for rec, image, mask in zip(records, edited, out.edit_masks):
        # Mask first: OUT/<id>.png is the "done" marker that resuming checks.
        save_atomic(args.out / f"{rec.id}.mask.png", mask_image(mask))
        save_atomic(args.out / f"{rec.id}.png", image)
    return len(records)


# ---- data -----------------------------------------------------------------------------------------------
_DATA_EPILOG = """\
examples:
  rm-edit data shapes --out data/shapes_train --n 20000 --split train
  rm-edit data pretokenize data/shapes_train/manifest.jsonl --vq runs/vq/final --out data/train_codes.safetensors
"""


def add_data_parser(subparsers: SubParsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "data", help="make training data: shapes-world edits, pre-tokenised codes",
        description="Make training data.", epilog=_DATA_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="data_command", metavar="{shapes,pretokenize}", required=True)
    s = sub.add_parser("shapes", help="write a synthetic shapes-world editing set (images, masks, manifest)",
                       description="Write N shapes-world editing examples to DIR (images/, masks/, manifest.jsonl).")
    s.add_argument("--out", type=Path, required=True, metavar="DIR")
    s.add_argument("--n", type=_positive_int, required=True, metavar="N", help="number of examples")
    s.add_argument("--split", choices=("train", "val", "test"), default="train",
                   help="which seeded split (default train); splits never share scenes")
    s.add_argument("--start", type=_non_negative_int, default=0, metavar="INDEX",
                   help="first world index (default 0): a later start gives more edits disjoint from a first set")
    s.add_argument("--confusable", action="store_true",
                   help="only edits whose named shape shares its colour with another shape (the kind word decides)")
    t = sub.add_parser("pretokenize", help="encode a manifest's images to VQ codes for training",
                       description="Encode every source/target image of MANIFEST with the VQ model in DIR "
                                   "into FILE.safetensors (plus FILE.json with ids and instructions).")
    t.add_argument("manifest", metavar="MANIFEST.jsonl", type=Path)
    t.add_argument("--vq", type=Path, required=True, metavar="DIR", help="a saved diffusers VQModel folder")
    t.add_argument("--out", type=Path, required=True, metavar="FILE.safetensors")
    t.add_argument("--cell-local", action="store_true",
                   help="encode each VQ cell on its own (local codes; the shapes tokenizer is used this way)")
    return p


def run_data(args: argparse.Namespace) -> int:
    if args.data_command == "shapes":
        from rm_edit.data.shapes import has_confusable_distractor, write_shapes_dataset

        select = has_confusable_distractor if args.confusable else None
        print(write_shapes_dataset(args.out, args.n, split=args.split, start=args.start, select=select))
        return 0
    from diffusers import VQModel

    from rm_edit.data.pretokenize import pretokenize_manifest

    if args.out.suffix != ".safetensors":
        raise CliError(f"--out {args.out}: expected a .safetensors file")
    if not args.manifest.is_file():
        raise CliError(f"manifest not found: {args.manifest}")
    if not (args.vq / "config.json").is_file():
        raise CliError(f"--vq {args.vq}: not a saved VQModel folder (no config.json)")
    try:
        vq = VQModel.from_pretrained(args.vq).eval()
    except Exception as exc:
        raise CliError(f"cannot load VQ model from {args.vq}: {_one_line(exc)}") from None
    vq.rm_edit_cell_local = args.cell_local
    print(pretokenize_manifest(args.manifest, vq, args.out))
    return 0


# ---- train ----------------------------------------------------------------------------------------------
_TRAINERS = {"vq": "rm_edit.training.train_vq", "mdm": "rm_edit.training.train_mdm"}


def add_train_parser(subparsers: SubParsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train the image tokenizer (vq) or the editing model (mdm)",
        description=_wrap("Train a model; everything after `vq` / `mdm` goes to that trainer "
                          "(see `rm-edit train vq --help`)."),
        epilog="examples:\n  rm-edit train vq --config configs/vq_shapes.json --out runs/vq\n"
               "  rm-edit train mdm --config configs/mdm_shapes_rm.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="trainer", metavar="{vq,mdm}", required=True)
    for name, help_text in (("vq", "train the VQ image tokenizer"), ("mdm", "train the mask diffusion editor")):
        # add_help=False: `--help` and every other option belong to the trainer's own parser.
        sub.add_parser(name, help=help_text, add_help=False).set_defaults(_passthrough=True)
    return p


def run_train(args: argparse.Namespace) -> int:
    trainer = importlib.import_module(_TRAINERS[args.trainer])
    try:
        trainer.main(list(args.extra))
    except SystemExit as exc:  # the trainer's argparse: --help (0) or its own usage error (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else USAGE_ERROR)
    return 0


# ---- registry -------------------------------------------------------------------------------------------
def lazy_command(module: str) -> tuple[AddParser, Run]:
    """A command whose ``add_parser`` / ``run`` live in ``module``; it is imported only when needed."""
    return (lambda sub: importlib.import_module(module).add_parser(sub),
            lambda args: importlib.import_module(module).run(args))


#: name -> (add_parser, run). Add a subcommand with one line, e.g.
#: ``"eval": lazy_command("rm_edit.evaluation.cli"),``
COMMANDS: dict[str, tuple[AddParser, Run]] = {
    "edit": (add_edit_parser, run_edit),
    "batch": (add_batch_parser, run_batch),
    "data": (add_data_parser, run_data),
    "train": (add_train_parser, run_train),
    "eval": lazy_command("rm_edit.evaluation.cli"),
    "convert": lazy_command("rm_edit.pipelines.lumina_dimoo"),
}

_MAIN_EPILOG = """\
examples:
  rm-edit edit photo.png "make the circle blue" -o edited.png --save-mask region.png
  rm-edit batch data/test/manifest.jsonl --out results/
  rm-edit data shapes --out data/shapes_train --n 20000
  rm-edit train mdm --config configs/mdm_shapes_rm.json

Run `rm-edit COMMAND --help` for the options of a command.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_MAIN_EPILOG,
        description=_wrap("Edit images with instructions using Reflective Masking: a mask diffusion model "
                          "re-generates only the part of the image the instruction is about."),
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (add_parser, _) in COMMANDS.items():
        add_parser(sub).set_defaults(_command=name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        # parse_known_args so `train vq/mdm` can hand their options on untouched; elsewhere extras are errors.
        args, extra = parser.parse_known_args(argv)
        if extra and not getattr(args, "_passthrough", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.extra = extra
        return COMMANDS[args._command][1](args)
    except (CliError, ValueError, FileNotFoundError, OSError) as exc:
        if debug:
            raise
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
