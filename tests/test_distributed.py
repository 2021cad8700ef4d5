"""Runs across processes: `rm-edit batch`, `rm-edit eval` and `rm-edit data pretokenize` (a Hugging Face
dataset, streamed) with 2 CPU processes (gloo, torch.distributed.run) give the files of a 1-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from rm_edit.cli import main
from rm_edit.distributed import Shard, interleave
from tests.conftest import make_tiny_pipeline

pytestmark = pytest.mark.timeout(600)


def test_take_and_interleave_are_inverse():
    items = list("abcdefg")
    parts = [Shard(rank, 3).take(items) for rank in range(3)]
    assert parts == [["a", "d", "g"], ["b", "e"], ["c", "f"]]
    assert interleave(parts) == items
    assert Shard().take(items) == items and not Shard().active


def _picture(i: int) -> Image.Image:
    rng = np.random.default_rng(i)
    arr = np.full((32, 32, 3), 200, np.uint8)
    x, y = rng.integers(0, 24, 2)
    arr[y : y + 8, x : x + 8] = rng.integers(0, 255, 3)
    return Image.fromarray(arr)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    model = root / "model"
    make_tiny_pipeline().save_pretrained(model)
    lines = []
    for i in range(7):
        _picture(i).save(root / f"s{i}.png")
        _picture(100 + i).save(root / f"t{i}.png")
        lines.append({"id": f"item{i}", "source": f"s{i}.png", "instruction": "make the square red",
                      "target": f"t{i}.png", "edit_type": "recolour" if i % 2 else "remove"})
    lines.append({"id": "broken", "source": "missing.png", "instruction": "make the square red"})  # fails at run
    (root / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + "not json\n")
    ds = datasets.Dataset.from_dict({"img_id": [f"{i}" for i in range(5)], "turn_index": [1] * 5,
                                     "source_img": [_picture(i) for i in range(5)],
                                     "target_img": [_picture(50 + i) for i in range(5)],
                                     "instruction": [f"edit {i}" for i in range(5)]})
    ds.save_to_disk(str(root / "mb"))
    return root, model


def _commands(root: Path, model: Path, tag: str) -> list[list[str]]:
    common = ["--model", str(model), "--device", "cpu", "--no-progress", "--batch-size", "2"]
    return [
        ["batch", str(root / "manifest.jsonl"), "--out", str(root / f"batch_{tag}"), *common,
         "--export-dataset", str(root / f"batch_ds_{tag}")],
        ["eval", "--benchmark", str(root / "manifest.jsonl"), "--out", str(root / f"eval_{tag}"), "--no-report",
         *common, "--export-dataset", str(root / f"eval_ds_{tag}")],
        ["data", "pretokenize", str(root / "mb"), "--vq", str(model / "vqvae"), "--out",
         str(root / f"codes_{tag}.safetensors")],
    ]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _rows(folder: Path) -> list[dict]:
    rows = json.loads((folder / "per_sample.json").read_text())
    return [{k: v for k, v in r.items() if k != "edit_seconds"} for r in rows]  # wall time differs by nature


def test_two_processes_write_what_one_process_writes(setup, capsys):
    root, model = setup
    assert "WORLD_SIZE" not in os.environ
    for argv in _commands(root, model, "one"):
        assert main(argv) in (0, 1)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29533", "tests/dist_driver.py", json.dumps(_commands(root, model, "two"))],
                          cwd=Path(__file__).parent.parent, env=env, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stderr[-3000:]

    one, two = _files(root / "batch_one"), _files(root / "batch_two")
    assert sorted(one) == sorted(two) and len([k for k in one if k.endswith(".mask.png")]) == 7
    assert one == two  # every edit, region and errors.jsonl byte for byte
    errors = [json.loads(x) for x in (root / "batch_two" / "errors.jsonl").read_text().splitlines()]
    assert {e.get("id") for e in errors} == {None, "broken"}  # the bad line once, the failed item once
    assert "done 7, skipped 0, failed 2" in proc.stdout

    assert _rows(root / "eval_one") == _rows(root / "eval_two")
    assert _files(root / "eval_one" / "images") == _files(root / "eval_two" / "images")
    assert not (root / "eval_two" / ".shards").exists()
    s1, s2 = (json.loads((root / f"eval_{t}" / "summary.json").read_text()) for t in ("one", "two"))
    assert {k: v for k, v in s1["means"].items() if k != "edit_seconds"} == \
        {k: v for k, v in s2["means"].items() if k != "edit_seconds"}
    assert s1["n_skipped"] == s2["n_skipped"] == 2  # the bad line and the missing image

    for kind in ("batch", "eval"):  # the exported datasets: one row per finished item, the same in both runs
        d1, d2 = (datasets.load_from_disk(str(root / f"{kind}_ds_{t}")) for t in ("one", "two"))
        assert d1["id"] == d2["id"] == [f"item{i}" for i in range(7)]
        assert [np.asarray(x).tolist() for x in d1["edit"]] == [np.asarray(x).tolist() for x in d2["edit"]]
    assert d1.column_names[7] == "edit_success" and d1["edit_success"] == d2["edit_success"]

    c1, c2 = load_file(str(root / "codes_one.safetensors")), load_file(str(root / "codes_two.safetensors"))
    assert all((c1[k] == c2[k]).all() for k in ("source", "target")) and c1["source"].shape[0] == 5
    m1, m2 = (json.loads((root / f"codes_{t}.json").read_text()) for t in ("one", "two"))
    assert m1["ids"] == m2["ids"] == ["0_1", "1_1", "2_1", "3_1", "4_1"] and m1["instructions"] == m2["instructions"]
    assert not list(root.glob("codes_two.rank*"))

    # resuming after an interruption: lose two finished items, run with 2 processes again -> same files
    for name in ("item1.png", "item4.png"):
        (root / "batch_two" / name).unlink()
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29534", "tests/dist_driver.py",
                           json.dumps(_commands(root, model, "two")[:1])],
                          cwd=Path(__file__).parent.parent, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "done 2, skipped 5" in proc.stdout and _files(root / "batch_two") == one


def test_an_interrupted_sharded_eval_resumes_exactly(tmp_path):
    """A killed multi-process run leaves .shards/rank<r>/; the next run (any number of processes) folds
    them in first and does only the rest: the same rows as one uninterrupted process."""
    from rm_edit.evaluation.benchmark_set import Benchmark
    from rm_edit.evaluation.benchmarks import load_benchmark
    from rm_edit.evaluation.runner import score
    from rm_edit.evaluation.sharded import run_sharded
    from rm_edit.metrics import EditMetrics

    lines = []
    for i in range(5):
        _picture(i).save(tmp_path / f"s{i}.png")
        _picture(100 + i).save(tmp_path / f"t{i}.png")
        lines.append({"id": f"item{i}", "source": f"s{i}.png", "instruction": "x", "target": f"t{i}.png"})
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    preds = tmp_path / "preds"
    preds.mkdir()
    for i in range(5):
        _picture(200 + i).save(preds / f"item{i}.png")
    bench = load_benchmark(tmp_path / "manifest.jsonl")
    run = lambda b, o, **kw: score(b, preds, o, EditMetrics(), **kw)  # noqa: E731
    reference = tmp_path / "ref"
    run(bench, reference, report=False, progress=False)

    out = tmp_path / "out"
    killed = Benchmark(bench.name, bench.kind, bench.refs[1::2], [], bench.root)  # rank 1 of 2 got this far
    run(killed, out / ".shards" / "rank1", report=False, progress=False)
    run_sharded(run, load_benchmark(tmp_path / "manifest.jsonl"), out, shard=Shard(0, 2), predictions_dir=preds,
                report=False, progress=False)  # the main process alone: folds rank 1's rows in, does its own
    assert not (out / ".shards").exists()
    done = {r["id"] for r in json.loads((out / "per_sample.json").read_text())}
    assert done == {"item0", "item1", "item3", "item4"}  # 1, 3 from the leftover; 0, 4 = pending[0::2]
    run_sharded(run, load_benchmark(tmp_path / "manifest.jsonl"), out, report=False, progress=False)  # 1 process
    assert json.loads((out / "per_sample.json").read_text()) == json.loads((reference / "per_sample.json").read_text())
