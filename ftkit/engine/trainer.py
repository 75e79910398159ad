"""ftkit's Trainer: evaluation in dataset order, our length grouping, an atomic checkpoint save, and
a loss that stays right under gradient accumulation and several processes.

The Trainer does what it already does well (accumulation, mixed precision, schedules, early
stopping, checkpoint rotation, best-model selection, resume); this subclass changes only what
ftkit needs changed.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from ..errors import FtkitError
from ..runstore.files import write_json_atomic
from ..runstore.layout import CHECKPOINT_RECORD_FILE, checkpoint_name, keeps_resume_state, partial_name
from .adapters import save_label_config
from .dynamics import DYNAMICS_ROW, DynamicsRecorder, RowIndexCollator, segments
from .lm_loss import loss_at_trained_positions


class AtomicCheckpoints:
    """Checkpoints written whole or not at all, each saying which task and method produced it.

    Mixed into ftkit's Trainer and into the TRL trainers the preference recipes use (``class
    FtkitDPOTrainer(AtomicCheckpoints, DPOTrainer)``), so every method's checkpoints follow one policy.
    ``checkpoint_record`` (task, method, base model, parent run) is written into each checkpoint as
    `ftkit.runstore.layout.CHECKPOINT_RECORD_FILE`.
    """

    checkpoint_record: dict[str, Any] | None = None

    def _load_best_model(self) -> None:
        """Trainer reads the best checkpoint back from disk at the end; when it is the last step's, the
        weights in memory are that checkpoint's already (a 1-epoch run: always)."""
        if self.state.best_global_step != self.state.global_step:
            super()._load_best_model()

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """Trainer's checkpoint, written as ``.tmp-checkpoint-<step>`` and renamed into place once whole.

        transformers writes ``checkpoint-<step>`` in place, so a crash mid-save (kill -9, a full
        disk) would leave a folder that looks like a checkpoint but lacks weights or optimizer
        state, and resume or inference could pick it. Here the folder appears complete or not at
        all; a failed save removes its partial files, which also frees the space a full disk needs
        to record the failure. The steps are Trainer's own (model, optimizer, scaler, RNG, state), plus
        a LoRA checkpoint's label names, which peft leaves out, and the checkpoint's record.
        """
        from transformers.trainer import TRAINER_STATE_NAME
        from transformers.trainer_callback import ExportableState
        from transformers.trainer_utils import rotate_checkpoints

        run_dir = Path(self._get_output_dir(trial=trial))
        final = run_dir / checkpoint_name(self.state.global_step)
        partial = run_dir / partial_name(final.name)
        if self.args.should_save:
            shutil.rmtree(partial, ignore_errors=True)  # left by an earlier crash
        self.accelerator.wait_for_everyone()
        if self.hp_search_backend is None and trial is None:
            self.store_flos()
        best = self.state.best_global_step
        if best:  # named by its final path: it is what trainer_state.json and rotation must refer to
            best_dir = run_dir / checkpoint_name(best)
            if best == self.state.global_step or best_dir.exists():
                self.state.best_model_checkpoint = str(best_dir)
        try:
            self.save_model(str(partial), _internal_call=True)
            if self.args.should_save:
                save_label_config(self.model, partial)  # before the rename: no checkpoint without its labels
                if self.checkpoint_record:
                    write_json_atomic(partial / CHECKPOINT_RECORD_FILE, self.checkpoint_record)
            if not self.args.save_only_model and keeps_resume_state(self.state.global_step, self.state.max_steps):
                self._save_optimizer_and_scheduler(str(partial))
                self._save_scaler(str(partial))
                self._save_rng_state(str(partial))
            if self.args.should_save:
                for callback in [*self.callback_handler.callbacks, self.control]:
                    if isinstance(callback, ExportableState):
                        name, exported = type(callback).__name__, callback.state()
                        if isinstance(self.state.stateful_callbacks[name], list):
                            self.state.stateful_callbacks[name].append(exported)
                        else:
                            self.state.stateful_callbacks[name] = exported
                self.state.save_to_json(str(partial / TRAINER_STATE_NAME))
            self.accelerator.wait_for_everyone()  # every rank's files are in before the rename
        except BaseException as exc:
            if not self.args.should_save:
                raise
            full = disk_full(run_dir, exc)  # looked at before the partial files give the space back
            shutil.rmtree(partial, ignore_errors=True)
            if full:
                raise FtkitError(
                    f"no space left on device while writing {final.name} in {run_dir} ({_first_line(exc)}). "
                    "Free some space there (or set output.dir to a bigger disk) and resume the run; "
                    "its earlier checkpoints are intact"
                ) from None
            raise
        if self.args.should_save:
            if final.exists():  # killed after the rename but before its event: a resume saves this step again
                shutil.rmtree(final)
            os.replace(partial, final)
            rotate_checkpoints(output_dir=str(run_dir), save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)
        self.accelerator.wait_for_everyone()


