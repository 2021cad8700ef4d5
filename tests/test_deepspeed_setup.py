"""What the trainer settles before ``accelerator.prepare`` under DeepSpeed (training/deepspeed_setup.py): the
micro batch size accelerate cannot infer without a dataloader, accumulation and clipping from the trainer's own
options, and under ZeRO-3 the output head's weight registered with the transformer that reads it. The plugin is
accelerate's own ``DeepSpeedPlugin`` (it needs no DeepSpeed install); the accelerator around it is a stand-in
holding what the function reads (a real DeepSpeed accelerator needs DeepSpeed's distributed backend)."""

from types import SimpleNamespace

import pytest
from accelerate import DistributedType
from accelerate.utils import DeepSpeedPlugin

from rm_edit.training.deepspeed_setup import configure_deepspeed, zero_stage
from tests.lumina_fixture import make_tiny_lumina_transformer


def _accelerator(plugin, kind=DistributedType.DEEPSPEED):
    return SimpleNamespace(distributed_type=kind, state=SimpleNamespace(deepspeed_plugin=plugin))


def test_the_trainer_sets_the_micro_batch_accumulation_and_clipping():
    plugin = DeepSpeedPlugin(zero_stage=2)
    # As the yaml leaves them: "auto", which accelerate.prepare refuses for the micro batch without a dataloader.
    assert plugin.is_auto("train_micro_batch_size_per_gpu") and plugin.is_auto("gradient_accumulation_steps")
    configure_deepspeed(_accelerator(plugin), make_tiny_lumina_transformer(0), batch_size=4, grad_accum=8,
                        max_grad_norm=0.5)
    config = plugin.deepspeed_config
    assert (config["train_micro_batch_size_per_gpu"], config["gradient_accumulation_steps"], config["gradient_clipping"]) == (4, 8, 0.5)
    assert not plugin.is_auto("train_micro_batch_size_per_gpu")
    assert zero_stage(_accelerator(plugin)) == 2 and zero_stage(_accelerator(plugin, DistributedType.NO)) == 0


def test_a_launcher_config_that_disagrees_with_the_trainer_is_refused():
    plugin = DeepSpeedPlugin(zero_stage=2, gradient_accumulation_steps=1)  # e.g. a yaml saying 1
    with pytest.raises(ValueError, match=r"gradient_accumulation_steps = 1 but the trainer's config gives 8"):
        configure_deepspeed(_accelerator(plugin), make_tiny_lumina_transformer(0), 4, 8, 1.0)
    agreeing = DeepSpeedPlugin(zero_stage=2, gradient_accumulation_steps=8)
    configure_deepspeed(_accelerator(agreeing), make_tiny_lumina_transformer(0), 4, 8, 1.0)
    assert agreeing.deepspeed_config["gradient_accumulation_steps"] == 8


def test_without_deepspeed_nothing_is_read_or_set():
    configure_deepspeed(_accelerator(None, DistributedType.NO), make_tiny_lumina_transformer(0), 4, 1, 1.0)


def test_zero3_registers_the_output_head_weight_with_the_transformer():
    pytest.importorskip("deepspeed", reason="the optional [deepspeed] extra")
    model = make_tiny_lumina_transformer(0)
    configure_deepspeed(_accelerator(DeepSpeedPlugin(zero_stage=3)), model, 1, 1, 1.0)
    # DeepSpeed gathers a module's external parameters around that module's forward.
    assert any(p is model.transformer["ff_out"].weight for p in model._external_params.values())
