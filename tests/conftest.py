import os

# Tests never touch the network: metric weights and datasets come from caches only (the standard switch).
os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import PIL.Image
import pytest
import torch

from rm_edit import LLaDATransformer
from rm_edit.data.shapes import ShapesWorld
from rm_edit.data.text_tokenizer import build_shapes_tokenizer
from rm_edit.layout import SHAPES
from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline
from rm_edit.schedulers import ReflectiveMaskingScheduler
from rm_edit.vq import build_vq


def make_tiny_pipeline(seed: int = 0) -> ReflectiveMaskingEditPipeline:
    """Random-weight components of the shipped model's shapes (tiny transformer) for fast pipeline tests."""
    torch.manual_seed(seed)
    transformer = LLaDATransformer(vocab_size=SHAPES.vocab_size, d_model=32, n_layers=1, n_heads=2,
                                   mlp_hidden_size=64, mask_token_id=SHAPES.mask_token_id, max_sequence_length=512)
    # Bias the head towards [MASK] for a few codes so reflective runs actually re-mask something.
    with torch.no_grad():
        transformer.output_head_weight[SHAPES.mask_token_id] *= 3
    return ReflectiveMaskingEditPipeline(
        vqvae=build_vq(seed=seed).eval(), transformer=transformer.eval(), tokenizer=build_shapes_tokenizer(),
        scheduler=ReflectiveMaskingScheduler(codebook_size=SHAPES.codebook_size, num_turns=2, reveal_steps=2),
        layout="shapes", crop_multiple=8, max_crop_cells=64, guidance_scale=1.0, image_guidance_scale=1.0,
    )


@pytest.fixture(scope="session")
def tiny_pipeline():
    return make_tiny_pipeline()


@pytest.fixture(scope="session")
def shapes_examples():
    world = ShapesWorld(split="test")
    return [world[i] for i in range(4)]


@pytest.fixture
def pil_images(shapes_examples):
    return [PIL.Image.fromarray(np.asarray(e.source)) for e in shapes_examples]


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: thread-pool overhead dominates on a shared machine, so a module can run single-threaded
    (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
