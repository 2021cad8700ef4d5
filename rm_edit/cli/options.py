"""Options and helpers every ``rm-edit`` command shares (public: other commands, e.g. ``rm-edit eval``, use
them): the one-line error type, option value types, the sampler options and how they map to pipeline
keywords, loading a pipeline, and image output checks."""

from __future__ import annotations

import argparse
import math
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the pipeline drags in diffusers; only the command functions import it
    import numpy as np
    import PIL.Image
    import torch

    from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline

from rm_edit.files import one_line

PROG = "rm-edit"
USAGE_ERROR = 2
INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
SubParsers = Any  # argparse._SubParsersAction is private


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus a message on bad options; we want one line and no exit from inside."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(f"{message} (see `{self.prog} --help`)")


def wrap(text: str) -> str:
    """Descriptions of parsers with raw (example-keeping) epilogs are not wrapped by argparse."""
    return textwrap.fill(text, 90, break_on_hyphens=False)


# ---- option types ---------------------------------------------------------------------------------------
def whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    return whole_number(text, 1)


def non_negative_int(text: str) -> int:
    return whole_number(text, 0)


def number(text: str) -> float:
    """A finite float: nan / inf would flow into the sampler and silently give garbage (or nothing)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def unit_float(text: str) -> float:
    value = number(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def non_negative_float(text: str) -> float:
    value = number(text)
    if not value >= 0.0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


# ---- shared helpers -------------------------------------------------------------------------------------
def check_image_suffix(path: Path, allowed: Sequence[str] | None = None) -> None:
    """Fail before the (slow) model runs if the output can't be written in the asked format."""
    from PIL import Image

    suffix = path.suffix.lower()
    ok = suffix in allowed if allowed is not None else suffix in Image.registered_extensions()
    if not ok:
        expected = ", ".join(allowed) if allowed is not None else "an image suffix such as .png"
        raise CliError(f"{path}: unsupported output type {suffix or '(no suffix)'!r}; use {expected}")


def mask_image(mask: np.ndarray) -> PIL.Image.Image:
    """(H, W) bool -> white-on-black L image."""
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255, "L")


def resolve_device(name: str | None) -> str:
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda: no CUDA device is available")
    return name


def model_folder(model: str) -> Path:
    """``--model``: a folder, else the name of one shipped inside the package (``sudoku-rm``); a one-line error
    naming the shipped ones when it is neither."""
    from rm_edit.pipelines.default_model import shipped_models

    folder = Path(model)
    if folder.exists():
        return folder
    shipped = shipped_models()
    if model in shipped:
        return shipped[model]
    raise CliError(f"model folder {folder} does not exist, nor is it a shipped model's name "
                   f"({', '.join(shipped)})")


def load_pipeline(model: str | None, device: str | None, sampler_options: dict[str, Any] | None = None,
                  compile: bool = False) -> ReflectiveMaskingEditPipeline:
    """``--model DIR`` (a saved pipeline) or the model shipped with the package; ``sampler_options`` (from
    :func:`sampler_kwargs`) without a strategy are checked against the model's own sampler; ``compile``
    (``--compile``): ``torch.compile`` the transformer's blocks once on the device."""
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
        folder = model_folder(model)
        if not ((folder / "model_index.json").is_file() or (folder / "rm_adapter.json").is_file()):
            what = "is not a saved pipeline (no model_index.json) or RM adapter folder (no rm_adapter.json)"
            raise CliError(f"model folder {folder} {what}")
        try:
            pipe = ReflectiveMaskingEditPipeline.from_pretrained(folder)
        except Exception as exc:  # diffusers raises many kinds; the user needs to know which folder is bad
            raise CliError(f"cannot load model from {folder}: {one_line(exc)}") from None
    pipe.set_progress_bar_config(disable=True)
    if sampler_options is not None and sampler_options.get("strategy") is None:
        check_sampler_flags(sampler_options, pipe.scheduler)
    pipe = pipe.to(resolve_device(device))
    if compile:
        pipe.transformer.compile_blocks()
    return pipe


# ---- sampler options (shared by edit and batch) ----------------------------------------------------------
# The sampler flags and the pipeline keywords they set. Which sampler takes which keyword is each scheduler's
# own list (``call_options`` in rm_edit.schedulers), read when the flags are checked.
SAMPLER_FLAGS = {"num_turns": "--num-turns", "reveal_steps": "--reveal-steps", "remask_margin": "--remask-margin",
                 "held_code_bias": "--held-code-bias", "num_inference_steps": "--steps"}