class GeneratedAnswerScores:
    """Evaluations during training that also score answers the model generates (``training.generate_every``).

    Mixed into every ftkit trainer; ``validation_answers`` (a `ValidationAnswers`, set by the recipe)
    adds its scores to the metrics of Trainer.evaluate's loop, before any callback or best-model check
    sees them, so ``validation_exact_match`` is a curve and can pick the best checkpoint.
    """

    validation_answers: Any = None

    def evaluation_loop(self, *args: Any, **kwargs: Any) -> Any:
        output = super().evaluation_loop(*args, **kwargs)
        if self.validation_answers is not None and _metric_key_prefix(args, kwargs) == "eval":  # inside train()
            output.metrics.update({f"eval_{key}": value for key, value in self.validation_answers(self).items()})
        return output


def _metric_key_prefix(args: tuple, kwargs: dict[str, Any]) -> str:
    """``evaluation_loop``'s ``metric_key_prefix``, passed by name or as its fifth argument."""
    return kwargs.get("metric_key_prefix", args[4] if len(args) > 4 else "eval")


def ftkit_trainer(trainer_class: type) -> type:
    """``trainer_class`` (TRL's DPOTrainer...) with ftkit's checkpoints and generated-answer scores."""
    return type(f"Ftkit{trainer_class.__name__}", (AtomicCheckpoints, GeneratedAnswerScores, trainer_class), {})


