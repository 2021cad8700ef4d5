"""ReflectiveMaskingEditPipeline: instruction-based image editing with a mask diffusion model.

``strategy="reflective"`` starts from the source image's codes and runs turns of keep / re-mask / reveal
(Reflective Masking), so only the region the model chooses is regenerated and it knows that region.
``strategy="regenerate"`` is Lumina-DiMOO's sampler: the whole target from all [MASK] (the baseline).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline, VQModel
from diffusers.utils import BaseOutput
from transformers import PreTrainedTokenizerBase

from rm_edit.kv_cache import KVCache, indices_to_recompute
from rm_edit.history import HistoryState, code_embeddings, history_embedding, scatter_offsets, update_history
from rm_edit.layout import build_edit_sequence, edit_prompt_text, get_layout, pad_sequences
from rm_edit.schedulers import LuminaRegenerateScheduler, ReflectiveMaskingScheduler
from rm_edit.transformer import LLaDATransformer
from rm_edit.vq import VQCrop, decode_codes, encode_to_codes, paste_back as restore_input_size, preprocess_image

ImageInput = PIL.Image.Image | np.ndarray | list


@dataclass
class ReflectiveEditOutput(BaseOutput):
    """images: the edits (PIL list, (B,H,W,3) array, (B,3,H,W) tensor, or (B,h,w) codes for "latent");
    edit_masks: per image, the region the model chose to regenerate, (H, W) bool at the output's size;
    edit_region_tokens: the same at token level (B, h, w); num_forward_passes: transformer calls (each
    covers the whole batch and every guidance branch); trajectory: per step, the (B, h, w) code grids and
    what was re-masked, when asked for."""

    images: Any
    edit_masks: list[np.ndarray]
    edit_region_tokens: torch.Tensor
    num_forward_passes: int
    trajectory: list[dict[str, torch.Tensor]] | None = None


class ReflectiveMaskingEditPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "transformer->vqvae"
    _callback_tensor_inputs = ["state", "logits"]

    def __init__(
        self,
        vqvae: VQModel,
        transformer: LLaDATransformer,
        tokenizer: PreTrainedTokenizerBase,
        scheduler: ReflectiveMaskingScheduler,
        layout: str | dict = "shapes",
        crop_multiple: int = 8,
        max_crop_cells: int = 64,
        guidance_scale: float = 2.5,
        image_guidance_scale: float = 4.0,
        vq_cell_local: bool = False,
    ):
        super().__init__()
        self.register_modules(vqvae=vqvae, transformer=transformer, tokenizer=tokenizer, scheduler=scheduler)
        self.register_to_config(
            layout=layout, crop_multiple=crop_multiple, max_crop_cells=max_crop_cells,
            guidance_scale=guidance_scale, image_guidance_scale=image_guidance_scale, vq_cell_local=vq_cell_local,
        )
        # The small shapes tokenizer encodes each cell on its own (local codes); see rm_edit.vq.cell_latents.
        vqvae.rm_edit_cell_local = vq_cell_local
        self.layout = get_layout(layout)
        if scheduler.config.codebook_size != self.layout.codebook_size:
            raise ValueError(
                f"scheduler codebook_size {scheduler.config.codebook_size} != layout's {self.layout.codebook_size}"
            )
        self._interrupt = False

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """diffusers' loader; without ``torch_dtype`` it loads fp32 on a CPU-only machine (the shipped folders
        store fp16 to stay small, and fp16 matmuls on CPU are slow)."""
        if "torch_dtype" not in kwargs and not torch.cuda.is_available():
            kwargs["torch_dtype"] = torch.float32
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    # ---- inputs -----------------------------------------------------------------------------------------
    def _prepare_images(self, images: list) -> tuple[torch.Tensor, list[VQCrop], list[PIL.Image.Image]]:
        tensors, crops, originals = [], [], []
        for i, image in enumerate(images):
            if isinstance(image, np.ndarray):
                image = PIL.Image.fromarray(image)
            if not isinstance(image, PIL.Image.Image):
                raise TypeError(f"image {i}: expected a PIL image or uint8 array, got {type(image).__name__}")
            image = image.convert("RGB")
            x, crop = preprocess_image(image, self.config.crop_multiple, self.config.max_crop_cells)
            tensors.append(x)
            crops.append(crop)
            originals.append(image)
        if len({c.grid for c in crops}) != 1:
            raise ValueError(f"images of one call must share a size after cropping, got grids {sorted({c.grid for c in crops})}")
        return torch.cat(tensors), crops, originals

    def _prepare_region(self, mask_image, crops: list[VQCrop], h: int, w: int) -> torch.Tensor | None:
        """A user mask (white = may change) -> (B, h*w) token region: a token is inside if any pixel is."""
        if mask_image is None:
            return None
        masks = mask_image if isinstance(mask_image, list) else [mask_image] * len(crops)
        if len(masks) != len(crops):
            raise ValueError(f"got {len(masks)} masks for {len(crops)} images")
        region = []
        for m, crop in zip(masks, crops):
            m = m if isinstance(m, PIL.Image.Image) else PIL.Image.fromarray((np.asarray(m) > 0).astype(np.uint8) * 255)
            m = m.convert("L")
            if m.size != crop.input_size:
                raise ValueError(f"mask size {m.size} != image size {crop.input_size}")
            m = m.resize(crop.resized_size, PIL.Image.Resampling.NEAREST).crop(crop.box)
            t = torch.from_numpy(np.asarray(m) > 127).float()[None, None]
            region.append(F.adaptive_max_pool2d(t, (h, w)).bool().reshape(-1))
        return torch.stack(region)

    def _encode_prompts(self, prompts: list[str]) -> tuple[list[list[int]], list[int], list[int]]:
        encode = lambda text: self.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
        for i, p in enumerate(prompts):
            if not isinstance(p, str) or not p.strip():
                raise ValueError(f"prompt {i}: the editing instruction is empty")
        conditional = [encode(edit_prompt_text(self.layout, p)[0]) for p in prompts]
        unconditional, close = edit_prompt_text(self.layout, None)
        return conditional, encode(unconditional), encode(close)

    def _branches(self, prompts, uncond, close, source: torch.Tensor, state: torch.Tensor, use_text: bool, use_image: bool):
        """The sequences of one forward: every image's conditional branch, then the guidance branches."""
        b, h, w = source.shape
        seqs = [build_edit_sequence(self.layout, p, source[i], state[i].view(h, w), close) for i, p in enumerate(prompts)]
        if use_text:
            seqs += [build_edit_sequence(self.layout, uncond, source[i], state[i].view(h, w), close) for i in range(b)]
        if use_image:
            seqs += [build_edit_sequence(self.layout, p, None, state[i].view(h, w), close) for i, p in enumerate(prompts)]
        return pad_sequences(seqs, self.layout.pad_token_id)

    # ---- the sampling loop -------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        image: ImageInput,
        prompt: str | list[str],
        strategy: str = "reflective",
        num_turns: int | None = None,
        reveal_steps: int | None = None,
        num_inference_steps: int = 16,
        guidance_scale: float | None = None,
        image_guidance_scale: float | None = None,
        use_history: bool = False,
        history_alpha: float = 1.0,
        history_decay: float = 1.0,
        mask_image: Any = None,
        temperature: float | None = None,
        remask_margin: float | None = None,
        held_code_bias: float | None = None,
        max_remask_fraction: float | None = None,
        paste_back: bool = False,
        use_kv_cache: bool = False,
        kv_cache_refresh_every: int = 4,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_trajectory: bool = False,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ("state",),
        return_dict: bool = True,
    ) -> ReflectiveEditOutput | tuple:
        images = image if isinstance(image, list) else [image]
        prompts = prompt if isinstance(prompt, list) else [prompt] * len(images)
        if len(prompts) != len(images):
            raise ValueError(f"got {len(prompts)} prompts for {len(images)} images")
        if strategy not in ("reflective", "regenerate"):
            raise ValueError(f"strategy must be 'reflective' or 'regenerate', got {strategy!r}")
        if output_type not in ("pil", "np", "pt", "latent"):
            raise ValueError(f"output_type must be pil, np, pt or latent, got {output_type!r}")
        for name in callback_on_step_end_tensor_inputs:
            if name not in self._callback_tensor_inputs:
                raise ValueError(f"callback tensor {name!r} is not one of {self._callback_tensor_inputs}")
        g_text = self.config.guidance_scale if guidance_scale is None else guidance_scale
        g_image = self.config.image_guidance_scale if image_guidance_scale is None else image_guidance_scale
        device = self._execution_device
        layout, K = self.layout, self.layout.codebook_size

        pixels, crops, originals = self._prepare_images(images)
        conditional, uncond, close = self._encode_prompts(prompts)
        source = encode_to_codes(self.vqvae, pixels.to(device)).cpu()
        b, h, w = source.shape
        n = h * w
        region = self._prepare_region(mask_image, crops, h, w)

        if strategy == "reflective":
            overrides = {k: v for k, v in dict(reveal_steps=reveal_steps, temperature=temperature,
                         remask_margin=remask_margin, max_remask_fraction=max_remask_fraction,
                         held_code_bias=held_code_bias).items() if v is not None}
            scheduler = ReflectiveMaskingScheduler.from_config(self.scheduler.config, **overrides)
            scheduler.set_timesteps(num_turns)
            state = source.reshape(b, n).clone()
            frozen = None
        else:
            scheduler = LuminaRegenerateScheduler(
                codebook_size=K, num_inference_steps=num_inference_steps, temperature=1.0 if temperature is None else temperature
            )
            start = torch.full((b, n), K)
            state = start if region is None else torch.where(region, start, source.reshape(b, n))
            frozen = None if region is None else ~region
        self._num_timesteps = len(scheduler.timesteps)
        self._interrupt = False

        history = HistoryState.empty(b, n, self.transformer.config.d_model) if use_history else None
        chosen = torch.zeros(b, n, dtype=torch.bool)
        done = torch.zeros(b, dtype=torch.bool)
        trajectory = [{"codes": state.view(b, h, w).clone(), "remasked": chosen.view(b, h, w).clone()}]
        passes = 0
        # The cache's rows (active edits) and the codes its keys/values were computed from.
        kv_cache, cache_rows, cache_state = (KVCache() if use_kv_cache else None), None, None
        self._kv_cache = kv_cache
        with self.progress_bar(total=len(scheduler.timesteps)) as bar:
            for i, t in enumerate(scheduler.timesteps):
                if self.interrupt or done.all():
                    break
                # Rows at their fixed point are frozen: leave them out of the forward pass.
                active = (~done).nonzero().squeeze(1)
                act_prompts = [conditional[j] for j in active.tolist()]
                batch = self._branches(act_prompts, uncond, close, source[active], state[active], g_text != 0, g_image != 0)
                batch = batch.to(device)
                copies = batch.input_ids.shape[0] // len(active)  # the conditional and guidance branches
                offset = None
                if history is not None and history_alpha != 0:
                    ref = history_embedding(history, history_alpha)[active].to(device)
                    offset = scatter_offsets(ref.repeat(copies, 1, 1), batch.target_positions, batch.input_ids.shape[1])
                refresh = scheduler.is_reflect_step(t) if strategy == "reflective" else i % kv_cache_refresh_every == 0
                if kv_cache is None or refresh or cache_rows is None or not torch.equal(cache_rows, active):
                    out = self.transformer(batch.input_ids, batch.attention_mask, embedding_offset=offset,
                                           output_positions=batch.target_positions, kv_cache=kv_cache).logits
                    guided = self._guided(layout.image_code_logits(out).float(), len(active), g_text, g_image).cpu()
                    logits = torch.zeros(b, n, K + 1).index_copy_(0, active, guided)
                    if kv_cache is not None:
                        cache_rows, cache_state = active, state.clone()
                else:
                    # A reveal step reads only masked positions' logits: recompute those and the codes that changed
                    # since the cache was filled; everything else keeps its cached keys/values (and logits).
                    need = (state[active] == K) | (state[active] != cache_state[active])
                    target_idx = indices_to_recompute(need)
                    seq_idx = torch.gather(batch.target_positions, 1, target_idx.repeat(copies, 1).to(device))
                    out = self.transformer(batch.input_ids, batch.attention_mask, embedding_offset=offset,
                                           kv_cache=kv_cache, compute_positions=seq_idx).logits
                    guided = self._guided(layout.image_code_logits(out).float(), len(active), g_text, g_image).cpu()
                    rows = active[:, None].expand_as(target_idx)
                    logits = logits.clone()
                    logits[rows, target_idx] = guided
                    cache_state[rows, target_idx] = state[rows, target_idx]
                passes += 1
                if history is not None:
                    emb, held = code_embeddings(self.transformer.get_input_embeddings(), layout, state.to(device))
                    history = update_history(history, emb.cpu(), held.cpu(), history_decay)
                row_frozen = done[:, None].expand(b, n)
                step_frozen = row_frozen if frozen is None else (row_frozen | frozen)
                result = scheduler.step(logits, t, state, frozen=step_frozen, region=region, generator=generator)
                state = result.prev_sample
                chosen |= result.remasked
                if strategy == "reflective":
                    done |= result.converged
                if return_trajectory:
                    trajectory.append({"codes": state.view(b, h, w).clone(), "remasked": result.remasked.view(b, h, w)})
                if callback_on_step_end is not None:
                    local = {"state": state, "logits": logits}
                    cb = callback_on_step_end(self, i, t, {k: local[k] for k in callback_on_step_end_tensor_inputs})
                    state = (cb or {}).get("state", state)
                bar.update()

        if (state == K).any():  # stopped mid-turn: fill [MASK] with the last pass's best codes, never [MASK]
            best = logits[..., :K].argmax(-1) if passes else source.reshape(b, n)
            state = torch.where(state == K, best, state)
        final = state.view(b, h, w)
        if strategy == "regenerate":
            chosen = (final != source).reshape(b, n) if region is None else region.clone()
        region_tokens = chosen.view(b, h, w)
        self.maybe_free_model_hooks()
        masks = [self._token_mask_to_pixels(region_tokens[i], crops[i]) for i in range(b)]
        if output_type == "latent":
            result_images: Any = final
        else:
            # One image at a time: the decoder's convolutions round differently per batch size, and an edit
            # must not depend on what it was batched with.
            decoded = torch.cat([decode_codes(self.vqvae, final[i : i + 1].to(device)).cpu() for i in range(b)])
            result_images = self._postprocess(decoded, crops, originals, region_tokens, paste_back, output_type)
        traj = trajectory if return_trajectory else None
        if not return_dict:
            return (result_images, masks, region_tokens, passes, traj)
        return ReflectiveEditOutput(result_images, masks, region_tokens, passes, traj)

    @staticmethod
    def _guided(logits: torch.Tensor, b: int, g_text: float, g_image: float) -> torch.Tensor:
        """Lumina-DiMOO's guidance: cond + g_text (cond - no_instruction) + g_image (cond - no_image)."""
        cond, rest = logits[:b], logits[b:]
        out = cond
        if g_text != 0:
            out = out + g_text * (cond - rest[:b])
            rest = rest[b:]
        if g_image != 0:
            out = out + g_image * (cond - rest[:b])
        return out

    # ---- outputs -----------------------------------------------------------------------------------------
    @staticmethod
    def grown_region(region_tokens: torch.Tensor, reach: int = 1) -> torch.Tensor:
        """Tokens whose decoded pixels may differ from the source's: the region grown by the decoder's reach."""
        x = region_tokens.float()[None, None]
        return F.max_pool2d(x, 2 * reach + 1, stride=1, padding=reach)[0, 0].bool()

    def _token_mask_to_pixels(self, tokens: torch.Tensor, crop: VQCrop) -> np.ndarray:
        """(h, w) token mask -> (H, W) bool at the input image's size (False outside the crop)."""
        # Pixels per code from the crop box, not crop.multiple: a crop cell may hold several codes (Lumina-DiMOO:
        # 32 px cells, 16x VQ, so 2x2 codes per cell).
        l, t, r, b = crop.box
        cell_h, cell_w = (b - t) // tokens.shape[0], (r - l) // tokens.shape[1]
        crop_mask = tokens.repeat_interleave(cell_h, 0).repeat_interleave(cell_w, 1).numpy().astype(np.uint8) * 255
        canvas = PIL.Image.new("L", crop.resized_size, 0)
        canvas.paste(PIL.Image.fromarray(crop_mask), crop.box[:2])
        return np.asarray(canvas.resize(crop.input_size, PIL.Image.Resampling.NEAREST)) > 127

    def _postprocess(self, decoded, crops, originals, region_tokens, paste_back: bool, output_type: str):
        results = []
        for i, crop in enumerate(crops):
            edited = restore_input_size(originals[i], decoded[i], crop)
            if paste_back:
                grown = self._token_mask_to_pixels(self.grown_region(region_tokens[i]), crop)
                alpha = feathered_alpha(grown, radius=max(1, crop.multiple // 4))
                src = np.asarray(originals[i], dtype=np.float32)
                mixed = alpha[..., None] * np.asarray(edited, dtype=np.float32) + (1 - alpha[..., None]) * src
                edited = PIL.Image.fromarray(np.round(mixed).clip(0, 255).astype(np.uint8))
            results.append(edited)
        if output_type == "pil":
            return results
        arrays = np.stack([np.asarray(r, dtype=np.float32) / 255.0 for r in results])
        return arrays if output_type == "np" else torch.from_numpy(arrays).permute(0, 3, 1, 2)


def feathered_alpha(region: np.ndarray, radius: int) -> np.ndarray:
    """A soft blend weight that is exactly 0 outside ``region`` and ramps up to 1 inside over ``radius`` px."""
    x = torch.from_numpy(region.astype(np.float32))[None, None]
    k = 2 * radius + 1
    inside = -F.max_pool2d(-F.pad(x, (radius,) * 4, value=1.0), k, stride=1)  # erosion: distance-ish ramp
    soft = F.avg_pool2d(F.pad(inside, (radius,) * 4, value=0.0), k, stride=1)
    return (soft[0, 0].numpy() * region).clip(0.0, 1.0)


def load_default_pipeline(name: str = "shapes-rm", **kwargs) -> ReflectiveMaskingEditPipeline:
    """A model shipped inside the package (trained by this project on the shapes world): by default
    ``shapes-rm``, the most accurate on held-out edits; ``"shapes-rm-her"`` is the History Reference variant
    (call it with ``use_history=True``)."""
    import rm_edit

    folder = Path(rm_edit.__file__).parent / "models" / name
    if not (folder / "model_index.json").is_file():
        available = sorted(p.name for p in folder.parent.glob("*") if (p / "model_index.json").is_file())
        raise FileNotFoundError(f"no shipped model {name!r} in {folder.parent}; available: {available}")
    return ReflectiveMaskingEditPipeline.from_pretrained(folder, **kwargs)
