"""What the trainer sets before ``accelerator.prepare`` under DeepSpeed (``configs/accelerate/deepspeed_zero3.yaml``).

* No dataloader goes through ``prepare`` (the trainer draws its own batches), so accelerate cannot infer
  ``train_micro_batch_size_per_gpu``: it is the config's ``batch_size`` (every process draws ``batch_size``
  examples per step). Gradient accumulation and clipping come from the trainer's config too; a launcher config
  that sets them otherwise is refused (accelerate would silently use its value over ``--grad-accum``).
* ZeRO-3 partitions every parameter and gathers a module's own parameters only around that module's forward. The
  output head's weight is read by the transformer's forward itself (``F.linear`` over the rows of the classes used,
  never ``ff_out(x)``), so it is registered as an external parameter of the transformer: gathered for its forward.
"""

from __future__ import annotations

from accelerate import DistributedType

__all__ = ["configure_deepspeed", "zero_stage"]


def zero_stage(accelerator) -> int:
    """The ZeRO stage this run uses (0 when it does not run under DeepSpeed)."""
    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return 0
    return int(accelerator.state.deepspeed_plugin.zero_stage or 0)


def configure_deepspeed(accelerator, model, batch_size: int, grad_accum: int, max_grad_norm: float) -> None:
    """Settle the DeepSpeed config from the trainer's and register ``model``'s head for ZeRO-3; a no-op elsewhere."""
    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    for key, value in (("train_micro_batch_size_per_gpu", batch_size), ("gradient_accumulation_steps", grad_accum),
                       ("gradient_clipping", float(max_grad_norm))):
        given = config.get(key, "auto")
        if given != "auto" and float(given) != value:
            raise ValueError(f"the DeepSpeed config sets {key} = {given} but the trainer's config gives {value}: "
                             "leave it out of the accelerate / DeepSpeed config and use the trainer's option")
        config[key] = value
    if zero_stage(accelerator) == 3:
        import deepspeed

        deepspeed.zero.register_external_parameter(model, model.output_head_weight)
