"""The evaluation figures (token localization, replays, token edit accuracy, their summaries) on hand-made
fixtures whose expected values are worked out in the comments. The fixtures are asymmetric on purpose:
precision != recall, edit accuracy != kept-outside, so swapped arguments or a wrong reference code show.
"""

import math
import zlib

import numpy as np
import pytest
import torch

from rm_edit.evaluation.token_eval import count_replays, image_token_scores, summarize
from rm_edit.metrics.localization import token_metrics
from rm_edit.metrics import kept_outside_fraction, token_localization

M = 9  # [MASK] in code space for the trajectories below


# ---- token localization ----------------------------------------------------------------------------------------
def test_token_localization_on_an_asymmetric_fixture():
    remasked = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)  # 5 chosen
    changed = torch.tensor([[1, 1, 1], [0, 1, 0], [0, 0, 0]], dtype=torch.bool)  # 4 changed, 5 outside
    # TP = (0,0) (0,1) (1,1) = 3; FP = (1,0) (2,2) = 2; FN = (0,2) = 1
    # precision 3/5, recall 3/4, IoU 3/(3+2+1) = 1/2, leakage FP / outside = 2/5
    assert token_localization(remasked, changed) == pytest.approx(
        {"precision": 0.6, "recall": 0.75, "iou": 0.5, "leakage": 0.4})
    # Arguments the other way round: precision 3/4, recall 3/5, leakage 1/4 - a different answer.
    assert token_localization(changed, remasked) == pytest.approx(
        {"precision": 0.75, "recall": 0.6, "iou": 0.5, "leakage": 0.25})


# ---- per-image token scores (the model card's token figures) ---------------------------------------------------
SOURCE = torch.tensor([[0, 1, 2], [3, 4, 5]])
TARGET = torch.tensor([[0, 9, 9], [3, 4, 8]])  # changed: (0,1) (0,2) (1,2); outside: (0,0) (1,0) (1,1)
EDITED = torch.tensor([[7, 9, 2], [6, 4, 8]])
REGION = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)


def test_image_token_scores_by_hand():
    s = image_token_scores(REGION, SOURCE, TARGET, EDITED)
    # region vs changed: TP (0,1) (0,2) = 2; FP (0,0) (1,0) = 2; FN (1,2) = 1
    # precision 2/4, recall 2/3, IoU 2/5
    # kept outside: (0,0) 7 != 0, (1,0) 6 != 3, (1,1) 4 == 4 -> 1/3
    # edit accuracy vs the target inside the change: (0,1) 9 == 9, (0,2) 2 != 9, (1,2) 8 == 8 -> 2/3
    #   (against the source codes it would be 1/3: only (0,2) still holds the source's 2)
    # token accuracy everywhere: (0,1) (1,1) (1,2) match the target -> 3/6
    assert s == pytest.approx(dict(tp=2, fp=2, fn=1, precision=0.5, recall=2 / 3, iou=0.4, kept_outside=1 / 3,
                                   edit_accuracy=2 / 3, token_accuracy=0.5))


def test_a_perfect_edit_scores_one_and_a_no_op_edit_keeps_everything():
    perfect = image_token_scores(TARGET != SOURCE, SOURCE, TARGET, TARGET)
    assert perfect == pytest.approx(dict(tp=3, fp=0, fn=0, precision=1.0, recall=1.0, iou=1.0, kept_outside=1.0,
                                         edit_accuracy=1.0, token_accuracy=1.0))
    noop = image_token_scores(torch.zeros(2, 3, dtype=torch.bool), SOURCE, TARGET, SOURCE)
    # nothing chosen: precision 1 (no false alarm), recall 0/3; edit accuracy 0/3; token accuracy 3/6
    assert noop == pytest.approx(dict(tp=0, fp=0, fn=3, precision=1.0, recall=0.0, iou=0.0, kept_outside=1.0,
                                      edit_accuracy=0.0, token_accuracy=0.5))
    # no true change at all: edit accuracy is 1 by convention, kept-outside counts all 6 tokens: only (0,2) 2
    # and (1,1) 4 still equal the source -> 2/6
    nothing = image_token_scores(REGION, SOURCE, SOURCE, EDITED)
    assert nothing["edit_accuracy"] == 1.0 and nothing["kept_outside"] == pytest.approx(2 / 6)
    # everything changed: kept-outside is 1 by convention
    assert image_token_scores(REGION, SOURCE, SOURCE + 10, EDITED)["kept_outside"] == 1.0


