"""Mid-run saving under sharding (training/sharded_saving.py): a resumable checkpoint of an FSDP / ZeRO run would
hold one process's shard, so it is refused in one line naming the option before anything loads; snapshots and
the final adapter are written from the state dict gathered on every process. The accelerator is a stand-in
holding what the functions read (a real FSDP / DeepSpeed accelerator needs GPUs)."""

from types import SimpleNamespace

import pytest
from accelerate import DistributedType
from accelerate.utils import DeepSpeedPlugin

from rm_edit.training.mdm_config import MDMTrainConfig
from rm_edit.training.sharded_saving import check_sharded_saving, gathered_state


def _accelerator(kind, stage=None, processes=2):
    plugin = DeepSpeedPlugin(zero_stage=stage) if stage is not None else None
    calls = []
    return SimpleNamespace(distributed_type=kind, state=SimpleNamespace(deepspeed_plugin=plugin), num_processes=processes,
                           get_state_dict=lambda model: calls.append(model) or {"gathered": model}, calls=calls)


FSDP = _accelerator(DistributedType.FSDP)
ZERO2, ZERO3 = _accelerator(DistributedType.DEEPSPEED, 2), _accelerator(DistributedType.DEEPSPEED, 3)
DDP = _accelerator(DistributedType.MULTI_CPU)


def _cfg(**kw):
    return MDMTrainConfig(**{"lora_rank": 4, "save_every": 0, "steps": 10, **kw})


@pytest.mark.parametrize("accelerator, name", [(FSDP, "FSDP"), (ZERO2, "ZeRO-2"), (ZERO3, "ZeRO-3")])
def test_resumable_checkpoints_are_refused_for_sharded_runs(accelerator, name, tmp_path):
    with pytest.raises(ValueError, match=rf"^save_every 250 with {name}: resumable checkpoints are not supported "
                                         r"for sharded runs .*; set save_every 0$") as info:
        check_sharded_saving(_cfg(save_every=250), accelerator, tmp_path / "checkpoint")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=rf"^stop_after 4 with {name}: .*; leave stop_after unset$"):
        check_sharded_saving(_cfg(stop_after=4), accelerator, tmp_path / "checkpoint")
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "training_state.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"checkpoint holds a checkpoint to resume but resumable checkpoints"):
        check_sharded_saving(_cfg(), accelerator, tmp_path / "checkpoint")


def test_what_a_sharded_run_may_do_and_what_an_unsharded_one_keeps(tmp_path):
    (tmp_path / "checkpoint").mkdir()
    check_sharded_saving(_cfg(stop_after=10, val_patience=3, snapshot_every=2), FSDP, tmp_path / "none")  # stop_after = steps: no checkpoint
    for accelerator in (DDP, _accelerator(DistributedType.NO, processes=1), _accelerator(DistributedType.DEEPSPEED, 0)):
        check_sharded_saving(_cfg(save_every=250, stop_after=4), accelerator, tmp_path / "checkpoint")
        check_sharded_saving(_cfg(save_every=250, lora_rank=0), accelerator, tmp_path / "checkpoint")
    with pytest.raises(ValueError, match=r"^full training \(lora_rank 0\) with ZeRO-3: .*use DDP or set lora_rank$"):
        check_sharded_saving(_cfg(lora_rank=0), ZERO3, tmp_path / "none")
    check_sharded_saving(_cfg(lora_rank=0), ZERO2, tmp_path / "none")  # ZeRO-2 keeps whole weights on every process


def test_snapshots_and_the_final_adapter_use_the_gathered_state_dict_when_sharded():
    model = object()
    for accelerator in (FSDP, ZERO3, DDP, _accelerator(DistributedType.DEEPSPEED, 3, processes=1)):
        accelerator.calls.clear()
        assert gathered_state(_cfg(), accelerator, model) == {"gathered": model} and accelerator.calls == [model]
    one = _accelerator(DistributedType.NO, processes=1)
    assert gathered_state(_cfg(), one, model) is None and one.calls == []  # the module itself holds the whole model
    assert gathered_state(_cfg(lora_rank=0), DDP, model) is None
