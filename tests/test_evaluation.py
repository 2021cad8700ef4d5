"""Evaluation: benchmark loaders (PIE-Bench, MagicBrush, manifest, shapes), run_model / score with resume,
tables, the shapes comparison, the eval CLI and the HTML report in headless Chromium."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rm_edit.data.shapes import write_shapes_dataset
from rm_edit.evaluation.benchmark_set import strip_brackets
from rm_edit.evaluation.benchmarks import load_benchmark
from rm_edit.evaluation.run_files import SampleLog
from rm_edit.evaluation.runner import run_model, score
from rm_edit.metrics.structure import StructureDistance
from rm_edit.metrics import EditMetrics
from tests.conftest import make_tiny_pipeline

pytestmark = pytest.mark.timeout(300)


def _img(path: Path, colour=(200, 200, 200), size=(32, 32), box=None, box_colour=(220, 30, 35)) -> Image.Image:
    arr = np.full((size[1], size[0], 3), colour, np.uint8)
    if box is not None:
        x0, y0, x1, y1 = box
        arr[y0:y1, x0:x1] = box_colour
    im = Image.fromarray(arr)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return im


def _rle(mask: np.ndarray) -> list[int]:
    """Flat [start, length, ...] runs of a bool mask (row-major), as PIE-Bench stores them."""
    flat = np.concatenate([[0], mask.reshape(-1).astype(np.int8), [0]])
    d = np.diff(flat)
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return [int(v) for s, e in zip(starts, ends) for v in (s, e - s)]


# ---- loaders ---------------------------------------------------------------------------------------------
def _pie_bench(tmp_path: Path) -> tuple[Path, np.ndarray]:
    root = tmp_path / "PIE-Bench"
    _img(root / "annotation_images/0_random_140/000000000000.jpg", box=(8, 8, 20, 16))
    _img(root / "annotation_images/1_change_object_80/000000000001.jpg", size=(40, 24))
    mask = np.zeros((32, 32), bool)
    mask[8:16, 8:20] = True
    mapping = {
        "000000000000": {"image_path": "0_random_140/000000000000.jpg", "original_prompt": "a [red] box on grey",
                         "editing_prompt": "a [blue] box on grey", "editing_instruction": "make the box blue",
                         "editing_type_id": "0", "blended_word": "red blue", "mask": _rle(mask)},
        "000000000001": {"image_path": "1_change_object_80/000000000001.jpg", "original_prompt": "grey",
                         "editing_prompt": "[white]", "editing_instruction": "whiten it", "editing_type_id": "1",
                         "mask": [0, 5]},
        "bad_missing_instruction": {"image_path": "0_random_140/000000000000.jpg", "original_prompt": "x",
                                    "editing_prompt": "y", "mask": []},
        "bad_odd_rle": {"image_path": "0_random_140/000000000000.jpg", "original_prompt": "x", "editing_prompt": "y",
                        "editing_instruction": "z", "mask": [1, 2, 3]},
        "bad_escape": {"image_path": "../outside.jpg", "original_prompt": "x", "editing_prompt": "y",
                       "editing_instruction": "z", "mask": []},
        "bad_missing_file": {"image_path": "0_random_140/nope.jpg", "original_prompt": "x", "editing_prompt": "y",
                             "editing_instruction": "z", "mask": []},
    }
    (root / "mapping_file.json").write_text(json.dumps(mapping))
    return root, mask


def test_pie_bench_loader(tmp_path):
    root, mask = _pie_bench(tmp_path)
    bench = load_benchmark(root)
    assert bench.kind == "pie-bench" and len(bench) == 3  # three index-time failures
    samples = list(bench)
    assert [s.id for s in samples] == ["000000000000", "000000000001"]
    assert {e["id"] for e in bench.errors} == {"bad_missing_instruction", "bad_odd_rle", "bad_escape", "bad_missing_file"}
    s = samples[0]
    assert s.instruction == "make the box blue" and s.target is None
    assert s.captions == ("a red box on grey", "a blue box on grey")
    assert s.image_path == "0_random_140/000000000000.jpg" and s.edit_type == "0"
    expected = mask.copy()
    expected[0, :] = expected[-1, :] = expected[:, 0] = expected[:, -1] = True  # PIE-Bench's forced border
    assert s.mask.dtype == bool and np.array_equal(s.mask, expected)
    assert samples[1].mask.shape == (24, 40) and samples[1].mask[0, :5].all()
    assert strip_brackets("[a] b [c d]") == "a b c d"
    # the mapping file itself and the explicit prefix work too; n takes the first samples
    assert len(load_benchmark(root / "mapping_file.json", n=1)) == 1
    assert load_benchmark(f"pie-bench:{root}").kind == "pie-bench"


def test_magicbrush_loaders(tmp_path):
    # MagicBrush release layout: edit_sessions.json + images/<img_id>/...
    root = tmp_path / "MagicBrush" / "test"
    d = root / "images" / "242679"
    _img(d / "242679-input.png")
    _img(d / "242679-output1.png", box=(4, 4, 12, 12))
    _img(d / "242679-output2.png", box=(4, 4, 20, 12))
    m = np.zeros((32, 32), np.uint8)
    m[4:12, 4:12] = 255
    Image.fromarray(m).save(d / "242679-mask1.png")
    sessions = {"242679": [
        {"input": "242679-input.png", "mask": "242679-mask1.png", "output": "242679-output1.png", "instruction": "add a box"},
        {"input": "242679-output1.png", "mask": "242679-missing.png", "output": "242679-output2.png", "instruction": "widen it"},
        {"input": "242679-input.png", "output": "242679-output1.png"},
    ]}
    (root / "edit_sessions.json").write_text(json.dumps(sessions))
    bench = load_benchmark(tmp_path / "MagicBrush")  # the parent of test/ is found too
    assert bench.kind == "magicbrush" and bench.ids == ["242679_1", "242679_2"]
    samples = list(bench)
    assert [s.id for s in samples] == ["242679_1"]  # turn 2's mask file is missing: skipped, reported
    assert {e["id"] for e in bench.errors} == {"242679_3", "242679_2"}
    s = samples[0]
    assert s.image_path == "242679/242679-output1.png" and s.target is not None
    assert s.mask.sum() == 64 and s.mask[4:12, 4:12].all()  # white = edit

    # one folder per sample
    flat = tmp_path / "flat"
    _img(flat / "a" / "source.png")
    _img(flat / "a" / "target.png", box=(0, 0, 8, 8))
    Image.fromarray(m).save(flat / "a" / "mask.png")
    (flat / "a" / "instruction.txt").write_text("add a red box\n")
    (flat / "a" / "captions.json").write_text(json.dumps({"source": "grey", "target": "grey with a box"}))
    _img(flat / "b" / "input.jpg")
    (flat / "b" / "instruction.txt").write_text("do something")
    _img(flat / "c" / "source.png")  # no instruction: reported and skipped
    _img(flat / "d" / "source.png")
    _img(flat / "d" / "target.png", size=(16, 16))  # wrong size
    (flat / "d" / "instruction.txt").write_text("x")
    bench = load_benchmark(f"magicbrush:{flat}")
    samples = list(bench)
    assert [s.id for s in samples] == ["a", "b"]
    assert samples[0].captions == ("grey", "grey with a box") and samples[0].instruction == "add a red box"
    assert samples[1].target is None and samples[1].mask is None and samples[1].image_path == "b.png"
    assert {e["id"] for e in bench.errors} == {"c", "d"}


def test_manifest_loader(tmp_path):
    manifest = write_shapes_dataset(tmp_path / "ds", 3, split="test", progress=False)
    with manifest.open("a") as fh:
        fh.write(json.dumps({"id": "gone", "source": "images/missing.png", "instruction": "x"}) + "\n")
        fh.write("{not json\n")
    bench = load_benchmark(manifest)
    assert bench.kind == "manifest" and len(bench) == 4
    samples = list(bench)
    assert [s.id for s in samples] == ["test_000000", "test_000001", "test_000002"]
    assert samples[0].image_path == "test_000000.png" and samples[0].target is not None
    assert samples[0].mask.dtype == bool and samples[0].mask.any()
    assert len(bench.errors) == 2  # the bad JSON line and the missing image
    assert load_benchmark(tmp_path / "ds").kind == "manifest"


def test_shapes_benchmark_and_errors():
    bench = load_benchmark("shapes-test", n=2)
    s = next(iter(bench))
    assert s.id == "test_000000" and s.image_path == "test_000000.png"
    assert s.target.size == s.source.size == (64, 64) and s.mask.shape == (64, 64)
    with pytest.raises(FileNotFoundError):
        load_benchmark("/nonexistent/benchmark")


def test_structure_distance_random_weights():
    sd = StructureDistance(model_name="vit_tiny_patch16_224", layer=-1, image_size=64, allow_random_weights=True)
    a = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    b = Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    assert sd.distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert sd.distance(a, b) > 0


# ---- running and scoring ---------------------------------------------------------------------------------
class CountingPipe:
    """Forwards to the pipeline and counts the images it is asked to edit."""

    def __init__(self, pipe):
        self._pipe, self.edited = pipe, 0

    def __call__(self, image, *args, **kwargs):
        self.edited += len(image)
        return self._pipe(image, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._pipe, name)


@pytest.fixture(scope="module")
def tiny():
    pipe = make_tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def shapes4():
    return load_benchmark("shapes-test", n=4)


@pytest.fixture(scope="module")
def run_dir(tiny, shapes4, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    run_model(tiny, shapes4, out, {"strategy": "reflective"}, metrics=EditMetrics(), batch_size=3,
              progress=False, label="tiny RM")
    return out


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_run_model_outputs(run_dir, shapes4):
    for name in ("run.json", "samples.jsonl", "per_sample.csv", "per_sample.json", "summary.md", "summary.json",
                 "errors.jsonl", "report.html"):
        assert (run_dir / name).is_file(), name
    for i in shapes4.ids:
        assert Image.open(run_dir / "images" / f"{i}.png").size == (64, 64)
        assert (run_dir / "regions" / f"{i}.png").is_file()
    rows = _rows(run_dir / "samples.jsonl")
    assert [r["id"] for r in rows] == shapes4.ids
    for r in rows:
        assert r["status"] == "ok" and r["token_gt"] == "codes"
        for k in ("loc_iou", "bg_psnr", "target_psnr", "tok_precision", "tok_recall", "tok_edit_accuracy"):
            assert isinstance(r[k], float), k
        assert r["forward_passes"] >= 1 and r["replayed"] >= 0
        assert r["bg_lpips"] is None and "bg_lpips" in r["reasons"]
    with (run_dir / "per_sample.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [t["id"] for t in table] == shapes4.ids and "tok_precision" in table[0]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["n_scored"] == 4 and summary["metrics"]["tok_precision"]["count"] == 4
    assert "bg_lpips" in summary["unavailable"]
    md = (run_dir / "summary.md").read_text()
    assert "| tiny RM |" in md and "Tok P" in md and "bg_lpips: n/a" in md


def test_resume_skips_finished_samples(run_dir, tiny, shapes4, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(run_dir, out)
    rows = _rows(out / "samples.jsonl")
    before = np.asarray(Image.open(out / "images" / f"{rows[-1]['id']}.png"))
    # Interrupted: the last sample's image exists but its row was never written; a torn line is left behind.
    lines = (out / "samples.jsonl").read_text().splitlines(keepends=True)
    (out / "samples.jsonl").write_text("".join(lines[:-1]) + lines[-1][:20])
    counting = CountingPipe(tiny)
    summary = run_model(counting, shapes4, out, {"strategy": "reflective"}, metrics=EditMetrics(), batch_size=2,
                        progress=False, report=False, label="tiny RM")
    assert counting.edited == 1 and summary["n_scored"] == 4
    again = _rows(out / "samples.jsonl")
    assert [r["id"] for r in again] == shapes4.ids  # the torn line was dropped
    after = np.asarray(Image.open(out / "images" / f"{rows[-1]['id']}.png"))
    assert np.array_equal(before, after)  # per-sample generators: batch size 3 or 1, same edit
    counting.edited = 0
    run_model(counting, shapes4, out, {"strategy": "reflective"}, metrics=EditMetrics(), progress=False,
              report=False, label="tiny RM")
    assert counting.edited == 0
    with pytest.raises(ValueError, match="other settings"):
        run_model(tiny, shapes4, out, {"strategy": "regenerate"}, metrics=EditMetrics(), progress=False, report=False)


def test_score_predictions(run_dir, shapes4, tmp_path):
    preds = tmp_path / "preds"
    shutil.copytree(run_dir / "images", preds)
    ids = shapes4.ids
    Image.open(preds / f"{ids[1]}.png").save(preds / f"{ids[1]}.jpg", quality=100)  # any suffix is found
    (preds / f"{ids[1]}.png").unlink()
    (preds / f"{ids[2]}.png").unlink()  # missing
    Image.open(preds / f"{ids[3]}.png").resize((128, 128), Image.Resampling.NEAREST).save(preds / f"{ids[3]}.png")
    out = tmp_path / "scored"
    summary = score(shapes4, preds, out, EditMetrics(), progress=False, label="other tool")
    assert summary["n_scored"] == 3 and summary["n_missing_predictions"] == 1
    rows = {r["id"]: r for r in json.loads((out / "per_sample.json").read_text())}
    ref = {r["id"]: r for r in _rows(run_dir / "samples.jsonl")}
    assert rows[ids[0]]["loc_iou"] == pytest.approx(ref[ids[0]]["loc_iou"])
    assert rows[ids[0]]["target_psnr"] == pytest.approx(ref[ids[0]]["target_psnr"])
    assert rows[ids[1]]["image"] == f"{ids[1]}.jpg" and rows[ids[2]]["status"] == "missing"
    assert rows[ids[3]]["resized_from"] == "128x128"
    assert "tok_precision" not in rows[ids[0]]
    assert "run with --model" in json.loads((out / "summary.json").read_text())["unavailable"]["tok_precision"]
    # the missing prediction appears later: only it is scored on the next run
    shutil.copy(run_dir / "images" / f"{ids[2]}.png", preds / f"{ids[2]}.png")
    summary = score(shapes4, preds, out, EditMetrics(), progress=False, report=False, label="other tool")
    assert summary["n_scored"] == 4 and summary["n_missing_predictions"] == 0
    assert len(SampleLog(out / "samples.jsonl").rows) == 4


def test_run_model_on_pie_bench(tiny, tmp_path):
    """No targets, masks only, two image sizes (two batches): token GT is the mask pooled to the grid."""
    root, _ = _pie_bench(tmp_path)
    bench = load_benchmark(root)
    summary = run_model(tiny, bench, tmp_path / "out", {"strategy": "reflective", "num_turns": 1},
                        metrics=EditMetrics(), progress=False, report=False)
    assert summary["n_scored"] == 2 and summary["n_skipped"] == 4
    assert len((tmp_path / "out" / "errors.jsonl").read_text().splitlines()) == 4
    rows = json.loads((tmp_path / "out" / "per_sample.json").read_text())
    assert [r["token_gt"] for r in rows] == ["mask", "mask"]
    assert Image.open(tmp_path / "out/images/1_change_object_80/000000000001.png").size == (40, 24)
    keys = [k for k, _ in summary["columns"]]
    assert keys[:7] == ["structure_x1e3", "pie_psnr", "pie_lpips_x1e3", "pie_mse_x1e4", "pie_ssim_x1e2",
                        "clip_score", "clip_score_edit_region"]
    assert summary["metrics"]["pie_psnr"]["count"] == 2 and "structure_x1e3" in summary["unavailable"]
    assert "no target image" in rows[0]["reasons"]["target_psnr"]


def test_compare_shapes(tmp_path):
    from rm_edit.evaluation.compare import COMPARE_COLUMNS, compare_shapes

    models = tmp_path / "models"
    pipe = make_tiny_pipeline()
    for name in ("shapes-base", "shapes-sft", "shapes-rm", "shapes-rm-her"):
        pipe.save_pretrained(models / name)
    result = compare_shapes(models, 1, tmp_path / "cmp", progress=False)
    names = [r["name"] for r in result["rows"]]
    assert len(names) == 6 and names[0].startswith('"Lumina-style" base')
    # Every row says whether it pasted back: the five rows of the models' own output, then the best with it.
    assert all(n.endswith(", no paste-back)") for n in names[:5]) and names[-1].endswith(", paste-back)")
    assert [r["options"]["paste_back"] for r in result["rows"]] == [False] * 5 + [True]
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert all(label in md for _, label in COMPARE_COLUMNS)
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    for row in data["rows"]:
        assert (tmp_path / "cmp" / row["dir"] / "report.html").is_file()
        means = row["summary"]["means"]
        assert means["tok_precision"] is not None and means["forward_passes"] >= 1
        lpips = row["summary"]["metrics"].get("bg_lpips", {})
        if lpips.get("mean") is None:  # no torchvision SqueezeNet in the cache: unavailable, never random
            assert "bg_lpips" in row["summary"]["unavailable"]
    regen = data["rows"][0]["summary"]["means"]
    assert regen["forward_passes"] == 16  # regenerate: one pass per step
    assert (tmp_path / "cmp" / "index.html").is_file()


# ---- CLI -------------------------------------------------------------------------------------------------
def test_cli_eval_turns_sweep_and_predictions(tmp_path, capsys):
    from rm_edit.cli import main

    model = tmp_path / "model"
    make_tiny_pipeline().save_pretrained(model)
    out = tmp_path / "sweep"
    rc = main(["eval", "--benchmark", "shapes-test", "--n", "1", "--model", str(model), "--turns-sweep", "1,2",
               "--out", str(out), "--no-progress", "--device", "cpu"])
    assert rc == 0
    data = json.loads((out / "turns_sweep.json").read_text())
    assert data["turns"] == [1, 2] and set(data["summaries"]) == {"1", "2"}
    assert (out / "turns_sweep.png").is_file() and (out / "report.html").is_file()
    assert "report_files/turns_sweep.png" in (out / "report.html").read_text()
    capsys.readouterr()
    rc = main(["eval", "--benchmark", "shapes-test", "--n", "1", "--predictions", str(out / "turns_2" / "images"),
               "--out", str(tmp_path / "pred"), "--no-progress", "--no-report"])
    assert rc == 0 and "1 of 1 samples scored" in capsys.readouterr().out
    assert main(["eval", "compare", "--out", str(tmp_path / "c")]) == 2
    assert "needs --models" in capsys.readouterr().err
    assert main(["eval", "--benchmark", "shapes-test", "--predictions", str(tmp_path), "--model", str(model),
                 "--out", str(tmp_path / "x")]) == 2


# ---- the HTML report in a browser ------------------------------------------------------------------------
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

_PROBE = """<script>
window.__errors=[];window.addEventListener('error',function(e){window.__errors.push(String(e.message));});
window.addEventListener('load',function(){setTimeout(function(){
  const th=Array.from(document.querySelectorAll('table.samples th')).find(function(h){return h.textContent.indexOf('Loc IoU')===0;});
  let sorted='no-header';
  if(th){th.click();th.click();const col=th.cellIndex;
    const vals=Array.from(document.querySelectorAll('table.samples tbody tr')).map(function(r){return Number(r.cells[col].getAttribute('data-v'));});
    sorted=vals.every(function(v,i){return i===0||vals[i-1]>=v;})?'desc-ok':'bad:'+vals.join(',');}
  const p=document.createElement('pre');p.id='probe';
  p.textContent=JSON.stringify({errors:window.__errors,imgs:document.images.length,
    loaded:Array.from(document.images).filter(function(i){return i.complete&&i.naturalWidth>0;}).length,sorted:sorted});
  document.body.appendChild(p);},0);});
