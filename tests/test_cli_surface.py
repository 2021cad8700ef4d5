"""The rm-edit command line as a user meets it: light startup, --version, quiet runs, Ctrl-C, value checks,
masks of another size, history warnings, --max-pixels, batch progress lines, paste-back by default, seams."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from rm_edit.cli import build_parser, main
from rm_edit.cli.options import non_negative_float, number, unit_float
from rm_edit.data.manifest import write_manifest
from rm_edit.data.records import EditRecord
from rm_edit.image_processor import seam_error, seam_ring
from tests.conftest import make_tiny_pipeline

FAST = ["--num-turns", "2", "--reveal-steps", "2", "--device", "cpu"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("tiny_model")
    make_tiny_pipeline().save_pretrained(folder)
    return str(folder)


@pytest.fixture
def image_path(tmp_path, shapes_examples) -> Path:
    path = tmp_path / "in.png"
    PIL.Image.fromarray(np.asarray(shapes_examples[0].source)).save(path)
    return path


def _run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}  # warnings would show
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, env=env,
                          cwd=ROOT, **kwargs)


# ---- startup ----------------------------------------------------------------------------------------------
_HEAVY_PROBE = """
import sys
from rm_edit.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
heavy = sorted(m for m in ("torch", "diffusers", "transformers", "numpy") if m in sys.modules)
print("HEAVY", ",".join(heavy), "RC", rc)
"""


@pytest.mark.parametrize("argv", [
    ["--help"], ["--version"], ["edit", "--help"], ["batch", "--help"], ["eval", "--help"], ["data", "--help"],
    ["edit", "in.png"], ["edit", "in.png", "x", "-o", "o.png", "--guidance-scale", "inf"], ["bogus"],
])
def test_help_and_argument_errors_import_no_heavy_library(argv):
    res = _run("-c", _HEAVY_PROBE, *argv)
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith("HEAVY  RC") or last.startswith("HEAVY RC"), (last, res.stderr)
    assert last.endswith("RC 0") if "--help" in argv or "--version" in argv else last.endswith("RC 2")


def test_version():
    res = _run("-m", "rm_edit.cli", "--version")
    assert res.returncode == 0 and res.stdout.strip() == "rm-edit 0.1.0"  # pyproject's version


def test_a_normal_run_prints_no_library_warning(tmp_path, image_path, model_dir):
    out = tmp_path / "out.png"
    res = _run("-m", "rm_edit.cli", "edit", str(image_path), "make the circle blue", "-o", str(out),
               "--model", model_dir, *FAST)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""  # no torch_dtype FutureWarning, no loading bar
    assert res.stdout.count("\n") == 1 and str(out) in res.stdout


def _has_loaded(pid: int, needle: str) -> bool:
    try:
        return needle in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see when torch is loading")
@pytest.mark.parametrize("when", ["importing torch", "running"])
def test_ctrl_c_is_one_line_and_exit_130(tmp_path, image_path, model_dir, when):
    args = [sys.executable, "-m", "rm_edit.cli", "edit", str(image_path), "make the circle blue",
            "-o", str(tmp_path / "out.png"), "--model", model_dir, "--device", "cpu", "--num-turns", "50"]
    # A shell's background job (nohup ... &) starts with SIGINT ignored, and children inherit that: give the
    # CLI the default disposition a terminal's Ctrl-C meets.
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # torch's shared library mapped = inside main(), in the middle of the imports; the tiny model's
    # safetensors mapped = the model is loaded (and about to run 50 turns).
    needle = "libtorch" if when == "importing torch" else "diffusion_pytorch_model"
    deadline = time.monotonic() + 120
    while not _has_loaded(proc.pid, needle) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["rm-edit: interrupted"], err



def test_ctrl_c_that_a_library_turns_into_its_own_error_still_ends_as_an_interrupt():
    """diffusers reports a weights read cut short by Ctrl-C as "Unable to load weights": still exit 130. Run in a
    fresh interpreter, as the CLI runs (in-process, other tests' signal and thread state made it flaky)."""
    script = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as from a terminal (a background job starts with it ignored)
import rm_edit.cli as cli

def interrupted_load(args):
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)  # the handler raises KeyboardInterrupt here, at once
    except KeyboardInterrupt:
        raise OSError("Unable to load weights from checkpoint file") from None
    return 0

cli.COMMANDS["edit"] = cli.COMMANDS["edit"]._replace(run=interrupted_load)
code = cli.main(["edit", "in.png", "make the circle blue", "-o", "out.png"])
assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back after the call
sys.exit(code)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == ["rm-edit: interrupted"]


# ---- values -----------------------------------------------------------------------------------------------
def _float_options(command: str) -> list[str]:
    parser = build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    floats = [a for a in sub._actions if a.type in (number, non_negative_float, unit_float, float)]
    assert all(a.type is not float for a in floats), "a bare float option would take nan"
    return [a.option_strings[0] for a in floats]


