"""The README's example edit, as the CLI runs it, with ten seeds: how many are right (pixel edit success against
``assets/example_target.png``) and how many pixels each changed.

    python benchmarks/readme_example_seeds.py [--model DIR] [--seeds 10]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rm_edit.metrics import edit_success

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a pipeline folder (default: the shipped default)")
    p.add_argument("--seeds", type=int, default=10)
    args = p.parse_args(argv)
    import rm_edit
    from rm_edit.pipelines import ReflectiveMaskingEditPipeline

    pipe = ReflectiveMaskingEditPipeline.from_pretrained(args.model) if args.model else rm_edit.load_default_pipeline()
    pipe.set_progress_bar_config(disable=True)
    source = Image.open(ASSETS / "example.png").convert("RGB")
    target = np.asarray(Image.open(ASSETS / "example_target.png").convert("RGB"))
    instruction = (ASSETS / "example_instruction.txt").read_text().strip()
    right = 0
    for seed in range(args.seeds):
        with torch.no_grad():
            out = pipe(source, instruction, generator=torch.Generator().manual_seed(seed), output_type="pil", paste_back=True)
        output = np.asarray(out.images[0].convert("RGB"))
        ok = edit_success(np.asarray(source), output, target).success
        right += ok
        changed = (output != np.asarray(source)).any(-1).mean()
        print(f"seed {seed}: {'right' if ok else 'WRONG'}  pixels changed {changed:.4f}")
    print(f"{instruction!r} on assets/example.png: right for {right}/{args.seeds} seeds")


if __name__ == "__main__":
    main()
