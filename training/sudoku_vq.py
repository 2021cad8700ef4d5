"""The Sudoku world's exact image tokenizer (the shapes world's mechanism, ``exact_vq``) and the parts a Sudoku
pipeline folder ships with.

The VQ is ``exact_vq.build_exact_vq`` with the 19 Sudoku cell patterns as its codebook: a diffusers
``VQModel`` (saved as a cell-local ``VQTokenizer``) whose hand-set encoder gives exactly the world's cell codes
(``rm_edit.data.sudoku_cells``; ``tests/test_sudoku_vq.py`` checks it on rendered boards). Only its decoder is
trained, on the fixed codes of world boards; ``vq_metrics.json`` reports held-out PSNR and how many decoded
cells read back as the code they came from (``encode_board(..., exact=False)``: what the Sudoku metrics read).

    python -m rm_edit.training.sudoku_vq --out runs/sudoku_parts --steps 2000

writes ``OUT/vqvae`` (resumable: ``OUT/state.json``), ``OUT/tokenizer`` (the Sudoku instructions' word
tokenizer) and ``OUT/vq_metrics.json``: what ``rm-edit train mdm --layout sudoku-grid --vq OUT/vqvae
--tokenizer OUT/tokenizer`` needs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from diffusers import VQModel

from rm_edit.data.sudoku import SudokuWorld
from rm_edit.data.sudoku_cells import canonical_cells, encode_board

from .exact_vq import ExactVQWorld, build_exact_vq, image_code_batch, train_decoder


def build_sudoku_vq(seed: int = 0) -> VQModel:
    """Hand-set encoder + the 19-pattern codebook (code = Sudoku cell code); the decoder still random."""
    return build_exact_vq(seed, cells=canonical_cells())


def board_batch(world: SudokuWorld, rng: np.random.Generator, n_examples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources and targets of random examples: images (2n, 3, 72, 72) in [0, 1] and their codes (2n, 9, 9)."""
    examples = [world[int(i)] for i in rng.integers(0, 2**31 - 1, size=n_examples)]
    return image_code_batch([im for ex in examples for im in (ex.source, ex.target)],
                            [c for ex in examples for c in (ex.puzzle.source, ex.puzzle.target)])


@torch.no_grad()
def heldout_readback(vq: VQModel, n_examples: int = 64, split: str = "test") -> dict:
    """Encode -> codes -> decode on held-out boards: codes exact, PSNR, and decoded cells read back exactly."""
    from rm_edit.vq import decode_codes, encode_to_codes

    x, truth = board_batch(SudokuWorld(split=split), np.random.default_rng(0), n_examples)
    codes = encode_to_codes(vq, x, cell_local=True)
    decoded = (decode_codes(vq, codes) * 255).round()
    mse = (decoded / 255 - x).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    images = decoded.byte().permute(0, 2, 3, 1).numpy()
    read = np.stack([encode_board(im, exact=False) for im in images])
    return {"boards": len(x), "codes_exact": float((codes == truth).float().mean()),
            "psnr_mean": round(float((10 * torch.log10(1 / mse)).mean()), 2),
            "decoded_cells_read_back": float((read == truth.numpy()).mean()),
            "decoded_boards_read_back": float((read == truth.numpy()).all(axis=(1, 2)).mean())}


def sudoku_vq_world(heldout_examples: int = 64) -> ExactVQWorld:
    """The Sudoku world for ``exact_vq.train_decoder``: folder ``vqvae``, boards of the train split, held-out
    read-back figures on ``heldout_examples`` test examples."""
    return ExactVQWorld("vqvae", build_sudoku_vq, lambda rng, n: board_batch(SudokuWorld(split="train"), rng, n),
                        lambda vq: heldout_readback(vq, heldout_examples), name="sudoku vq decoder")


def train_sudoku_decoder(out: str | Path, steps: int, batch_examples: int = 8, lr: float = 2e-3, seed: int = 0,
                         threads: int = 1, save_every: int = 250, progress: bool = True,
                         heldout_examples: int = 64) -> Path:
    """Train the decoder on fixed exact codes (``exact_vq.train_decoder``); resumable from ``out/vqvae`` +
    ``out/state.json``. Returns ``out/vqvae``."""
    return train_decoder(out, steps, batch_examples, lr, seed, threads, save_every, progress,
                         world=sudoku_vq_world(heldout_examples))


def write_sudoku_parts(out: str | Path, steps: int, **train_kwargs) -> Path:
    """``out/vqvae`` (decoder trained ``steps`` steps) and ``out/tokenizer``; returns ``out``."""
    from rm_edit.data.text_tokenizer import build_sudoku_tokenizer

    out = Path(out)
    train_sudoku_decoder(out, steps, **train_kwargs)
    build_sudoku_tokenizer().save_pretrained(out / "tokenizer")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-examples", type=int, default=8, help="examples per step (source + target boards each)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    print(write_sudoku_parts(a.out, a.steps, batch_examples=a.batch_examples, lr=a.lr, seed=a.seed, threads=a.threads,
                             progress=False))


if __name__ == "__main__":
    main()
