"""GPU efficiency options reach TrainingArguments and the model as intended, and fall back on CPU.

The hardware is passed in (`hardware_arguments`), so the GPU choices are checked on any machine;
where CUDA is present, the real `training_arguments` is checked too.
"""

from __future__ import annotations

import pytest
import torch

from ftkit.config import load_config, schema_fields
from ftkit.errors import ConfigError, FtkitError
from ftkit.engine.arguments import hardware_arguments, training_arguments
from ftkit.tasks.losses import label_weighted_loss


def test_an_ampere_gpu_trains_in_bf16_with_tf32_fused_adamw_and_pinned_memory():
    options = hardware_arguments(load_config(), cuda=True, bf16_supported=True, compute_capability=8)
    assert options["bf16"] and not options["fp16"] and options["tf32"] is True
    assert options["optim"] == "adamw_torch_fused" and options["dataloader_pin_memory"] and not options["use_cpu"]


def test_an_older_gpu_falls_back_to_fp16_with_loss_scaling_and_no_tf32():
    options = hardware_arguments(load_config(), cuda=True, bf16_supported=False, compute_capability=7)
    assert options["fp16"] and not options["bf16"] and options["tf32"] is None


def test_cpu_training_is_fp32_with_fused_adamw_whatever_precision_was_asked():
    for precision in ("auto", "bf16", "fp16"):
        options = hardware_arguments(load_config(resources={"mixed_precision": precision}), cuda=False)
        assert not options["bf16"] and not options["fp16"] and options["use_cpu"]
        assert options["optim"] == "adamw_torch_fused" and not options["dataloader_pin_memory"]
    args = training_arguments(load_config(training={"device": "cpu"}), "/tmp/ftkit-test-args")
    assert args.use_cpu and not args.bf16 and not args.fp16 and args.optim == "adamw_torch_fused"


