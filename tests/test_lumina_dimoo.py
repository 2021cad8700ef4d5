"""Lumina-DiMOO checkpoints: the tiny exact-layout fixture loads, edits with the real ids, converts, reloads."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors import safe_open

from rm_edit.layout import LUMINA_DIMOO as L
from rm_edit.lumina_tokenizer import load_lumina_tokenizer
from rm_edit.pipelines.lumina_dimoo import load_lumina_dimoo, lumina_scheduler, main as lumina_main
from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline
from rm_edit.schedulers import LuminaRegenerateScheduler
from tests.lumina_fixture import (
    BOS, EOS, make_tiny_lumina_checkpoint, tokenizer_adding_bos_eos, tokenizer_splitting_user_close,
)

# A 4-cell crop budget keeps the CPU tests small (the 256-cell frontier: test_cli_edit_on_the_frontier).
SMALL = dict(max_crop_cells=4)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny models run single-threaded


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_lumina_checkpoint(tmp_path_factory.mktemp("dimoo") / "Lumina-DiMOO")


@pytest.fixture(scope="module")
def pipe(checkpoint):
    p = load_lumina_dimoo(checkpoint, **SMALL)
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
    assert "rm_post_trained" not in cfg  # as released
    vq = json.loads((checkpoint / "vqvae" / "config.json").read_text())
    assert vq["num_vq_embeddings"] == 8192 and len(vq["block_out_channels"]) == 5 and vq["lookup_from_codebook"]
    assert sum(f.stat().st_size for f in checkpoint.rglob("*") if f.is_file()) < 15e6
    tok = load_lumina_tokenizer(checkpoint)
    ids = tok("<system>x</system><user>make it red<IMAGE></IMAGE></user><answer></answer><uncondition>",
              add_special_tokens=False)["input_ids"]
    assert [126349, 126350] == ids[ids.index(126349):ids.index(126349) + 2]
    assert {126340, 126341, 126342, 126343, 126354, 126355, 126351} <= set(ids) and max(ids) < L.text_vocab_size
    assert tok.convert_tokens_to_ids(["<|mdm_mask|>", "<|eor|>", "<|pad|>"]) == [126336, 126084, 126339]


def _branch_rows(ids: torch.Tensor, packing) -> list[torch.Tensor]:
    """The sequences of one forward in branch order: the padded batch's rows, or cut out of a packed row (each
    branch's sequence is the group slot holding its first target position)."""
    if packing is None:
        return list(ids)
    rows = []
    for first in packing.target_positions[:, 0].tolist():
        start, count, length = next(g for g in packing.groups if g[0] <= first < g[0] + g[1] * g[2])
        begin = start + (first - start) // length * length
        rows.append(ids[0, begin : begin + length])
    return rows


def _capture_inputs(pipe):
    seen = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda m, a, k: seen.append(_branch_rows(a[0].clone(), k.get("packing"))), with_kwargs=True)
    return seen, handle


# ---- 1. the released checkpoint: its own sampler, and reflective editing refused -------------------------------
def test_released_checkpoint_defaults_to_lumina_sampler_with_its_settings(pipe):
    assert pipe.transformer.config.rm_post_trained is False
    assert isinstance(pipe.scheduler, LuminaRegenerateScheduler)
    c = pipe.scheduler.config  # Lumina-DiMOO's inference code: 64 steps, temperature 1.0, clamp to >= 1 masked
    assert (c.num_inference_steps, c.temperature, c.min_masked_until_last, c.codebook_size) == (64, 1.0, 1, 8192)


@pytest.mark.parametrize("how", ["strategy", "scheduler"])
def test_reflective_on_released_checkpoint_raises_one_line_naming_the_fix(pipe, image, how):
    kwargs = {"strategy": "reflective"} if how == "strategy" else {}
    saved = pipe.scheduler
    if how == "scheduler":
        pipe.scheduler = lumina_scheduler()
    try:
        with pytest.raises(ValueError) as err:
            pipe(image, "make the sky red", num_turns=1, output_type="latent", **kwargs)
    finally:
        pipe.scheduler = saved
    message = str(err.value)
    assert "\n" not in message and "RM adapter" in message
    assert "rm_edit.adapters.load_rm_adapter" in message and "python -m rm_edit.training.lora_rm" in message


