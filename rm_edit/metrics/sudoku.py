"""The seed's Sudoku revision metrics, on boards of digits: int (9, 9) arrays, 0 = an empty cell.

Per board (``score_board``):

* ``sudoku_exact``: every cell holds the solution's digit;
* ``sudoku_valid``: every cell filled, each row, column and box holds 1-9 once (a valid board need not be the
  solution: fill tasks may have several);
* ``sudoku_conflicts``: filled cells whose digit also stands in a peer (row, column or box);
* ``sudoku_changed_givens``: given clues (black ink in the source) whose digit changed (the solution: 0);
* ``sudoku_changed_digits``: cells that held a digit in the source (clue or written) and now hold another or
  none (the solution changes exactly the wrong digits);
* ``sudoku_valid_fewest_changes``: valid, and changes no more given clues and no more of the source's digits
  than the solution does: as good a repair as the true one, the score of the ambiguous fill tasks;
* ``sudoku_replays``: replay mistakes over a sequence of boards (per turn, or per sampler step with re-masked
  cells empty): a cell takes a wrong digit it already held at an earlier board;
* ``sudoku_wrong`` (k, the source's wrong digits), ``sudoku_blanks`` and ``sudoku_k_bucket`` ("k 0",
  "k 1-12", "k 13-24", "k 25+") describe the example; ``sudoku_bucket`` (:func:`board_bucket`) is the issue's
  bucket of it: the task read off the source (wrong digits only: fix, by k; empty cells only: fill; both:
  fill-and-fix, under or from :data:`HARD_BLANKS` empty cells), the unit the targets are set on.

``summarize_boards`` averages rows overall, per task, per k bucket and per bucket; :data:`BUCKET_SCORE` names
each bucket's target score (exact for fix; valid with the fewest changes for the ambiguous fill tasks).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from rm_edit.data.sudoku_grids import conflict_cells, is_valid

K_BUCKETS: tuple[tuple[int, int, str], ...] = ((0, 0, "k 0"), (1, 12, "k 1-12"), (13, 24, "k 13-24"))
HARD_BLANKS = 40  # fill-and-fix from this many empty cells on: the hard bucket
BUCKETS = ("fix k 1-12", "fix k 13-24", "fix k 25+", "fill", f"fill-and-fix <{HARD_BLANKS} blanks",
           f"fill-and-fix {HARD_BLANKS}+ blanks", "no edit")
HARD_BUCKETS = ("fix k 13-24", f"fill-and-fix {HARD_BLANKS}+ blanks")
# Each bucket's target score: fill tasks have several valid completions, so they are scored by valid-and-fewest.
BUCKET_SCORE = {b: "sudoku_valid_fewest_changes" if b.startswith("fill") else "sudoku_exact" for b in BUCKETS}


def _board(board) -> np.ndarray:
    board = np.asarray(board, dtype=np.int64)
    if board.shape != (9, 9) or board.min() < 0 or board.max() > 9:
        raise ValueError(f"expected a (9, 9) board of digits 0-9, got shape {board.shape}")
    return board


def exact_board(board, solution) -> bool:
    return bool((_board(board) == _board(solution)).all())


def changed_givens(source, board, given) -> int:
    """Given clue cells (``given``, bool) whose digit differs in ``board``."""
    return int(((_board(source) != _board(board)) & np.asarray(given, dtype=bool)).sum())


def changed_digits(source, board) -> int:
    """Cells that hold a digit in ``source`` and another digit, or none, in ``board``."""
    source = _board(source)
    return int(((source != 0) & (source != _board(board))).sum())


def valid_fewest_changes(source, board, solution, given) -> bool:
    """Valid, with no more changed givens and changed digits than the solution has."""
    return bool(is_valid(_board(board))) and (
        changed_givens(source, board, given) <= changed_givens(source, solution, given)
        and changed_digits(source, board) <= changed_digits(source, solution))


def replay_mistakes(boards: Sequence, solution) -> int:
    """Over boards b_0, b_1, ...: the (t, cell) where b_t's digit is new at that cell since b_{t-1}, wrong, and
    one the cell held at an earlier board."""
    solution = _board(solution)
    seen = np.zeros((9, 9, 10), dtype=bool)
    count = 0
    previous = None
    for board in boards:
        board = _board(board)
        if previous is not None:
            taken = (board != previous) & (board != 0) & (board != solution)
            held = np.take_along_axis(seen, board[..., None], axis=-1)[..., 0]
            count += int((taken & held).sum())
        seen[np.arange(9)[:, None], np.arange(9)[None, :], board] = True
        previous = board
    return count


def k_bucket(k: int) -> str:
    for low, high, name in K_BUCKETS:
        if low <= k <= high:
            return name
    return f"k {K_BUCKETS[-1][1] + 1}+"


def board_bucket(wrong: int, blanks: int) -> str:
    """The issue's bucket of a source with ``wrong`` wrong digits and ``blanks`` empty cells (one of BUCKETS)."""
    if blanks == 0:
        return "no edit" if wrong == 0 else f"fix {k_bucket(wrong)}"
    if wrong == 0:
        return "fill"
    return f"fill-and-fix {HARD_BLANKS}+ blanks" if blanks >= HARD_BLANKS else f"fill-and-fix <{HARD_BLANKS} blanks"