def test_mixed_precision_no_keeps_a_gpu_in_fp32():
    options = hardware_arguments(load_config(resources={"mixed_precision": "no"}), cuda=True, bf16_supported=True,
                                 compute_capability=9)
    assert not options["bf16"] and not options["fp16"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_this_gpu_training_arguments_choose_its_precision_and_fused_adamw():
    args = training_arguments(load_config(), "/tmp/ftkit-test-args")
    assert args.bf16 == torch.cuda.is_bf16_supported() and args.fp16 != args.bf16
    assert args.optim == "adamw_torch_fused" and args.dataloader_pin_memory


def test_the_compile_flag_reaches_the_trainer():
    assert training_arguments(load_config(resources={"compile": True}), "/tmp/ftkit-test-args").torch_compile
    assert not training_arguments(load_config(), "/tmp/ftkit-test-args").torch_compile


def test_several_cpu_processes_use_gloo_and_one_process_no_process_group():
    assert hardware_arguments(load_config(), cuda=False, processes=2)["ddp_backend"] == "gloo"
    assert hardware_arguments(load_config(), cuda=False, processes=1)["ddp_backend"] is None
    assert hardware_arguments(load_config(), cuda=True, processes=8)["ddp_backend"] is None  # the Trainer's NCCL


def test_sharding_strategies_map_to_the_trainers_fsdp_and_need_a_gpu():
    fsdp = hardware_arguments(load_config(resources={"strategy": "fsdp"}), cuda=True, bf16_supported=True)
    assert fsdp["fsdp"] == "full_shard auto_wrap"
    with pytest.raises(FtkitError, match="needs CUDA GPUs"):
        hardware_arguments(load_config(resources={"strategy": "fsdp"}), cuda=False)


def test_bert_is_built_with_sdpa_attention(tiny_model_dir):
    from ftkit.engine.models import build_model

    model = build_model(str(tiny_model_dir), "ner", ["O", "B-PER", "I-PER"])
    assert model.config._attn_implementation == "sdpa"


def test_build_trainer_pads_on_cpu(tiny_model_dir, tmp_path, conll_sample):
    from ftkit.engine.training import build_trainer, prepare

    config = load_config(task="ner", model=str(tiny_model_dir), data={"train": str(conll_sample)},
                         training={"max_seq_length": 32}, output={"dir": str(tmp_path)})
    trainer = build_trainer(prepare(config), tmp_path / "run")
    assert trainer.train_data_collator is None
    assert type(trainer.data_collator).__name__ == "DataCollatorForTokenClassification"


def test_the_last_checkpoint_is_the_model_alone_while_earlier_ones_keep_what_resuming_needs(tiny_model_dir, tmp_path,
                                                                                              conll_sample):
    from ftkit.engine.training import build_trainer, prepare
    from ftkit.runstore.layout import checkpoint_step

    config = load_config(task="ner", model=str(tiny_model_dir),
                         data={"train": str(conll_sample), "validation": str(conll_sample)},
                         training={"epochs": 2, "batch_size": 2, "max_seq_length": 32, "save_total_limit": None,
                                   "device": "cpu"}, output={"dir": str(tmp_path)})
    build_trainer(prepare(config), tmp_path / "run").train()
    first, last = sorted((tmp_path / "run").glob("checkpoint-*"), key=checkpoint_step)
    assert {"optimizer.pt", "scheduler.pt", "rng_state.pth"} <= {p.name for p in first.iterdir()}
    assert (last / "model.safetensors").is_file()
    assert not {"optimizer.pt", "scheduler.pt", "rng_state.pth"} & {p.name for p in last.iterdir()}


def test_the_best_checkpoint_is_read_back_only_when_it_is_not_the_model_in_memory(tiny_model_dir, tmp_path,
                                                                                conll_sample, monkeypatch):
    from transformers import Trainer

    from ftkit.engine.training import build_trainer, prepare

    read_back = []
    monkeypatch.setattr(Trainer, "_load_best_model", lambda self: read_back.append(self.state.best_global_step))
    config = load_config(task="ner", model=str(tiny_model_dir), data={"train": str(conll_sample)},
                         training={"max_seq_length": 32, "device": "cpu"}, output={"dir": str(tmp_path)})
    trainer = build_trainer(prepare(config), tmp_path / "run")
    trainer.state.global_step = 4
    for best in (4, 2):
        trainer.state.best_global_step = best
        trainer._load_best_model()
    assert read_back == [2]


def test_the_loss_is_divided_by_the_labelled_items_of_the_whole_step():
    logits = torch.randn(2, 3, 4)
    labels = torch.tensor([[-100, 1, 2], [3, -100, -100]])
    mean = torch.nn.functional.cross_entropy(logits.view(-1, 4), labels.view(-1), ignore_index=-100)
    assert torch.allclose(label_weighted_loss({"logits": logits}, labels), mean)
    # Two processes (or accumulation steps) with 3 labelled tokens each: each divides by all 6.
    assert torch.allclose(label_weighted_loss({"logits": logits}, labels, num_items_in_batch=torch.tensor(6)), mean / 2)


# ----- the resources section of the config -------------------------------------------------------


def test_every_resources_field_has_help_and_enums_have_choices():
    fields = {key: field for key, _, field in schema_fields() if key.startswith("resources.")}
    assert set(fields) == {"resources.devices", "resources.nodes", "resources.node_rank", "resources.main_address",
                           "resources.main_port", "resources.strategy", "resources.mixed_precision", "resources.compile",
                           "resources.runs_per_device", "resources.stall_timeout", "resources.executor", "resources.partition",
                           "resources.account", "resources.time_limit", "resources.gpus_per_node",
                           "resources.cpus_per_task", "resources.mem_gb", "resources.slurm_options",
                           "resources.job_setup"}
    assert all(field.metadata["help"] for field in fields.values())
    assert fields["resources.strategy"].metadata["choices"] == ("ddp", "fsdp", "deepspeed")
    assert fields["resources.executor"].metadata["choices"] == ("local", "slurm", "submitit-local")
    assert fields["resources.mixed_precision"].metadata["choices"] == ("auto", "bf16", "fp16", "no")


def test_mixed_precision_lives_in_resources_only():
    keys = [key for key, _, _ in schema_fields()]
    assert "resources.mixed_precision" in keys and "training.mixed_precision" not in keys
    with pytest.raises(ConfigError, match="unknown key 'training.mixed_precision'"):
        load_config(training={"mixed_precision": "bf16"})


def test_resources_defaults_are_one_process_ddp_without_compile():
    r = load_config().resources
    assert (r.devices, r.nodes, r.node_rank, r.strategy, r.mixed_precision, r.compile) == (1, 1, 0, "ddp", "auto", False)
    assert load_config(overrides=["resources.devices=auto"]).resources.devices == "auto"
    assert load_config(overrides=["resources.devices=4"]).resources.devices == 4


def test_the_resources_section_rejects_impossible_layouts():
    with pytest.raises(ConfigError, match="main_address"):
        load_config(resources={"nodes": 2})
    with pytest.raises(ConfigError, match="node_rank"):
        load_config(resources={"nodes": 2, "node_rank": 2, "main_address": "h"})
    with pytest.raises(ConfigError, match="'resources.devices' must be a positive integer or 'auto'"):
        load_config(resources={"devices": 0})
    with pytest.raises(ConfigError, match="'resources.devices' must be a positive integer or 'auto'"):
        load_config(resources={"devices": "all"})
    with pytest.raises(ConfigError, match="Did you mean 'fsdp'"):
        load_config(resources={"strategy": "fsdb"})
    with pytest.raises(ConfigError, match="resources.main_port"):
        load_config(resources={"main_port": 70000})


def test_length_grouped_batches_come_in_random_order_not_from_long_to_short():
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from ftkit.engine.trainer import ShuffledLengthGroupedSampler

    lengths = [(i * 37) % 101 + 1 for i in range(203)]  # 25 full batches of 8 and 3 left over
    torch.manual_seed(0)
    plain = list(LengthGroupedSampler(8, lengths=lengths))
    torch.manual_seed(0)
    shuffled = list(ShuffledLengthGroupedSampler(8, lengths=lengths))

    def batches(order):
        return [order[i:i + 8] for i in range(0, len(order), 8)]

    assert sorted(shuffled) == list(range(203))
    assert sorted(map(sorted, batches(shuffled))) == sorted(map(sorted, batches(plain)))  # the same groups: as little padding
    assert batches(shuffled)[0] == batches(plain)[0] and max(lengths[i] for i in shuffled[:8]) == max(lengths)
    assert batches(shuffled)[-1] == batches(plain)[-1] and len(batches(shuffled)[-1]) == 3
    longest = [max(lengths[i] for i in batch) for batch in batches(shuffled)[:-1]]
    descents = sum(a >= b for a, b in zip(longest, longest[1:]))
    assert descents < 0.75 * (len(longest) - 1), "batches still walk from long to short"
