"""Lumina-DiMOO checkpoints: the tiny exact-layout fixture loads, edits with the real ids, converts, reloads."""

import json
import shutil

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors import safe_open

from rm_edit.layout import LUMINA_DIMOO as L
from rm_edit.pipelines.lumina_dimoo import load_lumina_dimoo, load_lumina_tokenizer, main as lumina_main
from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline
from tests.lumina_fixture import make_tiny_lumina_checkpoint


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: thread-pool overhead dominates on a shared machine, so run single-threaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_lumina_checkpoint(tmp_path_factory.mktemp("dimoo") / "Lumina-DiMOO")


@pytest.fixture(scope="module")
def pipe(checkpoint):
    p = load_lumina_dimoo(checkpoint)
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return PIL.Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))  # 80 wide, 64 high


def test_fixture_has_the_release_layout(checkpoint):
    names = {p.name for p in checkpoint.iterdir()}
    assert {"config.json", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "vqvae"} <= names
    index = json.loads((checkpoint / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) >= 2 and all((checkpoint / s).is_file() for s in shards)
    assert "model.transformer.ff_out.weight" in index["weight_map"]
    cfg = json.loads((checkpoint / "config.json").read_text())
    assert cfg["vocab_size"] == cfg["embedding_size"] == 134548 == L.vocab_size
    assert cfg["mask_token_id"] == 126336 and cfg["block_type"] == "llama" and cfg["weight_tying"] is False
    vq = json.loads((checkpoint / "vqvae" / "config.json").read_text())
    assert vq["num_vq_embeddings"] == 8192 and len(vq["block_out_channels"]) == 5 and vq["lookup_from_codebook"]
    assert sum(f.stat().st_size for f in checkpoint.rglob("*") if f.is_file()) < 15e6
    tok = load_lumina_tokenizer(checkpoint)
    ids = tok("<system>x</system><user>make it red<IMAGE></IMAGE></user><answer></answer><uncondition>",
              add_special_tokens=False)["input_ids"]
    assert [126349, 126350] == ids[ids.index(126349):ids.index(126349) + 2]
    assert {126340, 126341, 126342, 126343, 126354, 126355, 126351} <= set(ids) and max(ids) < L.text_vocab_size
    assert tok.convert_tokens_to_ids(["<|mdm_mask|>", "<|eor|>", "<|pad|>"]) == [126336, 126084, 126339]


def _capture_inputs(pipe):
    seen = []
    handle = pipe.transformer.register_forward_pre_hook(lambda m, a, k: seen.append(a[0].clone()), with_kwargs=True)
    return seen, handle


@pytest.mark.parametrize("strategy", ["reflective", "regenerate"])
def test_edit_end_to_end_with_real_ids(pipe, image, strategy):
    seen, handle = _capture_inputs(pipe)
    try:
        out = pipe(image, "make the sky red", strategy=strategy, num_turns=2, reveal_steps=2, num_inference_steps=3,
                   generator=torch.Generator().manual_seed(0))
    finally:
        handle.remove()
    assert out.images[0].size == image.size and out.edit_masks[0].shape == (64, 80)
    assert out.edit_region_tokens.shape == (1, 4, 4)  # 64x64 crop: 2x2 cells of 32 px = 4x4 codes (16x VQ)
    assert 0 < out.num_forward_passes == len(seen)
    ids = seen[0]
    assert ids.shape[0] == 3  # conditional, no-instruction, no-image branches
    cond, uncond, noimg = ids
    for row, images in ((cond, 2), (uncond, 2), (noimg, 1)):
        assert (row == L.image_begin_id).sum() == images and (row == L.image_end_id).sum() == images
        assert (row == L.end_of_row_id).sum() == 4 * images  # one end-of-row per image row
        assert (row == L.answer_begin_id).sum() == 1 and (row == L.answer_end_id).sum() == 1
    assert (uncond == L.uncondition_id).sum() == 1 and (cond == L.uncondition_id).sum() == 0
    assert (noimg == L.pad_token_id).sum() > 0  # the shorter branch is padded
    codes = ids[(ids >= L.image_code_offset)]
    assert codes.numel() and int(codes.max()) < L.vocab_size
    # the target block: after <answer><IMAGE>
    start = int((cond == L.answer_begin_id).nonzero()) + 1
    target = cond[L.image_positions(start, 4, 4)]
    if strategy == "regenerate":
        assert (target == L.mask_token_id).all()
    else:  # reflective starts from the source's codes
        source = cond[L.image_positions(int((cond == L.image_begin_id).nonzero()[0]), 4, 4)]
        assert torch.equal(target, source)
    # token region -> pixels: 16 px per code inside the centred 64x64 crop (columns 8..71)
    tokens = out.edit_region_tokens[0]
    expected = tokens.repeat_interleave(16, 0).repeat_interleave(16, 1).numpy()
    assert np.array_equal(out.edit_masks[0][:, 8:72], expected)
    assert not out.edit_masks[0][:, :8].any() and not out.edit_masks[0][:, 72:].any()


def test_kv_cache_edit_with_lumina_layout(pipe, image):
    """Reveal steps reuse cached keys/values of the system prompt, instruction and source image (padded guidance
    branches of different lengths included) and recompute only the masked and changed target codes."""
    kwargs = dict(strategy="reflective", num_turns=2, reveal_steps=3, generator=torch.Generator().manual_seed(0))
    out = pipe(image, "make the sky red", use_kv_cache=True, output_type="latent", **kwargs)
    stats = pipe._kv_cache
    assert stats.full_passes >= 1 and stats.full_passes + stats.cached_passes == out.num_forward_passes
    seq_len = stats.input_ids.shape[1]
    assert stats.cached_passes > 0 and stats.computed_positions < stats.cached_passes * 3 * seq_len / 4
    assert out.images.shape == (1, 4, 4) and int(out.images.max()) < L.codebook_size


def test_convert_then_reload_gives_identical_edits(pipe, checkpoint, image, tmp_path):
    from rm_edit.cli import COMMANDS

    assert "convert" in COMMANDS  # `rm-edit convert lumina-dimoo SRC DST` runs the same parser
    dst = tmp_path / "converted"
    assert lumina_main(["convert", "lumina-dimoo", str(checkpoint), str(dst), "--max-shard-size", "3MB"]) == 0
    assert (dst / "model_index.json").is_file()
    assert (dst / "transformer" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    shard = next((dst / "transformer").glob("*.safetensors"))
    with safe_open(str(shard), framework="pt") as f:  # stored dtype kept (the release is bf16)
        assert f.get_slice(next(iter(f.keys()))).get_dtype() == "BF16"
    again = ReflectiveMaskingEditPipeline.from_pretrained(dst, torch_dtype=torch.float32)
    again.set_progress_bar_config(disable=True)
    assert again.layout == L and again.config.crop_multiple == 32 and again.config.max_crop_cells == 256
    assert again.config.guidance_scale == 2.5 and again.config.image_guidance_scale == 4.0
    assert again.scheduler.config.codebook_size == 8192
    for strategy in ("reflective", "regenerate"):
        kw = dict(strategy=strategy, num_turns=2, num_inference_steps=3, output_type="latent")
        a = pipe(image, "make the sky red", generator=torch.Generator().manual_seed(1), **kw)
        b = again(image, "make the sky red", generator=torch.Generator().manual_seed(1), **kw)
        assert torch.equal(a.images, b.images) and torch.equal(a.edit_region_tokens, b.edit_region_tokens)


def test_tokenizer_needing_remote_code_falls_back_to_tokenizer_json(checkpoint, tmp_path):
    folder = tmp_path / "tok"
    folder.mkdir()
    for name in ("tokenizer.json", "special_tokens_map.json"):
        shutil.copy(checkpoint / name, folder / name)
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "LLaDACustomTokenizer", "auto_map": {"AutoTokenizer": ["tok.LLaDACustomTokenizer", None]}}))
    tok = load_lumina_tokenizer(folder)
    assert tok("<IMAGE> <uncondition>", add_special_tokens=False)["input_ids"] == [126349, 126351]
    assert tok.pad_token == "<|pad|>"
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match="remote code"):
        load_lumina_tokenizer(folder)


def test_loader_names_what_is_missing(checkpoint, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken, ignore=shutil.ignore_patterns("vqvae"))
    with pytest.raises(FileNotFoundError, match="vqvae"):
        load_lumina_dimoo(broken)


def test_gpu_check_tiny_runs_on_cpu(tmp_path):
    from rm_edit.pipelines.gpu_check import main as gpu_check

    results = gpu_check(["--tiny", "--cpu", "--batch-sizes", "1", "--lora-steps", "1", "--json", str(tmp_path / "r.json")])
    assert json.loads((tmp_path / "r.json").read_text())["codes"] == 16
    assert {e["strategy"] for e in results["edits"]} == {"reflective", "regenerate"}
    assert all(e["forward_passes"] > 0 and e["s_per_pass"] > 0 for e in results["edits"])
    assert results["lora"][0]["s_per_step"] > 0 and set(results["lora"][0]["losses"]) == {"reveal", "mask", "keep"}
    assert results["model"]["vocab_size"] == 134548