def test_benchmark_token_metrics_by_hand():
    tok, kind = token_metrics(REGION, SOURCE, EDITED, target_codes=TARGET)
    # as above; leakage = FP / outside = 2/3
    assert kind == "codes"
    assert tok == pytest.approx(dict(tok_precision=0.5, tok_recall=2 / 3, tok_iou=0.4, tok_leakage=2 / 3,
                                     tok_kept_outside=1 / 3, tok_edit_accuracy=2 / 3, tok_accuracy=0.5))
    # no target: the mask pooled to the grid is the truth, and there is no edit accuracy to report
    grid = torch.tensor([[0, 1, 0], [0, 0, 0]], dtype=torch.bool)
    tok, kind = token_metrics(REGION, SOURCE, EDITED, mask_grid=grid)
    # TP 1, FP 3, FN 0, outside 5: precision 1/4, recall 1, IoU 1/4, leakage 3/5;
    # kept outside: (0,0) (0,2) (1,0) (1,1) (1,2) -> 7!=0, 2==2, 6!=3, 4==4, 8!=5 -> 2/5
    assert kind == "mask"
    assert tok == pytest.approx(dict(tok_precision=0.25, tok_recall=1.0, tok_iou=0.25, tok_leakage=0.6,
                                     tok_kept_outside=0.4))
    assert token_metrics(REGION, SOURCE, EDITED) == ({}, None)


def test_kept_outside_fraction_by_hand():
    # outside the change: (0,0) (1,0) (1,1) -> 1 of 3 kept (see above)
    assert kept_outside_fraction(SOURCE, EDITED, TARGET != SOURCE) == pytest.approx(1 / 3)


# ---- replay counting -------------------------------------------------------------------------------------------
def _traj(*steps):
    """steps of (codes rows, remasked rows) for a batch of 2 images of 1 x 4 tokens."""
    return [{"codes": torch.tensor(c).view(2, 1, 4), "remasked": torch.tensor(r, dtype=torch.bool).view(2, 1, 4)}
            for c, r in steps]


def test_count_replays_by_hand():
    F, T = False, True
    traj = _traj(
        # image 0 starts from the source [1 2 3 4]; image 1 starts all but 3 codes [MASK] (never held a code)
        ([[1, 2, 3, 4], [M, 0, 0, 0]], [[F, F, F, F], [F, F, F, F]]),
        # reflect: image 0 re-masks 0, 1, 3 (rejected 1, 2, 4); image 1 re-masks 1 (rejected 0)
        ([[M, M, 3, M], [M, M, 0, 0]], [[T, T, F, T], [F, T, F, F]]),
        # reveal: image 0 position 0 -> 1 (= rejected: replay), 1 -> 5 (new); image 1 position 0 -> 1 (it never
        # held a code: no replay, whatever the code), 1 -> 7 (new)
        ([[1, 5, 3, M], [1, 7, 0, 0]], [[F, F, F, F], [F, F, F, F]]),
        # reflect: image 0 re-masks 2 (rejected 3)
        ([[1, 5, M, M], [1, 7, 0, 0]], [[F, F, T, F], [F, F, F, F]]),
        # reveal: image 0 position 2 -> 3 and 3 -> 4, both the codes they held: two replays
        ([[1, 5, 3, 4], [1, 7, 0, 0]], [[F, F, F, F], [F, F, F, F]]),
    )
    counts = count_replays(traj, M)
    assert counts == [3, 0] and all(type(c) is int for c in counts)  # image 0: 1 + 2; image 1: none
    assert count_replays(None, M) == [] and count_replays([], M) == []


# ---- summaries of token scores ---------------------------------------------------------------------------------
def _row(tp, fp, fn, precision, recall, iou, kept, edit, tok, passes, replayed, edit_type):
    return dict(tp=tp, fp=fp, fn=fn, precision=precision, recall=recall, iou=iou, kept_outside=kept,
                edit_accuracy=edit, token_accuracy=tok, forward_passes=passes, replayed=replayed, edit_type=edit_type)


ROWS = [
    _row(2, 2, 1, 0.5, 2 / 3, 0.4, 0.8, 1.0, 0.9, 6.0, 1.0, "add"),
    _row(3, 0, 1, 1.0, 0.75, 0.75, 1.0, 0.5, 0.8, 6.0, 0.0, "add"),
    _row(0, 1, 4, 0.0, 0.0, 0.0, 0.6, 0.0, 0.4, 9.0, 2.0, "remove"),
]


