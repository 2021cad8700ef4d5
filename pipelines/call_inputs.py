"""A pipeline call's inputs: paired into rows (images, prompts, masks, negative prompts), checked (each problem
a one-line error naming it) and the prompts tokenised."""

from __future__ import annotations

import torch

from rm_edit.image_inputs import as_pil_images
from rm_edit.layout import TokenLayout, encode_edit_prompts


def expand_inputs(image, prompt, mask_image, negative_prompt, num_images_per_prompt: int):
    """The call's rows: images (PIL), prompts, masks (or one mask for all, or None) and negative prompts,
    paired (one image with several prompts: the image for each; one prompt: for every image), each row
    ``num_images_per_prompt`` times in a row."""
    if not isinstance(num_images_per_prompt, int) or num_images_per_prompt < 1:
        raise ValueError(f"num_images_per_prompt must be a whole number >= 1, got {num_images_per_prompt!r}")
    if image is None or prompt is None:
        raise TypeError("pass both image and prompt")
    images = as_pil_images(image)
    prompts = list(prompt) if isinstance(prompt, (list, tuple)) else [prompt]
    if not prompts:
        raise ValueError("prompt: the list is empty")
    masks = list(mask_image) if isinstance(mask_image, (list, tuple)) else None
    if masks is not None and len(masks) != len(images):
        raise ValueError(f"got {len(masks)} masks for {len(images)} images")
    n = max(len(images), len(prompts))
    if len(images) not in (1, n) or len(prompts) not in (1, n):
        raise ValueError(f"got {len(prompts)} prompts for {len(images)} images: pass one prompt, one per image, "
                         "or several prompts for one image")
    negatives = None
    if negative_prompt is not None:
        negatives = list(negative_prompt) if isinstance(negative_prompt, (list, tuple)) else [negative_prompt]
        if len(negatives) not in (1, n):
            raise ValueError(f"got {len(negatives)} negative prompts for {n} prompts")
    k = num_images_per_prompt
    rows = lambda xs: [x for x in (xs * n if len(xs) == 1 else xs) for _ in range(k)]  # noqa: E731
    return (rows(images), rows(prompts), mask_image if masks is None else rows(masks),
            None if negatives is None else rows(negatives))


def check_inputs(images: list, prompts: list, output_type: str, callback_tensor_inputs, allowed_callback_inputs,
                 negative_prompts: list | None = None, generator=None) -> None:
    """The rows, output type and callback tensors a call was given (``allowed_callback_inputs``: the
    pipeline's ``_callback_tensor_inputs``)."""
    if len(prompts) != len(images):
        raise ValueError(f"got {len(prompts)} prompts for {len(images)} images")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompt {i}: expected a string, got {type(p).__name__}")
        if not p.strip():
            raise ValueError(f"prompt {i}: the editing instruction is empty")
    for i, p in enumerate(negative_prompts or ()):
        if not isinstance(p, str):
            raise TypeError(f"negative_prompt {i}: expected a string, got {type(p).__name__}")
    if isinstance(generator, (list, tuple)):
        if len(generator) != len(images):
            raise ValueError(f"got {len(generator)} generators for {len(images)} edits (images x "
                             f"num_images_per_prompt); pass one torch.Generator or one per edit")
        bad = [type(g).__name__ for g in generator if not isinstance(g, torch.Generator)]
        if bad:
            raise TypeError(f"generator: expected torch.Generator objects, got {bad[0]} in the list")
    elif generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or a list of them, got {type(generator).__name__}"
                        " (for a seed: torch.Generator().manual_seed(seed))")
    if output_type not in ("pil", "np", "pt", "latent"):
        raise ValueError(f"output_type must be pil, np, pt or latent, got {output_type!r}")
    for name in callback_tensor_inputs:
        if name not in allowed_callback_inputs:
            raise ValueError(f"callback tensor {name!r} is not one of {allowed_callback_inputs}")


def encode_prompts(tokenizer, layout: TokenLayout, prompts: list[str], negative_prompts: list[str] | None = None):
    """(per-row heads, per-row no-instruction heads, the shared tail), tokenised as Lumina-DiMOO does; a
    negative prompt takes the place of the no-instruction text in its row's guidance branch."""
    heads, uncond, close = encode_edit_prompts(tokenizer, layout, prompts)
    if negative_prompts is None:
        return heads, [uncond] * len(heads), close
    texts = [p for p in negative_prompts if p.strip()]
    neg_heads = iter(encode_edit_prompts(tokenizer, layout, texts)[0] if texts else ())
    return heads, [next(neg_heads) if p.strip() else uncond for p in negative_prompts], close
