"""ChatWidget: ask the base model and the fine-tuned one the same thing, side by side, streamed.

One text box and a Send button above two columns. Each column keeps its own conversation (so
follow-up questions see that model's earlier answers) and streams its answer token by token
from a background thread, so the kernel stays free, e.g. to keep training in the background.
Models load lazily, on the first Send and in those threads ("loading…" shows meanwhile); a run's
checkpoint is looked up again on every Send, so a newer best checkpoint is picked up as training
goes on. Errors show inline in their column as one line, never as a traceback. An answer that
reached the token limit before its end is marked "… (cut at N tokens)".

Widget values are set from the answering threads: ipywidgets sends each change as a comm
message, which ipykernel's IOPub channel accepts from any thread. Each column's widgets are
changed under its own lock, so the two threads never interleave within one column. Tests drive
the widget from Python (``chat.prompt.value = "…"; chat.send_button.click(); chat.wait()``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import ipywidgets as widgets

from ...errors import FtkitError
from ...rendering import cut_mark, escape

ModelSource = Any  # a folder, a hub id, "default-causal", a Run, or a loaded ftkit.engine.generation.Generator
_BUBBLE = "margin:4px 0;padding:4px 8px;border-radius:6px;white-space:pre-wrap;font-size:13px"
_USER_STYLE = f"{_BUBBLE};background:var(--jp-layout-color2,#f3f4f6)"
_ANSWER_STYLE = f"{_BUBBLE};background:var(--jp-layout-color1,#fff);border:1px solid #e5e7eb"
_ERROR_STYLE = "color:#b91c1c;font-size:12px;white-space:pre-wrap"
_CUT_STYLE = "color:#6b7280;font-style:italic"
_STREAM_UPDATE_SECONDS = 0.05  # at most ~20 comm messages a second per column while streaming


class ChatColumn(widgets.VBox):
    """One model's side: a title, its conversation, the answer being streamed, and an error line."""

    def __init__(self, title: str, source: Callable[[], ModelSource]):
        self._source = source
        self._generator: Any = None
        self._loaded_from: Any = None
        self._lock = threading.RLock()
        self.history: list[dict[str, str]] = []
        self.title = widgets.HTML(f"<b>{escape(title)}</b>")
        self.status = widgets.HTML("")
        self.transcript = widgets.HTML("")  # finished turns
        self.answer = widgets.HTML("")  # the turn being answered, growing as pieces arrive
        self.error = widgets.HTML("", layout=widgets.Layout(display="none"))
        self.streamed_text = ""
        super().__init__([widgets.HBox([self.title, self.status], layout=widgets.Layout(gap="8px")),
                          self.transcript, self.answer, self.error],
                         layout=widgets.Layout(width="50%", padding="0 8px"))

    def reply(self, question: str, max_new_tokens: int, temperature: float) -> None:
        """Answer ``question`` after this column's history, streaming; run in a background thread."""
        with self._lock:
            self.history.append({"role": "user", "content": question})
            self._show_error("")
            self.streamed_text = ""
            self.answer.value = _turn_html(question, "")
        try:
            generator = self._ensure_loaded()
            self._set_status("answering…")
            last_update = 0.0
            stream = generator.stream(list(self.history), max_new_tokens=max_new_tokens, temperature=temperature)
            for piece in stream:
                with self._lock:
                    self.streamed_text += piece
                    now = time.monotonic()
                    if now - last_update >= _STREAM_UPDATE_SECONDS:
                        self.answer.value = _turn_html(question, self.streamed_text, streaming=True)
                        last_update = now
            with self._lock:
                self.history.append({"role": "assistant", "content": self.streamed_text})
                cut_at = None if stream.generation.stopped else max_new_tokens
                self.transcript.value += _turn_html(question, self.streamed_text, cut_at=cut_at)
                self.answer.value = ""
                self._set_status("")
        except Exception as exc:  # noqa: BLE001 - shown inline; a traceback in a widget helps no one
            with self._lock:
                self.history.pop()  # the question was not answered: keep user/assistant turns alternating
                self.answer.value = ""
                self._set_status("")
                self._show_error(_one_line(exc))

    def clear(self) -> None:
        with self._lock:
            self.history.clear()
            self.streamed_text = ""
            self.transcript.value = self.answer.value = ""
            self._show_error("")

    def _ensure_loaded(self) -> Any:
        from ...engine.generation import Generator

        source = self._source()
        if isinstance(source, Generator):
            return source
        key = str(source)
        if self._generator is None or self._loaded_from != key:
            self._set_status("loading…")
            self._generator = Generator.load(source)
            self._loaded_from = key
        return self._generator

    def _set_status(self, text: str) -> None:
        self.status.value = f"<i style='color:#6b7280'>{escape(text)}</i>" if text else ""

    def _show_error(self, message: str) -> None:
        self.error.value = f"<div style='{_ERROR_STYLE}'>{escape(message)}</div>" if message else ""
        self.error.layout.display = "block" if message else "none"


