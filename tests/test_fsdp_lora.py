"""LoRA RM under FSDP: two CPU processes (gloo) train the tiny Lumina-layout model wrapped as
configs/accelerate/fsdp.yaml wraps it (one unit per LLaDABlock, use_orig_params), and a frozen dtype other than
the LoRA weights' is refused in one line before FSDP's own error."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rm_edit.training.mdm_model import resolve_lora_dtype
from tests.lumina_fixture import make_tiny_lumina_checkpoint

WORKER = Path(__file__).with_name("fsdp_lora_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(checkpoint: Path, out: Path, frozen: str) -> list[dict]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           str(WORKER), str(checkpoint), str(out), frozen]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    # A rank sometimes aborts in gloo's teardown after the run has finished and rank 0 has written every rank's
    # record ("terminate called without an active exception"): that is not a training failure; any other is.
    teardown_abort = "terminate called without an active exception" in proc.stderr and out.is_file()
    assert proc.returncode == 0 or teardown_abort, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_lumina_checkpoint(tmp_path_factory.mktemp("dimoo") / "Lumina-DiMOO")


def test_fsdp_two_processes_train_lora_with_uniform_fp32_units(checkpoint, tmp_path):
    records = _run(checkpoint, tmp_path / "fp32.json", "fp32")
    for r in records:
        assert "error" not in r and r["units"] == 1 + 2  # the root and one per block (2 blocks)
        assert r["losses"][-1] < r["losses"][0]  # each rank's own batch, 3 steps at lr 1e-2
    assert records[0]["lora_b_abs_sum"] > 0 and records[0]["mask_row_abs_sum"] > 0  # gathered, trained
    assert records[0]["dtypes"] == ["torch.float32"]


def test_fsdp_refuses_bf16_frozen_beside_fp32_lora(checkpoint, tmp_path):
    records = _run(checkpoint, tmp_path / "bf16.json", "bf16")
    assert all("uniform dtype" in r["error"] for r in records)  # what FSDP says about a mixed unit
    with pytest.raises(ValueError, match="lora_dtype 'bf16' under FSDP") as info:
        resolve_lora_dtype("bf16", fsdp=True)
    assert "\n" not in str(info.value)
    assert resolve_lora_dtype("auto", fsdp=True) == "fp32" and resolve_lora_dtype("fp32") == "fp32"
