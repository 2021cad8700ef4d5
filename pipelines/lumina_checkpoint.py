"""Lumina-DiMOO checkpoint folders as released, read into the parts of a pipeline (no pipeline class here, so
the pipeline's own loader can use it for an RM adapter whose base is such a folder): the transformer, the VQ,
the tokenizer, the sampler and the pipeline config. :mod:`rm_edit.pipelines.lumina_dimoo` builds the pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import VQModel

from rm_edit.adapters import load_rm_adapter
from rm_edit.layout import LUMINA_DIMOO
from rm_edit.lumina_tokenizer import check_tokenizer_layout, load_lumina_tokenizer
from rm_edit.schedulers import LuminaRegenerateScheduler, ReflectiveMaskingScheduler
from rm_edit.transformer import LLaDATransformer
from rm_edit.vq import codebook_size, small_vq_config, vq_downsample_factor

__all__ = ["LUMINA_PIPELINE_CONFIG", "default_dtype", "lumina_components", "lumina_regenerate_scheduler",
           "lumina_scheduler", "stand_in_vq_config"]

# Pipeline config of a Lumina-DiMOO editor (REFERENCE.md section 1): its crop-size frontier of 256 cells of
# 32 px (crop_fill_budget: inputs are resized up or down onto it) and its guidance scales.
LUMINA_PIPELINE_CONFIG = dict(
    layout=LUMINA_DIMOO.name, crop_multiple=32, max_crop_cells=256, crop_fill_budget=True, guidance_scale=2.5,
    image_guidance_scale=4.0,
)


def stand_in_vq_config(channels: int = 8) -> dict:
    """A tiny random VQ for tests and the GPU check: aMUSEd's VQ layout (5 blocks: 16x downsampling, 8192 codes, no mid-block attention) with tiny channels."""
    cfg = small_vq_config(codebook_size=LUMINA_DIMOO.codebook_size, block_out_channels=(channels,) * 5,
                          latent_channels=8, layers_per_block=1, norm_num_groups=4)
    cfg["sample_size"] = 256
    return cfg


def write_stand_in_folder(transformer, folder: str | Path, seed: int = 0, tokenizer=None, vq_channels: int = 8,
                          max_shard_bytes: int = 2 << 30) -> Path:
    """``transformer`` (random weights, Lumina-DiMOO's vocabulary) written as a Lumina-DiMOO folder ships: LLaDA
    shards + index, the stand-in tokenizer (or ``tokenizer``) as a plain fast tokenizer with its special-tokens
    map, and a tiny random VQ in ``vqvae/`` (tests and the GPU check)."""
    import json

    from rm_edit.lumina_tokenizer import LUMINA_STAND_IN_SPECIAL_TOKENS, build_stand_in_tokenizer
    from rm_edit.transformer import save_llada_checkpoint
    from rm_edit.vq import build_vq

    folder = Path(folder)
    save_llada_checkpoint(transformer, folder, max_shard_bytes=max_shard_bytes)  # config.json, shards, index
    tokenizer = tokenizer or build_stand_in_tokenizer()
    tokenizer.save_pretrained(str(folder))
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2))
    specials = [t for t in LUMINA_STAND_IN_SPECIAL_TOKENS if t not in ("<|pad|>", "<|mdm_mask|>")]
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"unk_token": "<unk>", "pad_token": "<|pad|>", "mask_token": "<|mdm_mask|>",
         "additional_special_tokens": specials}, indent=2))
    build_vq(stand_in_vq_config(vq_channels), seed=seed).eval().save_pretrained(str(folder / "vqvae"),
                                                                                safe_serialization=True)
    return folder


def default_dtype() -> torch.dtype:
    """bf16 where CUDA is available (as Lumina-DiMOO runs), else fp32."""
    return torch.bfloat16 if torch.cuda.is_available() else torch.float32


def lumina_scheduler(**overrides) -> ReflectiveMaskingScheduler:
    """The reflective scheduler over Lumina-DiMOO's 8192 codes (turns of 1 reflect + 4 reveal steps), for a
    checkpoint with RM post-training."""
    return ReflectiveMaskingScheduler(**{"codebook_size": LUMINA_DIMOO.codebook_size, "num_turns": 3,
                                         "reveal_steps": 4, **overrides})


def lumina_regenerate_scheduler(**overrides) -> LuminaRegenerateScheduler:
    """Lumina-DiMOO's own sampler with its inference code's defaults: 64 steps, temperature 1.0, and at least
    one code left masked until the last step."""
    return LuminaRegenerateScheduler(**{"codebook_size": LUMINA_DIMOO.codebook_size, "num_inference_steps": 64,
                                        "temperature": 1.0, "min_masked_until_last": 1, **overrides})


