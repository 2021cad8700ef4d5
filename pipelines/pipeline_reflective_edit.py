"""ReflectiveMaskingEditPipeline: instruction-based image editing with a mask diffusion model.

The scheduler is the sampler. :class:`~rm_edit.schedulers.ReflectiveMaskingScheduler` starts from the source
image's codes and runs turns of keep / re-mask / reveal (Reflective Masking), so only the region the model
chooses is regenerated and it knows that region; :class:`~rm_edit.schedulers.LuminaRegenerateScheduler` is
Lumina-DiMOO's sampler, the whole target from all [MASK] (the baseline). The pipeline encodes, loops
``self.scheduler.step`` and decodes; ``strategy=`` swaps the scheduler for one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, VQModel
from diffusers.pipelines import pipeline_utils as _diffusers_pipeline_utils
from diffusers.utils import BaseOutput, logging
from transformers import PreTrainedTokenizerBase

from rm_edit.history import HistoryRecorder
from rm_edit.image_processor import EditImageProcessor
from rm_edit.input_checks import InputChecks, check_sequence_length, warn_identical_copies
from rm_edit.kv_cache import KVCache
from rm_edit.layout import build_edit_sequence, get_layout, pad_sequences
from rm_edit.reflective import generators_on
from rm_edit.schedulers import CodeSpaceEditScheduler, scheduler_for_strategy
from rm_edit.transformer import LLaDATransformer
from rm_edit.vq import as_vq_tokenizer, decode_codes, encode_to_codes, read_back_errors

from .adapter_folder import is_adapter_folder, load_adapter_pipeline
from .call_inputs import check_inputs, encode_prompts, expand_inputs
from .guidance_branches import BranchInputs
from .rm_requirement import require_rm_post_training

logger = logging.get_logger(__name__)
# The loader keyword of the installed diffusers: "dtype" where it has replaced "torch_dtype" (which then warns).
_DTYPE_KEY = "dtype" if hasattr(_diffusers_pipeline_utils, "_resolve_dtype") else "torch_dtype"

ImageInput = PIL.Image.Image | np.ndarray | torch.Tensor | list


@dataclass
class ReflectiveEditOutput(BaseOutput):
    """images: the edits (PIL list, (B,H,W,3) array, (B,3,H,W) tensor, or (B,h,w) codes for "latent"); edit_masks:
    per image, (H, W) bool at the input's size: the region the edit changed (with paste-back: exactly
    the composited region, so every pixel outside it is the source's); edit_region_tokens: that region at token
    level (B, h, w): the codes the edit changed (a code re-masked and written back as it was is not in it);
    num_forward_passes: transformer calls (each covers the whole batch and every guidance branch);
    forward_passes_per_image: the calls each image took part in (until its fixed point, whatever its batch);
    trajectory: per step, the (B, h, w) codes and what was re-masked, when asked; codes / source_codes: (B, h, w);
    remasked_tokens: (B, h, w) the codes the reflective sampler re-masked at least once (None for the others);
    unchanged_because: per image, why the pipeline changed nothing there without asking the model (an instruction
    naming a shape the scene does not hold, or one of several; see ``allow_unknown_words``), else None."""

    images: Any
    edit_masks: list[np.ndarray]
    edit_region_tokens: torch.Tensor
    num_forward_passes: int
    trajectory: list[dict[str, torch.Tensor]] | None = None
    codes: torch.Tensor | None = None
    source_codes: torch.Tensor | None = None
    forward_passes_per_image: list[int] | None = None
    remasked_tokens: torch.Tensor | None = None
    unchanged_because: list[str | None] | None = None


class ReflectiveMaskingEditPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "transformer->vqvae"
    _callback_tensor_inputs = ["state", "logits"]

    def __init__(
        self,
        vqvae: VQModel,
        transformer: LLaDATransformer,
        tokenizer: PreTrainedTokenizerBase,
        scheduler: CodeSpaceEditScheduler,
        layout: str | dict = "shapes",
        crop_multiple: int = 8,
        max_crop_cells: int = 64,
        guidance_scale: float = 2.5,
        image_guidance_scale: float = 4.0,
        vq_cell_local: bool | None = None,
        crop_fill_budget: bool = False,
        world: dict | None = None,
    ):
        super().__init__()
        # The VQ's encoding mode is its own config (rm_edit.vq.VQTokenizer); vq_cell_local only converts a plain
        # VQModel of a folder saved before that (None: the VQ's own setting).
        vqvae = as_vq_tokenizer(vqvae, vq_cell_local)
        self.register_modules(vqvae=vqvae, transformer=transformer, tokenizer=tokenizer, scheduler=scheduler)
        self.register_to_config(
            layout=layout, crop_multiple=crop_multiple, max_crop_cells=max_crop_cells, guidance_scale=guidance_scale,
            image_guidance_scale=image_guidance_scale, vq_cell_local=bool(vqvae.config.cell_local),
            crop_fill_budget=crop_fill_budget, world=world,
        )
        self.layout = get_layout(layout)
        # What the model knows (optional ``world`` config, the tokenizer's vocabulary): inputs outside it warn once.
        self.input_checks = InputChecks(world, tokenizer, cell=crop_multiple)
        if scheduler.config.codebook_size != self.layout.codebook_size:
            raise ValueError(
                f"scheduler codebook_size {scheduler.config.codebook_size} != layout's {self.layout.codebook_size}"
            )
        self.image_processor = EditImageProcessor(crop_multiple=crop_multiple, max_crop_cells=max_crop_cells,
                                                  fill_budget=crop_fill_budget)
        self._interrupt = False
        self._kv_cache: KVCache | None = None  # the last call's cache (its pass counters are useful stats)
        self._classes: torch.Tensor | None = None  # the head rows a call reads (image codes, [MASK])

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """diffusers' loader; without ``torch_dtype`` it loads fp32 on a CPU-only machine (the shipped folders
        store fp16 to stay small, and fp16 matmuls on CPU are slow)."""
        if _is_local_path(pretrained_model_name_or_path) and not Path(pretrained_model_name_or_path).expanduser().is_dir():
            raise FileNotFoundError(f"folder not found: {pretrained_model_name_or_path}")
        if _is_local_path(pretrained_model_name_or_path) and is_adapter_folder(pretrained_model_name_or_path):
            return load_adapter_pipeline(cls, pretrained_model_name_or_path, **kwargs)  # base + RM adapter, merged
        # diffusers renamed torch_dtype to dtype (the old name warns); either is accepted here, passed on quietly.
        if _DTYPE_KEY == "dtype" and "torch_dtype" in kwargs:
            kwargs.setdefault("dtype", kwargs.pop("torch_dtype"))
        if "torch_dtype" not in kwargs and "dtype" not in kwargs and not torch.cuda.is_available():
            kwargs[_DTYPE_KEY] = torch.float32
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    def encode(self, images: ImageInput) -> torch.Tensor:
        """(B, h, w) VQ codes of images cropped as an edit crops them (e.g. an evaluation's targets)."""
        prepared = self.image_processor.preprocess(images)
        return encode_to_codes(self.vqvae, prepared.pixels.to(self._execution_device)).cpu()

    # ---- inputs -----------------------------------------------------------------------------------------
    def check_inputs(self, images: list, prompts: list, output_type: str, callback_tensor_inputs,
                     negative_prompts: list | None = None, generator=None) -> None:
        check_inputs(images, prompts, output_type, callback_tensor_inputs, self._callback_tensor_inputs,
                     negative_prompts, generator)

    def _branches(self, prompts, uncond, close, source: torch.Tensor, state: torch.Tensor, use_text: bool, use_image: bool):
        """The sequences of one forward: every image's conditional branch, then the guidance branches."""
        b, h, w = source.shape
        seqs = [build_edit_sequence(self.layout, p, source[i], state[i].view(h, w), close) for i, p in enumerate(prompts)]
        if use_text:  # ``uncond``: each row's no-instruction (or negative prompt) head
            seqs += [build_edit_sequence(self.layout, uncond[i], source[i], state[i].view(h, w), close) for i in range(b)]
        if use_image:
            seqs += [build_edit_sequence(self.layout, p, None, state[i].view(h, w), close) for i, p in enumerate(prompts)]
        return pad_sequences(seqs, self.layout.pad_token_id)

    def _branch_inputs(self, prompts, source_host: torch.Tensor, rows: tuple[int, ...], g_text: float,
                       g_image: float) -> BranchInputs:
        """The batch ``rows``' branch sequences on the device (built on the host once per set of rows; a step
        writes only the state into them), packed in one row (the key/value cache holds that row too)."""
        conditional, uncond, close = prompts
        picked = list(rows)
        batch = self._branches([conditional[j] for j in picked], [uncond[j] for j in picked], close,
                               source_host[picked], source_host[picked].flatten(1), g_text != 0, g_image != 0)
        return BranchInputs(self.layout, batch, rows, self._execution_device)

    # ---- one forward pass ---------------------------------------------------------------------------------
    def _predict(self, branches: BranchInputs, state, previous, reference, full: bool, g_text: float, g_image: float):
        """Guided logits (B, N, K + 1) for the batch rows of ``branches`` (other rows: ``previous``'s, or zeros),
        all on the transformer's device (nothing is read back to the host).

        ``full=False`` reuses the key/value cache: a reveal step reads only masked positions' logits, so it
        recomputes those and the codes that changed since the cache was filled; the rest keeps its cached
        keys/values (and logits)."""
        rows, row_index, b = branches.rows, branches.row_index, state.shape[0]
        picked = state if len(rows) == b else state.index_select(0, row_index)
        cache, classes = self._kv_cache, self._classes
        if full:
            out = branches.forward(self.transformer, picked, reference, classes, cache)  # one pass, all branches
            if cache is not None:
                cache.filled_from(rows, state, row_index)
            guided = self._guided(out, len(rows), g_text, g_image)
            if len(rows) == b:
                return guided
            logits = previous.clone() if previous is not None else guided.new_zeros(b, *guided.shape[1:])
            return logits.index_copy_(0, row_index, guided)
        target_idx = cache.stale_positions(state, self.layout.mask_code)
        out = branches.forward_cached(self.transformer, picked, reference, classes, cache, target_idx)
        logits = previous.clone()
        logits[row_index[:, None].expand_as(target_idx), target_idx] = self._guided(out, len(rows), g_text, g_image)
        return logits

    def _guided(self, out: torch.Tensor, b: int, g_text: float, g_image: float) -> torch.Tensor:
        """Lumina-DiMOO's guidance: cond + g_text (cond - no_instruction) + g_image (cond - no_image), from logits
        over the image codes then [MASK] (the head computed only those: ``output_classes``)."""
        logits = out.float()
        cond, rest = logits[:b], logits[b:]
        guided = cond
        if g_text != 0:
            guided = guided + g_text * (cond - rest[:b])
            rest = rest[b:]
        if g_image != 0:
            guided = guided + g_image * (cond - rest[:b])
        return guided

    # ---- the sampling loop ---------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        image: ImageInput,
        prompt: str | list[str],
        strategy: str | None = None,
        num_turns: int | None = None,
        reveal_steps: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        image_guidance_scale: float | None = None,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        use_history: bool | None = None,
        history_alpha: float | None = None,
        history_decay: float | None = None,
        mask_image: Any = None,
        temperature: float | None = None,
        remask_margin: float | None = None,
        held_code_bias: float | None = None,
        max_remask_fraction: float | None = None,
        paste_back: bool = True,
        allow_unknown_words: bool = False,
        use_kv_cache: bool = False,
        kv_cache_refresh_every: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_trajectory: bool = False,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ("state",),
        return_dict: bool = True,
    ) -> ReflectiveEditOutput | tuple:
        r"""Edit ``image`` as ``prompt`` says.

        Args:
            image (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor` or a list of them):
                The image(s) to edit, as diffusers takes them: PIL (any mode), numpy (H, W[, C]) / (B, H, W, C)
                uint8 0-255 or float [0, 1], torch (C, H, W) / (B, C, H, W) float [0, 1] or [-1, 1] (negative
                values mean [-1, 1]). Edited in RGB; each edit comes back in its input's mode (grayscale stays
                grayscale, alpha is carried through untouched). Each is resized / centre-cropped to the VQ grid
                (``crop_multiple``, at most ``max_crop_cells`` cells); the output has the input's size. Images
                of one call must share a grid after cropping.
            prompt (`str` or `list[str]`):
                The editing instruction: one for all images, one per image, or several for one image (the
                image is edited once per prompt). Must not be empty. ``image`` and ``prompt`` may be passed by
                keyword in either order.
            strategy (`str`, *optional*):
                ``"reflective"`` or ``"regenerate"``: use that sampler for this call instead of
                ``self.scheduler`` (a convenience: a regenerate scheduler set as ``pipe.scheduler`` does the
                same). ``None`` (default) uses ``self.scheduler``. Each sampler takes only its own options
                (``scheduler.call_options``): one of the other sampler's is refused with an error naming it.
            num_turns (`int`, *optional*):
                Reflective: the budget of keep / re-mask / reveal turns (default: the scheduler's). An edit
                stops earlier at its fixed point.
            reveal_steps (`int`, *optional*):
                Reflective: reveal steps per turn (default: the scheduler's).
            num_inference_steps (`int`, *optional*):
                Regenerate: sampling steps (default: the scheduler's; 16 when ``strategy`` swaps it in).
                Reflective: a budget in steps instead of ``num_turns``: the most whole turns of
                ``1 + reveal_steps`` steps that fit in it (at least one).
            guidance_scale (`float`, *optional*):
                Instruction guidance, cond + g (cond - no instruction); default: the pipeline's config. 0 skips
                that branch.
            image_guidance_scale (`float`, *optional*):
                Source-image guidance, + g (cond - no source image); default: the pipeline's config.
            negative_prompt (`str` or `list[str]`, *optional*):
                Text for the instruction guidance's other branch instead of "no instruction": the edit is
                pushed away from it, cond + g (cond - negative). Needs ``guidance_scale`` != 0. An empty
                string means no instruction.
            num_images_per_prompt (`int`, defaults to 1):
                Edits per (image, prompt), consecutive in the output. Variations come from sampling
                temperature > 0 with the generator (the regenerate sampler's default, 1); at temperature 0
                (the reflective default: argmax, fully deterministic) the copies are identical and a warning
                says so.
            use_history (`bool`, *optional*; default: the model's own `history_reference` config, False if unset):
                History Reference: add ``history_alpha`` x the decayed mean of the embeddings of the codes each
                position held at earlier steps to its input (no parameters). Models trained with it
                (``shapes-rm-her``) want it on; a model recorded as trained without it warns.
            history_alpha (`float`, *optional*; default: the model's own `history_alpha` config, else 1.0):
                The scale of History Reference; 0 leaves the model's input unchanged.
            history_decay (`float`, *optional*; default: the model's own `history_decay` config (the decay it
                was trained with), else 1.0): The per-step decay of older states, in (0, 1].
            mask_image (`PIL.Image.Image`, array, or a list, *optional*):
                White = may change: codes outside it keep the source's (reflective: never re-masked;
                regenerate: frozen). One mask for all images or one per image, at the image's size.
            temperature (`float`, *optional*):
                Sampling temperature of the reveals (reflective default 0: argmax; regenerate 1).
            remask_margin (`float`, *optional*):
                Reflective: re-mask only where log p([MASK]) - log p(code) > margin.
            held_code_bias (`float`, *optional*):
                Reflective: nats added to the held code's log-probability when a re-masked position is
                revealed; higher keeps more of the source.
            max_remask_fraction (`float`, *optional*):
                Reflective: at most this fraction of positions re-masked per reflect step.
            paste_back (`bool`, defaults to `True`):
                Blend the decoded edit into the input over the chosen region grown by the decoder's reach
                (feathered): every pixel outside ``edit_masks`` is then the input's, bit for bit (the product's
                promise; the CLI and ``rm-edit eval`` share this default). False keeps the decoder's whole image.
            allow_unknown_words (`bool`, defaults to `False`):
                An instruction with words the tokenizer does not know raises a one-line ValueError naming
                them and the nearest known ones, as is one a world model cannot read (no edit verb, a slot left
                out) or one asking for what the image lacks (a Sudoku "fill" on a board with no empty cell, a shapes
                add to a taken place), and
                an image a world model reads as another grid of codes than its square one (a 64x40 shapes scene:
                10x6 cells, not 8x8); True edits anyway (with a warning; a Sudoku image that is no 9x9 board
                is always refused). An instruction naming a shape the image does not hold, or one of several,
                changes nothing (``unchanged_because`` says why); True lets the model decide.
            use_kv_cache (`bool`, defaults to `False`):
                Reuse keys/values between steps (approximate): cached steps recompute only masked and changed
                codes. The scheduler says when to rebuild it (reflective: every reflect step).
            kv_cache_refresh_every (`int`, *optional*):
                Regenerate with the cache: rebuild it every this many steps (default: the scheduler's, 4).
            generator (`torch.Generator` or a list, one per edit, *optional*):
                Randomness of sampling at temperature > 0 (nothing else is random: at temperature 0 a call is
                deterministic and the generator unused); one per edit (images x ``num_images_per_prompt``)
                makes each row independent of what it is batched with. Draws happen on the transformer's device:
                a CPU generator with a model on a GPU seeds a generator there with one draw from it (same seed,
                same edit on that kind of device).
            output_type (`str`, defaults to `"pil"`):
                ``"pil"``, ``"np"`` ((B, H, W, 3) float in [0, 1]), ``"pt"`` ((B, 3, H, W)) or ``"latent"``
                (the (B, h, w) codes; nothing is decoded).
            return_trajectory (`bool`, defaults to `False`):
                Also return every step's codes and re-masked positions.
            callback_on_step_end (`Callable`, *optional*):
                Called after every step as ``callback(pipe, i, t, tensors)`` with the tensors named in
                ``callback_on_step_end_tensor_inputs``; a returned ``{"state": ...}`` replaces the state. Set
                ``pipe._interrupt = True`` to stop.
            callback_on_step_end_tensor_inputs (`list[str]`, defaults to `["state"]`):
                Which of ``"state"`` ((B, N) codes, [MASK] = K) and ``"logits"`` ((B, N, K + 1)) to pass.
            return_dict (`bool`, defaults to `True`):
                Return a :class:`ReflectiveEditOutput`, else the tuple of its fields in order.

        Returns:
            :class:`ReflectiveEditOutput` (or a tuple): the edits, region masks at image size, the region in
            tokens, the number of forward passes, the trajectory (when asked), the final and source codes.
        """
        images, prompts, masks, negatives = expand_inputs(image, prompt, mask_image, negative_prompt,
                                                           num_images_per_prompt)
        self.check_inputs(images, prompts, output_type, callback_on_step_end_tensor_inputs, negatives, generator)
        g_text = self.config.guidance_scale if guidance_scale is None else guidance_scale
        g_image = self.config.image_guidance_scale if image_guidance_scale is None else image_guidance_scale
        if negatives is not None and g_text == 0:
            raise ValueError("negative_prompt replaces the no-instruction guidance branch: it needs guidance_scale != 0")
        scheduler = scheduler_for_strategy(strategy, self.scheduler, self.layout.codebook_size).for_call(
            num_turns=num_turns, num_inference_steps=num_inference_steps, reveal_steps=reveal_steps,
            temperature=temperature, remask_margin=remask_margin, held_code_bias=held_code_bias,
            max_remask_fraction=max_remask_fraction, kv_cache_refresh_every=kv_cache_refresh_every)
        require_rm_post_training(scheduler, self.transformer)  # a sampler that needs [MASK] predictions
        if num_images_per_prompt > 1 and scheduler.config.temperature == 0:
            logger.warning(f"num_images_per_prompt={num_images_per_prompt} at temperature 0 (argmax): the copies "
                           "are identical; pass temperature > 0 for variations")
        prepared = self.image_processor.preprocess(images)
        self.input_checks.check_images(images, prepared.grid, allow_unknown_words)
        self.input_checks.check_prompts(prompts, allow_unknown_words)
        encoded_prompts = encode_prompts(self.tokenizer, self.layout, prompts, negatives)
        device = self._execution_device  # the sampler's state, logits and random draws all stay there
        source = encode_to_codes(self.vqvae, prepared.pixels.to(device)).to(device)
        source_host = source.cpu()  # the branch sequences' prompts are assembled on the host, once
        b, h, w = source.shape
        self._check_sequence_lengths(encoded_prompts, source_host, prompts)
        if self.input_checks.reads_cells is None:
            self.input_checks.reads_cells = self._reads_world_cells(device)
        if self.input_checks.reads_back:
            self.input_checks.check_read_back(read_back_errors(self.vqvae, source, prepared.pixels), allow_unknown_words)
        self.input_checks.check_requests(source_host, prompts, allow_unknown_words)
        region = self.image_processor.region_tokens(masks, prepared.crops, h, w)
        # An instruction naming nothing to edit (a world reads its scene off the codes) changes nothing: its row may
        # change no position. allow_unknown_words leaves every decision to the model (the benchmarks score it).
        unchanged = [None] * b if allow_unknown_words else self.input_checks.nothing_to_change(source_host, prompts)
        if any(unchanged):
            region = torch.ones(b, h * w, dtype=torch.bool) if region is None else region.clone()
            region[torch.tensor([u is not None for u in unchanged])] = False
        region = None if region is None else region.to(device)
        history = self._history(use_history, history_alpha, history_decay, b, h * w, device)
        state = scheduler.begin(source.reshape(b, h * w), region, history)
        self._classes = self.layout.image_class_ids(device)
        self._kv_cache = KVCache() if use_kv_cache else None
        state, (passes, row_passes), trajectory = self._denoise(
            scheduler, state, (b, h, w), encoded_prompts, source_host, (g_text, g_image), generators_on(generator, device),
            return_trajectory, callback_on_step_end, callback_on_step_end_tensor_inputs)
        # Re-masked at least once (the reflective sampler's decisions); its region keeps only what changed.
        remasked = scheduler.chosen.view(b, h, w).cpu() if scheduler.strategy == "reflective" else None
        final, chosen = scheduler.finish(state)
        codes, region_tokens = final.view(b, h, w).cpu(), chosen.view(b, h, w).cpu()
        if num_images_per_prompt > 1 and scheduler.config.temperature > 0:
            warn_identical_copies(codes, num_images_per_prompt, scheduler.config.temperature)
        self.maybe_free_model_hooks()
        images_out, masks = self._decode(codes, prepared, region_tokens, paste_back, output_type)
        out = (images_out, masks, region_tokens, passes, trajectory if return_trajectory else None, codes, source_host,
               row_passes, remasked, unchanged)
        return ReflectiveEditOutput(*out) if return_dict else out

    def _reads_world_cells(self, device) -> bool:
        """Does the image tokenizer read the world's probe image back as its exact cells (the shipped world models'
        exact tokenizers do; a learned one need not), so that the scene and board checks may read its codes?"""
        probe = self.input_checks.cell_probe()
        if probe is None:
            return False
        image, cells = probe
        prepared = self.image_processor.preprocess([PIL.Image.fromarray(image)])
        codes = encode_to_codes(self.vqvae, prepared.pixels.to(device)).cpu()[0]
        return tuple(codes.shape) == cells.shape and bool((codes.numpy() == cells).all())

    def _denoise(self, scheduler, state, shape, encoded_prompts, source_host, guidance, generator, return_trajectory,
                 callback_on_step_end, callback_on_step_end_tensor_inputs):
        """``scheduler.step`` per timestep until finished (or interrupted): the last state, (forward passes, per row), trajectory."""
        (b, h, w), (g_text, g_image) = shape, guidance
        self._num_timesteps, self._interrupt = len(scheduler.timesteps), False
        trajectory = [{"codes": state.view(b, h, w).clone(), "remasked": torch.zeros_like(state, dtype=torch.bool)
                       .view(b, h, w)}]
        logits, passes, branches, row_passes = None, 0, None, [0] * b
        # The loop reads nothing back from the device except the rows at their fixed point, once per reflect step.
        with self.progress_bar(total=len(scheduler.timesteps)) as bar:
            for i, t in enumerate(scheduler.timesteps.tolist()):
                if self.interrupt or scheduler.finished:
                    break
                rows = scheduler.active_row_list
                if branches is None or branches.rows != rows:  # the first step, and rows that reached a fixed point
                    branches = self._branch_inputs(encoded_prompts, source_host, rows, g_text, g_image)
                full = self._kv_cache is None or scheduler.needs_full_forward(t) or not self._kv_cache.serves(rows)
                logits = self._predict(branches, state, logits, scheduler.history_embeddings(branches.row_index), full,
                                       g_text, g_image)
                passes, row_passes = passes + 1, [n + (r in rows) for r, n in enumerate(row_passes)]
                step = scheduler.step(logits, t, state, generator=generator)
                state = step.prev_sample
                if return_trajectory:
                    trajectory.append({"codes": state.view(b, h, w).clone(), "remasked": step.remasked.view(b, h, w)})
                if callback_on_step_end is not None:
                    local = {"state": state, "logits": logits}
                    cb = callback_on_step_end(self, i, t, {k: local[k] for k in callback_on_step_end_tensor_inputs})
                    state = (cb or {}).get("state", state)
                bar.update()
        if return_trajectory:
            trajectory = [{k: v.cpu() for k, v in entry.items()} for entry in trajectory]
        return state, (passes, row_passes), trajectory

    def _history(self, use_history: bool | None, alpha: float | None, decay: float | None, batch: int,
                 positions: int, device) -> HistoryRecorder | None:
        """History Reference as the model was trained (its transformer config's ``history_reference``,
        ``history_alpha``, ``history_decay``; else off, 1.0, 1.0) unless the call says otherwise."""
        if use_history is None:
            use_history = bool(self.transformer.config.get("history_reference"))
        elif use_history:
            self.input_checks.check_history(self.transformer)
        if not use_history:
            return None
        alpha, decay = (_trained_or(self.transformer, k, v) for k, v in (("history_alpha", alpha), ("history_decay", decay)))
        return HistoryRecorder(self.transformer.get_input_embeddings(), self.layout, batch, positions, alpha, decay,
                               device)

    def _check_sequence_lengths(self, encoded_prompts, source: torch.Tensor, prompts: list[str]) -> None:
        heads, uncond, close = encoded_prompts
        check_sequence_length(
            [len(build_edit_sequence(self.layout, max(heads[i], uncond[i], key=len), source[i], source[i], close)
                 .input_ids) for i in range(len(source))],
            prompts, self.transformer.config.get("max_sequence_length"))

    # ---- outputs -----------------------------------------------------------------------------------------
    def _decode(self, codes: torch.Tensor, prepared, region_tokens: torch.Tensor, paste_back: bool, output_type: str):
        if output_type == "latent":
            return codes, self.image_processor.region_masks(region_tokens, prepared, paste_back)
        # One image at a time: the decoder's convolutions round differently per batch size, and an edit must
        # not depend on what it was batched with.
        device = self._execution_device
        decoded = torch.cat([decode_codes(self.vqvae, codes[i : i + 1].to(device)).cpu() for i in range(len(codes))])
        return self.image_processor.postprocess(decoded, prepared, region_tokens, paste_back, output_type)


def _trained_or(transformer, key: str, value: float | None) -> float:
    """``value``, else the transformer config's recorded ``key`` (what it was trained with), else 1.0."""
    recorded = transformer.config.get(key)
    return value if value is not None else 1.0 if recorded is None else float(recorded)


def _is_local_path(name) -> bool:
    """A folder rather than a hub repo id ("owner/name"): a Path, absolute, ./ ~/ relative, or deeper."""
    if isinstance(name, Path):
        return True
    name = str(name)
    return (Path(name).is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name
            or Path(name).exists())
