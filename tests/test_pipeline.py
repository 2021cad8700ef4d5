"""Pipeline tests of the diffusers kind for ReflectiveMaskingEditPipeline (tiny random-weight components).

Covers: save/load round trip, batch == single items with per-item generators, callback_on_step_end (read,
replace, interrupt), user region masks, paste-back, the Reflective Masking fixed point, History Reference,
output types, input errors, device/dtype moves and CPU offload hooks, and a bf16 load.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveEditOutput, ReflectiveMaskingEditPipeline
from rm_edit.transformer import LLaDAOutput, count_parameters
from rm_edit.vq import crop_for_vq, encode_to_codes, preprocess_image
from tests.conftest import make_tiny_pipeline

PROMPT = "make the red circle blue"
CELL = 8  # make_tiny_pipeline: crop_multiple=8, 64x64 shapes images -> 8x8 codes
K = 256  # codebook size of the shapes layout ([MASK] is K in code space)

# A user region that is not cell-aligned: x in [12, 30), y in [17, 39) touches token cols 1..3, rows 2..4.
MASK_BOX = (12, 17, 30, 39)


def _new_pipe(seed: int = 0) -> ReflectiveMaskingEditPipeline:
    pipe = make_tiny_pipeline(seed)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe():
    """This module's own pipeline (tests that patch the model do so with monkeypatch and undo it)."""
    return _new_pipe()