class FtkitTrainer(AtomicCheckpoints, GeneratedAnswerScores, Trainer):
    """Trainer whose evaluation keeps dataset order and whose length grouping reuses our lengths.

    In transformers 5, `train_sampling_strategy="group_by_length"` also length-groups evaluation,
    which shuffles predictions away from their sentences. We pre-sort evaluation sets by length
    instead and read them sequentially: as little padding, and predictions stay aligned.
    """

    train_data_collator: Any = None  # padding-free training batches (see build_trainer); evaluation stays padded
    dynamics: DynamicsRecorder | None = None  # records each training example's confidence (training.record_dynamics)

    def __init__(self, *args: Any, loss_metrics: Any = None, sparse_lm_loss: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.loss_metrics = loss_metrics  # the task's metrics that follow from the eval loss (SFT: perplexity)
        self.sparse_lm_loss = sparse_lm_loss  # a causal LM's loss from the logits of its trained positions alone

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """The model's loss; for ``sparse_lm_loss``, the same loss without the full logits (`lm_loss`).

        A training batch carrying its rows' indices (`DYNAMICS_ROW`) also tells ``dynamics`` how confident
        the model was in each example's labels, from this same forward pass.
        """
        rows = inputs.pop(DYNAMICS_ROW, None)
        recorder = self.dynamics if rows is not None else None
        if not self.sparse_lm_loss or return_outputs:
            if recorder is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            labels, position_ids = inputs["labels"], inputs.get("position_ids")
            loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
            recorder.add_logits(rows, outputs["logits"], labels, position_ids)
            return (loss, outputs) if return_outputs else loss
        on_tokens = None if recorder is None else _token_recorder(recorder, rows, inputs)
        loss = loss_at_trained_positions(model, inputs, num_items_in_batch, on_tokens)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # the gradients are averaged over processes, as in Trainer
        return loss

    def prediction_step(self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None) -> tuple[Any, Any, Any]:
        """A loss-only evaluation step of a sparse LM loss builds no full logits either."""
        if not (self.sparse_lm_loss and prediction_loss_only):
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = loss_at_trained_positions(model, inputs)
        return loss.detach(), None, None

    def evaluation_loop(self, *args: Any, **kwargs: Any) -> Any:
        """The Trainer's loop, plus the task's loss-derived metrics, before any callback or best-model check sees them."""
        output = super().evaluation_loop(*args, **kwargs)
        prefix = _metric_key_prefix(args, kwargs)
        loss = output.metrics.get(f"{prefix}_loss")
        if self.loss_metrics is not None and isinstance(loss, (int, float)):
            output.metrics.update({f"{prefix}_{key}": value for key, value in self.loss_metrics(float(loss)).items()})
        return output

    def _get_eval_sampler(self, eval_dataset: Any) -> torch.utils.data.Sampler | None:
        # Also when distributed: accelerate deals consecutive batches to the processes and gathers
        # them back in the same order, so predictions still line up with the sentences.
        return torch.utils.data.SequentialSampler(eval_dataset)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self.dynamics is not None and DYNAMICS_ROW not in self._signature_columns:
            self._signature_columns.append(DYNAMICS_ROW)  # kept for the recorder; RowIndexCollator takes it out

    def get_train_dataloader(self) -> torch.utils.data.DataLoader:
        collator = self.train_data_collator or self.data_collator
        if self.dynamics is not None:
            collator = RowIndexCollator(collator)
        if collator is self.data_collator:
            return super().get_train_dataloader()
        padded, self.data_collator = self.data_collator, collator
        try:
            return super().get_train_dataloader()
        finally:
            self.data_collator = padded

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        source = self.train_dataset
        if self.args.train_sampling_strategy == "group_by_length" and "length" in source.column_names:
            # [:] reads the column at once: datasets 4+ returns a lazy Column, and the sampler's
            # 14k single-row reads of it cost seconds before the first step (CoNLL-2003 train).
            return ShuffledLengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                                lengths=source["length"][:])
        return super()._get_train_sampler(train_dataset)


class ShuffledLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length grouping, its batches then taken in random order.

    `LengthGroupedSampler` sorts each mega-batch (up to 50 batches) longest first, so an epoch walks
    from long to short examples again and again and ends on the shortest ones: a curriculum nobody
    chose (in one epoch of SST-2 instructions, the last steps saw only the shortest reviews).
    Shuffling whole batches keeps what grouping is for (batches of
    similar lengths: little padding) and the longest batch first (an out-of-memory error comes at
    once); a last, partial batch stays last, so every other batch keeps its boundaries.
    """

    def __iter__(self) -> Any:
        indices = list(super().__iter__())
        size = self.batch_size
        full = len(indices) // size
        batches = [indices[i * size:(i + 1) * size] for i in range(full)]
        order = [0, *(torch.randperm(full - 1, generator=self.generator) + 1).tolist()] if full > 1 else range(full)
        return iter([i for b in order for i in batches[b]] + indices[full * size:])


def _token_recorder(recorder: DynamicsRecorder, rows: torch.Tensor, inputs: dict[str, Any]) -> Any:
    """The sparse loss's ``on_tokens``: each trained token's example found from its position (a row, or a
    stretch of a packed row), then handed to ``recorder``."""
    segment = segments(inputs["labels"], inputs.get("position_ids"), len(rows))[:, 1:]

    def on_tokens(positions: Any, trained: Any, gold: Any, logprob: Any, predicted: Any) -> None:
        recorder.add_token_logprobs(rows, segment[:, positions.to(segment.device)][trained.to(segment.device)],
                                    gold, logprob, predicted)

    return on_tokens


def disk_full(folder: Path, exc: BaseException) -> bool:
    """Whether a failed write ran out of disk: ENOSPC, or (torch and safetensors hide the errno) no room left."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "No space left" in str(exc):
        return True
    try:
        return shutil.disk_usage(folder).free < 1024 * 1024
    except OSError:
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__