def test_summarize_means_micro_scores_and_edit_types_by_hand():
    s = summarize(ROWS)
    # means of 3: precision (0.5 + 1 + 0)/3 = 0.5; recall (0.6667 + 0.75 + 0)/3 = 0.47222; IoU 1.15/3 = 0.38333;
    # kept 2.4/3 = 0.8; edit 1.5/3 = 0.5; token 2.1/3 = 0.7; passes 21/3 = 7; replayed 3/3 = 1
    # pooled: TP 5, FP 3, FN 6 -> micro precision 5/8, micro recall 5/11
    expected = dict(precision=0.5, recall=0.4722222, iou=0.3833333, kept_outside=0.8, edit_accuracy=0.5,
                    token_accuracy=0.7, forward_passes=7.0, replayed=1.0, micro_precision=0.625,
                    micro_recall=5 / 11, n=3)
    assert {k: s[k] for k in expected} == pytest.approx(expected)
    add, remove = s["by_edit_type"]["add"], s["by_edit_type"]["remove"]
    # add: precision 0.75, recall (0.6667 + 0.75)/2 = 0.70833, TP 5 FP 2 FN 2 -> 5/7 and 5/7; n 2
    assert {k: add[k] for k in ("precision", "recall", "micro_precision", "micro_recall", "n")} == pytest.approx(
        dict(precision=0.75, recall=0.7083333, micro_precision=5 / 7, micro_recall=5 / 7, n=2))
    # remove: TP 0 FP 1 FN 4 -> 0 and 0; replayed 2
    assert (remove["micro_precision"], remove["micro_recall"], remove["replayed"], remove["n"]) == (0.0, 0.0, 2.0, 1)
    assert "by_edit_type" not in add and set(s["by_edit_type"]) == {"add", "remove"}


def test_summarize_micro_scores_when_the_counts_tie():
    # TP 1 + 1 = 2, FP 1 + 1 = 2, FN 2 + 0 = 2: micro precision 2/4, micro recall 2/4
    rows = [_row(1, 1, 2, 0.5, 1 / 3, 0.25, 1.0, 0.5, 0.5, 3.0, 0.0, None),
            _row(1, 1, 0, 0.5, 1.0, 0.5, 1.0, 1.0, 1.0, 3.0, 0.0, None)]
    s = summarize(rows)
    assert (s["micro_precision"], s["micro_recall"]) == (0.5, 0.5)


def test_summarize_conventions():
    # nothing chosen and nothing to find: micro scores are 1 (no false alarm, nothing missed); nan is skipped
    rows = [_row(0, 0, 0, math.nan, 1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 0.0, None), _row(0, 0, 0, 0.5, 1.0, 1.0, 1.0, 1.0,
                                                                                 1.0, 3.0, 0.0, None)]
    s = summarize(rows)
    assert s["micro_precision"] == 1.0 and s["micro_recall"] == 1.0 and s["precision"] == 0.5
    assert "by_edit_type" not in s


def test_aggregate_counts_every_infinite_and_missing_value():
    from rm_edit.metrics import aggregate

    samples = [
        {"reasons": {"psnr": "why"}, "psnr": math.inf, "l1": 0.5},  # reasons first: the row's values still count
        {"psnr": math.inf, "l1": None},
        {"psnr": None, "l1": math.nan},
        {"psnr": 30.0, "l1": 0.25},
        {"psnr": 20.0, "l1": math.inf},
    ]
    # psnr: finite 30, 20 -> mean 25, count 2; inf twice; missing once
    # l1: finite 0.5, 0.25 -> mean 0.375, count 2; inf once; None and nan -> missing twice
    assert aggregate(samples) == {
        "psnr": {"mean": 25.0, "count": 2, "n_inf": 2, "n_missing": 1},
        "l1": {"mean": 0.375, "count": 2, "n_inf": 1, "n_missing": 2},
    }


# ---- evaluate_tokens' wiring: which codes are the source's and the target's, which seed each edit gets -------
def test_evaluate_tokens_scores_each_edit_against_its_own_target(tiny_pipeline):
    from types import SimpleNamespace

    from PIL import Image

    from rm_edit.evaluation.token_eval import evaluate_tokens
    from rm_edit.vq import encode_to_codes, image_to_tensor

    rng = np.random.default_rng(5)
    a, b = (rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2))
    examples = [SimpleNamespace(id="e0", source=a, target=a, instruction="keep it", edit_type="none"),
                SimpleNamespace(id="e1", source=a, target=b, instruction="make it b", edit_type="swap")]
    kw = dict(strategy="reflective", num_turns=1, reveal_steps=1, temperature=1.0, allow_unknown_words=True)
    rows = evaluate_tokens(tiny_pipeline, examples, batch_size=2, seed=3, progress=False, **kw)["rows"]
    # The same call by hand: seeds 3 + crc32(id) (rm_edit.files.item_seed), codes of a and b straight from the VQ.
    out = tiny_pipeline([Image.fromarray(a)] * 2, ["keep it", "make it b"], output_type="latent",
                        generator=[torch.Generator().manual_seed(3 + zlib.crc32(i)) for i in (b"e0", b"e1")], **kw)
    code_a, code_b = (encode_to_codes(tiny_pipeline.vqvae, image_to_tensor(x))[0] for x in (a, b))
    # no change to find: edit accuracy 1 by convention, nothing missed, every chosen token a false alarm
    region0 = out.edit_region_tokens[0]
    assert rows[0]["edit_accuracy"] == 1.0 and rows[0]["recall"] == 1.0 and rows[0]["fn"] == 0
    assert rows[0]["fp"] == int(region0.sum()) and rows[0]["edit_type"] == "none"
    assert rows[0]["kept_outside"] == pytest.approx(float((out.images[0] == code_a).float().mean()))
    changed = code_a != code_b
    assert changed.any()
    assert rows[1]["edit_accuracy"] == pytest.approx(float((out.images[1][changed] == code_b[changed]).float().mean()))
    assert rows[1]["token_accuracy"] == pytest.approx(float((out.images[1] == code_b).float().mean()))
    assert rows[1]["tp"] == int((out.edit_region_tokens[1] & changed).sum())
    assert rows[1]["forward_passes"] == out.num_forward_passes