@pytest.fixture(scope="module")
def saved_dir(pipe, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_pipeline")
    pipe.save_pretrained(folder)
    return folder


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _source_codes(pipe, image: PIL.Image.Image) -> torch.Tensor:
    """The source's codes, computed without the pipeline's sampling loop: (h, w)."""
    x, _ = preprocess_image(image, pipe.config.crop_multiple, pipe.config.max_crop_cells)
    return encode_to_codes(pipe.vqvae, x)[0]


def _user_mask(size=(64, 64), box=MASK_BOX) -> PIL.Image.Image:
    m = PIL.Image.new("L", size, 0)
    m.paste(255, box)
    return m


def _expected_region(h: int = 8, w: int = 8, box=MASK_BOX) -> torch.Tensor:
    """Token region of ``box``: a token is inside if any of its pixels is."""
    l, t, r, b = box
    region = torch.zeros(h, w, dtype=torch.bool)
    region[t // CELL : (b - 1) // CELL + 1, l // CELL : (r - 1) // CELL + 1] = True
    return region


def _tokens_to_pixels(tokens: torch.Tensor) -> np.ndarray:
    """(h, w) token mask -> (h*8, w*8) pixel mask (64x64 inputs are not resized or cropped)."""
    return tokens.numpy().repeat(CELL, 0).repeat(CELL, 1)


def _patch_mask_logit(monkeypatch, pipe, mask_logit: torch.Tensor | float, count: list | None = None):
    """Make the transformer's [MASK] logit ``mask_logit`` at every target position (broadcast over (B, N))."""
    original = pipe.transformer.forward

    def forward(*args, **kwargs):
        if count is not None:
            count.append(1)
        logits = original(*args, **kwargs).logits.clone()
        classes = kwargs.get("output_classes")  # the pipeline asks for the image codes then [MASK] only
        column = pipe.layout.mask_token_id if classes is None else classes.tolist().index(pipe.layout.mask_token_id)
        packing = kwargs.get("packing")  # branches packed in one row: (1, S * N) -> (S, N) per branch
        per_branch = logits if packing is None else logits.view(*packing.target_positions.shape, -1)
        per_branch[..., column] = torch.as_tensor(mask_logit, dtype=logits.dtype)
        return LLaDAOutput(logits=logits)

    monkeypatch.setattr(pipe.transformer, "forward", forward)


# ---- save / load ----------------------------------------------------------------------------------------
def test_model_index_names_rm_edit_classes(saved_dir):
    index = json.loads((saved_dir / "model_index.json").read_text())
    assert index["_class_name"] == "ReflectiveMaskingEditPipeline"
    assert index["transformer"] == ["rm_edit.transformer", "LLaDATransformer"]
    assert index["scheduler"] == ["rm_edit.schedulers", "ReflectiveMaskingScheduler"]
    assert index["vqvae"] == ["rm_edit.vq", "VQTokenizer"]
    assert index["layout"] == "shapes" and index["crop_multiple"] == CELL


@pytest.mark.parametrize("strategy", ["reflective", "regenerate"])
def test_save_load_round_trip_identical_outputs(pipe, saved_dir, pil_images, strategy):
    loaded = ReflectiveMaskingEditPipeline.from_pretrained(saved_dir)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded, ReflectiveMaskingEditPipeline)
    public = lambda cfg: {k: v for k, v in cfg.items() if not k.startswith("_")}  # noqa: E731
    assert type(loaded.scheduler) is type(pipe.scheduler)
    assert public(loaded.scheduler.config) == public(pipe.scheduler.config)
    assert type(loaded.transformer) is type(pipe.transformer) and loaded.layout == pipe.layout
    kw = dict(strategy=strategy, num_inference_steps=4, temperature=1.0)
    # One call per pipeline: the images, and the codes of every step (the last is the "latent" output).
    a = pipe(pil_images[0], PROMPT, generator=_gen(3), output_type="np", return_trajectory=True, **kw)
    b = loaded(pil_images[0], PROMPT, generator=_gen(3), output_type="np", return_trajectory=True, **kw)
    np.testing.assert_array_equal(a.images, b.images)
    assert len(a.trajectory) == len(b.trajectory) == a.num_forward_passes + 1 == b.num_forward_passes + 1
    for step_a, step_b in zip(a.trajectory, b.trajectory):
        assert torch.equal(step_a["codes"], step_b["codes"]) and torch.equal(step_a["remasked"], step_b["remasked"])
    assert torch.equal(a.edit_region_tokens, b.edit_region_tokens)
    latent = loaded(pil_images[0], PROMPT, generator=_gen(3), output_type="latent", **kw).images
    assert torch.equal(latent, a.trajectory[-1]["codes"])


# ---- batching -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["reflective", "regenerate"])
def test_batch_equals_single_items_with_per_item_generators(pipe, shapes_examples, pil_images, strategy):
    images, prompts, seeds = pil_images[:3], [e.instruction for e in shapes_examples[:3]], [11, 22, 33]
    assert len({len(p) for p in prompts}) > 1 or len(set(prompts)) > 1  # rows really differ
    kw = dict(strategy=strategy, temperature=1.0, num_inference_steps=4, output_type="latent")
    batch = pipe(images, prompts, generator=[_gen(s) for s in seeds], **kw)
    assert batch.images.shape[0] == 3
    for i, s in enumerate(seeds):
        single = pipe(images[i], prompts[i], generator=_gen(s), **kw)
        assert torch.equal(batch.images[i], single.images[0]), f"row {i} differs from its single run"
        assert torch.equal(batch.edit_region_tokens[i], single.edit_region_tokens[0])
    # The seeds matter (temperature > 0): another seed for row 0 changes its codes.
    other = pipe(images[0], prompts[0], generator=_gen(999), **kw)
    assert not torch.equal(other.images[0], batch.images[0])


# ---- callback_on_step_end -------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["reflective", "regenerate"])
def test_callback_called_once_per_step_and_reads_state(pipe, pil_images, strategy):
    calls = []

    def callback(p, i, t, kwargs):
        assert p is pipe
        calls.append((i, int(t), kwargs["state"].clone(), kwargs["logits"].shape))
        return {}

    out = pipe(pil_images[0], PROMPT, strategy=strategy, num_inference_steps=5, output_type="latent",
               return_trajectory=True, callback_on_step_end=callback,
               callback_on_step_end_tensor_inputs=["state", "logits"])
    assert len(calls) == out.num_forward_passes >= 2
    assert [c[0] for c in calls] == list(range(len(calls)))
    assert all(b[1] > a[1] for a, b in zip(calls, calls[1:]))
    for step, (_, _, state, logits_shape) in enumerate(calls):
        assert state.shape == (1, 64) and logits_shape == (1, 64, K + 1)
        assert torch.equal(state.view(1, 8, 8), out.trajectory[step + 1]["codes"])
    if strategy == "regenerate":
        assert out.num_forward_passes == 5


def test_callback_unknown_tensor_input_rejected(pipe, pil_images):
    with pytest.raises(ValueError, match="not one of"):
        pipe(pil_images[0], PROMPT, callback_on_step_end=lambda *a: {}, callback_on_step_end_tensor_inputs=["foo"])


def test_callback_can_replace_state(pipe, pil_images):
    forced_code = 7
    forced = {}

    def callback(p, i, t, kwargs):
        state = kwargs["state"]
        if i == 0:
            forced["positions"] = state == K
            return {"state": torch.where(state == K, torch.full_like(state, forced_code), state)}
        return {}

    out = pipe(pil_images[0], PROMPT, strategy="regenerate", num_inference_steps=4, temperature=0.0,
               output_type="latent", callback_on_step_end=callback)
    positions = forced["positions"].view(1, 8, 8)
    assert positions.sum() > 0  # step 0 of 4 leaves most positions masked
    assert (out.images[positions] == forced_code).all()
    plain = pipe(pil_images[0], PROMPT, strategy="regenerate", num_inference_steps=4, temperature=0.0,
                 output_type="latent")
    assert not (plain.images[positions] == forced_code).all()  # the code did come from the callback


@pytest.mark.parametrize("strategy", ["reflective", "regenerate"])
def test_callback_interrupt_stops_the_loop(monkeypatch, pipe, pil_images, strategy):
    kw = dict(strategy=strategy, num_inference_steps=6, output_type="latent")
    full_count: list = []
    _patch_mask_logit(monkeypatch, pipe, 1e4, count=full_count)  # reflective: never converges
    full = pipe(pil_images[0], PROMPT, **kw)
    assert full.num_forward_passes == len(full_count) == 6

    def stop(p, i, t, kwargs):
        if i == 0:
            p._interrupt = True
        return {}

    count: list = []
    _patch_mask_logit(monkeypatch, pipe, 1e4, count=count)
    out = pipe(pil_images[0], PROMPT, callback_on_step_end=stop, return_trajectory=True, **kw)
    assert out.num_forward_passes == len(count) == 1
    assert len(out.trajectory) == 2
    assert (out.trajectory[1]["codes"] == K).any()  # interrupted with [MASK] still in the state ...
    assert (out.images < K).all() and (out.images >= 0).all()  # ... but none reaches the output
    # The flag does not leak into the next call.
    again = pipe(pil_images[0], PROMPT, **kw)
    assert again.num_forward_passes == 6


# ---- region masks and paste-back -----------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["reflective", "regenerate"])
def test_mask_image_confines_the_edit(monkeypatch, pipe, pil_images, strategy):
    image = pil_images[1]
    source = _source_codes(pipe, image)
    region = _expected_region()
    # A model that wants to re-mask everything: without a region, reflective would rewrite the whole grid.
    _patch_mask_logit(monkeypatch, pipe, 1e4)
    kw = dict(strategy=strategy, num_inference_steps=4, output_type="latent", paste_back=False)  # the token region
    out = pipe(image, PROMPT, mask_image=_user_mask(), **kw)
    codes, chosen = out.images[0], out.edit_region_tokens[0]
    assert torch.equal(codes[~region], source[~region])
    assert not (chosen & ~region).any()
    assert chosen.any() and not torch.equal(codes[region], source[region])  # something did change inside
    # pixel-level edit mask lies within the user's region grown to whole cells
    assert not (out.edit_masks[0] & ~_tokens_to_pixels(region)).any()
    if strategy == "reflective":
        assert torch.equal(chosen, region)  # every held code in the region was re-masked
        free = pipe(image, PROMPT, **kw)
        assert (free.edit_region_tokens[0] & ~region).any()  # the mask is what confined it


def test_mask_image_size_mismatch_rejected(pipe, pil_images):
    with pytest.raises(ValueError, match="mask size"):
        pipe(pil_images[0], PROMPT, mask_image=_user_mask(size=(32, 32)))


@pytest.mark.parametrize("strategy", ["reflective", "regenerate"])
@pytest.mark.parametrize("size", [(64, 64), (77, 93), (150, 61)])  # as is; resized up; resized down + cropped
def test_paste_back_keeps_every_pixel_outside_the_returned_mask(pipe, pil_images, strategy, size):
    image = pil_images[2].resize(size, PIL.Image.Resampling.BICUBIC)
    src = np.asarray(image.convert("RGB"))
    user = PIL.Image.new("L", size, 0)
    user.paste(255, (size[0] // 5, size[1] // 4, size[0] // 2, size[1] // 2))
    kw = dict(strategy=strategy, num_inference_steps=4, mask_image=user, generator=_gen(0), temperature=1.0)
    out = pipe(image, PROMPT, paste_back=True, **kw)
    assert out.edit_region_tokens[0].any()
    inside = out.edit_masks[0]
    assert inside.shape == src.shape[:2] and inside.any() and (~inside).any()
    edited = np.asarray(out.images[0])
    assert edited.shape == src.shape
    np.testing.assert_array_equal(edited[~inside], src[~inside])  # the promise, bit for bit
    assert (edited[inside] != src[inside]).any()  # the edit itself is visible
    # The mask is the composited region, not the chosen tokens alone: the decoder's reach (one token) and
    # the feathering are inside it, so it is larger than the token region at pixel size.
    chosen = pipe.image_processor.tokens_to_pixels(out.edit_region_tokens[0], crop_for_vq(*size, CELL, 64))
    assert not (chosen & ~inside).any() and inside.sum() > chosen.sum()
    latent = pipe(image, PROMPT, paste_back=True, output_type="latent", **kw)
    np.testing.assert_array_equal(latent.edit_masks[0], inside)  # the same region without decoding

    raw = np.asarray(pipe(image, PROMPT, paste_back=False, **kw).images[0])
    assert (raw[~inside] != src[~inside]).any()  # the random VQ does not reconstruct the source exactly


# ---- the Reflective Masking fixed point ---------------------------------------------------------------
def test_reflective_never_mask_is_fixed_point_after_one_pass(monkeypatch, pipe, pil_images):
    image = pil_images[0]
    count: list = []
    _patch_mask_logit(monkeypatch, pipe, -1e4, count=count)
    out = pipe(image, PROMPT, strategy="reflective", num_turns=3, output_type="latent")
    assert out.num_forward_passes == len(count) == 1
    assert torch.equal(out.images[0], _source_codes(pipe, image))
    assert not out.edit_region_tokens.any() and not out.edit_masks[0].any()
    # Nothing chosen: paste-back returns the source image pixel for pixel.
    pasted = pipe(image, PROMPT, strategy="reflective", paste_back=True, output_type="pil").images[0]
    np.testing.assert_array_equal(np.asarray(pasted), np.asarray(image.convert("RGB")))


def test_reflective_always_mask_positions_are_in_edit_region(monkeypatch, pipe, pil_images):
    image = pil_images[0]
    wanted = torch.zeros(8, 8, dtype=torch.bool)
    wanted[1, 2] = wanted[5, 5] = wanted[6, 0] = True
    mask_logit = torch.where(wanted.reshape(-1), torch.tensor(1e4), torch.tensor(-1e4))
    _patch_mask_logit(monkeypatch, pipe, mask_logit)
    out = pipe(image, PROMPT, strategy="reflective", num_turns=2, output_type="latent", paste_back=False)
    assert torch.equal(out.edit_region_tokens[0], wanted)
    assert out.num_forward_passes == 2 * (1 + pipe.scheduler.config.reveal_steps)  # never converges
    source = _source_codes(pipe, image)
    assert torch.equal(out.images[0][~wanted], source[~wanted])
    assert (out.images[0] < K).all()
    assert out.edit_masks[0].sum() == 3 * CELL * CELL


# ---- History Reference --------------------------------------------------------------------------------
def test_history_alpha_zero_equals_no_history(pipe, pil_images):
    kw = dict(strategy="reflective", temperature=1.0, output_type="np")
    a = pipe(pil_images[0], PROMPT, generator=_gen(5), use_history=False, **kw)
    b = pipe(pil_images[0], PROMPT, generator=_gen(5), use_history=True, history_alpha=0.0, **kw)
    np.testing.assert_array_equal(a.images, b.images)
    assert torch.equal(a.edit_region_tokens, b.edit_region_tokens)
    assert a.num_forward_passes == b.num_forward_passes


def test_history_alpha_positive_runs_and_adds_no_parameters(pipe, pil_images):
    n_params, keys = count_parameters(pipe.transformer), set(pipe.transformer.state_dict())
    seen: dict[bool, list] = {False: [], True: []}

    def record(use):
        def cb(p, i, t, kwargs):
            seen[use].append(kwargs["logits"].clone())
            return {}
        return cb

    kw = dict(strategy="reflective", num_turns=2, output_type="latent", callback_on_step_end_tensor_inputs=["logits"])
    plain = pipe(pil_images[0], PROMPT, callback_on_step_end=record(False), **kw)
    her = pipe(pil_images[0], PROMPT, use_history=True, history_alpha=5.0, history_decay=0.9,
               callback_on_step_end=record(True), **kw)
    assert (her.images < K).all() and her.num_forward_passes >= 2 and plain.num_forward_passes >= 2
    assert count_parameters(pipe.transformer) == n_params and set(pipe.transformer.state_dict()) == keys
    torch.testing.assert_close(seen[True][0], seen[False][0], rtol=0, atol=0)  # no history before step 1
    assert not torch.allclose(seen[True][1], seen[False][1])  # from step 1 on, HER changes the model's input


# ---- outputs ------------------------------------------------------------------------------------------
def test_output_types(pipe, pil_images):
    images = [im.resize((70, 60), PIL.Image.Resampling.BICUBIC) for im in pil_images[:2]]
    gw, gh = crop_for_vq(70, 60, CELL, pipe.config.max_crop_cells).grid
    kw = dict(strategy="reflective", generator=None)

    out = pipe(images, PROMPT, output_type="pil", **kw)
    assert isinstance(out, ReflectiveEditOutput)
    assert isinstance(out.images, list) and len(out.images) == 2
    assert all(isinstance(im, PIL.Image.Image) and im.size == (70, 60) and im.mode == "RGB" for im in out.images)
    assert isinstance(out.num_forward_passes, int) and out.num_forward_passes >= 1
    assert len(out.edit_masks) == 2
    assert all(m.dtype == bool and m.shape == (60, 70) for m in out.edit_masks)
    assert out.edit_region_tokens.shape == (2, gh, gw) and out.edit_region_tokens.dtype == torch.bool
    assert out.trajectory is None

    arr = pipe(images, PROMPT, output_type="np", **kw).images
    assert isinstance(arr, np.ndarray) and arr.shape == (2, 60, 70, 3) and arr.dtype == np.float32
    assert arr.min() >= 0.0 and arr.max() <= 1.0
    np.testing.assert_allclose(arr[0] * 255.0, np.asarray(out.images[0], dtype=np.float32), atol=1e-3)

    pt = pipe(images, PROMPT, output_type="pt", **kw).images
    assert isinstance(pt, torch.Tensor) and pt.shape == (2, 3, 60, 70) and pt.is_floating_point()
    torch.testing.assert_close(pt.permute(0, 2, 3, 1), torch.from_numpy(arr))

    lat = pipe(images, PROMPT, output_type="latent", return_trajectory=True, **kw)
    assert lat.images.shape == (2, gh, gw) and lat.images.dtype == torch.long
    assert ((lat.images >= 0) & (lat.images < K)).all()
    assert len(lat.trajectory) == lat.num_forward_passes + 1
    assert all(step["codes"].shape == (2, gh, gw) for step in lat.trajectory)
    assert torch.equal(lat.trajectory[-1]["codes"], lat.images)

    tup = pipe(images, PROMPT, output_type="latent", return_dict=False, **kw)
    assert isinstance(tup, tuple) and len(tup) == 10
    assert torch.equal(tup[0], lat.images) and torch.equal(tup[2], lat.edit_region_tokens)
    assert tup[3] == lat.num_forward_passes and tup[4] is None
    # per image: the passes it took part in; the call runs until its last row is done, so that row saw them all
    assert len(tup[7]) == 2 and max(tup[7]) == tup[3] and min(tup[7]) >= 1
    # the edit region (codes that changed) lies inside what the reflective sampler re-masked
    assert tup[8].shape == (2, gh, gw) and not (tup[2] & ~tup[8]).any()
    assert tup[9] == [None, None]  # no world entry: nothing is ruled unchanged without the model
    assert torch.equal(tup[5], lat.images)  # codes: for "latent", the images themselves
    # source_codes: the crops' codes, as the VQ encodes them outside the pipeline
    x = torch.cat([preprocess_image(im, CELL, pipe.config.max_crop_cells)[0] for im in images])
    assert torch.equal(tup[6], encode_to_codes(pipe.vqvae, x)) and torch.equal(lat.source_codes, tup[6])

    with pytest.raises(ValueError, match="output_type"):
        pipe(images, PROMPT, output_type="bogus")


# ---- errors -------------------------------------------------------------------------------------------
def test_empty_prompt_rejected(pipe, pil_images):
    for bad in ("", "   "):
        with pytest.raises(ValueError, match="instruction"):
            pipe(pil_images[0], bad)
    with pytest.raises(ValueError, match="instruction"):
        pipe(pil_images[:2], [PROMPT, ""])


def test_prompt_image_count_mismatch_rejected(pipe, pil_images):
    with pytest.raises(ValueError, match="prompts"):
        pipe(pil_images[:3], [PROMPT, PROMPT])


def test_unknown_strategy_rejected(pipe, pil_images):
    with pytest.raises(ValueError, match="strategy"):
        pipe(pil_images[0], PROMPT, strategy="maskgit")


@pytest.mark.parametrize("strategy, option, value", [
    ("regenerate", "num_turns", 2), ("regenerate", "reveal_steps", 2), ("regenerate", "remask_margin", 0.5),
    ("regenerate", "held_code_bias", 1.0), ("regenerate", "max_remask_fraction", 0.5),
    ("reflective", "kv_cache_refresh_every", 2),
])
def test_a_call_refuses_the_other_samplers_options(pipe, pil_images, strategy, option, value):
    """Nothing is silently ignored: an option of the other sampler is one line naming it."""
    with pytest.raises(ValueError, match=f"^{option} is not an option of the {strategy} sampler"):
        pipe(pil_images[0], PROMPT, strategy=strategy, **{option: value})


# ---- devices and dtypes -------------------------------------------------------------------------------
def test_offload_seq_names_registered_components(pipe):
    names = pipe.model_cpu_offload_seq.split("->")
    assert names and all(n in pipe.components for n in names)
    assert all(isinstance(pipe.components[n], torch.nn.Module) for n in names)


def test_to_dtype_converts_every_weight_and_back(pil_images):
    p, reference = _new_pipe(), _new_pipe()
    fp32 = {k: v.clone() for k, v in p.transformer.state_dict().items()}
    assert p.to(torch.bfloat16) is p and p.dtype == torch.bfloat16
    # every weight is the fp32 weight rounded to bf16 (converted here, independently of the pipeline)
    assert all(torch.equal(v, fp32[k].to(torch.bfloat16)) for k, v in p.transformer.state_dict().items())
    assert p.to(torch.float32) is p and p.dtype == torch.float32 and p.device == torch.device("cpu")
    # back in fp32 the rounding stays: p now edits exactly like a pipeline whose weights were rounded by hand
    modules = [m for m in reference.components.values() if isinstance(m, torch.nn.Module)]
    with torch.no_grad():
        for w in (t for m in modules for t in [*m.parameters(), *m.buffers()] if t.is_floating_point()):
            w.copy_(w.to(torch.bfloat16).float())
    kw = dict(output_type="latent", temperature=1.0)
    torch.testing.assert_close(p(pil_images[0], PROMPT, generator=_gen(1), **kw).images,
                               reference(pil_images[0], PROMPT, generator=_gen(1), **kw).images, rtol=0, atol=0)
    # and the rounding is a real change: the unrounded weights are not all bf16 values
    assert any(not torch.equal(v, v.to(torch.bfloat16).float()) for v in fp32.values() if v.is_floating_point())


def test_cpu_offload_hooks_keep_outputs(pil_images):
    p = _new_pipe()
    kw = dict(output_type="np", generator=None, strategy="regenerate", num_inference_steps=3, temperature=0.0)
    reference = p(pil_images[0], PROMPT, **kw).images
    try:
        p.enable_model_cpu_offload(device="cpu")
    except (RuntimeError, ValueError, ImportError, NotImplementedError) as e:
        pytest.skip(f"enable_model_cpu_offload(device='cpu') is not supported by the installed diffusers/accelerate: {e}")
    assert hasattr(p.transformer, "_hf_hook") and hasattr(p.vqvae, "_hf_hook")
    np.testing.assert_array_equal(p(pil_images[0], PROMPT, **kw).images, reference)
    np.testing.assert_array_equal(p(pil_images[0], PROMPT, **kw).images, reference)  # hooks re-armed after a call


def test_bf16_load_runs_end_to_end(saved_dir, pil_images):
    p = ReflectiveMaskingEditPipeline.from_pretrained(saved_dir, torch_dtype=torch.bfloat16)
    p.set_progress_bar_config(disable=True)
    assert p.transformer.dtype == torch.bfloat16
    for strategy in ("reflective", "regenerate"):
        out = p(pil_images[0], PROMPT, strategy=strategy, num_inference_steps=3, output_type="latent",
                generator=_gen(0), temperature=1.0, use_history=True)
        assert out.images.shape == (1, 8, 8) and out.images.dtype == torch.long
        assert ((out.images >= 0) & (out.images < K)).all()
    arr = p(pil_images[0], PROMPT, output_type="np").images
    assert arr.shape == (1, 64, 64, 3) and np.isfinite(arr).all() and arr.min() >= 0 and arr.max() <= 1


def test_default_pipeline_is_the_shipped_rm_model():
    from rm_edit.pipelines.default_model import load_default_pipeline

    pipe = load_default_pipeline()
    assert Path(pipe.config._name_or_path).name == "shapes-rm"
    # The shipped sampler: 2 turns of (reflect + 1 reveal), margin 0, argmax; trained without History Reference.
    cfg = pipe.scheduler.config
    assert (cfg.num_turns, cfg.reveal_steps, cfg.remask_margin, cfg.temperature) == (2, 1, 0.0, 0.0)
    assert pipe.transformer.config.history_reference is False and pipe.transformer.config.rm_post_trained is True
    assert pipe.layout.codebook_size == 605 and pipe.transformer.config.grid_position_size == 8
    with pytest.raises(FileNotFoundError, match="available: .*shapes-rm-her"):
        load_default_pipeline("shapes-nope")


def test_use_history_defaults_to_the_models_own_record(shapes_examples):
    from tests.conftest import make_tiny_pipeline

    pipe = make_tiny_pipeline(seed=3)
    image, prompt = PIL.Image.fromarray(shapes_examples[0].source), shapes_examples[0].instruction

    def codes(**kw):
        return pipe(image, prompt, output_type="latent", generator=torch.Generator().manual_seed(0), **kw).images

    off, on = codes(use_history=False), codes(use_history=True, history_alpha=5.0)
    assert not torch.equal(off, on)  # the check below can tell the two apart
    pipe.transformer.register_to_config(history_reference=False)
    assert torch.equal(codes(), off)
    pipe.transformer.register_to_config(history_reference=True)
    assert torch.equal(codes(history_alpha=5.0), on)
