"""What the worker's EventCallback writes for a Trainer's logs: every number a training log carries,
so a trainer's own values (TRL's rewards/*) become curves; never the evaluation's or the final summary's."""

from __future__ import annotations

from types import SimpleNamespace

import numpy

from ftkit.config import load_config
from ftkit.engine.reporting import EventCallback
from ftkit.runstore import RunStore
from ftkit.runstore.events import RunState


def test_a_training_log_carries_every_finite_number_and_the_summary_and_evaluation_logs_write_none(tmp_path):
    store = RunStore(tmp_path / "runs")
    run_id = store.create_run(load_config(name="preference"))
    callback = EventCallback(store, run_id, best_metric="loss", adapter_only=True)
    state = SimpleNamespace(global_step=5, epoch=0.1, max_steps=50, is_world_process_zero=True)
    # what DPOTrainer passes to on_log: its metrics beside the Trainer's, epoch added by Trainer.log
    callback.on_log(None, state, None, logs={
        "loss": 0.69, "grad_norm": 8.5, "learning_rate": 5e-6, "rewards/chosen": 0.01,
        "rewards/rejected": numpy.float32(-0.02), "rewards/margins": 0.03, "rewards/accuracies": 0.5,
        "logps/chosen": -120.5, "logits/rejected": -1.5, "num_tokens": 2048, "nan_metric": float("nan"),
        "flag": True, "text": "x", "epoch": 0.1, "train_runtime": 3.2, "train_tokens_per_second": 640.0})
    state.global_step = 10
    callback.on_log(None, state, None, logs={"eval_loss": 0.6, "eval_rewards/chosen": 0.1, "epoch": 0.2})
    callback.on_evaluate(None, state, None, metrics={"eval_loss": 0.6, "eval_rewards/chosen": 0.1,
                                                     "eval_runtime": 1.0, "epoch": 0.2})
    callback.on_log(None, state, None, logs={"train_runtime": 9.0, "train_samples_per_second": 4.0,
                                             "train_steps_per_second": 1.1, "total_flos": 1e12,
                                             "train_loss": 0.65, "epoch": 0.2})
    events, _ = store.read_events(run_id)
    logs = [event for event in events if event["type"] == "log"]
    assert len(logs) == 1  # the evaluation's log and the final summary are no training log
    assert {k: v for k, v in logs[0].items() if k != "t"} == {
        "type": "log", "step": 5, "epoch": 0.1, "loss": 0.69, "learning_rate": 5e-6, "grad_norm": 8.5,
        "values": {"rewards/chosen": 0.01, "rewards/rejected": float(numpy.float32(-0.02)), "rewards/margins": 0.03,
                   "rewards/accuracies": 0.5, "logps/chosen": -120.5, "logits/rejected": -1.5, "num_tokens": 2048.0}}
    curves = RunState.from_events(events).curves
    assert curves["rewards/margins"] == [(5, 0.03)] and curves["validation_rewards/chosen"] == [(10, 0.1)]
    assert not any(name.startswith(("train_", "eval_")) or name in ("epoch", "total_flos") for name in curves)


def test_a_plain_trainer_log_writes_the_event_it_always_wrote(tmp_path):
    store = RunStore(tmp_path / "runs")
    run_id = store.create_run(load_config(name="plain"))
    callback = EventCallback(store, run_id, best_metric="f1", adapter_only=False)
    state = SimpleNamespace(global_step=10, epoch=0.5, max_steps=20, is_world_process_zero=True)
    callback.on_log(None, state, None, logs={"loss": 1.25, "grad_norm": 2.0, "learning_rate": 1e-5, "epoch": 0.5})
    log = next(event for event in store.read_events(run_id)[0] if event["type"] == "log")
    assert {k: v for k, v in log.items() if k != "t"} == {"type": "log", "step": 10, "epoch": 0.5, "loss": 1.25,
                                                          "learning_rate": 1e-5, "grad_norm": 2.0}


def test_a_trainer_that_logs_its_own_values_has_them_as_curves_at_training_and_evaluation(tmp_path):
    """A real Trainer whose `log` adds values as TRL's trainers do (``rewards/*``, ``eval_rewards/*`` at
    evaluation): each reaches the events and folds into a curve; the final summary adds none."""
    import torch
    from transformers import Trainer, TrainingArguments

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 1)

        def forward(self, x, labels=None):
            out = self.linear(x).squeeze(-1)
            return {"loss": ((out - labels) ** 2).mean(), "logits": out}

    class RewardsTrainer(Trainer):
        def log(self, logs, start_time=None):  # what DPOTrainer.log does with its averaged metrics
            prefix = "" if self.model.training else "eval_"
            logs.update({f"{prefix}rewards/margins": 0.25 * self.state.global_step, f"{prefix}rewards/accuracies": 0.5})
            super().log(logs, start_time)

    store = RunStore(tmp_path / "runs")
    run_id = store.create_run(load_config(name="trainer"))
    rows = [{"x": torch.tensor([float(i), 1.0]), "labels": torch.tensor(float(i % 3))} for i in range(8)]
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=4, per_device_train_batch_size=2,
                             logging_steps=2, eval_strategy="steps", eval_steps=2, save_strategy="no", report_to=[],
                             use_cpu=True, disable_tqdm=True)
    trainer = RewardsTrainer(model=Tiny(), args=args, train_dataset=rows, eval_dataset=rows[:4],
                             callbacks=[EventCallback(store, run_id, best_metric="loss", adapter_only=False)])
    trainer.train()
    events, _ = store.read_events(run_id)
    curves = RunState.from_events(events).curves
    assert curves["rewards/margins"] == [(2, 0.5), (4, 1.0)] and curves["rewards/accuracies"] == [(2, 0.5), (4, 0.5)]
    assert curves["validation_rewards/margins"] == [(2, 0.5), (4, 1.0)]
    assert [step for step, _ in curves["loss"]] == [2, 4] and [step for step, _ in curves["grad_norm"]] == [2, 4]
    assert not any(name.startswith(("train_", "eval_")) or name in ("epoch", "total_flos") for name in curves)