class ChatWidget(widgets.VBox):
    """Two models answering the same prompts, side by side, streamed: by default a run and its base.

    ``run_or_checkpoint`` is a `ftkit.runs.Run` (or its id or name; its best checkpoint is used,
    looked up on every Send), a checkpoint or model folder, or a loaded `Generator`. ``base``
    defaults to the run's base model (for a run that started from another run, ``model: run:<id>``,
    that run's checkpoint it started from), the LoRA checkpoint's base, or ``"default-causal"``; any
    other model compares as well: another `Run` or ``"run:<id or name>"`` (a DPO run against its SFT
    run), a folder, a hub id or a `Generator`.
    """

    def __init__(self, run_or_checkpoint: ModelSource, base: ModelSource | None = None, max_new_tokens: int = 128,
                 temperature: float = 0.0, checkpoint: str | int | None = None, **kwargs: Any):
        finetuned, default_base, label = _resolve(run_or_checkpoint, checkpoint)
        other, other_label = _resolve_other(default_base if base is None else base)
        self.base = ChatColumn(f"{'base' if base is None else 'compared with'}: {other_label}", other)
        self.finetuned = ChatColumn(f"fine-tuned: {label}", finetuned)
        self.prompt = widgets.Textarea(placeholder="Ask both models…",
                                       layout=widgets.Layout(width="100%", height="64px"))
        self.send_button = widgets.Button(description="Send", icon="paper-plane", button_style="primary",
                                          layout=widgets.Layout(width="90px"))
        self.clear_button = widgets.Button(description="Clear", icon="eraser", tooltip="Forget both conversations",
                                           layout=widgets.Layout(width="90px"))
        self.max_new_tokens = widgets.IntSlider(value=max_new_tokens, min=1, max=1024, description="max tokens",
                                                continuous_update=False)
        self.temperature = widgets.FloatSlider(value=temperature, min=0.0, max=1.5, step=0.05,
                                               description="temperature", continuous_update=False,
                                               tooltip="0 = greedy (the same answer every time)")
        self.notice = widgets.HTML("")
        self.send_button.on_click(lambda _: self.send())
        self.clear_button.on_click(lambda _: self.clear())
        self._threads: list[threading.Thread] = []
        super().__init__(
            [widgets.HBox([self.base, self.finetuned], layout=widgets.Layout(width="100%")),
             self.prompt,
             widgets.HBox([self.send_button, self.clear_button, self.max_new_tokens, self.temperature],
                          layout=widgets.Layout(align_items="center", gap="8px")),
             self.notice],
            **kwargs,
        )

    @property
    def busy(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def send(self, text: str | None = None) -> bool:
        """Ask both models ``text`` (default: the text box's); False when empty or still answering."""
        question = (self.prompt.value if text is None else text).strip()
        if not question:
            return False
        if self.busy:
            self.notice.value = "<i>still answering the last question…</i>"
            return False
        self.notice.value = ""
        self.prompt.value = ""
        settings = (int(self.max_new_tokens.value), float(self.temperature.value))
        self._threads = [threading.Thread(target=column.reply, args=(question, *settings), daemon=True,
                                          name=f"ftkit-chat-{side}")
                         for side, column in (("base", self.base), ("finetuned", self.finetuned))]
        for thread in self._threads:
            thread.start()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until both answers are done; False if ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not self.busy

    def clear(self) -> None:
        """Forget both conversations (a model stays loaded)."""
        if self.busy:
            self.notice.value = "<i>wait for the answers to finish, then clear</i>"
            return
        self.notice.value = ""
        self.base.clear()
        self.finetuned.clear()


def _resolve(target: ModelSource, checkpoint: str | int | None) -> tuple[Callable[[], ModelSource], ModelSource, str]:
    """(fine-tuned source, called on each Send; the default base; a label) for what ChatWidget was given."""
    from ...runs import Run, get

    if not isinstance(target, (str, os.PathLike, Run)):  # a loaded Generator
        return (lambda: target), "default-causal", type(target).__name__
    if isinstance(target, (str, os.PathLike)) and (str(target) == "default-causal" or Path(target).expanduser().is_dir()):
        folder = str(target) if str(target) == "default-causal" else str(Path(target).expanduser().resolve())
        return (lambda: folder), _checkpoint_base(folder), _describe(folder)
    run = target if isinstance(target, Run) else get(str(target))
    return (lambda: run.checkpoint_path(checkpoint)), run.config.model, f"{run.name} ({run.id})"


def _resolve_other(source: ModelSource) -> tuple[Callable[[], ModelSource], str]:
    """(source called on each Send, label) for the left column: runs and run references as runs, the rest as is."""
    from ...runs import Run, get
    from ...runstore.lineage import is_run_reference, split_reference

    if isinstance(source, str) and is_run_reference(source):
        ref, checkpoint = split_reference(source)
        run = get(ref)
        return (lambda: run.checkpoint_path(checkpoint)), f"{run.name} ({run.id})" + (f", {checkpoint}" if checkpoint else "")
    if isinstance(source, Run):
        return (lambda: source.checkpoint_path()), f"{source.name} ({source.id})"
    return (lambda: source), _describe(source)


def _checkpoint_base(folder: str) -> str:
    """The base a LoRA checkpoint names; "default-causal" for anything else."""
    try:
        return json.loads((Path(folder) / "adapter_config.json").read_text())["base_model_name_or_path"]
    except (OSError, ValueError, KeyError, TypeError):
        return "default-causal"


def _describe(source: ModelSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        return f"{path.parent.name}/{path.name}" if path.is_absolute() else str(source)
    return type(source).__name__


def _turn_html(question: str, answer: str, streaming: bool = False, cut_at: int | None = None) -> str:
    """A question and its answer; ``cut_at``: the token limit that cut the answer short."""
    end = "▍" if streaming else f"<span style='{_CUT_STYLE}'>{escape(cut_mark(cut_at))}</span>" if cut_at else ""
    return (f"<div style='{_USER_STYLE}'>{escape(question)}</div>"
            f"<div style='{_ANSWER_STYLE}'>{escape(answer)}{end}</div>")


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, FtkitError):
        return str(exc)
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


__all__ = ["ChatColumn", "ChatWidget"]
