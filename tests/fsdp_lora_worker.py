"""One process of tests/test_fsdp_lora.py: LoRA RM steps of the tiny Lumina-layout model under torch FSDP on
CPU (gloo), wrapped as configs/accelerate/fsdp.yaml has accelerate wrap it on GPUs (one unit per LLaDABlock,
use_orig_params, gradient checkpointing; accelerate itself only runs FSDP on GPUs).

    python -m torch.distributed.run --nproc_per_node 2 tests/fsdp_lora_worker.py CHECKPOINT OUT.json fp32|bf16
"""

import json
import sys

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FullStateDictConfig, StateDictType
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.distributed.fsdp.wrap import ModuleWrapPolicy

from rm_edit.data.pretokenize import CodeCache
from rm_edit.layout import LUMINA_DIMOO as L
from rm_edit.lumina_tokenizer import build_stand_in_tokenizer
from rm_edit.training.lora_rm import make_rm_batch, prepare_lora_model, rm_losses
from rm_edit.training.train_mdm import PromptBank
from rm_edit.transformer import LLaDABlock, LLaDATransformer


class _Cfg:
    p_drop_instruction = 0.0
    p_drop_image = 0.0
    trajectory = {"p_source_start": 0.0}
    history = False


def main(checkpoint: str, out: str, frozen: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = LLaDATransformer.from_llada_checkpoint(checkpoint, torch_dtype=torch.float32)  # each rank its own copy
    prepare_lora_model(model, rank=4, dtype={"fp32": torch.float32, "bf16": torch.bfloat16}[frozen],
                       gradient_checkpointing=True)
    model.train()
    record = {"rank": rank}
    try:
        wrapped = FSDP(model, auto_wrap_policy=ModuleWrapPolicy({LLaDABlock}), use_orig_params=True,
                       device_id=torch.device("cpu"))
    except ValueError as exc:
        record["error"] = str(exc)
    else:
        g = torch.Generator().manual_seed(rank)  # each rank its own examples, as a sharded loader gives them
        source = torch.randint(0, L.codebook_size, (2, 16), generator=g)
        target = source.clone()
        target[:, 5:11] = torch.randint(0, L.codebook_size, (2, 6), generator=g)
        cache = CodeCache(source.view(2, 4, 4), target.view(2, 4, 4), ["make the sky red", "add a hat"], ["0", "1"],
                          [None, None])
        bank = PromptBank(build_stand_in_tokenizer(), L, cache.instructions)
        batch, corrupted = make_rm_batch(L, bank, cache, torch.arange(2), torch.full((2, 16), -1), _Cfg, g)
        optimizer = torch.optim.AdamW([p for p in wrapped.parameters() if p.requires_grad], lr=1e-2)
        record["units"] = sum(isinstance(m, FSDP) for m in wrapped.modules())
        record["losses"] = []
        for _ in range(3):
            total = sum(rm_losses(wrapped, L, batch, corrupted).values())
            total.backward()
            optimizer.step()
            optimizer.zero_grad()
            record["losses"].append(total.item())
        with FSDP.state_dict_type(wrapped, StateDictType.FULL_STATE_DICT,
                                  FullStateDictConfig(offload_to_cpu=True, rank0_only=True)):
            state = wrapped.state_dict()
        if rank == 0:
            record["lora_b_abs_sum"] = sum(v.abs().sum().item() for k, v in state.items() if "lora_B" in k)
            record["mask_row_abs_sum"] = sum(v.abs().sum().item() for k, v in state.items() if "rm_mask_row" in k)
            record["dtypes"] = sorted({str(v.dtype) for v in state.values()})
    records = [None] * dist.get_world_size()
    dist.all_gather_object(records, record)
    if rank == 0:
        with open(out, "w") as f:
            json.dump(records, f)
    dist.barrier()  # every rank past its last collective before the group goes
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