def test_rm_adapter_enables_reflective(checkpoint, image, tmp_path):
    from rm_edit.adapters import save_rm_adapter
    from rm_edit.training.lora_rm import prepare_lora_model

    donor = load_lumina_dimoo(checkpoint, torch_dtype=torch.float32, **SMALL).transformer
    prepare_lora_model(donor, rank=2)
    adapter = save_rm_adapter(donor, tmp_path / "adapter")
    pipe = load_lumina_dimoo(checkpoint, torch_dtype=torch.float32, rm_adapter=adapter, **SMALL)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.transformer.config.rm_post_trained is True
    assert pipe.scheduler.__class__.__name__ == "ReflectiveMaskingScheduler"
    out = pipe(image, "make the sky red", num_turns=1, output_type="latent")
    assert out.images.shape == (1, 4, 4) and out.num_forward_passes >= 1
    # Merged at load for inference (no LoRA layers or [MASK]-row hook left); merge_adapter=False keeps them apart.
    assert not getattr(pipe.transformer, "peft_config", None) and not hasattr(pipe.transformer, "rm_mask_row")
    apart = load_lumina_dimoo(checkpoint, torch_dtype=torch.float32, rm_adapter=adapter, merge_adapter=False, **SMALL)
    assert apart.transformer.peft_config and hasattr(apart.transformer, "rm_mask_row")


# ---- 2-3. what the model reads: the reference's crop, prompt and image splice ----------------------------------
@pytest.mark.parametrize("strategy", ["reflective", "regenerate"])
def test_edit_end_to_end_with_real_ids(pipe, image, strategy):
    if strategy == "reflective":  # the reflective path itself, as with an RM adapter
        pipe.transformer.register_to_config(rm_post_trained=None)
    seen, handle = _capture_inputs(pipe)
    try:
        own = dict(num_turns=2, reveal_steps=2) if strategy == "reflective" else dict(num_inference_steps=3)
        out = pipe(image, "make the sky red", strategy=strategy, generator=torch.Generator().manual_seed(0),
                   paste_back=False, **own)  # the token region itself, not the composited one
    finally:
        handle.remove()
        pipe.transformer.register_to_config(rm_post_trained=False)
    assert out.images[0].size == image.size and out.edit_masks[0].shape == (64, 80)
    # 80x64 onto the 4-cell frontier (4,1) (3,1) (2,1) (2,2) (1,2) (1,3) (1,4): (2,2) keeps min(64/80, 64/64) /
    # max(...) = 0.8 of the cover, (2,1) 0.625; so a 64x64 crop, scale max(64/80, 64/64) = 1: 2x2 cells of 32 px =
    # 4x4 codes (16x VQ), centred at columns 8..71.
    assert out.edit_region_tokens.shape == (1, 4, 4)
    assert 0 < out.num_forward_passes == len(seen)
    ids = seen[0]
    assert len(ids) == 3  # conditional, no-instruction, no-image branches, packed in one row
    cond, uncond, noimg = ids
    for row, images in ((cond, 2), (uncond, 2), (noimg, 1)):
        assert (row == L.image_begin_id).sum() == images and (row == L.image_end_id).sum() == images
        assert (row == L.end_of_row_id).sum() == 4 * images  # one end-of-row per image row
        assert (row == L.answer_begin_id).sum() == 1 and (row == L.answer_end_id).sum() == 1
    assert (uncond == L.uncondition_id).sum() == 1 and (cond == L.uncondition_id).sum() == 0
    assert len(noimg) < len(cond) and not any((row == L.pad_token_id).any() for row in ids)  # packed: no padding
    codes = torch.cat(ids)[torch.cat(ids) >= L.image_code_offset]
    assert codes.numel() and int(codes.max()) < L.vocab_size
    start = int((cond == L.answer_begin_id).nonzero()) + 1  # the target block: after <answer><IMAGE>
    target = cond[L.image_positions(start, 4, 4)]
    if strategy == "regenerate":
        assert (target == L.mask_token_id).all()
    else:  # reflective starts from the source's codes
        source = cond[L.image_positions(int((cond == L.image_begin_id).nonzero()[0]), 4, 4)]
        assert torch.equal(target, source)
    tokens = out.edit_region_tokens[0]  # token region -> pixels: 16 px per code inside the centred crop
    expected = tokens.repeat_interleave(16, 0).repeat_interleave(16, 1).numpy()
    assert np.array_equal(out.edit_masks[0][:, 8:72], expected)
    assert not out.edit_masks[0][:, :8].any() and not out.edit_masks[0][:, 72:].any()