@pytest.mark.parametrize("command", ["edit", "batch", "eval"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_float_option_refuses_nan_and_inf(command, value, capsys):
    options = _float_options(command)
    # the sampler's: remask margin, held-code bias, the two guidance scales, history decay
    assert {"--remask-margin", "--held-code-bias", "--guidance-scale", "--image-guidance-scale",
            "--history-decay"} <= set(options)
    required = {"edit": ["in.png", "x", "-o", "o.png"], "batch": ["m.jsonl", "--out", "o"], "eval": ["--out", "o"]}
    for option in options:
        assert main([command, *required[command], f"{option}={value}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and option in err[0] and ("finite" in err[0] or "must be" in err[0]), err


def test_mask_of_another_shape_is_refused(tmp_path, image_path, model_dir, capsys):
    wide = tmp_path / "wide.png"
    PIL.Image.new("L", (64, 32), 255).save(wide)  # 2:1 against the 64x64 image
    assert main(["edit", str(image_path), "make the circle blue", "-o", str(tmp_path / "o.png"), "--model",
                 model_dir, *FAST, "--mask", str(wide)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rm-edit: error: --mask {wide} is 64x32 but the image is 64x64 (another shape)"]


def test_mask_notice_names_both_sizes(tmp_path, image_path, model_dir, capsys):
    half = tmp_path / "half.png"
    PIL.Image.new("L", (32, 32), 255).save(half)
    assert main(["edit", str(image_path), "make the circle blue", "-o", str(tmp_path / "o.png"), "--model",
                 model_dir, *FAST, "--mask", str(half)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rm-edit: note: --mask {half} is 32x32, the image 64x64: mask resized (nearest)"]


def test_history_on_a_model_trained_without_it_warns(tmp_path, image_path, capsys):
    p = make_tiny_pipeline()
    p.transformer.register_to_config(history_reference=False)
    folder = tmp_path / "no_her"
    p.save_pretrained(folder)
    assert main(["edit", str(image_path), "make the circle blue", "-o", str(tmp_path / "o.png"), "--model",
                 str(folder), *FAST, "--history"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rm-edit: warning: use_history=True on a model trained without")


def test_edit_max_pixels(tmp_path, image_path, model_dir, capsys):
    # 64 x 64 = 4096 pixels > 4095
    assert main(["edit", str(image_path), "x", "-o", str(tmp_path / "o.png"), "--model", model_dir,
                 "--max-pixels", "4095"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"rm-edit: error: image too large: {image_path} is 64x64 (4096 pixels > limit 4095)"


# ---- batch progress under a pipe --------------------------------------------------------------------------
def test_batch_prints_progress_lines_when_not_on_a_terminal(tmp_path, shapes_examples, model_dir, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    records = []
    for i in range(5):
        ex = shapes_examples[i % len(shapes_examples)]
        src = folder / f"s{i}.png"
        PIL.Image.fromarray(np.asarray(ex.source)).save(src)
        records.append(EditRecord(f"item{i}", src, ex.instruction))
    manifest = write_manifest(folder / "manifest.jsonl", records)
    # capsys's stderr is not a terminal; --progress-every 2 over 5 items, one per call: lines after 2 and 4
    # (the end is the run's one summary line, on stdout)
    assert main(["batch", str(manifest), "--out", str(tmp_path / "out"), "--model", model_dir, *FAST,
                 "--batch-size", "1", "--progress-every", "2", "--progress-seconds", "3600"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "items," in line]
    assert [line.split(" items")[0] for line in lines] == ["rm-edit: 2/5", "rm-edit: 4/5"]
    assert all(", 0 failed, " in line for line in lines)


# ---- paste-back by default, and its seam ------------------------------------------------------------------
def test_paste_back_is_one_default_on_everywhere_and_can_be_turned_off():
    """One default for the pipeline, edit, batch and eval: on (pixels outside the region stay the source's)."""
    import inspect

    from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline

    assert inspect.signature(ReflectiveMaskingEditPipeline.__call__).parameters["paste_back"].default is True
    for command, args in (("edit", ["edit", "i.png", "x", "-o", "o.png"]), ("batch", ["batch", "m.jsonl", "--out", "o"]),
                          ("eval", ["eval", "--out", "o"])):
        p = build_parser(command)
        assert p.parse_args(args).paste_back is True, command
        assert p.parse_args([*args, "--no-paste-back"]).paste_back is False, command


def test_seam_ring_and_error_by_hand():
    region = np.zeros((8, 8), bool)
    region[3:5, 3:5] = True
    # width 1: the 2x2 region grown to 4x4 (rows/cols 2..5), eroded to nothing: a 16-pixel ring
    assert seam_ring(region, 1).sum() == 16 and seam_ring(region, 1)[2:6, 2:6].all()
    source = PIL.Image.new("RGB", (8, 8), (100, 100, 100))
    edit = np.full((8, 8, 3), 100, np.uint8)
    edit[3:5, 3:5] = 151  # differs by 51 = 0.2 x 255 inside the region: 4 of the 16 ring pixels
    assert seam_error(PIL.Image.fromarray(edit), source, region, width=1) == pytest.approx(0.2 * 4 / 16)


def test_paste_back_seam_on_a_tinted_background(tmp_path, image_path, model_dir, shapes_examples):
    """The tiny random model decodes noise; outside its pasted region the source's tint is kept exactly, so
    the seam (2-px ring) is smaller than the same ring of the unpasted edit."""
    src = np.asarray(shapes_examples[0].source).copy()
    colours, counts = np.unique(src.reshape(-1, 3), axis=0, return_counts=True)
    src[(src == colours[counts.argmax()]).all(-1)] = (236, 214, 200)  # a tint the shapes world never uses
    image = PIL.Image.fromarray(src)
    pipe = make_tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    pasted = pipe(image, "make the circle blue", paste_back=True)
    raw = pipe(image, "make the circle blue", paste_back=False)
    region = pasted.edit_masks[0]
    assert region.any() and not region.all()
    outside_ring = seam_ring(region) & ~region
    assert np.array_equal(np.asarray(pasted.images[0])[outside_ring], src[outside_ring])
    assert seam_error(pasted.images[0], image, region) < seam_error(raw.images[0], image, region)
