"""``--benchmark sudoku-test``: the Sudoku world's test split, scored by the seed's revision metrics
(:mod:`rm_edit.metrics.sudoku`) read off the edited image.

Every board is read back from pixels with the exact cell tokenizer (``rm_edit.data.sudoku_cells``): the source
and target exactly, the edit by the nearest cell pattern (a decoder's output is close, not exact). Replay
mistakes need the boards between the source and the edit: they are read from the sampler's own steps (re-masked
cells count as empty) when the model's codes are Sudoku cell codes (layout ``sudoku-grid``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from PIL import Image

from ..data.records import EditRecord
from ..data.sudoku_cells import NUM_SUDOKU_CODES, code_digits, encode_board, given_cells
from ..metrics.sudoku import BUCKET_SCORE, SCORE_KEYS, score_board, summarize_boards
from .benchmark_set import Benchmark, SampleRef

DEFAULT_SUDOKU_N = 256
NAMES = {"sudoku-test": "test", "sudoku-val": "val", "sudoku": "test"}
SUDOKU_COLUMNS = [
    ("sudoku_exact", "Exact ↑"), ("sudoku_valid", "Valid ↑"), ("sudoku_valid_fewest_changes", "Valid, fewest changes ↑"),
    ("sudoku_conflicts", "Conflicts ↓"), ("sudoku_changed_givens", "Changed givens ↓"),
    ("sudoku_changed_digits", "Changed digits"), ("sudoku_replays", "Replays ↓"), ("forward_passes", "Fwd passes ↓"),
]


def sudoku_benchmark(n: int | None = None, split: str = "test") -> Benchmark:
    """The first ``n`` examples (default 256) of a split; image paths ``<id>.png``."""
    from ..data.sudoku import SudokuWorld

    n = DEFAULT_SUDOKU_N if n is None else n
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    world = SudokuWorld(split=split)

    def loader(i: int) -> Callable[[], EditRecord]:
        def load() -> EditRecord:
            ex = world[i]
            return EditRecord(ex.id, Image.fromarray(ex.source), ex.instruction, Image.fromarray(ex.target),
                              ex.mask.copy(), ex.edit_type, image_path=f"{ex.id}.png", metadata=ex.puzzle.metadata)
        return load

    refs = [SampleRef(f"sudoku_{split}_{i:06d}", f"sudoku_{split}_{i:06d}.png", loader(i)) for i in range(n)]
    return Benchmark(f"sudoku-{split}", "sudoku", refs)


def step_boards(trajectory: Sequence[Mapping] | None, index: int, layout) -> list[np.ndarray] | None:
    """Image ``index``'s boards at every sampler step (digits, [MASK] = empty), or None when there is no
    trajectory or the model's codes are not Sudoku cell codes."""
    if not trajectory or layout.codebook_size != NUM_SUDOKU_CODES:
        return None
    boards = []
    for entry in trajectory:
        codes = entry["codes"][index].cpu().numpy().astype(np.int64)
        boards.append(code_digits(np.where(codes == layout.mask_code, 0, codes)))
    return boards


