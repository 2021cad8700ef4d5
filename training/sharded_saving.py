"""What the trainer may save mid-run when FSDP or DeepSpeed shards the model or its optimizer.

Under FSDP and ZeRO-3 each process holds a shard of the weights, and under FSDP and every ZeRO stage a shard of
the optimizer state: ``save_training_state`` writes the main process's own view, so a resumable checkpoint of a
sharded run would be a shard. Weights (snapshots, the final adapter) are gathered collectively first; resumable
checkpoints (``save_every``, ``stop_after``, resuming) are refused for sharded runs before anything loads.
"""

from __future__ import annotations

from pathlib import Path

from accelerate import DistributedType

from .deepspeed_setup import zero_stage

__all__ = ["check_sharded_saving", "gathered_state", "sharding_name"]


def sharding_name(accelerator) -> str | None:
    """"FSDP" / "ZeRO-N" when this run shards the optimizer state (and, for FSDP and ZeRO-3, the weights)."""
    if accelerator.distributed_type == DistributedType.FSDP:
        return "FSDP"
    stage = zero_stage(accelerator)
    return f"ZeRO-{stage}" if stage else None


def check_sharded_saving(cfg, accelerator, checkpoint: Path) -> None:
    """Refuse, in one line naming the option, what would save or load one process's shard as a whole run."""
    name = sharding_name(accelerator)
    if name is None:
        return
    why = f"resumable checkpoints are not supported for sharded runs ({name}: each process holds a shard of the optimizer state)"
    if cfg.save_every:
        raise ValueError(f"save_every {cfg.save_every} with {name}: {why}; set save_every 0")
    if cfg.stop_after and cfg.stop_after < cfg.steps:
        raise ValueError(f"stop_after {cfg.stop_after} with {name}: {why}; leave stop_after unset")
    if not cfg.lora_rank and name in ("FSDP", "ZeRO-3"):
        raise ValueError(f"full training (lora_rank 0) with {name}: the pipeline folders are written from one "
                         "process's weights, a shard under this sharding; use DDP or set lora_rank")
    if (Path(checkpoint) / "training_state.safetensors").exists():
        raise ValueError(f"{checkpoint} holds a checkpoint to resume but {why}; remove it or change out")


def gathered_state(cfg, accelerator, model) -> dict | None:
    """The LoRA run's full state dict gathered from every process (a collective under FSDP / ZeRO-3: every rank
    must call it), or None where the main process's own module already holds the whole model."""
    sharded = accelerator.num_processes > 1 or zero_stage(accelerator) == 3  # ZeRO-3 partitions even on one process
    return accelerator.get_state_dict(model) if cfg.lora_rank and sharded else None
