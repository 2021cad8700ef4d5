"""A tiny random checkpoint folder in Lumina-DiMOO's exact layout (a few MB), for CPU tests.

Real ids and vocabulary (134,548 classes: text below 126356, [MASK] 126336, image code k = 126356 + k, 8192
codes) with a d_model-16 LLaDA; LLaDA's config.json and several safetensors shards + index at the root (bf16,
as the release ships); a word-level tokenizer whose special tokens sit at the layout's ids (tokenizer.json,
tokenizer_config.json, special_tokens_map.json); a random diffusers VQModel with 8192 codes and 16x
downsampling in ``vqvae/``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rm_edit.layout import LUMINA_DIMOO
from rm_edit.lumina_tokenizer import LUMINA_STAND_IN_SPECIAL_TOKENS, build_stand_in_tokenizer
from rm_edit.pipelines.lumina_checkpoint import stand_in_vq_config, write_stand_in_folder
from rm_edit.transformer import LLaDATransformer

TINY_LLADA = dict(d_model=16, n_layers=2, n_heads=2, n_kv_heads=2, mlp_hidden_size=32)


def tiny_lumina_vq_config() -> dict:
    """aMUSEd's VQ shape (5 blocks = 16x downsampling, 8192 codes, no mid-block attention) with tiny channels."""
    return stand_in_vq_config(channels=8)


def make_tiny_lumina_transformer(seed: int = 0, **overrides) -> LLaDATransformer:
    """Random weights; the head and embeddings are scaled up so logits are far from uniform (overfit tests)."""
    torch.manual_seed(seed)
    model = LLaDATransformer(
        vocab_size=LUMINA_DIMOO.vocab_size, mask_token_id=LUMINA_DIMOO.mask_token_id, rope_theta=500000.0,
        max_sequence_length=4096, tie_word_embeddings=False, **{**TINY_LLADA, **overrides},
    )
    with torch.no_grad():
        model.transformer["wte"].weight.normal_(0.0, 1.0)
        model.transformer["ff_out"].weight.normal_(0.0, 0.25)
    return model.eval()


def make_tiny_lumina_checkpoint(folder: str | Path, seed: int = 0, dtype: torch.dtype = torch.bfloat16,
                                max_shard_bytes: int = 3_000_000, tokenizer=None) -> Path:
    """Write the checkpoint folder (``tokenizer``: default the stand-in); returns it."""
    folder = Path(folder)
    model = make_tiny_lumina_transformer(seed).to(dtype)
    return write_stand_in_folder(model, folder, seed, tokenizer, max_shard_bytes=max_shard_bytes)


# LLaDA's own BOS / EOS names, at ids of this stand-in's choosing (below the image codes, off the layout's ids).
BOS, EOS = ("<|startoftext|>", 126080), ("<|endoftext|>", 126081)


def tokenizer_adding_bos_eos():
    """The stand-in with a post-processor that wraps every encoding in BOS ... EOS (as many LLM tokenizers do)."""
    from tokenizers.processors import TemplateProcessing

    tok = build_stand_in_tokenizer(special_tokens={**LUMINA_STAND_IN_SPECIAL_TOKENS, BOS[0]: BOS[1], EOS[0]: EOS[1]})
    tok.backend_tokenizer.post_processor = TemplateProcessing(single=f"{BOS[0]} $A {EOS[0]}", special_tokens=[BOS, EOS])
    return tok


def tokenizer_splitting_user_close():
    """The stand-in where ``</user>`` is not one token: it splits into ``<`` ``/`` ``user`` ``>``; ``<IMAGE>``
    and ``</IMAGE>`` are not tokens either (the reference never tokenises them)."""
    specials = {k: v for k, v in LUMINA_STAND_IN_SPECIAL_TOKENS.items() if k not in ("</user>", "<IMAGE>", "</IMAGE>")}
    return build_stand_in_tokenizer(extra_words=("<", "/", "user", ">"), special_tokens=specials)


class RMBatchConfig:
    """What ``make_rm_batch`` reads for a tiny batch: no guidance dropout, every edit starts from the source."""

    p_drop_instruction = 0.0
    p_drop_image = 0.0
    trajectory = {"p_source_start": 0.0}
    history = False


def tiny_rm_batch(instructions: list[str], seed: int = 0, grid: int = 4):
    """A reflective training batch on the Lumina-DiMOO layout: random (grid x grid) source codes, cells 5..10
    edited; returns ``(bank, cache, batch, corrupted, generator)`` (the generator, for further draws)."""
    from rm_edit.data.pretokenize import CodeCache
    from rm_edit.training.lora_rm import make_rm_batch
    from rm_edit.training.train_mdm import PromptBank

    g = torch.Generator().manual_seed(seed)
    b, n = len(instructions), grid * grid
    source = torch.randint(0, LUMINA_DIMOO.codebook_size, (b, n), generator=g)
    target = source.clone()
    target[:, 5:11] = torch.randint(0, LUMINA_DIMOO.codebook_size, (b, 6), generator=g)
    cache = CodeCache(source.view(b, grid, grid), target.view(b, grid, grid), instructions,
                      [str(i) for i in range(b)], [None] * b)
    bank = PromptBank(build_stand_in_tokenizer(), LUMINA_DIMOO, cache.instructions)
    batch, corrupted = make_rm_batch(LUMINA_DIMOO, bank, cache, torch.arange(b), torch.full((b, n), -1),
                                     RMBatchConfig, g)
    return bank, cache, batch, corrupted, g
