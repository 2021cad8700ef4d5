"""Reflective Masking post-training of big MDMs (Lumina-DiMOO, 8B) with LoRA.

    accelerate launch --config_file configs/accelerate/single_gpu.yaml -m rm_edit.training.lora_rm \\
        --base Lumina-DiMOO --train-codes data/my_edits/codes.safetensors --out runs/dimoo_rm \\
        --rank 32 --steps 2000 --batch-size 1 --grad-accum 8 --precision bf16 --gradient-checkpointing true

What trains: LoRA adapters (peft, through the transformer's diffusers ``PeftAdapterMixin.add_adapter``) on every
block's attention and MLP projections (``q_proj k_proj v_proj attn_out ff_proj up_proj`` and the block's
``ff_out``, never the top-level head ``transformer.ff_out``), plus one vector added to the head's [MASK] row:
Lumina-DiMOO never trained [MASK] as a target, so the head must learn to predict it. The rest is frozen; with
``--precision bf16`` the frozen weights are bf16 and the trainable ones fp32.

The objective is :mod:`rm_edit.training.trajectories`' (reflective_trajectory states, oracle labels, the
reveal / mask / keep cross-entropies, optional simulated History Reference), computed over the image codes
and [MASK] (the classes the samplers normalise over) rather than the whole 134k vocabulary.

Data: a code cache made by :mod:`rm_edit.data.pretokenize` from the project's JSONL manifest; with
``--manifest`` (and the cache missing) it is made first with the checkpoint's VQ (``vqvae/``). The images of a
manifest must share one size that is a multiple of 32 px (at most 256 cells of 32x32 for Lumina-DiMOO).

Outputs (``--out``): ``adapter/`` (``pytorch_lora_weights.safetensors`` as diffusers' ``save_lora_adapter``
writes it, ``mask_row_delta.safetensors``, ``rm_adapter.json``), ``log.jsonl``; ``merged/`` with
``--save-merged true`` (a plain LLaDATransformer folder). Load an adapter into a pipeline with
:func:`rm_edit.adapters.load_rm_adapter` (``pipe.transformer``), or fold it in with
:func:`rm_edit.adapters.merge_rm_adapter`.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from rm_edit.adapters import LORA_TARGET_MODULES, attach_mask_row, merge_rm_adapter, save_rm_adapter
from rm_edit.layout import SequenceBatch, TokenLayout, encode_edit_prompts, get_layout
from rm_edit.losses import rm_losses as per_kind_losses, weighted_loss
from rm_edit.transformer import LLaDATransformer

from .trajectories import KEEP, MASK, REVEAL, CorruptedTargets, TrajectoryConfig, reflective_trajectory

LOSS_NAMES = {REVEAL: "reveal", MASK: "mask", KEEP: "keep"}

__all__ = ["LoraRMConfig", "ReferencePromptBank", "make_rm_batch", "prepare_lora_model", "rm_losses", "train_lora_rm",
           "trainable_parameters"]


# ---- LoRA ---------------------------------------------------------------------------------------------------
def prepare_lora_model(
    transformer: LLaDATransformer,
    rank: int = 16,
    alpha: float | None = None,
    train_mask_row: bool = True,
    dropout: float = 0.0,
    dtype: torch.dtype | None = None,
    gradient_checkpointing: bool = False,
    target_modules: str | list[str] = LORA_TARGET_MODULES,
    adapter_name: str = "default",
) -> LLaDATransformer:
    """Add a LoRA adapter (and the [MASK]-row delta), freeze everything else; returns ``transformer``.

    dtype: cast the frozen weights first (bf16 for 8B models); trainable weights are always fp32.
    """
    from peft import LoraConfig

    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    if dtype is not None:
        transformer.to(dtype)
    transformer.requires_grad_(False)
    transformer.add_adapter(
        LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank, lora_dropout=dropout,
                   target_modules=target_modules, init_lora_weights=True),
        adapter_name=adapter_name,
    )
    for name, param in transformer.named_parameters():
        if "lora_" in name:
            param.data = param.data.float()
            param.requires_grad_(True)
    if "ff_out" in transformer.transformer and any(
        "lora_" in n for n, _ in transformer.transformer["ff_out"].named_parameters()
    ):
        raise ValueError("the LoRA targets matched the output head transformer.ff_out; target block modules only")
    if train_mask_row:
        attach_mask_row(transformer).requires_grad_(True)
    if gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    return transformer


def trainable_parameters(transformer: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in transformer.named_parameters() if p.requires_grad}




# ---- the objective ------------------------------------------------------------------------------------------
@dataclass
class ReferencePromptBank:
    """Prompt ids of every instruction, tokenised as Lumina-DiMOO's inference code does
    (:func:`rm_edit.layout.encode_edit_prompts`), so post-training sees the sequences the model will edit with;
    the fields of ``train_mdm.PromptBank``, which ``build_batch`` reads."""

    prompts: list[list[int]]
    unconditional: list[int]
    close: list[int]

    @classmethod
    def build(cls, tokenizer, layout: TokenLayout, instructions: list[str]) -> "ReferencePromptBank":
        return cls(*encode_edit_prompts(tokenizer, layout, instructions))


def rm_losses(model, layout: TokenLayout, batch: SequenceBatch, corrupted: CorruptedTargets,
              embedding_offset: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The reveal / mask / keep cross-entropies over the image codes and [MASK] (code-space labels)."""
    logits = model(batch.input_ids, batch.attention_mask, embedding_offset=embedding_offset,
                   output_positions=batch.target_positions).logits
    code_logits = layout.image_code_logits(logits).float()  # slice before upcasting: 8193 of 134k classes
    device = code_logits.device
    return per_kind_losses(code_logits, corrupted.labels.to(device), corrupted.kind.to(device), LOSS_NAMES)