def _conditional_row(pipe, image, tokenizer):
    saved = pipe.tokenizer
    pipe.tokenizer = tokenizer
    seen, handle = _capture_inputs(pipe)
    try:
        pipe(image, "make it red", num_inference_steps=1, output_type="latent", guidance_scale=0,
             image_guidance_scale=0)
    finally:
        handle.remove()
        pipe.tokenizer = saved
    return seen[0][0].tolist()


def test_prompt_with_bos_eos_splices_the_image_before_eos(pipe, image):
    tok = tokenizer_adding_bos_eos()
    row = _conditional_row(pipe, image, tok)
    prompt = tok(f"<system>{L.system_prompt}</system><user>make it red</user>")["input_ids"]
    assert prompt[0] == BOS[1] and prompt[-2:] == [126343, EOS[1]]  # ... </user> EOS
    begin, end = row.index(L.image_begin_id), row.index(L.image_end_id)
    assert row[:begin] == prompt[:-1]  # BOS ... </user>, then the source image
    assert row[end + 1] == EOS[1] and row[end + 2:end + 4] == [L.answer_begin_id, L.image_begin_id]
    assert end - begin - 1 == 4 * (4 + 1)  # 4 rows of 4 codes + end-of-row


def test_prompt_with_split_user_close_splices_before_its_last_piece(pipe, image):
    tok = tokenizer_splitting_user_close()
    row = _conditional_row(pipe, image, tok)
    pieces = tok.convert_tokens_to_ids(["<", "/", "user", ">"])
    begin, end = row.index(L.image_begin_id), row.index(L.image_end_id)
    assert row[begin - 3:begin] == pieces[:3] and row[end + 1] == pieces[3]  # "< / user" image ">"
    assert row[end + 2] == L.answer_begin_id


def test_tokenizer_check_reads_only_the_tag_the_reference_tokenises(checkpoint, tmp_path):
    from rm_edit.lumina_tokenizer import build_stand_in_tokenizer, check_tokenizer_layout

    check_tokenizer_layout(tokenizer_splitting_user_close())  # no <IMAGE> / </user> tokens: still accepted
    check_tokenizer_layout(tokenizer_adding_bos_eos())
    with pytest.raises(ValueError, match="<uncondition>"):  # the builder runs the check
        build_stand_in_tokenizer(special_tokens={"<uncondition>": 126300, "<|pad|>": 126339, "<|mdm_mask|>": 126336})


# ---- 4. the sampler's clamp ---------------------------------------------------------------------------------------
def test_regenerate_leaves_one_code_masked_until_the_last_step():
    from rm_edit.pipelines.lumina_dimoo import lumina_regenerate_scheduler

    # 4 masked codes, 8 steps: after step 6 floor(4 cos(pi/2 * 7/8)) = floor(4 * 0.195) = 0, clamped to 1;
    # after step 7 (the last) 0. Unclamped, step 6 would already reveal the last code.
    masked_after = []
    for clamp in (1, 0):
        s = lumina_regenerate_scheduler(num_inference_steps=8, min_masked_until_last=clamp)
        state = torch.full((1, 4), 8192)
        counts = []
        for t in s.timesteps:
            state = s.step(torch.randn(1, 4, 8193, generator=torch.Generator().manual_seed(int(t))), t, state,
                           generator=torch.Generator().manual_seed(0)).prev_sample
            counts.append(int((state == 8192).sum()))
        masked_after.append(counts)
    # floor(4 cos(pi/2 (s+1)/8)) for s = 0..5: 3.92->3, 3.70->3, 3.33->3, 2.83->2, 2.22->2, 1.53->1
    assert masked_after[0] == [3, 3, 3, 2, 2, 1, 1, 0]
    assert masked_after[1] == [3, 3, 3, 2, 2, 1, 0, 0]


