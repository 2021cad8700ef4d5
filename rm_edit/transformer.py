"""The LLaDA mask-diffusion transformer (Lumina-DiMOO's backbone) as a diffusers model.

Architecture (REFERENCE.md section 5): token embedding -> N pre-norm llama blocks (RMSNorm, bidirectional
SDPA attention with rotate-half RoPE, SwiGLU MLP, no biases) -> RMSNorm -> untied output head.
Module names mirror LLaDA's parameter names (``transformer.blocks.{i}.q_proj`` ...), so a LLaDA /
Lumina-DiMOO checkpoint loads by dropping its leading ``model.``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders.peft import PeftAdapterMixin
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .kv_cache import KVCache
from .llada_checkpoint import _llada_weight_files, llada_config, llada_config_to_kwargs, save_llada_checkpoint
from .packing import PackedSequences, grouped_attention


class RMSNorm(nn.Module):
    """LLaDA's RMSNorm: normalise in fp32, cast back, then scale (no +1 offset)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotary_cos_sin(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) integer positions -> fp32 cos, sin of shape (B, 1, L, head_dim) for rotate-half RoPE."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    freqs = positions.float().unsqueeze(-1) * inv_freq  # (B, L, head_dim / 2)
    angles = torch.cat([freqs, freqs], dim=-1).unsqueeze(1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    dtype = x.dtype
    x = x.float()
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x * cos + rotated * sin).to(dtype)


