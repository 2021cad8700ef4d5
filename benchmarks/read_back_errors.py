"""How far images are from the decoding of the codes a world model reads: the figures behind the shapes world's
``max_read_back_error`` (12 of 255), above which an image is refused as no scene of the world.

    python benchmarks/read_back_errors.py [--n 150] [--model DIR]

Prints, for ``--n`` test scenes under each change (none, grayscale, JPEG at quality 30 and 10, bilinear copies of
16, 24 and 200 px), the smallest, median and largest mean |difference| (0-255 a pixel), and the same for a photo-like
image and noise.
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import PIL.Image

from rm_edit.data.shapes import ShapesWorld
from rm_edit.pipelines import ReflectiveMaskingEditPipeline
from rm_edit.pipelines.default_model import DEFAULT_MODEL, shipped_models
from rm_edit.vq import encode_to_codes, read_back_errors


def _jpeg(image: PIL.Image.Image, quality: int) -> PIL.Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return PIL.Image.open(buffer).convert("RGB")


CHANGES = {
    "scene": lambda im: im,
    "grayscale": lambda im: im.convert("L").convert("RGB"),
    "jpeg q30": lambda im: _jpeg(im, 30),
    "jpeg q10": lambda im: _jpeg(im, 10),
    "16 px": lambda im: im.resize((16, 16), PIL.Image.BILINEAR),
    "24 px": lambda im: im.resize((24, 24), PIL.Image.BILINEAR),
    "200 px": lambda im: im.resize((200, 200), PIL.Image.BILINEAR),
}


def read_back_error(pipe, image: PIL.Image.Image) -> float:
    """The pipeline's own measure (``rm_edit.vq.read_back_errors``) of one image, prepared as an edit prepares it."""
    pixels = pipe.image_processor.preprocess([image]).pixels
    return read_back_errors(pipe.vqvae, encode_to_codes(pipe.vqvae, pixels), pixels)[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=150)
    p.add_argument("--model", default=None, help="a model folder (default: the shipped default)")
    a = p.parse_args()
    pipe = ReflectiveMaskingEditPipeline.from_pretrained(a.model or shipped_models()[DEFAULT_MODEL])
    world = ShapesWorld(split="test")
    scenes = [PIL.Image.fromarray(world[i].source) for i in range(a.n)]
    for name, change in CHANGES.items():
        errors = np.array([read_back_error(pipe, change(im)) for im in scenes])
        print(f"{name:>10}: min {errors.min():5.1f}  median {np.median(errors):5.1f}  max {errors.max():5.1f}  "
              f"over the shapes world's limit (12): {int((errors > 12).sum())} of {len(errors)}")
    rng = np.random.default_rng(0)
    smooth = np.linspace(0, 255, 64)[None, :, None] * np.ones((64, 1, 3)) + rng.normal(0, 12, (64, 64, 3))
    for name, array in [("photo-like", smooth.clip(0, 255).astype(np.uint8)),
                        ("noise", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))]:
        print(f"{name:>10}: {read_back_error(pipe, PIL.Image.fromarray(array)):5.1f}")


if __name__ == "__main__":
    main()
