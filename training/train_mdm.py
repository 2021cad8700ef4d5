"""Train the editing MDM: the base model, vanilla SFT, and Reflective Masking post-training (+ History Reference).

    python -m rm_edit.training.train_mdm --config configs/mdm_grid_base.json --train-codes runs/codes/train.safetensors
    python -m rm_edit.training.train_mdm --config configs/mdm_grid_rm_her.json --train-codes ...

Stages (``objective``): ``vanilla`` is Lumina-DiMOO's recipe (target-only masking with ratio cos(r pi/2),
cross-entropy on masked codes, instruction / source dropout for guidance); the base model and the vanilla
SFT baseline use it. ``reflective`` trains with the three oracle labels (reveal, mask, keep), optionally
with History Reference, on ``states``: ``"sampler"`` = the reflective sampler's own passes
(``trajectories.sampler_states``, the shipped models) or ``"simulated"`` trajectories (``reflective_trajectory``,
which can also mix in the model's own samples; used for LoRA on Lumina-DiMOO-class models).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers.optimization import get_cosine_schedule_with_warmup
from tqdm.auto import tqdm

from rm_edit.data.pretokenize import CodeCache, load_code_cache
from rm_edit.history import history_embedding, history_of_states, scatter_offsets
from rm_edit.layout import TokenLayout, build_edit_sequence, edit_prompt_text, get_layout, pad_sequences
from rm_edit.losses import changed_weighted_loss, rm_losses, weighted_loss
from rm_edit.reflective import choose_reveal
from rm_edit.transformer import LLaDATransformer

from .checkpoint import load_training_state, save_training_state
from .trajectories import (KEEP, MASK, REVEAL, SamplerStatesConfig, TrajectoryConfig, reflective_trajectory,
                           sampler_states, vanilla_corruption)

LOSS_NAMES = {REVEAL: "reveal", MASK: "mask", KEEP: "keep"}
REVEAL_CHANGED = 3  # a reveal at a cell the edit changes (its own loss with reveal_changed_loss)


@dataclass
class MDMTrainConfig:
    objective: str = "vanilla"  # "vanilla" | "reflective"
    history: bool = False  # reflective only: simulate History Reference inputs
    history_alpha: float = 1.0
    history_gamma: float = 0.7
    layout: str = "shapes"
    model: dict = field(default_factory=lambda: dict(d_model=192, n_layers=4, n_heads=4, mlp_hidden_size=384))
    init_from: str | None = None  # a LLaDATransformer folder to start from
    code_embedding_init: str | None = None  # fresh models: a VQModel folder whose codebook seeds the code rows
    grid_positions: int = 0  # > 0: (row, column) embeddings of image codes (LLaDATransformer.grid_position_size)
    attribute_rows: bool = False  # shapes-grid: code rows = free row + sum of the cell's attribute vectors
    tokenizer: str | None = None  # a tokenizer folder; None = build the shapes tokenizer
    train_codes: str = "data/shapes/train/codes.safetensors"
    extra_codes: list | None = None  # more code caches trained on with train_codes (e.g. confusable edits)
    edit_types: list | None = None  # train on these edit types only (a curriculum phase); None = all
    out: str = "runs/mdm"
    steps: int = 1000  # the length of the learning-rate schedule
    stop_after: int | None = None  # end (and save) after this many steps, partway through the schedule
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 1e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    p_drop_instruction: float = 0.1
    p_drop_image: float = 0.1
    native_refresh_every: int = 4  # reflective: refresh the model's own samples for one batch every N steps
    trajectory: dict = field(default_factory=dict)  # TrajectoryConfig overrides
    states: str = "simulated"  # reflective: "simulated" trajectories, or the "sampler"'s own passes
    sampler_states: dict = field(default_factory=dict)  # SamplerStatesConfig overrides (states = "sampler")
    changed_weight: float = 0.0  # > 0: one cross-entropy over all positions, changed cells weighted this much
    loss_weights: dict = field(default_factory=lambda: {"reveal": 1.0, "mask": 1.0, "keep": 1.0})
    reveal_changed_loss: bool = False  # reflective: reveals of the cells the edit changes get their own mean loss
    lora_rank: int = 0  # > 0: train LoRA adapters (peft) instead of all weights
    mixed_precision: str = "no"
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = torch's default
    save_every: int = 250
    log_every: int = 10

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> "MDMTrainConfig":
        raw = json.loads(Path(path).read_text()) if path else {}
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{path}: unknown config keys {sorted(unknown)}")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**raw)


class PromptBank:
    """Token ids of every prompt variant, computed once (tokenising per step would dominate on CPU)."""

    def __init__(self, tokenizer, layout: TokenLayout, instructions: list[str]):
        encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
        unique = {text: encode(edit_prompt_text(layout, text)[0]) for text in dict.fromkeys(instructions)}
        self.prompts = [unique[text] for text in instructions]  # few distinct instructions, many examples
        unconditional, close = edit_prompt_text(layout, None)
        self.unconditional = encode(unconditional)
        self.close = encode(close)


def build_batch(layout, bank: PromptBank, cache: CodeCache, index, state, cfg: MDMTrainConfig, gen):
    """Sequences for a batch of examples with target state ``state`` (B, N), with guidance dropout."""
    drop_text = torch.rand(len(index), generator=gen) < cfg.p_drop_instruction
    drop_image = torch.rand(len(index), generator=gen) < cfg.p_drop_image
    h, w = cache.grid_size
    seqs = []
    for row, i in enumerate(index.tolist()):
        prompt = bank.unconditional if drop_text[row] else bank.prompts[i]
        source = None if drop_image[row] else cache.source[i]
        seqs.append(build_edit_sequence(layout, prompt, source, state[row].view(h, w), bank.close))
    return pad_sequences(seqs, layout.pad_token_id)


def history_offsets(model, layout: TokenLayout, history: torch.Tensor, positions, seq_len: int, cfg) -> torch.Tensor:
    """Embedding offsets for simulated histories (B, N, 2) (older, newer; -1 = none): exactly what inference's
    History Reference adds after recording those states (one function, rm_edit.history.history_of_states)."""
    states = torch.where(history >= 0, history, layout.mask_code)
    recorded = history_of_states(model.get_input_embeddings(), layout, states, cfg.history_gamma)
    return scatter_offsets(history_embedding(recorded, cfg.history_alpha), positions, seq_len)


@torch.no_grad()
def sample_native(model, layout, bank, cache, index, cfg, gen) -> torch.Tensor:
    """The model's own samples for fully masked targets (temperature 1): its native mistakes."""
    n = cache.target[0].numel()
    state = torch.full((len(index), n), layout.mask_code)
    nocfg = MDMTrainConfig(**{**asdict(cfg), "p_drop_instruction": 0.0, "p_drop_image": 0.0})
    batch = build_batch(layout, bank, cache, index, state, nocfg, gen)
    logits = model(batch.input_ids, batch.attention_mask, output_positions=batch.target_positions).logits
    log_probs = layout.image_code_logits(logits.float()).log_softmax(-1)
    return choose_reveal(log_probs, state, temperature=1.0, generator=gen)[1]