</script>"""


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not on PATH (apt-get install -y chromium)")
    return exe


def test_report_renders_in_chromium(run_dir, tmp_path):
    exe = _chromium()
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    # 4 samples x 7 pictures (source, edit, target, |edit - source|, GT mask, change map, model region) + 1 plot
    assert html.count("<img") == 4 * 7 + 1
    probe = run_dir / "report_probe.html"  # next to report.html so its relative images resolve
    probe.write_text(html.replace("<head>", "<head>" + _PROBE, 1), encoding="utf-8")
    cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([*cmd, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom)
    assert found, dom[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert result["errors"] == []
    assert result["imgs"] == 29 and result["loaded"] == 29
    assert result["sorted"] == "desc-ok"
    assert 'data-loaded="29"' in dom and 'data-total="29"' in dom  # the report's own status line
    shot = tmp_path / "shot.png"
    subprocess.run([*cmd, "--window-size=1400,900", f"--screenshot={shot}", (run_dir / "report.html").as_uri()],
                   capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (900, 1400) and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


# ---- the report at 1,400 px: no column cut off --------------------------------------------------------------
_LAYOUT_PROBE = """<script>
window.addEventListener('load',function(){setTimeout(function(){
  const W=window.innerWidth,cut=[];
  for(const th of document.querySelectorAll('th')){
    const box=th.closest('.scroll'),r=th.getBoundingClientRect();
    if(box){box.scrollLeft=box.scrollWidth;}  // scrolled to its end, the box's last column must show
    const b=box?box.getBoundingClientRect():{left:0,right:W};
    const r2=th.getBoundingClientRect();
    const reachable=box?(r.right<=b.right+1||box.scrollWidth>box.clientWidth)&&r2.right<=b.right+1:r.right<=W+1;
    if(!reachable||r.width<8){cut.push(th.textContent.trim());}
    if(box){box.scrollLeft=0;}
  }
  const summary=document.querySelector('table.summary').closest('.scroll');
  const inst=document.querySelector('table.samples td.inst').getBoundingClientRect();
  const rows=Array.from(document.querySelectorAll('table.samples tbody tr')).map(function(r){return r.getBoundingClientRect().height;});
  const im=document.querySelector('table.samples img.px'),w0=im.getBoundingClientRect().width;
  im.click();const w1=im.getBoundingClientRect().width;im.click();
  const p=document.createElement('pre');p.id='layout';
  p.textContent=JSON.stringify({W:W,page:document.documentElement.scrollWidth,cut:cut,
    summaryFits:summary.scrollWidth<=summary.clientWidth,inst:[inst.width,inst.height],rowMax:Math.max.apply(null,rows),
    thumb:[w0,w1],
    headers:document.querySelectorAll('table.samples th').length,
    tips:Array.from(document.querySelectorAll('table.summary th[title]')).map(function(t){return t.title;})});
  document.body.appendChild(p);},0);});