def score_board(source, board, solution, given, steps: Sequence | None = None) -> dict:
    """One example's row: ``source`` / ``board`` / ``solution`` digits, ``given`` the source's clue cells,
    ``steps`` the boards from the source to ``board`` (None: no replay count)."""
    source, board, solution = _board(source), _board(board), _board(solution)
    wrong, blanks = changed_digits(source, solution), int((source == 0).sum())
    return {
        "sudoku_exact": float(exact_board(board, solution)),
        "sudoku_valid": float(is_valid(board)),
        "sudoku_conflicts": int(conflict_cells(board)),
        "sudoku_changed_givens": changed_givens(source, board, given),
        "sudoku_changed_digits": changed_digits(source, board),
        "sudoku_valid_fewest_changes": float(valid_fewest_changes(source, board, solution, given)),
        "sudoku_replays": None if steps is None else replay_mistakes(steps, solution),
        "sudoku_wrong": wrong,
        "sudoku_blanks": blanks,
        "sudoku_k_bucket": k_bucket(wrong),
        "sudoku_bucket": board_bucket(wrong, blanks),
    }


SCORE_KEYS = ("sudoku_exact", "sudoku_valid", "sudoku_conflicts", "sudoku_changed_givens", "sudoku_changed_digits",
              "sudoku_valid_fewest_changes", "sudoku_replays")


def _means(rows: list[Mapping], extra_keys: Sequence[str] = ()) -> dict:
    out: dict = {"n": len(rows)}
    for key in (*SCORE_KEYS, *extra_keys):
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = float(np.mean(values)) if values else None
    return out


def _grouped(rows: list[Mapping], key: str, order: Sequence[str]) -> dict[str, list]:
    groups: dict[str, list] = {}
    for r in rows:
        if r.get(key) is not None:
            groups.setdefault(str(r[key]), []).append(r)
    return {g: groups[g] for g in sorted(groups, key=lambda g: (order.index(g) if g in order else len(order), g))}


def summarize_boards(rows: Iterable[Mapping], task_key: str = "edit_type", extra_keys: Sequence[str] = ()) -> dict:
    """Means of :data:`SCORE_KEYS` and ``extra_keys`` (``n`` = rows) over all rows, per task (``row[task_key]``),
    per k bucket and per bucket (rows from before buckets existed have none: that group is left out)."""
    rows = list(rows)
    groups = {"by_task": _grouped(rows, task_key, ()),
              "by_k_bucket": _grouped(rows, "sudoku_k_bucket", [name for _, _, name in K_BUCKETS]),
              "by_bucket": _grouped(rows, "sudoku_bucket", BUCKETS)}
    return {"all": _means(rows, extra_keys)} | {
        name: {g: _means(v, extra_keys) for g, v in group.items()} for name, group in groups.items()}


def target_score_mean(by_bucket: Mapping[str, Mapping]) -> float | None:
    """The mean over boards of each board's bucket target score (:data:`BUCKET_SCORE`), from a summary's
    ``by_bucket`` means: sum of n x score over the buckets, over their boards (a bucket without its score is left
    out; None when none has one)."""
    scored = [(m["n"], m.get(BUCKET_SCORE.get(b, "sudoku_exact"))) for b, m in by_bucket.items()]
    scored = [(n, v) for n, v in scored if v is not None and n]
    return sum(n * v for n, v in scored) / sum(n for n, _ in scored) if scored else None
