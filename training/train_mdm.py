"""Train the editing MDM: the base model, vanilla SFT, and Reflective Masking post-training (+ History Reference),
full or with LoRA, for the shapes world and Lumina-DiMOO alike: one loop.

    python -m rm_edit.training.train_mdm --config configs/mdm_grid_base.json --train-codes runs/codes/train.safetensors
    python -m rm_edit.training.train_mdm --config configs/mdm_grid_rm_her.json --train-codes ...
    rm-edit train mdm --config configs/mdm_grid_rm_lora.json --init-from rm_edit/models/shapes-base --train-codes ...

Stages (``objective``): ``vanilla`` is Lumina-DiMOO's recipe (target-only masking with ratio cos(r pi/2),
cross-entropy on masked codes, instruction / source dropout for guidance); the base model and the vanilla
SFT baseline use it. ``reflective`` trains with the three oracle labels (reveal, mask, keep), optionally
with History Reference, on ``states``: ``"sampler"`` = the reflective sampler's own passes
(``trajectories.sampler_states``, the shipped models) or ``"simulated"`` trajectories (``reflective_trajectory``,
which can also mix in the model's own samples; used for LoRA on Lumina-DiMOO-class models). With ``rollouts``
(:mod:`.rollouts`) part of each sampler-states batch comes from the model's own reflective edits of training
examples (on-policy states, their histories holding the codes it rejected).

``lora_rank`` > 0 trains LoRA adapters and the [MASK] row on a frozen ``init_from`` (:mod:`.mdm_model`); the
config (:mod:`.mdm_config`) has presets, e.g. ``lumina-dimoo-lora`` (:mod:`.lora_rm`). Output ``out/final``
(:mod:`.model_folders`): a pipeline folder, or for LoRA an adapter folder naming its base, both loadable with
``ReflectiveMaskingEditPipeline.from_pretrained`` and recording what they were trained as.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import torch
from accelerate import Accelerator, DistributedType
from diffusers.optimization import get_cosine_schedule_with_warmup
from tqdm.auto import tqdm

from rm_edit.adapters import merge_rm_adapter
from rm_edit.data.pretokenize import CodeCache, load_code_cache
from rm_edit.history import history_embedding, history_of_states, scatter_offsets
from rm_edit.layout import (SequenceBatch, TokenLayout, build_edit_sequence, encode_edit_prompts, get_layout,
                            pad_sequences)
from rm_edit.packing import forward_packed, pack_sequences
from rm_edit.losses import changed_weighted_loss, false_remasks, rm_losses, weighted_loss
from rm_edit.reflective import choose_reveal

from .checkpoint import load_training_state, save_training_state
from .deepspeed_setup import configure_deepspeed
from .sharded_saving import check_sharded_saving, gathered_state, sharding_name
from .validation import masked_validation_loss
from .mdm_config import PRESETS, MDMTrainConfig, add_config_arguments
from .mdm_model import (build_model, init_code_rows_from_codebook, lora_dtype, optimizer_groups, resolve_lora_dtype,
                        trainable_parameters)
from .model_folders import check_output_parts, load_start, training_record, write_adapter_folder, write_pipeline_folder
from .world_codes import CAPTION
from .rollouts import RolloutBuffer, RolloutConfig, pad_history, reflective_rollout
from .trajectories import (KEEP, MASK, REVEAL, CorruptedTargets, SamplerStatesConfig, TrajectoryConfig, oracle_labels,
                           reflective_trajectory, sampler_states, vanilla_corruption)

LOSS_NAMES = {REVEAL: "reveal", MASK: "mask", KEEP: "keep"}
REVEAL_CHANGED = 3  # a reveal at a cell the edit changes (its own loss with reveal_changed_loss)
__all__ = ["MDMTrainConfig", "PRESETS", "PromptBank", "build_batch", "forward_batch", "history_offsets",
           "init_code_rows_from_codebook", "sample_native", "train"]


class PromptBank:
    """Token ids of every prompt variant, computed once (tokenising per step would dominate on CPU), tokenised
    as the pipeline does at inference (:func:`rm_edit.layout.encode_edit_prompts`, Lumina-DiMOO's way)."""

    def __init__(self, tokenizer, layout: TokenLayout, instructions: list[str]):
        unique = list(dict.fromkeys(instructions))  # few distinct instructions, many examples
        heads, self.unconditional, self.close = encode_edit_prompts(tokenizer, layout, unique)
        by_text = dict(zip(unique, heads))
        self.prompts = [by_text[text] for text in instructions]


def build_batch(layout, bank: PromptBank, cache: CodeCache, index, state, cfg, gen):
    """Sequences for a batch of examples with target state ``state`` (B, N), with guidance dropout."""
    drop_text = torch.rand(len(index), generator=gen) < cfg.p_drop_instruction
    drop_image = torch.rand(len(index), generator=gen) < cfg.p_drop_image
    h, w = cache.grid_size
    seqs = []
    for row, i in enumerate(index.tolist()):
        prompt = bank.unconditional if drop_text[row] else bank.prompts[i]
        # A caption example (text-to-image) has no source image; its stored source is a placeholder.
        source = None if drop_image[row] or cache.edit_types[i] == CAPTION else cache.source[i]
        seqs.append(build_edit_sequence(layout, prompt, source, state[row].view(h, w), bank.close))
    return pad_sequences(seqs, layout.pad_token_id)


def history_offsets(model, layout: TokenLayout, history: torch.Tensor, positions, seq_len: int, cfg) -> torch.Tensor:
    """Embedding offsets for simulated histories (B, N, 2) (older, newer; -1 = none): exactly what inference's
    History Reference adds after recording those states (one function, rm_edit.history.history_of_states)."""
    states = torch.where(history >= 0, history, layout.mask_code)
    recorded = history_of_states(model.get_input_embeddings(), layout, states, cfg.history_decay)
    return scatter_offsets(history_embedding(recorded, cfg.history_alpha), positions, seq_len)


def forward_batch(model, batch: SequenceBatch, device, embedding_offset: torch.Tensor | None = None,
                  output_classes: torch.Tensor | None = None, pack: bool = False) -> torch.Tensor:
    """Logits (B, N, C) at the target positions of a host ``batch``. With ``pack`` a padded batch runs packed into
    one row (:func:`rm_edit.packing.forward_packed`, the guidance branches' way: attention per length group, no
    mask, no padding); otherwise with its padding mask. ``embedding_offset`` is placed as for the padded batch."""
    if pack and batch.padded:
        packed = pack_sequences(batch).to(device)
        offset = None if embedding_offset is None else packed.pack(embedding_offset)
        return forward_packed(model, packed, offset, output_classes)
    batch = batch.to(device)
    return model(batch.input_ids, batch.model_mask, embedding_offset=embedding_offset,
                 output_positions=batch.target_positions, output_classes=output_classes).logits


@torch.no_grad()
def sample_native(model, layout, bank, cache, index, cfg, gen) -> torch.Tensor:
    """The model's own samples for fully masked targets (temperature 1): its native mistakes."""
    n = cache.target[0].numel()
    state = torch.full((len(index), n), layout.mask_code)
    batch = build_batch(layout, bank, cache, index, state, SimpleNamespace(p_drop_instruction=0.0, p_drop_image=0.0), gen)
    device = next(model.parameters()).device
    logits = forward_batch(model, batch, device, output_classes=layout.image_class_ids(device),  # codes + [MASK] only
                           pack=bool(getattr(cfg, "pack_batches", False)))
    log_probs = logits.float().log_softmax(-1).cpu()
    return choose_reveal(log_probs, state, temperature=1.0, generator=gen)[1]




def rollout_states(model, layout, bank, cache, rollout_cfg: RolloutConfig, cfg, gen):
    """(index, state, history) of every pass of the model's own reflective edits of ``rollout_cfg.rows`` random
    training examples (:func:`.rollouts.reflective_rollout`), with History Reference as ``cfg`` trains it."""
    device = next(model.parameters()).device
    no_drop = SimpleNamespace(p_drop_instruction=0.0, p_drop_image=0.0)
    classes = layout.image_class_ids(device)

    def predict(index, state, history):
        batch = build_batch(layout, bank, cache, index, state, no_drop, gen)
        offset = None
        if cfg.history and history is not None:
            offset = history_offsets(model, layout, history.to(device), batch.target_positions.to(device),
                                     batch.input_ids.shape[1], cfg)
        return forward_batch(model, batch, device, offset, classes, bool(cfg.pack_batches)).float().cpu()

    if rollout_cfg.edit_types is None:
        index = torch.randint(0, len(cache), (rollout_cfg.rows,), generator=gen)
    else:
        allowed = torch.tensor([t in rollout_cfg.edit_types for t in cache.edit_types])
        if not allowed.any():
            raise ValueError(f"rollouts edit_types {list(rollout_cfg.edit_types)}: no training example has one")
        index = torch.multinomial(allowed.float(), rollout_cfg.rows, replacement=True, generator=gen)
    return reflective_rollout(predict, index, cache.source[index].flatten(1), layout.codebook_size, rollout_cfg, gen)


def with_on_policy_rows(corrupted: CorruptedTargets, on_policy, target: torch.Tensor, mask_code: int) -> CorruptedTargets:
    """The buffer's rows (index, state, history) first, oracle-labelled against their ``target``, then the
    sampler states' rows; both histories padded to the buffer's length."""
    _, state, history = on_policy
    labels, kind = oracle_labels(state, target, mask_code)
    sampler_history = pad_history(corrupted.history, history.shape[-1])
    return CorruptedTargets(torch.cat([state, corrupted.state]), torch.cat([labels, corrupted.labels]),
                            torch.cat([kind, corrupted.kind]), torch.cat([history, sampler_history]))


def load_codes(cfg: MDMTrainConfig, layout: TokenLayout, vq, accelerator) -> CodeCache:
    """The training code caches (made from ``manifest`` with the VQ first when ``train_codes`` is missing)."""
    codes = Path(cfg.train_codes)
    if not codes.is_file() and cfg.manifest:
        if vq is None:
            raise ValueError(f"manifest {cfg.manifest}: no VQ to pre-tokenise it with (set vq or init_from)")
        if accelerator.is_main_process:
            from rm_edit.data.pretokenize import pretokenize_manifest

            pretokenize_manifest(cfg.manifest, vq.to(accelerator.device).eval(), codes, progress=False)
            vq.to("cpu")
        accelerator.wait_for_everyone()
    cache = load_code_cache(codes)
    if cfg.extra_codes:
        cache = CodeCache.concat([cache, *(load_code_cache(path) for path in cfg.extra_codes)])
    if cfg.edit_types:
        cache = cache.with_edit_types(cfg.edit_types)
    if int(cache.target.max()) >= layout.codebook_size or int(cache.source.max()) >= layout.codebook_size:
        raise ValueError(f"{codes}: codes beyond the {layout.name!r} codebook ({layout.codebook_size})")
    return cache


def edit_type_sampling_weights(edit_types: list[str], weights: dict | None) -> torch.Tensor | None:
    """Each example's sampling weight: its edit type's entry in ``weights`` (1 for a type not named)."""
    if not weights:
        return None
    present = set(map(str, edit_types))
    unknown = sorted(set(weights) - present)
    if unknown:  # harmless (no example to weigh), e.g. a small cache or an edit_types filter; a typo shows here
        warnings.warn(f"edit_type_weights names {unknown}, which the training codes do not have "
                      f"({sorted(present)}): ignored", stacklevel=2)
    bad = {k: v for k, v in weights.items() if not float(v) >= 0}
    if bad:
        raise ValueError(f"edit_type_weights must be >= 0, got {bad}")
    per_example = torch.tensor([float(weights.get(str(t), 1.0)) for t in edit_types])
    if not per_example.sum() > 0:
        raise ValueError(f"edit_type_weights {weights} leave no example to train on")
    return per_example


def _check(cfg: MDMTrainConfig) -> None:
    for name, value, allowed in (("objective", cfg.objective, ("vanilla", "reflective")),
                                 ("states", cfg.states, ("simulated", "sampler")),
                                 ("loss_classes", cfg.loss_classes, ("vocab", "codes"))):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    if cfg.rollouts.get("every") and not (cfg.objective == "reflective" and cfg.states == "sampler"):
        raise ValueError(f"rollouts need the reflective objective on sampler states, got objective {cfg.objective!r}, "
                         f"states {cfg.states!r}")
    if cfg.weight_false_remasks and not (cfg.objective == "reflective" and cfg.changed_weight > 0):
        raise ValueError("weight_false_remasks needs the reflective objective with changed_weight > 0, got "
                         f"objective {cfg.objective!r}, changed_weight {cfg.changed_weight}")


def train(cfg: MDMTrainConfig, progress: bool = True) -> Path:
    """Train (full or LoRA) and write ``out/final``: a pipeline folder, or for LoRA an adapter folder (both load
    with ``ReflectiveMaskingEditPipeline.from_pretrained``); returns it."""
    _check(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # On a machine without CUDA every process runs on CPU (gloo for several processes).
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum,
                              cpu=not torch.cuda.is_available())
    main_process = accelerator.is_main_process
    cfg = replace(cfg, lora_dtype=resolve_lora_dtype(cfg.lora_dtype, accelerator.distributed_type == DistributedType.FSDP),
                  pack_batches=accelerator.device.type == "cuda" if cfg.pack_batches is None else cfg.pack_batches)
    out = Path(cfg.out)
    check_sharded_saving(cfg, accelerator, out / "checkpoint")
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    gen = torch.Generator().manual_seed(cfg.seed + 1000 * accelerator.process_index)
    layout = get_layout(cfg.layout)
    # Each process loads a LLaDA checkpoint straight onto its own device (8 ranks: no 8 host copies of 16 GB).
    start = load_start(cfg.init_from, layout.name, cfg.tokenizer, cfg.vq,
                       lora_dtype(cfg.lora_dtype) if cfg.lora_rank else torch.float32, device=accelerator.device)
    if not cfg.lora_rank or cfg.save_merged:
        check_output_parts(start, cfg)
    cache = load_codes(cfg, layout, start.vq, accelerator)
    bank = PromptBank(start.tokenizer, layout, cache.instructions)
    n_pos = cache.target[0].numel()

    torch.manual_seed(cfg.seed)
    model = build_model(cfg, start.transformer, layout, seq_len=64 + 2 * (n_pos + cache.grid_size[0] + 2))
    model.train()
    optimizer = torch.optim.AdamW(optimizer_groups(cfg, model), lr=cfg.lr, betas=(0.9, cfg.adam_beta2))
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.steps)
    configure_deepspeed(accelerator, model, cfg.batch_size, cfg.grad_accum, cfg.max_grad_norm)
    model, optimizer = accelerator.prepare(model, optimizer)
    raw_model = accelerator.unwrap_model(model)
    trained = [p for group in optimizer.param_groups for p in group["params"]]

    native = torch.full((len(cache), n_pos), -1, dtype=torch.long)
    rollout_cfg = RolloutConfig(**cfg.rollouts)
    buffer = RolloutBuffer(rollout_cfg.capacity, n_pos, rollout_cfg.history_len) if rollout_cfg.every else None
    run_state = None if buffer is None else buffer.state_tensors()
    start_step = 0
    ckpt = out / "checkpoint"
    if (ckpt / "training_state.safetensors").exists():
        start_step = load_training_state(ckpt, raw_model, optimizer, lr_schedule, gen, native, run_state)
        accelerator.print(f"resumed from {ckpt} at step {start_step}")
    traj_cfg = TrajectoryConfig(**cfg.trajectory)
    states_cfg = SamplerStatesConfig(**cfg.sampler_states)
    log_path = out / "log.jsonl"
    if main_process and start_step == 0 and log_path.exists():
        log_path.unlink()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()

    val = None
    if cfg.val_codes and cfg.val_every:
        val_cache = load_code_cache(cfg.val_codes)
        val = (val_cache, PromptBank(start.tokenizer, layout, val_cache.instructions))
    val_path = out / "val_log.jsonl"
    val_history = [json.loads(line)["val_loss"] for line in val_path.read_text().splitlines()] if val_path.exists() and start_step else []
    if main_process and start_step == 0 and val_path.exists():
        val_path.unlink()

    end_step = min(cfg.steps, cfg.stop_after or cfg.steps)
    bar = tqdm(range(start_step, end_step), initial=start_step, total=end_step,
               disable=not (progress and main_process), desc=cfg.objective + (" lora" if cfg.lora_rank else ""))
    t0, running = time.time(), {}
    classes = layout.image_class_ids(accelerator.device) if cfg.loss_classes == "codes" else None
    example_weights = edit_type_sampling_weights(cache.edit_types, cfg.edit_type_weights)
    for step in bar:
        with accelerator.accumulate(model):
            if example_weights is None:
                index = torch.randint(0, len(cache), (cfg.batch_size,), generator=gen)
            else:
                index = torch.multinomial(example_weights, cfg.batch_size, replacement=True, generator=gen)
            on_policy = None
            if buffer is not None:
                if step >= rollout_cfg.start and step % rollout_cfg.every == 0:
                    raw_model.eval()
                    buffer.add(*rollout_states(raw_model, layout, bank, cache, rollout_cfg, cfg, gen))
                    raw_model.train()
                m = round(rollout_cfg.fraction * len(index)) if len(buffer) else 0
                if m:
                    on_policy = buffer.sample(m, gen)
                    index = torch.cat([on_policy[0], index[m:]])
            source = cache.source[index].flatten(1)
            target = cache.target[index].flatten(1)
            if cfg.objective == "vanilla":
                corrupted = vanilla_corruption(target, layout.codebook_size, gen)
            elif cfg.states == "sampler":
                m = 0 if on_policy is None else len(on_policy[0])
                corrupted = sampler_states(source[m:], target[m:], layout.codebook_size, states_cfg, gen)
                if on_policy is not None:
                    corrupted = with_on_policy_rows(corrupted, on_policy, target[:m], layout.codebook_size)
                if not cfg.history:
                    corrupted.history = None
            else:
                if cfg.native_refresh_every and step % cfg.native_refresh_every == 0:
                    raw_model.eval()
                    native[index] = sample_native(raw_model, layout, bank, cache, index, cfg, gen)
                    raw_model.train()
                corrupted = reflective_trajectory(
                    source, target, layout.codebook_size, native[index], traj_cfg, gen, with_history=cfg.history
                )
            batch = build_batch(layout, bank, cache, index, corrupted.state, cfg, gen)
            offset = None
            if corrupted.history is not None:
                offset = history_offsets(raw_model, layout, corrupted.history.to(accelerator.device),
                                         batch.target_positions.to(accelerator.device), batch.input_ids.shape[1], cfg)
            logits = forward_batch(model, batch, accelerator.device, offset, classes, cfg.pack_batches)
            if cfg.loss_classes == "codes":  # the head computed only 8,193 of Lumina's 134k classes
                logits, labels = logits.float(), corrupted.labels.to(logits.device)
            else:
                logits, labels = logits.float(), layout.ids_from_code_state(corrupted.labels).to(logits.device)
            kind, names = corrupted.kind, LOSS_NAMES
            if cfg.reveal_changed_loss and cfg.objective == "reflective":
                # Most masked cells are copies of the source; the few the edit changes are what the model
                # must learn to draw, so they get their own mean (an equal say with all other reveals).
                kind = torch.where((kind == REVEAL) & (source != target), REVEAL_CHANGED, kind)
                names = {**LOSS_NAMES, REVEAL_CHANGED: "reveal_changed"}
            if cfg.changed_weight > 0:
                weighted = (source != target).to(logits.device)
                if cfg.weight_false_remasks:  # a keep the sampler would re-mask weighs as much as a changed cell
                    mask_class = layout.codebook_size if cfg.loss_classes == "codes" else layout.mask_token_id
                    weighted |= false_remasks(logits, labels, (kind == KEEP).to(logits.device), mask_class)
                loss = changed_weighted_loss(logits, labels, weighted, cfg.changed_weight)
                with torch.no_grad():  # the per-kind losses are only logged
                    losses = {"total": loss.detach(), **rm_losses(logits, labels, kind.to(logits.device), names)}
            else:
                losses = rm_losses(logits, labels, kind.to(logits.device), names)
                loss = weighted_loss(losses, cfg.loss_weights)
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.max_grad_norm:
                accelerator.clip_grad_norm_(trained, cfg.max_grad_norm)
            optimizer.step()
            lr_schedule.step()
            optimizer.zero_grad()

        for name, value in losses.items():
            running[name] = 0.9 * running.get(name, value.item()) + 0.1 * value.item()
        if main_process and ((step + 1) % cfg.log_every == 0 or step + 1 == end_step):
            record = {"step": step + 1, "time": round(time.time() - t0, 1), "lr": lr_schedule.get_last_lr()[0],
                      "processes": accelerator.num_processes, **{n: round(v.item(), 5) for n, v in losses.items()}}
            if torch.cuda.is_available():
                record["peak_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            with log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            bar.set_postfix({n: f"{v:.3f}" for n, v in running.items()})
        if cfg.snapshot_every and (step + 1) % cfg.snapshot_every == 0:
            state = gathered_state(cfg, accelerator, model)  # every process: a collective when sharded
            if main_process:
                save_snapshot(cfg, accelerator, raw_model, start, layout, step + 1,
                              out / "snapshots" / f"step_{step + 1:06d}", state)
        stop = False
        if val is not None and (step + 1) % cfg.val_every == 0:
            loss_val = masked_validation_loss(raw_model, layout, val[1], val[0], cfg, build_batch)
            val_history.append(loss_val)
            if main_process:
                with val_path.open("a") as f:
                    f.write(json.dumps({"step": step + 1, "time": round(time.time() - t0, 1), "val_loss": round(loss_val, 5)}) + "\n")
            best = val_history.index(min(val_history))
            stop = bool(cfg.val_patience) and len(val_history) - 1 - best >= cfg.val_patience
            if stop:
                accelerator.print(f"held-out loss has not improved for {cfg.val_patience} evaluations "
                                  f"(best {min(val_history):.4f} at evaluation {best + 1}): stopping at step {step + 1}")
        saving = (cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps) \
            or step + 1 == end_step < cfg.steps or stop
        if saving and main_process and sharding_name(accelerator) is None:  # sharded: refused but for an early stop
            # LoRA: only what trains (the frozen base is init_from's); full: the whole model.
            weights = {n: p.detach().cpu() for n, p in trainable_parameters(raw_model).items()} if cfg.lora_rank else None
            save_training_state(ckpt, raw_model, optimizer, lr_schedule, gen, native, step + 1, weights=weights,
                                extra=run_state)
        if stop:
            end_step = step + 1
            if main_process:
                (out / "stopped_at.txt").write_text(f"{step + 1}\n")
            break

    final = write_outputs(cfg, accelerator, model, raw_model, start, layout, end_step, out / "final")
    if main_process:
        (out / "wall_time_s.txt").write_text(f"{time.time() - t0:.1f}\n")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final


def write_outputs(cfg: MDMTrainConfig, accelerator, model, raw_model, start, layout, steps_done: int, final: Path) -> Path:
    """``final``: the pipeline folder (full training) or the adapter folder (LoRA; plus ``merged/`` with
    ``save_merged``), each with its records."""
    record = training_record(cfg, start, steps_done, accelerator.num_processes)
    if cfg.attribute_rows and not cfg.lora_rank:
        from .code_embeddings import detach_attribute_rows

        detach_attribute_rows(raw_model)
    state = gathered_state(cfg, accelerator, model)  # every process: a collective under FSDP / ZeRO-3
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        if cfg.lora_rank:
            write_adapter_folder(final, raw_model, start, cfg, layout, record, state_dict=state)
            if cfg.save_merged:
                merge_rm_adapter(raw_model)
                write_pipeline_folder(final.parent / "merged", raw_model, start, cfg, layout, record)
        else:
            write_pipeline_folder(final, raw_model, start, cfg, layout, record)
    accelerator.wait_for_everyone()
    return final


def save_snapshot(cfg: MDMTrainConfig, accelerator, raw_model, start, layout, steps_done: int, folder: Path,
                  state: dict | None = None) -> None:
    """The model as it is at ``steps_done``, as a loadable folder like ``final`` (the main process; for curves of
    edit success against post-training steps). The training model itself is left untouched. state: the LoRA
    run's gathered state dict (:func:`gathered_state`) where the processes hold shards."""
    record = training_record(cfg, start, steps_done, accelerator.num_processes)
    if folder.exists():
        shutil.rmtree(folder)
    if cfg.lora_rank:
        write_adapter_folder(folder, raw_model, start, cfg, layout, record, state_dict=state)
        return
    from .code_embeddings import folded_state_dict

    snapshot = type(raw_model).from_config(raw_model.config)
    snapshot.load_state_dict(folded_state_dict(raw_model))
    write_pipeline_folder(folder, snapshot, start, cfg, layout, record)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON config (configs/mdm_*.json)")
    add_config_arguments(parser)
    parser.add_argument("--no-progress", action="store_true")
    args = vars(parser.parse_args(argv))
    progress = not args.pop("no_progress")
    cfg = MDMTrainConfig.from_file(args.pop("config"), **args)
    final = train(cfg, progress=progress)
    print(f"saved {final}")


if __name__ == "__main__":
    main()
