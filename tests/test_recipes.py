"""A training method is one module under a recipe name: the engine looks the task's recipe up and leaves the
trainer to it, and everything around the trainer (checkpoints that say what made them) comes along."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from ftkit.config import load_config
from ftkit.engine.recipes import RECIPES, get_recipe
from ftkit.errors import ConfigError
from ftkit.runstore.layout import CHECKPOINT_RECORD_FILE
from ftkit.tasks import all_tasks, get_task

TOY_MODULE = '''
"""A toy method: the supervised recipe with a trainer of its own, which counts its steps."""
from transformers import Trainer

from ftkit.engine.recipes.supervised import SupervisedRecipe
from ftkit.engine.trainer import AtomicCheckpoints


class CountingTrainer(AtomicCheckpoints, Trainer):
    steps = 0

    def training_step(self, *args, **kwargs):
        type(self).steps += 1
        return super().training_step(*args, **kwargs)


class ToyRecipe(SupervisedRecipe):
    name = "toy"

    def build_trainer(self, prepared, output_dir, callbacks=()):
        from ftkit.engine.arguments import training_arguments

        trainer = CountingTrainer(model=prepared.model, args=training_arguments(prepared.config, output_dir),
                                  train_dataset=prepared.features["train"], callbacks=list(callbacks),
                                  eval_dataset=prepared.features["validation"],
                                  data_collator=prepared.task.collator(prepared.tokenizer, None))
        trainer.checkpoint_record = prepared.checkpoint_record()
        return trainer
'''


def test_every_task_names_a_registered_recipe():
    for task in all_tasks():
        assert get_recipe(task.recipe).name == task.recipe
    assert {task.recipe for task in all_tasks()} == {"supervised", "dpo", "orpo", "kto"}


def test_an_unknown_recipe_is_a_config_error_naming_the_known_ones():
    with pytest.raises(ConfigError, match="unknown training recipe 'ppo'.*supervised, dpo, orpo, kto"):
        get_recipe("ppo")


def test_a_toy_method_is_one_module_plus_one_registry_line(tiny_model_dir, conll_sample, tmp_path, monkeypatch):
    (tmp_path / "toy_method.py").write_text(textwrap.dedent(TOY_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(RECIPES, "toy", "toy_method:ToyRecipe")  # the registry line
    monkeypatch.setattr(type(get_task("ner")), "recipe", "toy")  # the task that names it
    from ftkit.engine.training import build_trainer, prepare

    config = load_config(task="ner", model=str(tiny_model_dir), data={"train": str(conll_sample)},
                         training={"max_steps": 3, "batch_size": 4, "max_seq_length": 32, "save_steps": 3,
                                   "metric_for_best_model": "loss",
                                   "device": "cpu"}, output={"dir": str(tmp_path)})
    prepared = prepare(config)
    assert prepared.recipe.name == "toy"
    trainer = build_trainer(prepared, tmp_path / "run")
    trainer.train()
    assert sys.modules["toy_method"].CountingTrainer.steps == 3
    record = json.loads((tmp_path / "run" / "checkpoint-3" / CHECKPOINT_RECORD_FILE).read_text())
    assert record == {"task": "ner", "method": "toy", "model": str(tiny_model_dir), "generative": False}


def test_training_throughput_leaves_out_the_time_spent_evaluating():
    from ftkit.engine.training import resource_usage

    usage = resource_usage([10, 30], {"train_runtime": 10.0, "train_samples_per_second": 4.0}, evaluation_seconds=2.0)
    assert usage["train_tokens_per_second"] == pytest.approx(40 * 20 / 8)  # 40 examples of 20 tokens in 8 s
    assert usage["evaluation_seconds"] == 2.0 and usage["train_runtime_seconds"] == 10.0
