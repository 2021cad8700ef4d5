"""bf16 drift of the batched guidance branches (a measurement script, not a test).

    python benchmarks/benchmark_bf16_branches.py            # 8 regenerate steps, 32x32 codes, bf16 on CPU

One guided step runs the conditional, no-instruction and no-image branches as one padded batch (the no-image
branch is shorter). Lumina-DiMOO's own code runs each branch alone, unpadded. This script samples the same
edit both ways with the same random numbers (Lumina's regenerate sampler, temperature 1) on a random-weight
LLaDA with Lumina's vocabulary, and prints the fraction of final codes that agree, per dtype; ``--by-length``
adds :func:`~rm_edit.pipelines.guidance_branches.forward_branches` (what the pipeline runs: every branch packed
into one row, one forward pass, attention per group of equal-length branches without a mask).
"""

from __future__ import annotations

import argparse
import json

import torch

from rm_edit.layout import LUMINA_DIMOO, build_edit_sequence, encode_edit_prompts, pad_sequences
from rm_edit.transformer import LLaDATransformer

from rm_edit.pipelines.guidance_branches import forward_branches
from rm_edit.lumina_tokenizer import build_stand_in_tokenizer
from rm_edit.pipelines.lumina_dimoo import lumina_regenerate_scheduler

G_TEXT, G_IMAGE = 2.5, 4.0


def _forward(model, seqs, mode: str) -> torch.Tensor:
    """Logits at the target positions, (branches, N, K + 1), by ``mode``: one padded batch, each branch alone
    (Lumina-DiMOO's way), or :func:`forward_branches` (the pipeline's way)."""
    if mode == "alone":
        logits = torch.cat([model(s.input_ids[None], output_positions=s.target_positions[None]).logits for s in seqs])
    else:
        batch = pad_sequences(seqs, LUMINA_DIMOO.pad_token_id)
        if mode == "padded":
            logits = model(batch.input_ids, batch.attention_mask, output_positions=batch.target_positions).logits
        else:
            logits = forward_branches(model, batch)
    return LUMINA_DIMOO.image_code_logits(logits).float()


def sample(model, prompts, source: torch.Tensor, steps: int, mode: str, seed: int) -> torch.Tensor:
    heads, uncond, tail = prompts
    h, w = source.shape
    scheduler = lumina_regenerate_scheduler(num_inference_steps=steps)
    state = torch.full((1, h * w), LUMINA_DIMOO.mask_code)
    gen = torch.Generator().manual_seed(seed)
    for t in scheduler.timesteps:
        target = state[0].view(h, w)
        seqs = [build_edit_sequence(LUMINA_DIMOO, heads[0], source, target, tail),
                build_edit_sequence(LUMINA_DIMOO, uncond, source, target, tail),
                build_edit_sequence(LUMINA_DIMOO, heads[0], None, target, tail)]
        cond, no_text, no_image = _forward(model, seqs, mode)
        guided = cond + G_TEXT * (cond - no_text) + G_IMAGE * (cond - no_image)
        state = scheduler.step(guided[None], t, state, generator=gen).prev_sample
    return state[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/benchmark_bf16_branches.py")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--grid", type=int, default=32, help="codes per side (32: a 512x512 edit)")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--dtypes", default="bf16,fp32")
    parser.add_argument("--by-length", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = LLaDATransformer(vocab_size=LUMINA_DIMOO.vocab_size, mask_token_id=LUMINA_DIMOO.mask_token_id,
                             d_model=args.d_model, n_layers=args.layers, n_heads=args.d_model // 64,
                             mlp_hidden_size=4 * args.d_model, rope_theta=500000.0).eval()
    with torch.no_grad():  # an output head far from uniform, so codes are decided by the logits, not the noise
        model.transformer["ff_out"].weight.normal_(0.0, 0.5)
    prompts = encode_edit_prompts(build_stand_in_tokenizer(), LUMINA_DIMOO, ["make the sky red"])
    source = torch.randint(0, LUMINA_DIMOO.codebook_size, (args.grid, args.grid), generator=torch.Generator().manual_seed(1))
    modes = ["padded", "pipeline"] if args.by_length else ["padded"]
    for name in args.dtypes.split(","):
        m = model.to({"bf16": torch.bfloat16, "fp32": torch.float32}[name])
        with torch.no_grad():
            for mode in modes:
                agree = []
                for seed in range(args.seeds):
                    ref = sample(m, prompts, source, args.steps, "alone", seed)
                    agree.append(float((sample(m, prompts, source, args.steps, mode, seed) == ref).float().mean()))
                print(json.dumps({"dtype": name, "mode": mode, "steps": args.steps, "codes": args.grid ** 2,
                                  "agreement_with_unpadded": [round(a, 4) for a in agree]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