</script>"""


def test_report_fits_1400px_with_no_column_cut_off(run_dir, tmp_path):
    exe = _chromium()
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    probe = run_dir / "report_layout.html"
    probe.write_text(html.replace("<head>", "<head>" + _LAYOUT_PROBE, 1), encoding="utf-8")
    cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
           "--window-size=1400,900"]
    dom = subprocess.run([*cmd, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="layout">(.*?)</pre>', dom)
    assert found, dom[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert result["W"] == 1400
    assert result["page"] <= 1400  # nothing overflows the window: wide tables scroll inside their own box
    assert result["summaryFits"]  # the summary table wraps its headers to fit
    assert result["cut"] == []  # every header visible, or reachable by scrolling its box
    # Text columns keep a readable width: the instruction cell is wider than it is tall (it was one letter per
    # line, ~380 px tall); rows are thumbnail-high (72-px pictures), so 32 rows take under 4,000 px; a click
    # enlarges a thumbnail 4x (72 -> 288 px) and a second click shrinks it back.
    width, height = result["inst"]
    print(f"\nreport at 1,400 px: instruction cell {width:.0f} x {height:.0f} px, tallest row {result['rowMax']:.0f} px")
    assert width > height, result["inst"]
    assert result["rowMax"] < 125, result["rowMax"]
    assert result["thumb"] == [72, 288]
    # the samples table's headers: #, id, instruction, edit type, 7 pictures, the metric columns
    assert result["headers"] > 11
    # hover text of the summary columns is the glossary's
    assert "Edit success: inside the pixels where the target differs" in result["tips"][0]
    shot = tmp_path / "layout.png"
    subprocess.run([*cmd, f"--screenshot={shot}", (run_dir / "report.html").as_uri()], capture_output=True,
                   timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (900, 1400) and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


def test_report_has_target_column_glossary_and_per_type_plot(run_dir):
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "<th>target</th>" in html and html.count("_target.png") == 4  # shapes-test has targets
    assert "report_files/by_edit_type.png" in html and (run_dir / "report_files" / "by_edit_type.png").is_file()
    for key in ("edit_success", "changed_error_ratio", "far_changed_fraction", "loc_precision", "loc_leakage",
                "bg_psnr", "tok_recall", "replayed", "forward_passes"):
        assert f"<dt>{key}</dt>" in html, key
