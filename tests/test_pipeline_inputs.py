"""The pipeline called as diffusers users call it: input forms, modes, batching keywords, generators, world checks."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import PIL.Image
import pytest
import torch

from rm_edit.image_inputs import as_pil_images
from rm_edit.input_checks import InputChecks, InputOutsideWorldWarning
from rm_edit.pipelines.call_inputs import encode_prompts
from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline
from rm_edit.schedulers import ReflectiveMaskingScheduler
from tests.conftest import make_tiny_pipeline

PROMPT = "make the circle blue"


@pytest.fixture(scope="module")
def pipe():
    p = make_tiny_pipeline()
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def src(shapes_examples) -> PIL.Image.Image:
    return PIL.Image.fromarray(np.asarray(shapes_examples[0].source))


def _px(images) -> list[np.ndarray]:
    return [np.asarray(im) for im in images]


# ---- input forms ------------------------------------------------------------------------------------------
def test_array_and_tensor_forms_read_as_diffusers_reads_them():
    # float 0.5 -> round(127.5) = 128 (half to even); [-1, 1] 0.0 -> (0 + 1) / 2 = 0.5 -> 128; -1 -> 0; 1 -> 255
    assert np.asarray(as_pil_images(np.full((2, 3, 3), 0.5, np.float32))[0]).tolist() == [[[128] * 3] * 3] * 2
    t = torch.tensor([[[-1.0, 0.0, 1.0]]]).expand(3, 1, 3)  # (C, H, W) with a negative value: [-1, 1]
    assert np.asarray(as_pil_images(t)[0])[0, :, 0].tolist() == [0, 128, 255]
    assert [im.mode for im in as_pil_images(np.zeros((2, 4, 5, 3), np.uint8))] == ["RGB", "RGB"]  # (B, H, W, C)
    assert [im.size for im in as_pil_images(torch.zeros(3, 3, 4, 5))] == [(5, 4)] * 3  # (B, C, H, W)
    assert as_pil_images(np.zeros((4, 5), np.uint8))[0].mode == "L"
    assert as_pil_images(np.zeros((4, 5, 4), np.uint8))[0].mode == "RGBA"
    assert len(as_pil_images([np.zeros((4, 5, 3), np.uint8), torch.zeros(3, 4, 5)])) == 2
    with pytest.raises(ValueError, match=r"image: float values must be in \[0, 1\]"):
        as_pil_images(np.full((4, 4, 3), 1.5))
    with pytest.raises(ValueError, match="image 1: holds NaN"):
        as_pil_images([np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), np.nan)])
    with pytest.raises(TypeError, match=r"pipe\(image, prompt\)"):
        as_pil_images("make it blue")


def test_tensor_and_array_inputs_edit_exactly_like_pil(pipe, src):
    a = np.asarray(src)
    want = _px(pipe(src, PROMPT).images)
    # uint8 v -> v / 255 * 2 - 1 -> back to round((x + 1) / 2 * 255) = v: the same pixels, the same edit
    as_tensor = torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255 * 2 - 1
    assert np.array_equal(_px(pipe(as_tensor, PROMPT).images)[0], want[0])
    assert np.array_equal(_px(pipe(a.astype(np.float32) / 255, PROMPT).images)[0], want[0])
    assert np.array_equal(_px(pipe(image=src, prompt=PROMPT).images)[0], want[0])
    assert np.array_equal(_px(pipe(prompt=PROMPT, image=src).images)[0], want[0])  # either keyword order


def test_rgba_keeps_its_alpha_and_grey_stays_grey(pipe, src):
    a = np.asarray(src)
    alpha = (np.arange(64, dtype=np.uint8)[None, :] * 4).repeat(64, 0)  # a ramp 0, 4, ..., 252
    rgba = PIL.Image.fromarray(np.dstack([a, alpha]), "RGBA")
    out = pipe(rgba, PROMPT).images[0]
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], alpha)  # alpha bit for bit
    assert np.array_equal(np.asarray(out)[..., :3], np.asarray(pipe(src, PROMPT).images[0]))  # edited as RGB
    grey = src.convert("L")
    out_l = pipe(grey, PROMPT, paste_back=True)
    assert out_l.images[0].mode == "L"
    # RGB grey (v, v, v) -> L is (299 v + 587 v + 114 v) / 1000 = v: outside the region the input, exactly
    outside = ~out_l.edit_masks[0]
    assert np.array_equal(np.asarray(out_l.images[0])[outside], np.asarray(grey)[outside])
    np_out = pipe(grey, PROMPT, output_type="np").images
    assert np_out.shape == (1, 64, 64, 1)


# ---- prompts, copies, generators --------------------------------------------------------------------------
def test_one_image_several_prompts_and_copies_in_order(pipe, src):
    prompts = [PROMPT, "remove the square"]
    seeds = [11, 12, 13, 14]
    out = pipe(src, prompts, num_images_per_prompt=2, temperature=1.0,
               generator=[torch.Generator().manual_seed(s) for s in seeds])
    assert len(out.images) == 4  # 1 image x 2 prompts x 2 copies
    # row 2 is prompt 1's first copy: the same as that edit alone with its own generator
    alone = pipe(src, prompts[1], temperature=1.0, generator=[torch.Generator().manual_seed(13)])
    assert np.array_equal(np.asarray(out.images[2]), np.asarray(alone.images[0]))
    with pytest.raises(ValueError, match="got 2 prompts for 3 images"):
        pipe([src] * 3, prompts)


def test_copies_at_temperature_zero_are_identical_and_say_so(pipe, src, caplog):
    from diffusers.utils import logging as dlog

    dlog.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            out = pipe(src, PROMPT, num_images_per_prompt=2)
    finally:
        dlog.disable_propagation()
    assert np.array_equal(np.asarray(out.images[0]), np.asarray(out.images[1]))
    assert "copies are identical" in caplog.text


def test_generator_checks(pipe, src):
    with pytest.raises(ValueError, match="got 3 generators for 4 edits"):
        pipe(src, [PROMPT, PROMPT], num_images_per_prompt=2, generator=[torch.Generator()] * 3)
    with pytest.raises(TypeError, match="expected a torch.Generator or a list of them, got int"):
        pipe(src, PROMPT, generator=0)
    with pytest.raises(TypeError, match="got int in the list"):
        pipe(src, PROMPT, generator=[0])
    with pytest.raises(ValueError, match="num_images_per_prompt must be"):
        pipe(src, PROMPT, num_images_per_prompt=0)


def _first_logits(pipe, src, **kwargs) -> torch.Tensor:
    seen = []
    pipe(src, PROMPT, callback_on_step_end=lambda p, i, t, d: seen.append(d["logits"].clone()),
         callback_on_step_end_tensor_inputs=["logits"], **kwargs)
    return seen[0]


def test_negative_prompt_is_the_no_instruction_branch(pipe, src):
    # guided = cond + g (cond - negative): a negative equal to the prompt cancels the text guidance, so the
    # logits are the guidance_scale=0 logits; an empty negative is "no instruction", the default.
    plain = _first_logits(pipe, src, guidance_scale=0.0, image_guidance_scale=1.0)
    same = _first_logits(pipe, src, negative_prompt=PROMPT, guidance_scale=3.0, image_guidance_scale=1.0)
    default = _first_logits(pipe, src, guidance_scale=3.0, image_guidance_scale=1.0)
    assert torch.allclose(plain, same, atol=1e-5)
    assert not torch.allclose(plain, default, atol=1e-3)  # so the text guidance does act here
    empty = _first_logits(pipe, src, negative_prompt="", guidance_scale=3.0, image_guidance_scale=1.0)
    assert torch.equal(default, empty)
    heads, uncond, _ = encode_prompts(pipe.tokenizer, pipe.layout, [PROMPT], ["remove the square"])
    assert uncond[0] == encode_prompts(pipe.tokenizer, pipe.layout, ["remove the square"])[0][0]
    with pytest.raises(ValueError, match="needs guidance_scale != 0"):
        pipe(src, PROMPT, negative_prompt="x", guidance_scale=0.0)


def test_reflective_num_inference_steps_is_a_step_budget(pipe, src):
    s = ReflectiveMaskingScheduler(codebook_size=256, num_turns=5, reveal_steps=2)
    s.set_timesteps(9)  # turns of 1 + 2 = 3 steps: 9 // 3 = 3 turns, 9 steps
    assert (s.num_turns, len(s.timesteps)) == (3, 9)
    s.set_timesteps(4)  # 4 // 3 = 1 turn, 3 steps
    assert (s.num_turns, len(s.timesteps)) == (1, 3)
    s.set_timesteps(2)  # less than a turn: still one
    assert s.num_turns == 1
    s.set_timesteps(6, num_turns=2)  # num_turns wins: 2 turns of 3 steps
    assert (s.num_turns, len(s.timesteps)) == (2, 6)
    s.set_timesteps(3, num_turns=2)
    assert (s.num_turns, len(s.timesteps)) == (2, 6)
    out = pipe(src, PROMPT, num_inference_steps=3)  # the tiny model's 2 reveal steps: one turn, <= 3 passes
    assert out.num_forward_passes <= 3


def test_from_pretrained_missing_folder_says_so():
    for name in ("/no/such/folder", "./no/such", "~/no/such/folder"):
        with pytest.raises(FileNotFoundError, match="folder not found"):
            ReflectiveMaskingEditPipeline.from_pretrained(name)


# ---- outside the model's world ---------------------------------------------------------------------------
def test_world_checks_warn_once_per_kind(pipe, src):
    checks = InputChecks({"name": "shapes", "image_size": 64}, pipe.tokenizer)
    photo = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        checks.check_images([src])  # a shapes image, 64x64: nothing
        checks.check_prompts([PROMPT])
        assert caught == []
        checks.check_images([photo, photo])
        checks.check_images([src.resize((64, 48))])
        checks.check_images([src.resize((256, 256))])  # 256 >= 4 x 64: far larger
        checks.check_prompts(["make the zebra blue", "paint the giraffe"], allow_unknown_words=True)
        checks.check_images([photo])  # said already
    messages = [str(w.message) for w in caught]
    assert all(w.category is InputOutsideWorldWarning for w in caught)
    assert len(messages) == 4, messages
    assert "colours for 95% of its pixels" in messages[0] and "64x48, not square" in messages[1]
    assert "256x256, far larger" in messages[2] and "'zebra' not in the model's vocabulary" in messages[3]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        InputChecks(None, None).check_images([photo, src.resize((64, 48))])  # no world: no image checks
    assert caught == []


def test_a_flat_image_with_faint_noise_is_not_a_photo():
    """A model's own output (flat shapes, a decoder's noise of a few levels) is edited again without a warning."""
    from rm_edit.input_checks import main_colours

    flat = np.full((64, 64, 3), 100, dtype=np.uint8)  # 100 and 204 sit inside their 8-level bins (96-103, 200-207)
    flat[:32] = (204, 100, 204)
    faint = (flat.astype(int) + np.random.default_rng(0).integers(-2, 3, flat.shape)).astype(np.uint8)
    assert len(np.unique(faint.reshape(-1, 3), axis=0)) > 200  # hundreds of exact colours...
    assert main_colours(PIL.Image.fromarray(faint)) == 2  # ...two at 32 levels a channel
    speckled = flat.copy()
    rows, cols = np.divmod(np.arange(150) * 27, 64)  # 150 distinct pixels (3.7%), each its own 8-level bin
    speckled[rows, cols] = np.stack([8 * (np.arange(150) % 32), 8 * (np.arange(150) // 32), np.full(150, 40)], -1)
    assert main_colours(PIL.Image.fromarray(speckled)) == 2  # the two flat colours hold 3,946 px = 96.3%
    assert main_colours(PIL.Image.fromarray(speckled), share=0.99) == 2 + 110  # 99% of 4,096 = 4,055.04 px
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        InputChecks({"name": "shapes", "image_size": 64}).check_images([PIL.Image.fromarray(faint)])
    assert caught == []


def test_world_entry_is_read_from_the_pipeline_config(tmp_path, src):
    p = make_tiny_pipeline()
    p.register_to_config(world={"name": "shapes", "image_size": 64})
    p.save_pretrained(tmp_path)
    loaded = ReflectiveMaskingEditPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.input_checks.world["image_size"] == 64
    # A 64x40 image reads as 8x5 cells, not the world's 8x8 (64 px / 8 px a cell): refused, or with
    # allow_unknown_words edited with that warning.
    assert loaded.image_processor.config.crop_multiple == 8
    with pytest.raises(ValueError, match=r"^the image reads as 8x5 cells, not the 8x8 of the square scenes"):
        loaded(src.resize((64, 40)), PROMPT)
    with pytest.warns(InputOutsideWorldWarning, match="reads as 8x5 cells"):
        loaded(src.resize((64, 40)), PROMPT, allow_unknown_words=True)


def test_history_on_a_model_trained_without_it_warns(src):
    p = make_tiny_pipeline()
    p.set_progress_bar_config(disable=True)
    with warnings.catch_warnings(record=True) as caught:  # not recorded: no opinion
        warnings.simplefilter("always")
        p(src, PROMPT, use_history=True)
    assert not [w for w in caught if w.category is InputOutsideWorldWarning]
    p.transformer.register_to_config(history_reference=False)
    with pytest.warns(InputOutsideWorldWarning, match="trained without History Reference"):
        p(src, PROMPT, use_history=True)


def test_over_long_instruction_is_one_line_error(src):
    p = make_tiny_pipeline()
    p.set_progress_bar_config(disable=True)
    p.transformer.register_to_config(max_sequence_length=150)
    with pytest.raises(ValueError, match=r"prompt 0: the instruction is too long .* at most 150\)") as err:
        p(src, " ".join(["make the circle blue"] * 10))
    assert "\n" not in str(err.value)