def make_rm_batch(layout: TokenLayout, bank, cache, index: torch.Tensor, native: torch.Tensor, cfg,
                  generator: torch.Generator) -> tuple[SequenceBatch, CorruptedTargets]:
    """States of simulated reflective trajectories for examples ``index`` and their sequences (with dropout)."""
    from .train_mdm import build_batch

    source = cache.source[index].flatten(1)
    target = cache.target[index].flatten(1)
    corrupted = reflective_trajectory(source, target, layout.codebook_size, native, TrajectoryConfig(**cfg.trajectory),
                                      generator, with_history=cfg.history)
    return build_batch(layout, bank, cache, index, corrupted.state, cfg, generator), corrupted


# ---- training entry point -----------------------------------------------------------------------------------
@dataclass
class LoraRMConfig:
    base: str = ""  # Lumina-DiMOO / LLaDA checkpoint folder, LLaDATransformer folder, or pipeline folder
    tokenizer: str | None = None  # default: the base folder's (root, or tokenizer/ of a pipeline folder)
    layout: str = "lumina-dimoo"
    train_codes: str = ""  # code cache (rm_edit.data.pretokenize)
    manifest: str | None = None  # JSONL manifest to pre-tokenise into train_codes when that is missing
    vq: str | None = None  # VQModel folder for pre-tokenising (default: <base>/vqvae)
    out: str = "runs/lora_rm"
    steps: int = 1000
    batch_size: int = 1
    grad_accum: int = 1
    lr: float = 1e-4
    mask_row_lr: float | None = None  # default: lr
    warmup_steps: int = 20
    weight_decay: float = 0.0
    rank: int = 16
    alpha: float | None = None  # default: rank
    lora_dropout: float = 0.0
    train_mask_row: bool = True
    precision: str = "auto"  # frozen weights: "bf16", "fp32", or "auto" (bf16 on CUDA, else fp32)
    gradient_checkpointing: bool = False
    p_drop_instruction: float = 0.1
    p_drop_image: float = 0.1
    native_refresh_every: int = 4  # refresh the model's own samples for one batch every N steps (0 = never)
    trajectory: dict = field(default_factory=dict)  # TrajectoryConfig overrides
    loss_weights: dict = field(default_factory=lambda: {"reveal": 1.0, "mask": 1.0, "keep": 1.0})
    history: bool = False  # simulate History Reference inputs
    history_alpha: float = 1.0
    history_gamma: float = 0.7
    max_grad_norm: float = 1.0
    save_every: int = 0  # also write adapter-step<N>/ every N steps (0 = only at the end)
    save_merged: bool = False
    seed: int = 0
    threads: int = 0
    log_every: int = 10

    @classmethod
    def from_file(cls, path: str | Path | None, **overrides) -> "LoraRMConfig":
        raw = json.loads(Path(path).read_text()) if path else {}
        unknown = set(raw) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown config keys {sorted(unknown)}")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**raw)


def _load_base(cfg: LoraRMConfig, dtype: torch.dtype):
    base = Path(cfg.base)
    if (base / "model_index.json").is_file():
        model = LLaDATransformer.from_pretrained(str(base), subfolder="transformer", torch_dtype=dtype)
        tokenizer_dir, vq_dir = base / "tokenizer", base / "vqvae"
    else:
        model = LLaDATransformer.from_pretrained(str(base), torch_dtype=dtype)
        tokenizer_dir, vq_dir = base, base / "vqvae"
    return model.to(dtype), Path(cfg.tokenizer) if cfg.tokenizer else tokenizer_dir, Path(cfg.vq) if cfg.vq else vq_dir