# ---- 5. loading straight into the target dtype, one tensor at a time ---------------------------------------------
def test_loader_assigns_one_tensor_at_a_time_in_the_target_dtype(checkpoint, monkeypatch):
    from rm_edit.transformer import LLaDATransformer

    calls = []
    original = LLaDATransformer.load_state_dict

    def spy(self, state, *args, **kwargs):
        calls.append({k: (v.dtype, v.device.type) for k, v in state.items()})
        return original(self, state, *args, **kwargs)

    monkeypatch.setattr(LLaDATransformer, "load_state_dict", spy)
    model = LLaDATransformer.from_llada_checkpoint(checkpoint, torch_dtype=torch.float32)
    n_params = len(model.state_dict())
    assert len(calls) == n_params and all(len(c) == 1 for c in calls)  # never a whole state dict
    assert {v for c in calls for v in c.values()} == {(torch.float32, "cpu")}  # cast before assignment
    with safe_open(str(next(checkpoint.glob("model-*.safetensors"))), framework="pt") as f:
        name = next(iter(f.keys()))
        stored = f.get_tensor(name)
    assert stored.dtype == torch.bfloat16
    assert torch.equal(model.state_dict()[name[len("model."):]], stored.float())


# ---- 6. bf16 guidance branches run unpadded ---------------------------------------------------------------------
def test_bf16_branches_equal_each_branch_run_alone(checkpoint, pipe):
    from rm_edit.layout import build_edit_sequence, encode_edit_prompts, pad_sequences
    from rm_edit.pipelines.guidance_branches import forward_branches
    from rm_edit.transformer import LLaDATransformer

    model = LLaDATransformer.from_llada_checkpoint(checkpoint, torch_dtype=torch.bfloat16)
    heads, uncond, tail = encode_edit_prompts(pipe.tokenizer, L, ["make the sky red"])
    source = torch.randint(0, 8192, (4, 4), generator=torch.Generator().manual_seed(0))
    seqs = [build_edit_sequence(L, heads[0], source, None, tail), build_edit_sequence(L, uncond, source, None, tail),
            build_edit_sequence(L, heads[0], None, None, tail, grid_size=(4, 4))]
    batch = pad_sequences(seqs, L.pad_token_id)
    assert batch.attention_mask[2].sum() < batch.attention_mask[0].sum()  # the no-image branch is padded
    with torch.no_grad():
        got = forward_branches(model, batch)
        alone = torch.cat([model(s.input_ids[None], output_positions=s.target_positions[None]).logits for s in seqs])
    assert got.dtype == torch.bfloat16 and torch.equal(got, alone)


# ---- the converted folder ---------------------------------------------------------------------------------------
def test_kv_cache_edit_with_lumina_layout(pipe, image):
    """Reveal steps reuse cached keys/values of the system prompt, instruction and source image (padded guidance
    branches of different lengths included) and recompute only the masked and changed target codes."""
    pipe.transformer.register_to_config(rm_post_trained=None)
    try:
        kwargs = dict(strategy="reflective", num_turns=2, reveal_steps=3, generator=torch.Generator().manual_seed(0))
        out = pipe(image, "make the sky red", use_kv_cache=True, output_type="latent", **kwargs)
    finally:
        pipe.transformer.register_to_config(rm_post_trained=False)
    stats = pipe._kv_cache
    assert stats.full_passes >= 1 and stats.full_passes + stats.cached_passes == out.num_forward_passes
    seq_len = stats.input_ids.shape[1]
    assert stats.cached_passes > 0 and stats.computed_positions < stats.cached_passes * 3 * seq_len / 4
    assert out.images.shape == (1, 4, 4) and int(out.images.max()) < L.codebook_size