def add_sampler_options(parser: argparse.ArgumentParser, refuse_unknown: bool = True) -> None:
    """``refuse_unknown``: offer --allow-unknown-words (an evaluation scores every item as the benchmark words
    it, so it always allows them)."""
    g = parser.add_argument_group("model and sampler")
    if refuse_unknown:
        g.add_argument("--allow-unknown-words", action="store_true",
                       help="edit even when the instruction has words the model does not know or the image reads "
                            "as another grid than the model's world (default: refuse the item in one line)")
    g.add_argument("--model", metavar="DIR",
                   help="a saved pipeline or RM adapter folder, or a shipped model's name, e.g. sudoku-rm (default: the model shipped with rm-edit)")
    g.add_argument("--strategy", choices=("reflective", "regenerate"),
                   help="reflective: re-generate only the tokens the model chooses; regenerate: re-generate the "
                        "whole image from all-[MASK] (baseline). Default: the model's sampler (reflective for "
                        "the shipped models; regenerate for a checkpoint that was not RM post-trained)")
    g.add_argument("--num-turns", type=positive_int, metavar="N", help="reflective: keep/re-mask/reveal turns")
    g.add_argument("--reveal-steps", type=positive_int, metavar="N", help="reflective: reveal steps per turn")
    g.add_argument("--remask-margin", type=number, metavar="F",
                   help="reflective: re-mask only where log p(MASK) - log p(code) > F (default: the model's)")
    g.add_argument("--held-code-bias", type=non_negative_float, metavar="F",
                   help="reflective: tilt each reveal toward the code the position held, by F nats (default: the "
                        "model's, 0): higher keeps more of the source, at some cost to the edit")
    g.add_argument("--steps", type=positive_int, metavar="N",
                   help="regenerate: sampling steps (default: the model's; 16 when --strategy swaps it in); "
                        "reflective: a step budget instead of --num-turns (the whole turns that fit)")
    g.add_argument("--guidance-scale", type=number, metavar="F", help="instruction guidance (default: the model's)")
    g.add_argument("--image-guidance-scale", type=number, metavar="F", help="source-image guidance (default: the model's)")
    g.add_argument("--history", action=argparse.BooleanOptionalAction, default=None,
                   help="History Reference: condition each turn on the codes seen before (default: on for a model trained with it)")
    g.add_argument("--history-decay", type=unit_float, default=None, metavar="F",
                   help="history weight decay per turn, in (0, 1] (default: the decay the model was trained with, "
                        "else 1.0)")
    g.add_argument("--paste-back", action=argparse.BooleanOptionalAction, default=True,
                   help="blend the edit into the original so every pixel outside the region the model chose stays "
                        "the original's, bit for bit (default: on; --no-paste-back keeps the decoder's whole image)")
    g.add_argument("--kv-cache", action="store_true",
                   help="reuse keys/values between steps: reveal steps recompute only masked and changed codes")
    g.add_argument("--seed", type=int, default=0,
                   help="seed of sampling at temperature > 0 (the regenerate sampler; default 0: runs are "
                        "reproducible). Reflective sampling (temperature 0, argmax) is deterministic: the seed "
                        "changes nothing there")
    g.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the transformer's blocks (GPU: the first edit pays the compile time, later "
                        "ones of the same shape run fused; measured only on GPU)")


def sampler_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline keywords the sampler options select; with ``--strategy``, options that sampler does not
    take are refused here (before a model loads), else by :func:`check_sampler_flags` once it has."""
    if args.steps is not None and args.num_turns is not None:
        raise CliError("--steps and --num-turns both set the reflective budget; pass one")
    kwargs: dict[str, Any] = dict(
        strategy=args.strategy, num_turns=args.num_turns, reveal_steps=args.reveal_steps,
        remask_margin=args.remask_margin, held_code_bias=args.held_code_bias,
        guidance_scale=args.guidance_scale, image_guidance_scale=args.image_guidance_scale,
        use_history=args.history, history_decay=args.history_decay, paste_back=args.paste_back,
        use_kv_cache=args.kv_cache, allow_unknown_words=getattr(args, "allow_unknown_words", True),
    )
    if args.steps is not None:
        kwargs["num_inference_steps"] = args.steps
    if args.strategy is not None:
        from rm_edit.schedulers import STRATEGIES

        check_sampler_flags(kwargs, STRATEGIES[args.strategy])
    return kwargs


def check_sampler_flags(kwargs: dict[str, Any], scheduler: Any) -> None:
    """A one-line CliError naming the first sampler flag that ``scheduler`` (a scheduler or its class) does not
    take, and the flags it does."""
    given = [k for k in SAMPLER_FLAGS if kwargs.get(k) is not None]
    other = [k for k in given if k not in scheduler.call_options]
    if other:
        takes = [SAMPLER_FLAGS[k] for k in scheduler.call_options if k in SAMPLER_FLAGS]
        raise CliError(f"{SAMPLER_FLAGS[other[0]]} is not an option of the {scheduler.strategy} sampler (it takes "
                       f"{', '.join(takes)})")