# ---- loading ------------------------------------------------------------------------------------------------
def _checkpoint_dtype(folder: Path) -> torch.dtype:
    """The dtype the LLaDA weights are stored in (read from a safetensors header, no tensor loaded)."""
    from safetensors import safe_open

    from rm_edit.transformer import _llada_weight_files

    names = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
    with safe_open(str(_llada_weight_files(folder)[0]), framework="pt") as f:
        key = next(iter(f.keys()))
        return names.get(f.get_slice(key).get_dtype(), torch.float32)


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise FileNotFoundError(f"no Lumina-DiMOO checkpoint folder at {folder}")
    config = folder / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{folder}: no config.json (expected LLaDA's config at the checkpoint root)")
    raw = json.loads(config.read_text())
    if "d_model" not in raw:
        raise ValueError(f"{config} is not a LLaDA config (no d_model); is this a Lumina-DiMOO checkpoint folder?")
    if not (folder / "vqvae" / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: no vqvae/ subfolder with the image tokenizer (a diffusers VQModel)")


def lumina_components(
    folder: str | Path,
    torch_dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    vq_dtype: torch.dtype = torch.float32,
    scheduler: ReflectiveMaskingScheduler | LuminaRegenerateScheduler | None = None,
    rm_adapter: str | Path | None = None,
    merge_adapter: bool = True,
    **pipeline_config,
) -> dict:
    """A Lumina-DiMOO checkpoint folder as it ships -> the keyword arguments of a ``ReflectiveMaskingEditPipeline``.

    torch_dtype: the transformer's dtype (default :func:`default_dtype`); its weights load one tensor at a time
    straight onto ``device`` (default CPU) in that dtype. The VQ stays in ``vq_dtype`` (fp32: it is small and
    decodes better). rm_adapter: an RM adapter folder (:func:`rm_edit.adapters.save_rm_adapter`) to
    load; with it (or a checkpoint whose config records ``rm_post_trained``) the default sampler is reflective
    (:func:`lumina_scheduler`), else Lumina's own (:func:`lumina_regenerate_scheduler`). merge_adapter (default):
    fold the adapter into the weights for inference (unmerged, LoRA adds 14 small matmuls per layer to every
    pass); False keeps it separate (``disable_lora`` / :func:`rm_edit.adapters.unload_rm_adapter` give the base
    model back exactly). ``pipeline_config`` overrides :data:`LUMINA_PIPELINE_CONFIG`.
    """
    folder = Path(folder)
    _check_folder(folder)
    dtype = torch_dtype or default_dtype()
    layout = LUMINA_DIMOO
    transformer = LLaDATransformer.from_llada_checkpoint(folder, torch_dtype=dtype, device=device)
    rows = transformer.config.embedding_size or transformer.config.vocab_size
    if rows < layout.vocab_size:
        raise ValueError(f"{folder}: the model has {rows} output classes; Lumina-DiMOO's layout needs {layout.vocab_size}")
    if transformer.config.mask_token_id != layout.mask_token_id:
        raise ValueError(f"{folder}: mask_token_id {transformer.config.mask_token_id} != {layout.mask_token_id}")
    if transformer.config.rm_post_trained is None:  # as released: [MASK] was never a training target
        transformer.register_to_config(rm_post_trained=False)
    if rm_adapter is not None:
        load_rm_adapter(transformer, rm_adapter, merge=merge_adapter)
    vqvae = VQModel.from_pretrained(str(folder / "vqvae"), torch_dtype=vq_dtype).eval()
    if not vqvae.config.lookup_from_codebook:
        raise ValueError(f"{folder}/vqvae: the image tokenizer needs lookup_from_codebook=True")
    if codebook_size(vqvae) != layout.codebook_size:
        raise ValueError(f"{folder}/vqvae: {codebook_size(vqvae)} codes, Lumina-DiMOO's layout has {layout.codebook_size}")
    config = {**LUMINA_PIPELINE_CONFIG, **pipeline_config}
    if config["crop_multiple"] % vq_downsample_factor(vqvae):
        raise ValueError(f"crop_multiple {config['crop_multiple']} is not a multiple of the VQ's "
                         f"{vq_downsample_factor(vqvae)}x downsampling")
    tokenizer = load_lumina_tokenizer(folder)
    check_tokenizer_layout(tokenizer, layout)
    if scheduler is None:
        scheduler = lumina_scheduler() if transformer.config.rm_post_trained else lumina_regenerate_scheduler()
    return dict(vqvae=vqvae, transformer=transformer.eval(), tokenizer=tokenizer, scheduler=scheduler, **config)