@torch.no_grad()
def init_code_rows_from_codebook(model: LLaDATransformer, layout: TokenLayout, codebook: torch.Tensor, seed: int) -> None:
    """Seed the image-code rows of the input embedding and output head with a random projection of the codebook.

    Codes that stand for similar cells (same colour, similar coverage) then start with similar embeddings and
    logits, so the model need not discover from co-occurrence alone which of 1,024 codes are "green".
    """
    if codebook.shape[0] != layout.codebook_size:
        raise ValueError(f"codebook has {codebook.shape[0]} codes, layout {layout.name!r} {layout.codebook_size}")
    gen = torch.Generator().manual_seed(seed)
    d = model.get_input_embeddings().weight.shape[1]
    centred = codebook.float() - codebook.float().mean(0)
    rows = centred @ torch.randn(codebook.shape[1], d, generator=gen)
    rows *= 0.02 / rows.std().clamp_min(1e-8)  # the scale of the model's own init
    codes = slice(layout.image_code_offset, layout.image_code_offset + layout.codebook_size)
    model.get_input_embeddings().weight[codes] = rows
    model.output_head_weight[codes] = rows


def train(cfg: MDMTrainConfig, progress: bool = True) -> Path:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.objective not in ("vanilla", "reflective"):
        raise ValueError(f"objective must be 'vanilla' or 'reflective', got {cfg.objective!r}")
    if cfg.states not in ("simulated", "sampler"):
        raise ValueError(f"states must be 'simulated' or 'sampler', got {cfg.states!r}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    layout = get_layout(cfg.layout)

    from transformers import AutoTokenizer

    if cfg.tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer)
    else:
        from rm_edit.data.text_tokenizer import build_shapes_tokenizer

        tokenizer = build_shapes_tokenizer()
    cache = load_code_cache(cfg.train_codes)
    if cfg.extra_codes:
        cache = CodeCache.concat([cache, *(load_code_cache(path) for path in cfg.extra_codes)])
    if cfg.edit_types:
        cache = cache.with_edit_types(cfg.edit_types)
    bank = PromptBank(tokenizer, layout, cache.instructions)
    n_pos = cache.target[0].numel()

    grid = dict(grid_position_size=cfg.grid_positions, image_begin_id=layout.image_begin_id,
                end_of_row_id=layout.end_of_row_id, image_end_id=layout.image_end_id) if cfg.grid_positions else {}
    if cfg.init_from:
        model = LLaDATransformer.from_pretrained(cfg.init_from)
        if grid and not model.config.grid_position_size:  # add them, starting at zero: the same function at step 0
            config = {k: v for k, v in model.config.items() if not k.startswith("_")}
            grown = LLaDATransformer(**{**config, **grid})
            missing = grown.load_state_dict(model.state_dict(), strict=False).missing_keys
            assert all(k.startswith("transformer.grid_") for k in missing), missing
            with torch.no_grad():
                grown.transformer["grid_rows"].weight.zero_()
                grown.transformer["grid_cols"].weight.zero_()
            model = grown
    else:
        seq_len = 64 + 2 * (n_pos + cache.grid_size[0] + 2)
        model = LLaDATransformer(
            vocab_size=layout.vocab_size, mask_token_id=layout.mask_token_id, max_sequence_length=seq_len,
            **cfg.model, **grid,
        )
        if cfg.code_embedding_init:
            from diffusers import VQModel

            codebook = VQModel.from_pretrained(cfg.code_embedding_init).quantize.embedding.weight
            init_code_rows_from_codebook(model, layout, codebook, cfg.seed)
    if cfg.attribute_rows:
        from .code_embeddings import attach_attribute_rows

        attach_attribute_rows(model, layout, fresh=not cfg.init_from)
    if cfg.lora_rank:
        from peft import LoraConfig

        model.add_adapter(LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_rank,
                                     target_modules=r".*blocks\.\d+\.(q_proj|k_proj|v_proj|attn_out|ff_proj|up_proj|ff_out)"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    raw_model = accelerator.unwrap_model(model)

    native = torch.full((len(cache), n_pos), -1, dtype=torch.long)
    start_step = 0
    ckpt = out / "checkpoint"
    if (ckpt / "training_state.safetensors").exists():
        start_step = load_training_state(ckpt, raw_model, optimizer, lr_schedule, gen, native)
        accelerator.print(f"resumed from {ckpt} at step {start_step}")
    traj_cfg = TrajectoryConfig(**cfg.trajectory)
    states_cfg = SamplerStatesConfig(**cfg.sampler_states)
    log_path = out / "log.jsonl"
    if start_step == 0 and log_path.exists():
        log_path.unlink()

    end_step = min(cfg.steps, cfg.stop_after or cfg.steps)
    bar = tqdm(range(start_step, end_step), initial=start_step, total=end_step, disable=not progress, desc=cfg.objective)
    t0, running = time.time(), {}
    for step in bar:
        with accelerator.accumulate(model):
            index = torch.randint(0, len(cache), (cfg.batch_size,), generator=gen)
            source = cache.source[index].flatten(1)
            target = cache.target[index].flatten(1)
            if cfg.objective == "vanilla":
                corrupted = vanilla_corruption(target, layout.codebook_size, gen)
            elif cfg.states == "sampler":
                corrupted = sampler_states(source, target, layout.codebook_size, states_cfg, gen)
                if not cfg.history:
                    corrupted.history = None
            else:
                if step % cfg.native_refresh_every == 0:
                    raw_model.eval()
                    native[index] = sample_native(raw_model, layout, bank, cache, index, cfg, gen)
                    raw_model.train()
                corrupted = reflective_trajectory(
                    source, target, layout.codebook_size, native[index], traj_cfg, gen, with_history=cfg.history
                )
            batch = build_batch(layout, bank, cache, index, corrupted.state, cfg, gen).to(accelerator.device)
            offset = None
            if corrupted.history is not None:
                offset = history_offsets(raw_model, layout, corrupted.history.to(accelerator.device),
                                         batch.target_positions, batch.input_ids.shape[1], cfg)
            logits = model(batch.input_ids, batch.attention_mask, embedding_offset=offset,
                           output_positions=batch.target_positions).logits.float()
            labels = layout.ids_from_code_state(corrupted.labels).to(logits.device)
            kind, names = corrupted.kind, LOSS_NAMES
            if cfg.reveal_changed_loss and cfg.objective == "reflective":
                # Most masked cells are copies of the source; the few the edit changes are what the model
                # must learn to draw, so they get their own mean (an equal say with all other reveals).
                kind = torch.where((kind == REVEAL) & (source != target), REVEAL_CHANGED, kind)
                names = {**LOSS_NAMES, REVEAL_CHANGED: "reveal_changed"}
            if cfg.changed_weight > 0:
                loss = changed_weighted_loss(logits, labels, (source != target).to(logits.device), cfg.changed_weight)
                with torch.no_grad():  # the per-kind losses are only logged
                    losses = {"total": loss.detach(), **rm_losses(logits, labels, kind.to(logits.device), names)}
            else:
                losses = rm_losses(logits, labels, kind.to(logits.device), names)
                loss = weighted_loss(losses, cfg.loss_weights)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(params, 1.0)
            optimizer.step()
            lr_schedule.step()
            optimizer.zero_grad()

        for name, value in losses.items():
            running[name] = 0.9 * running.get(name, value.item()) + 0.1 * value.item()
        if (step + 1) % cfg.log_every == 0 or step + 1 == end_step:
            record = {"step": step + 1, "time": round(time.time() - t0, 1), "lr": lr_schedule.get_last_lr()[0],
                      **{n: round(v.item(), 5) for n, v in losses.items()}}
            with log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            bar.set_postfix({n: f"{v:.3f}" for n, v in running.items()})
        if ((step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps) or step + 1 == end_step < cfg.steps:
            save_training_state(ckpt, raw_model, optimizer, lr_schedule, gen, native, step + 1)

    final = out / "final"
    if cfg.attribute_rows:
        from .code_embeddings import detach_attribute_rows

        detach_attribute_rows(raw_model)
    if cfg.lora_rank:  # ship plain weights: fold the adapters in
        raw_model.fuse_lora()
        raw_model.unload_lora()
    raw_model.save_pretrained(final, safe_serialization=True)
    (out / "wall_time_s.txt").write_text(f"{time.time() - t0:.1f}\n")
    return final


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON config (configs/mdm_*.json)")
    for f in fields(MDMTrainConfig):
        if f.type in ("int", "int | None", "float", "str", "str | None", "bool"):
            kind = {"int": int, "int | None": int, "float": float,
                    "bool": lambda s: s.lower() in ("1", "true", "yes")}.get(f.type, str)
            parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=None)
        elif f.type == "list | None":  # e.g. --edit-types remove, --extra-codes A.safetensors B.safetensors
            parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, nargs="+", default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = vars(parser.parse_args(argv))
    progress = not args.pop("no_progress")
    cfg = MDMTrainConfig.from_file(args.pop("config"), **args)
    final = train(cfg, progress=progress)
    print(f"saved {final}")


if __name__ == "__main__":
    main()