def turn_frames(trajectory: Sequence[Mapping] | None, index: int, layout) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Image ``index``'s board after each turn and the cells re-masked in that turn: a list of ((9, 9) codes,
    (9, 9) bool), the first the sampler's start with nothing re-masked. A turn begins at a step that re-masks
    some of the image's cells (a fixed point re-masks none: no more turns); with no re-masks at all (regenerate)
    the start and the last board. None without a trajectory or when the codes are not Sudoku cell codes."""
    if not trajectory or layout.codebook_size != NUM_SUDOKU_CODES:
        return None
    frames: list[tuple[np.ndarray, np.ndarray]] = []
    for entry in trajectory:
        codes = entry["codes"][index].cpu().numpy().astype(np.int64)
        remasked = entry["remasked"][index].cpu().numpy().astype(bool)
        if remasked.any() or len(frames) < 2:
            frames.append((codes, remasked))
        else:  # a reveal step inside the current turn
            frames[-1] = (codes, frames[-1][1])
    return frames


REMASK_INK = (230, 30, 30)
MASKED_TINT = (200, 200, 200)


def turn_strip(frames: Sequence[tuple[np.ndarray, np.ndarray]], mask_code: int = NUM_SUDOKU_CODES,
               scale: int = 2, gap: int = 4) -> Image.Image:
    """The boards of :func:`turn_frames` side by side (``scale`` x), each turn's re-masked cells framed in red;
    a cell still [MASK] is drawn empty on grey."""
    from ..data.sudoku_cells import CELL_PX, render_board

    boards = []
    for codes, remasked in frames:
        masked = codes == mask_code
        image = render_board(np.where(masked, 0, codes)).copy()
        cell_px = np.kron(masked, np.ones((CELL_PX, CELL_PX), dtype=bool))
        image[cell_px & (image == 255).all(-1)] = MASKED_TINT
        for r, c in zip(*np.nonzero(remasked)):
            block = image[r * CELL_PX:(r + 1) * CELL_PX, c * CELL_PX:(c + 1) * CELL_PX]
            block[[0, -1], :] = REMASK_INK
            block[:, [0, -1]] = REMASK_INK
        boards.append(np.kron(image, np.ones((scale, scale, 1), dtype=np.uint8)))
    height = boards[0].shape[0]
    strip = np.full((height, len(boards) * (height + gap) - gap, 3), 255, dtype=np.uint8)
    for i, board in enumerate(boards):
        strip[:, i * (height + gap):i * (height + gap) + height] = board
    return Image.fromarray(strip)


def sudoku_values(sample: EditRecord, edit: Image.Image, steps: list[np.ndarray] | None,
                  no_steps_reason: str = "needs the model's own steps (run with --model)") -> tuple[dict, dict]:
    """A sample's Sudoku row values and the reasons of those that are unavailable."""
    source = encode_board(sample.source)
    solution = code_digits(encode_board(sample.target))
    board = code_digits(encode_board(edit.convert("RGB"), exact=False))
    values = score_board(code_digits(source), board, solution, given_cells(source), steps)
    reasons = {} if steps is not None else {"sudoku_replays": no_steps_reason}
    return values, reasons


def add_sudoku_summary(summary: dict, rows: list[Mapping]) -> None:
    """The Sudoku means (and forward passes) overall, per task, per k bucket and per bucket under
    ``summary["sudoku"]``."""
    summary["sudoku"] = summarize_boards([r for r in rows if "sudoku_k_bucket" in r], extra_keys=("forward_passes",))


def bucket_summary_rows(summary: Mapping) -> list[tuple[str, dict]]:
    """The report's summary-table rows of a Sudoku summary's buckets (``("bucket <name> (n)", {"metrics": ...})``),
    none for other summaries."""
    buckets = (summary.get("sudoku") or {}).get("by_bucket") or {}
    return [(f"bucket {name} (n={means['n']})", {"metrics": {k: {"mean": v} for k, v in means.items()}})
            for name, means in buckets.items()]


def sudoku_markdown(summary: Mapping, markdown_table: Callable) -> list[str]:
    """The per-bucket, per-k-bucket and per-task tables of a Sudoku summary (markdown lines), drawn by
    ``markdown_table`` (``rm_edit.evaluation.summary``'s, passed in: that module imports this one)."""
    sudoku = summary.get("sudoku")
    if not sudoku:
        return []
    columns = [(k, label) for k, label in SUDOKU_COLUMNS if k in (*SCORE_KEYS, "forward_passes")]
    columns.insert(0, ("n", "n"))

    def table(groups: Mapping[str, Mapping]) -> str:
        return markdown_table([(name, {"metrics": {k: {"mean": v} for k, v in means.items()}})
                               for name, means in groups.items()], columns)

    buckets = sudoku.get("by_bucket") or {}
    scores = ", ".join(f"{b}: {dict(SUDOKU_COLUMNS)[BUCKET_SCORE[b]].rstrip(' ↑')}" for b in buckets if b in BUCKET_SCORE)
    return (["## Sudoku by bucket", "", f"Each bucket's target score: {scores}.", "", table(buckets), ""]
            if buckets else []) + [
            "## Sudoku by k (wrong digits in the source)", "", table(sudoku["by_k_bucket"]), "",
            "## Sudoku by task", "", table(sudoku["by_task"]), ""]