def train_lora_rm(cfg: LoraRMConfig, progress: bool = True) -> Path:
    """Run RM post-training with LoRA under accelerate; returns the adapter folder."""
    from accelerate import Accelerator
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from tqdm.auto import tqdm

    from rm_edit.data.pretokenize import load_code_cache, pretokenize_manifest
    from rm_edit.lumina_tokenizer import check_tokenizer_layout, load_lumina_tokenizer

    from .train_mdm import MDMTrainConfig, history_offsets, sample_native

    if not cfg.base or not cfg.train_codes:
        raise ValueError("base and train_codes are required")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # On a machine without CUDA every process runs on CPU (gloo for several processes).
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, cpu=not torch.cuda.is_available())
    out = Path(cfg.out)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1000 * accelerator.process_index)
    layout = get_layout(cfg.layout)
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if torch.cuda.is_available() else "fp32")
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]

    model, tokenizer_dir, vq_dir = _load_base(cfg, dtype)
    tokenizer = load_lumina_tokenizer(tokenizer_dir)
    if layout.name == "lumina-dimoo":
        check_tokenizer_layout(tokenizer, layout)
    codes_path = Path(cfg.train_codes)
    if not codes_path.is_file() and cfg.manifest:
        if accelerator.is_main_process:
            from diffusers import VQModel

            vq = VQModel.from_pretrained(str(vq_dir)).to(accelerator.device).eval()
            pretokenize_manifest(cfg.manifest, vq, codes_path, progress=progress)
            del vq
        accelerator.wait_for_everyone()
    cache = load_code_cache(codes_path)
    if int(cache.target.max()) >= layout.codebook_size or int(cache.source.max()) >= layout.codebook_size:
        raise ValueError(f"{codes_path}: codes beyond the {layout.name!r} codebook ({layout.codebook_size})")
    bank = ReferencePromptBank.build(tokenizer, layout, cache.instructions)
    n_pos = cache.target[0].numel()

    prepare_lora_model(model, cfg.rank, cfg.alpha, cfg.train_mask_row, cfg.lora_dropout,
                       gradient_checkpointing=cfg.gradient_checkpointing)
    model.train()
    params = trainable_parameters(model)
    groups = [{"params": [p for n, p in params.items() if "lora_" in n], "weight_decay": cfg.weight_decay}]
    if cfg.train_mask_row:
        groups.append({"params": [params["rm_mask_row.delta"]], "weight_decay": 0.0, "lr": cfg.mask_row_lr or cfg.lr})
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99))
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    raw_model = accelerator.unwrap_model(model)
    trained = [p for group in optimizer.param_groups for p in group["params"]]

    native = torch.full((len(cache), n_pos), -1, dtype=torch.long)
    native_cfg = MDMTrainConfig()
    log_path = out / "log.jsonl"
    if accelerator.is_main_process and log_path.exists():
        log_path.unlink()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    bar = tqdm(range(cfg.steps), disable=not (progress and accelerator.is_main_process), desc="lora-rm")
    t0 = time.time()
    for step in bar:
        with accelerator.accumulate(model):
            index = torch.randint(0, len(cache), (cfg.batch_size,), generator=gen)
            if cfg.native_refresh_every and step % cfg.native_refresh_every == 0:
                model.eval()
                native[index] = sample_native(model, layout, bank, cache, index, native_cfg, gen).cpu()
                model.train()
            batch, corrupted = make_rm_batch(layout, bank, cache, index, native[index], cfg, gen)
            batch = batch.to(accelerator.device)
            offset = None
            if corrupted.history is not None:
                offset = history_offsets(raw_model, layout, corrupted.history.to(accelerator.device),
                                         batch.target_positions, batch.input_ids.shape[1], cfg)
            losses = rm_losses(model, layout, batch, corrupted, offset)
            loss = weighted_loss(losses, cfg.loss_weights)
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.max_grad_norm:
                accelerator.clip_grad_norm_(trained, cfg.max_grad_norm)
            optimizer.step()
            lr_schedule.step()
            optimizer.zero_grad()
        if accelerator.is_main_process and ((step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps):
            record = {"step": step + 1, "time": round(time.time() - t0, 2), "lr": lr_schedule.get_last_lr()[0],
                      "processes": accelerator.num_processes,
                      **{n: round(v.item(), 5) for n, v in losses.items()}}
            if torch.cuda.is_available():
                record["peak_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            with log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            bar.set_postfix({n: f"{v.item():.3f}" for n, v in losses.items()})
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
            _save(accelerator, model, raw_model, out / f"adapter-step{step + 1}")

    adapter = out / "adapter"
    _save(accelerator, model, raw_model, adapter)
    if cfg.save_merged and accelerator.is_main_process:
        merge_rm_adapter(raw_model)
        raw_model.save_pretrained(str(out / "merged"), safe_serialization=True)
    if accelerator.is_main_process:
        (out / "wall_time_s.txt").write_text(f"{time.time() - t0:.1f}\n")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return adapter


def _save(accelerator, model, raw_model, folder: Path) -> None:
    state = accelerator.get_state_dict(model)  # gathers shards under FSDP / ZeRO-3 (a collective: every rank)
    if accelerator.is_main_process:
        save_rm_adapter(raw_model, folder, state_dict=state)
    accelerator.wait_for_everyone()


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON file of LoraRMConfig fields")
    kinds = {"int": int, "float": float, "str": str, "bool": _bool, "str | None": str, "float | None": float,
             "int | None": int}
    for f in fields(LoraRMConfig):
        if f.type in kinds:
            parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kinds[f.type], default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = vars(parser.parse_args(argv))
    progress = not args.pop("no_progress")
    cfg = LoraRMConfig.from_file(args.pop("config"), **args)
    adapter = train_lora_rm(cfg, progress=progress)
    print(f"saved {adapter}")


if __name__ == "__main__":
    main()