class LLaDABlock(nn.Module):
    """A llama-type LLaDA block: ``h = x + attn(norm(x))``, ``out = h + mlp(norm(h))``."""

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, mlp_hidden_size: int, eps: float):
        super().__init__()
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = d_model // n_heads
        self.attn_norm = RMSNorm(d_model, eps)
        self.ff_norm = RMSNorm(d_model, eps)
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=False)
        self.attn_out = nn.Linear(d_model, d_model, bias=False)
        self.ff_proj = nn.Linear(d_model, mlp_hidden_size, bias=False)
        self.up_proj = nn.Linear(d_model, mlp_hidden_size, bias=False)
        self.ff_out = nn.Linear(mlp_hidden_size, d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attn_mask: torch.Tensor | None,
                kv_cache: KVCache | None = None, layer: int = 0, compute_positions: torch.Tensor | None = None,
                groups: tuple | None = None):
        """``x`` holds every position, or with ``compute_positions`` only those (the rest come from ``kv_cache``);
        with ``groups`` (:class:`~rm_edit.packing.PackedSequences`) it is one packed row of several sequences."""
        b, l, _ = x.shape
        h = self.attn_norm(x)
        q = self.q_proj(h).view(b, l, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(h).view(b, l, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(b, l, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if kv_cache is not None:
            if compute_positions is None:
                kv_cache.store(layer, k, v)
            else:
                k, v = kv_cache.update(layer, compute_positions, k, v)
        gqa = self.n_kv_heads != self.n_heads
        if groups is not None:  # a cached pass: the same number of positions recomputed in every sequence
            queries = None if compute_positions is None else l // sum(count for _, count, _ in groups)
            att = grouped_attention(q, k, v, groups, gqa, queries)
        else:
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, enable_gqa=gqa)
            att = att.transpose(1, 2).reshape(b, l, -1)
        x = x + self.attn_out(att)
        h = self.ff_norm(x)
        return x + self.ff_out(F.silu(self.ff_proj(h)) * self.up_proj(h))


@dataclass
class LLaDAOutput(BaseOutput):
    logits: torch.Tensor


class LLaDATransformer(ModelMixin, ConfigMixin, PeftAdapterMixin):
    """Bidirectional LLaDA transformer returning logits over ``embedding_size`` classes."""

    _supports_gradient_checkpointing = True
    _no_split_modules = ["LLaDABlock"]

    @register_to_config
    def __init__(
        self,
        vocab_size: int = 512,
        embedding_size: int | None = None,
        d_model: int = 256,
        n_layers: int = 6,
        n_heads: int = 4,
        n_kv_heads: int | None = None,
        mlp_hidden_size: int = 512,
        rope_theta: float = 10000.0,
        rms_norm_eps: float = 1e-5,
        max_sequence_length: int = 4096,
        mask_token_id: int = 2,
        tie_word_embeddings: bool = False,
        rm_post_trained: bool | None = None,  # taught to predict [MASK] (RM); None: not recorded (older folders)
        history_reference: bool | None = None,  # trained with History Reference inputs; None: not recorded
        history_alpha: float | None = None,  # ... with this scale and decay (the samplers' defaults); None: 1.0
        history_decay: float | None = None,
        grid_position_size: int = 0,  # > 0: learned (row, column) embeddings for image codes up to this side
        image_begin_id: int | None = None,  # the image block's tokens (grid positions are read off them)
        end_of_row_id: int | None = None,
        image_end_id: int | None = None,
    ):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        n_kv_heads = n_kv_heads or n_heads
        if n_heads % n_kv_heads:
            raise ValueError(f"n_heads {n_heads} is not a multiple of n_kv_heads {n_kv_heads}")
        rows = embedding_size or vocab_size
        if rows < vocab_size:
            raise ValueError(f"embedding_size {rows} is smaller than vocab_size {vocab_size}")
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(rows, d_model),
                "blocks": nn.ModuleList(
                    LLaDABlock(d_model, n_heads, n_kv_heads, mlp_hidden_size, rms_norm_eps) for _ in range(n_layers)
                ),
                "ln_f": RMSNorm(d_model, rms_norm_eps),
            }
        )
        if not tie_word_embeddings:
            self.transformer["ff_out"] = nn.Linear(d_model, rows, bias=False)
        if grid_position_size:
            # RoPE gives only relative offsets along the flat sequence; a small model then has to count
            # end-of-row tokens to know where a code sits. Absolute (row, column) embeddings make "the top left
            # cell" and "the same cell in the source image" one lookup (Lumina-DiMOO itself has none: 0).
            if None in (image_begin_id, end_of_row_id, image_end_id):
                raise ValueError("grid_position_size needs image_begin_id, end_of_row_id and image_end_id")
            self.transformer["grid_rows"] = nn.Embedding(grid_position_size, d_model)
            self.transformer["grid_cols"] = nn.Embedding(grid_position_size, d_model)
        self.gradient_checkpointing = False
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer["wte"]

    @property
    def output_head_weight(self) -> torch.Tensor:
        head = self.transformer["ff_out"] if "ff_out" in self.transformer else self.transformer["wte"]
        return head.weight

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        embedding_offset: torch.Tensor | None = None,
        output_positions: torch.Tensor | None = None,
        return_dict: bool = True,
        kv_cache: KVCache | None = None,
        compute_positions: torch.Tensor | None = None,
        output_classes: torch.Tensor | None = None,
        packing: PackedSequences | None = None,
    ) -> LLaDAOutput | tuple[torch.Tensor]:
        """Logits for ``input_ids`` (B, L).

        attention_mask: (B, L), 1 for real tokens and 0 for padding (any side); padding keys are masked and
            positions count real tokens only, so a padded row equals the same row run alone.
        embedding_offset: (B, L, d_model) added to the token embeddings (History Reference uses it).
        output_positions: (B, P) indices; when given, only those positions go through the head (B, P, V).
        kv_cache: a :class:`~rm_edit.kv_cache.KVCache`. Without ``compute_positions`` the forward is full and
            (re)fills it; with ``compute_positions`` (B, P) only those positions are recomputed, attending to
            the cached keys/values of the rest, and the logits are for those positions (B, P, V).
        output_classes: (C,) class ids; when given, the head computes only those rows, in that order (..., C):
            a sampler reads 8,193 of Lumina-DiMOO's 126,464 classes, so the full head would be ~15x the work.
        packing: ``input_ids`` is ``packing.input_ids`` (1, T), several sequences packed end to end
            (:mod:`rm_edit.packing`): RoPE positions restart per sequence and attention stays within each. With
            ``kv_cache`` it is cached packed; a cached forward then takes the same ``packing`` and (1, S * P)
            ``compute_positions``: P positions of each sequence, the sequences in row order (``packing.order``).
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
        b, l = input_ids.shape
        longest = max(g[2] for g in packing.groups) if packing is not None else l  # a packed row holds several
        if longest > self.config.max_sequence_length:
            raise ValueError(f"sequence length {longest} exceeds max_sequence_length {self.config.max_sequence_length}")
        if compute_positions is not None:
            return self._cached_forward(input_ids, attention_mask, embedding_offset, kv_cache, compute_positions,
                                        return_dict, output_classes, packing)
        x = self.embed(input_ids)
        if embedding_offset is not None:
            x = x + embedding_offset.to(x.dtype)

        if packing is not None:
            if attention_mask is not None or b != 1:
                raise ValueError("packing takes one packed row, without attention_mask")
            positions, attn_mask, groups = packing.positions, None, packing.groups
        else:
            positions, attn_mask = _positions_and_mask(attention_mask, b, l, input_ids.device)
            groups = None
        cos, sin = rotary_cos_sin(positions, self.config.d_model // self.config.n_heads, self.config.rope_theta)

        for i, block in enumerate(self.transformer["blocks"]):
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                x = self._gradient_checkpointing_func(block, x, cos, sin, attn_mask, None, i, None, groups)
            else:
                x = block(x, cos, sin, attn_mask, kv_cache, i, None, groups)
        if kv_cache is not None:
            kv_cache.input_ids, kv_cache.attention_mask = input_ids, attention_mask
            kv_cache.groups = None if packing is None else packing.groups
            kv_cache.full_passes += 1
        x = self.transformer["ln_f"](x)
        if output_positions is not None:
            x = torch.gather(x, 1, output_positions.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        logits = F.linear(x, self.head_weight(output_classes))
        return LLaDAOutput(logits=logits) if return_dict else (logits,)

    def compile_blocks(self, **compile_kwargs) -> "LLaDATransformer":
        """``torch.compile`` each block in place (fuses RMSNorm, RoPE and SwiGLU's elementwise work, which run
        unfused in fp32 otherwise); ``dynamic=True`` by default, as sequence lengths vary between edits."""
        for block in self.transformer["blocks"]:
            block.compile(**{"dynamic": True, **compile_kwargs})
        return self

    def head_weight(self, classes: torch.Tensor | None = None) -> torch.Tensor:
        """The output head's rows for ``classes`` (all when None)."""
        weight = self.output_head_weight
        return weight if classes is None else weight.index_select(0, classes.to(weight.device))

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings, plus the (row, column) embeddings of image codes when the model has them."""
        x = self.transformer["wte"](input_ids)
        if not self.config.grid_position_size:
            return x
        c = self.config
        row, col, is_code = grid_positions(input_ids, c.image_begin_id, c.end_of_row_id, c.image_end_id)
        side = c.grid_position_size - 1
        grid = self.transformer["grid_rows"](row.clamp(0, side)) + self.transformer["grid_cols"](col.clamp(0, side))
        return x + grid * is_code.unsqueeze(-1).to(x.dtype)

    def _cached_forward(self, input_ids, attention_mask, embedding_offset, kv_cache, compute_positions, return_dict,
                        output_classes=None, packing=None):
        """Recompute ``compute_positions`` (B, P) against ``kv_cache``'s keys/values for every other position."""
        if kv_cache is None or kv_cache.is_empty:
            raise ValueError("compute_positions needs a filled kv_cache: run a full forward with kv_cache first")
        if kv_cache.input_ids.shape != input_ids.shape:
            raise ValueError(f"input_ids {tuple(input_ids.shape)} do not match the cached batch {tuple(kv_cache.input_ids.shape)}")
        groups = None if packing is None else packing.groups
        if groups != kv_cache.groups:
            raise ValueError("the cached forward's packing does not match the one that filled kv_cache")
        b, l = input_ids.shape
        x = self.embed(input_ids)
        x = torch.gather(x, 1, compute_positions.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        if embedding_offset is not None:
            picked = compute_positions.unsqueeze(-1).expand(-1, -1, embedding_offset.shape[-1])
            x = x + torch.gather(embedding_offset, 1, picked).to(x.dtype)
        if groups is not None:
            sequences = sum(count for _, count, _ in groups)
            if b != 1 or attention_mask is not None or compute_positions.shape[1] % sequences:
                raise ValueError(f"a packed cached forward takes one row and P positions of each of its {sequences} "
                                 f"sequences, got compute_positions of shape {tuple(compute_positions.shape)}")
            positions, attn_mask = packing.positions, None
        else:
            positions, attn_mask = _positions_and_mask(attention_mask, b, l, input_ids.device)
        cos, sin = rotary_cos_sin(torch.gather(positions, 1, compute_positions), self.config.d_model // self.config.n_heads,
                                  self.config.rope_theta)
        for i, block in enumerate(self.transformer["blocks"]):
            x = block(x, cos, sin, attn_mask, kv_cache, i, compute_positions, groups)
        kv_cache.input_ids = kv_cache.input_ids.scatter(1, compute_positions, torch.gather(input_ids, 1, compute_positions))
        kv_cache.cached_passes += 1
        kv_cache.computed_positions += compute_positions.numel()
        logits = F.linear(self.transformer["ln_f"](x), self.head_weight(output_classes))
        return LLaDAOutput(logits=logits) if return_dict else (logits,)

    # ---- LLaDA / Lumina-DiMOO checkpoints ----------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load this class's own folders, or a LLaDA / Lumina-DiMOO checkpoint folder as it ships."""
        folder = Path(pretrained_model_name_or_path)
        subfolder = kwargs.get("subfolder")
        config_path = (folder / subfolder if subfolder else folder) / "config.json"
        if config_path.is_file():
            raw = json.loads(config_path.read_text())
            if "_class_name" not in raw and "d_model" in raw:
                return cls.from_llada_checkpoint(config_path.parent, torch_dtype=kwargs.get("torch_dtype"))
        elif folder.exists():
            raise FileNotFoundError(f"no config.json in {config_path.parent}")
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def from_llada_checkpoint(cls, folder: str | Path, torch_dtype: torch.dtype | None = None,
                              device: str | torch.device | None = None) -> "LLaDATransformer":
        """Load a LLaDA checkpoint folder straight into ``device`` and ``torch_dtype``, one tensor at a time.

        The model is built on the meta device and each stored tensor is read, cast and assigned on its own, so
        host memory holds the model (when ``device`` is the CPU) plus one tensor, never a whole state dict.
        """
        from safetensors import safe_open

        folder = Path(folder)
        config = llada_config_to_kwargs(json.loads((folder / "config.json").read_text()))
        with torch.device("meta"):
            model = cls(**config)
        dtype, device = torch_dtype or torch.float32, torch.device(device or "cpu")
        expected, seen = set(model.state_dict()), set()
        for file in _llada_weight_files(folder):
            with safe_open(str(file), framework="pt", device="cpu" if device.type == "cpu" else str(device)) as f:
                for name in f.keys():
                    if not name.startswith("model.transformer."):
                        raise ValueError(f"{file.name}: unexpected parameter {name!r} (expected model.transformer.*)")
                    key = name[len("model.") :]
                    if key not in expected:
                        raise ValueError(f"{folder}: checkpoint does not match its config: unexpected {key!r}")
                    model.load_state_dict({key: f.get_tensor(name).to(dtype)}, strict=False, assign=True)
                    seen.add(key)
        if expected - seen:
            raise ValueError(f"{folder}: checkpoint does not match its config: missing {sorted(expected - seen)[:5]}")
        model.eval()
        return model


def grid_positions(input_ids: torch.Tensor, begin_id: int, eor_id: int, end_id: int):
    """(row, column, is_code) of every token (B, L): codes inside ``<IMAGE> row <eor> row <eor> ... </IMAGE>``
    blocks get their row (end-of-row tokens since the block began) and column (tokens since the last
    ``<IMAGE>`` or end-of-row); every other token is not a code."""
    begin, eor = input_ids == begin_id, input_ids == eor_id
    inside = (begin.cumsum(1) - (input_ids == end_id).cumsum(1)) > 0
    is_code = inside & ~begin & ~eor
    eors = eor.long().cumsum(1)
    row = eors - torch.where(begin, eors, torch.zeros_like(eors)).cummax(1).values
    index = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    last_break = torch.where(begin | eor, index, torch.full_like(index, -1)).cummax(1).values
    return row, index - last_break - 1, is_code


def _positions_and_mask(attention_mask: torch.Tensor | None, b: int, l: int, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """RoPE positions (B, L) counting real tokens only, and the SDPA key mask (B, 1, 1, L) hiding padding."""
    if attention_mask is None:
        return torch.arange(l, device=device).expand(b, l), None
    keep = attention_mask.bool()
    return (keep.long().cumsum(-1) - 1).clamp(min=0), keep[:, None, None, :]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["LLaDATransformer", "LLaDAOutput", "llada_config", "llada_config_to_kwargs", "save_llada_checkpoint", "count_parameters"]