def test_convert_then_reload_gives_identical_edits(checkpoint, image, tmp_path):
    from rm_edit.cli import COMMANDS

    assert "convert" in COMMANDS  # `rm-edit convert lumina-dimoo SRC DST` runs the same parser
    dst = tmp_path / "converted"
    assert lumina_main(["convert", "lumina-dimoo", str(checkpoint), str(dst), "--max-shard-size", "3MB"]) == 0
    assert (dst / "model_index.json").is_file()
    assert (dst / "transformer" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    shard = next((dst / "transformer").glob("*.safetensors"))
    with safe_open(str(shard), framework="pt") as f:  # stored dtype kept (the release is bf16)
        assert f.get_slice(next(iter(f.keys()))).get_dtype() == "BF16"
    assert json.loads((dst / "transformer" / "config.json").read_text())["rm_post_trained"] is False
    sched = json.loads((dst / "scheduler" / "scheduler_config.json").read_text())
    assert sched["_class_name"] == "LuminaRegenerateScheduler"
    assert (sched["num_inference_steps"], sched["temperature"], sched["min_masked_until_last"]) == (64, 1.0, 1)
    again = ReflectiveMaskingEditPipeline.from_pretrained(dst, torch_dtype=torch.float32)
    again.set_progress_bar_config(disable=True)
    assert again.layout == L and again.config.crop_multiple == 32 and again.config.max_crop_cells == 256
    assert again.config.crop_fill_budget is True and again.image_processor.config.fill_budget is True
    assert again.config.guidance_scale == 2.5 and again.config.image_guidance_scale == 4.0
    assert again.transformer.config.rm_post_trained is False
    with pytest.raises(ValueError, match="RM adapter"):
        again(image, "make the sky red", strategy="reflective", output_type="latent")
    pipe = load_lumina_dimoo(checkpoint, torch_dtype=torch.float32, **SMALL)
    again = ReflectiveMaskingEditPipeline.from_pretrained(dst, torch_dtype=torch.float32, **SMALL)
    for p in (pipe, again):
        p.set_progress_bar_config(disable=True)
    kw = dict(num_inference_steps=2, output_type="latent")
    a = pipe(image, "make the sky red", generator=torch.Generator().manual_seed(1), **kw)
    b = again(image, "make the sky red", generator=torch.Generator().manual_seed(1), **kw)
    assert a.images.shape == (1, 4, 4)
    assert torch.equal(a.images, b.images) and torch.equal(a.edit_region_tokens, b.edit_region_tokens)


def test_cli_edit_on_the_frontier(checkpoint, tmp_path, capsys):
    """`rm-edit edit --model <converted folder>` at 300x200 and 512x384: the output and mask at the input's size,
    the code grid on Lumina-DiMOO's crop-size frontier."""
    from rm_edit.cli import main

    dst = tmp_path / "converted"
    assert lumina_main(["convert", "lumina-dimoo", str(checkpoint), str(dst)]) == 0
    rng = np.random.default_rng(0)
    # 300x200 (aspect 1.5): of the frontier's grids (19,13) keeps min(608/300, 416/200) / max(...) = 2.0267/2.08 =
    # 0.974 of the cover, (20,12) 1.92/2.1333 = 0.9, (18,14) 1.92/2.24 = 0.857: 608x416 px = 38x26 codes = 988.
    # 512x384 (aspect 1.333): (18,14) keeps 1.125/1.1667 = 0.9643, (18,13) 1.0833/1.125 = 0.9630: 576x448 px =
    # 36x28 codes = 1008.
    for (w, h), codes in (((300, 200), 988), ((512, 384), 1008)):
        src = tmp_path / f"in_{w}x{h}.png"
        PIL.Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(src)
        out, mask = tmp_path / f"out_{w}x{h}.png", tmp_path / f"mask_{w}x{h}.png"
        capsys.readouterr()
        assert main(["edit", str(src), "make the sky red", "-o", str(out), "--model", str(dst), "--steps", "2",
                     "--save-mask", str(mask), "--device", "cpu"]) == 0
        printed = capsys.readouterr().out
        assert f"of {codes} image codes changed" in printed and "2 forward passes" in printed
        assert PIL.Image.open(out).size == (w, h) and PIL.Image.open(mask).size == (w, h)


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
    """The script in benchmarks/ (not installed with the package) runs as its docstring says: every section."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    run = subprocess.run([sys.executable, str(script), "--tiny", "--cpu", "--batch-sizes", "1", "--regen-steps", "2",
                          "--json", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["codes"] == 16
    rows = {r["what"]: r for r in results["rows"]}
    load = next(r for r in results["rows"] if r["section"] == "load")
    assert load["weights_equal"] is True and load["seconds"] > 0
    loop = next(r for r in results["rows"] if r["section"] == "train loop")
    assert loop["steps"] == 3 and set(loop["losses"]) == {"reveal", "mask", "keep"}
    edits = [r for r in results["rows"] if r["section"] == "edit"]
    assert [r["what"] for r in edits] == ["reflective + HER, batch 1", "reflective + HER + kv cache, batch 1",
                                          "regenerate, batch 1", "regenerate + kv cache, batch 1"]
    assert rows["regenerate, batch 1"]["passes"] == 2 and all(r["passes"] > 0 for r in edits)
    lora = next(r for r in results["rows"] if r["section"] == "lora")
    assert lora["s_per_step"] > 0 and set(lora["losses"]) == {"reveal", "mask", "keep"}
    assert re.search(r"^section +\| what +\|", run.stdout, re.M)  # the printed table


def test_gpu_check_without_cuda_stops_at_once_with_one_line():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert run.returncode == 1 and run.stderr.strip().count("\n") == 0
    assert run.stderr.startswith("gpu_check: no CUDA device here")

def test_prompt_tokenisation_unchanged_for_a_tokenizer_that_adds_nothing():
    """The stand-in adds no BOS / EOS and keeps </user> whole: the reference's whole-prompt tokenisation then
    equals the two pieces this project tokenised before (so models trained that way read the same ids)."""
    from rm_edit.layout import edit_prompt_text, encode_edit_prompts
    from rm_edit.lumina_tokenizer import build_stand_in_tokenizer

    tok = build_stand_in_tokenizer()
    heads, uncond, tail = encode_edit_prompts(tok, L, ["make the sky red", "add a hat"])
    pieces = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert heads == [pieces(edit_prompt_text(L, t)[0]) for t in ("make the sky red", "add a hat")]
    assert uncond == pieces(edit_prompt_text(L, None)[0]) and uncond[-1] == L.uncondition_id
    assert tail == [126343]  # </user>


def test_frontier_crop_hand_worked():
    from rm_edit.vq import crop_for_vq, crop_size_frontier

    # 4 cells: the walk (4,1) (3,1) (2,1) -> add a row: (2,2) -> (1,2) (1,3) (1,4); aspect <= 4 keeps them all.
    assert crop_size_frontier(4, 32) == [(128, 32), (96, 32), (64, 32), (64, 64), (32, 64), (32, 96), (32, 128)]
    full = crop_size_frontier(256, 32)
    assert (512, 512) in full and (512, 480) in full and (1024, 256) in full and (1056, 224) not in full  # 33/7 > 4
    c = crop_for_vq(300, 200, 32, 256, fill_budget=True)
    # (19,13): scale max(608/300, 416/200) = 2.08 -> 624x416, centred: left (624 - 608) // 2 = 8
    assert (c.grid, c.resized_size, c.box, c.halvings) == ((19, 13), (624, 416), (8, 0, 616, 416), 0)
    c = crop_for_vq(512, 384, 32, 256, fill_budget=True)
    # (18,14): scale max(576/512, 448/384) = 1.1667 -> round(597.3) x 448 = 597x448, left (597 - 576) // 2 = 10
    assert (c.grid, c.resized_size, c.box) == ((18, 14), (597, 448), (10, 0, 586, 448))
    c = crop_for_vq(2000, 1500, 32, 256, fill_budget=True)
    # same aspect as 512x384: (18,14); 2000x1500 >= 2 x 576x448, halved once to 1000x750 (not again: 1000 < 1152);
    # scale max(0.576, 0.5973) -> round(597.3) x 448
    assert (c.grid, c.halvings, c.resized_size, c.box) == ((18, 14), 1, (597, 448), (10, 0, 586, 448))
    c = crop_for_vq(64, 64, 32, 256, fill_budget=True)  # up, not only down: 16x16 cells = 1024 codes
    assert (c.grid, c.resized_size) == ((16, 16), (512, 512))
    assert crop_for_vq(64, 64, 32, 256).grid == (2, 2)  # the default rule only downsizes


def test_load_with_compile_compiles_the_blocks_once_on_the_device(checkpoint, monkeypatch):
    """load_lumina_dimoo(compile=True) reaches LLaDATransformer.compile_blocks after the move to ``device``;
    recorded, not run (torch.compile is measured on GPU by benchmarks/gpu_check.py --compile)."""
    from rm_edit.transformer import LLaDATransformer

    calls = []
    monkeypatch.setattr(LLaDATransformer, "compile_blocks",
                        lambda self, **kw: calls.append(next(self.parameters()).device.type) or self)
    load_lumina_dimoo(checkpoint, **SMALL)
    assert calls == []
    pipe = load_lumina_dimoo(checkpoint, device="cpu", compile=True, **SMALL)
    assert calls == ["cpu"] and isinstance(pipe.transformer, LLaDATransformer)