def test_evaluate_tokens_seeds_each_example_and_stays_quiet(tiny_pipeline, capsys):
    from types import SimpleNamespace

    from PIL import Image

    from rm_edit.evaluation.token_eval import evaluate_tokens
    from rm_edit.vq import encode_to_codes, image_to_tensor

    rng = np.random.default_rng(6)
    a = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    # the target is the source: token accuracy = the codes a sampled edit happens to keep, which the seed moves
    examples = [SimpleNamespace(id=f"e{i}", source=a, target=a, instruction="make it b") for i in range(6)]
    kw = dict(strategy="regenerate", num_inference_steps=2, temperature=1.0,  # every code sampled: seeds show
              allow_unknown_words=True)
    code_a = encode_to_codes(tiny_pipeline.vqvae, image_to_tensor(a))[0]

    def by_hand(seed):  # token accuracy of one direct call with that seed
        out = tiny_pipeline(Image.fromarray(a), "make it b", output_type="latent",
                            generator=torch.Generator().manual_seed(seed), **kw)
        return float((out.images[0] == code_a).float().mean())

    # batches of 4 (e0..e3 | e4, e5): each example gets seed + crc32(its id), whatever its batch or position
    rows = evaluate_tokens(tiny_pipeline, examples, batch_size=4, seed=5, progress=False, **kw)["rows"]
    assert [r["token_accuracy"] for r in rows] == pytest.approx([by_hand(5 + zlib.crc32(f"e{i}".encode()))
                                                                 for i in range(6)])
    assert len({r["token_accuracy"] for r in rows}) > 1  # the seeds do change the edits
    assert [r["edit_type"] for r in rows] == [None] * 6  # examples without an edit type
    expected0 = by_hand(zlib.crc32(b"e0"))
    capsys.readouterr()
    default = evaluate_tokens(tiny_pipeline, examples[:1], progress=False, **kw)["rows"]  # seed 0 by default
    assert default[0]["token_accuracy"] == pytest.approx(expected0)
    assert "evaluating" not in capsys.readouterr().err  # progress=False: no bar of its own
    evaluate_tokens(tiny_pipeline, examples[:1], **kw)
    assert "evaluating" in capsys.readouterr().err  # the default shows one


def test_set_scores_conditions_by_hand():
    # TP 2, FP 1, FN 2 -> recall 2/4 (not the "nothing to find" 1); TP 1, FP 1, FN 2 -> IoU 1/4;
    # TP 1, FP 3, FN 2 -> IoU 1/6
    for pred, gt, key, value in (
        ([1, 1, 1, 0, 0], [1, 1, 0, 1, 1], "recall", 0.5),
        ([1, 1, 0, 0, 0], [1, 0, 1, 1, 0], "iou", 0.25),
        ([1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 1, 1], "iou", 1 / 6),
    ):
        got = token_localization(torch.tensor([pred], dtype=torch.bool), torch.tensor([gt], dtype=torch.bool))
        assert got[key] == pytest.approx(value), (pred, gt, key)


def test_localization_errors_name_both_shapes():
    from rm_edit.metrics import changed_tokens, localization_scores

    two, three = torch.zeros(2, 2, dtype=torch.bool), torch.zeros(3, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"shape mismatch: \(2, 2\) vs \(3, 3\)"):
        token_localization(two, three)
    with pytest.raises(ValueError, match=r"change map \(2, 2\) and mask \(3, 3\) differ"):
        localization_scores(torch.zeros(2, 2), three)
    with pytest.raises(ValueError, match=r"token grids differ in shape: \(2, 2\) vs \(3, 3\)"):
        changed_tokens(torch.zeros(2, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"gt grid \(3, 3\) vs token grid \(2, 2\)"):
        kept_outside_fraction(torch.zeros(2, 2), torch.zeros(2, 2), three)
