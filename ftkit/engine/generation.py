"""Answers from a causal LM through its chat template: one at a time, streamed, in batches, or scored.

A `Generator` holds a causal LM and the tokenizer it was trained with (whose chat template is the
one saved with the checkpoint). A prompt is a string (one user turn) or a list of ``{role,
content}`` messages; it is rendered with ``add_generation_prompt=True`` and the answer stops at
the end-of-turn token (SmolLM2's ``<|im_end|>``, which is also its eos and pad token) or after
``max_new_tokens``. Temperature 0 is greedy decoding.

Batches are padded on the left, so every row's answer starts right after its own prompt, and the
padding is known from the attention mask alone (pad == eos here, so token ids cannot tell).
Streaming runs ``generate`` in a thread and yields text pieces through transformers'
`TextIteratorStreamer`, held back while the text ends inside an incomplete character, so the
pieces join to exactly the text `Generator.generate` returns. Text is decoded without special tokens and
without transformers' "clean up tokenization spaces" (which rewrites already-streamed text).

`Generator.choice_scores` gives each candidate answer's log-likelihood (end-of-turn token
included): label-likelihood accuracy without generating, one forward pass per prompt whatever the
number of candidates.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from ..errors import FtkitError
from ..tasks.sft_encoding import assistant_spans, render_ids
from .causal import default_causal_model_dir, is_causal_default
from .models import load_error, quiet_loading

if TYPE_CHECKING:
    import torch

Prompt = "str | Sequence[Mapping[str, str]]"
ADAPTER_CONFIG_FILE = "adapter_config.json"
MODEL_CONFIG_FILE = "config.json"
_DECODE = {"skip_special_tokens": True, "clean_up_tokenization_spaces": False}
_ROLES = ("system", "user", "assistant", "tool")
_LOAD_LOCK = threading.Lock()


@dataclass
class Generation:
    """One generated answer: its text, its new token ids, and whether it ended on an end-of-turn token."""

    text: str
    token_ids: list[int] = field(repr=False)  # the new tokens, through the end-of-turn token when one came
    stopped: bool  # True: ended with an end-of-turn/eos token; False: cut at max_new_tokens


class AnswerStream:
    """One answer's text pieces while it is generated (iterate it). Once every piece is read, ``generation``
    is the whole `Generation`, whose ``stopped`` says why it ended: False when max_new_tokens cut it."""

    def __init__(self, pieces: Iterator[str]):
        self._pieces = pieces
        self.generation: Generation | None = None

    def __iter__(self) -> "AnswerStream":
        return self

    def __next__(self) -> str:
        return next(self._pieces)


class Generator:
    """A causal LM with its tokenizer and chat template, ready to answer prompts.

    ``Generator.load(source)`` takes a model folder, a checkpoint folder (full, or a LoRA adapter
    whose ``adapter_config.json`` names its base), ``"default-causal"`` or a hub id. The model
    runs on CUDA when available, else on the CPU, unless ``device`` says otherwise.
    """

    def __init__(self, model: Any, tokenizer: Any, device: "str | torch.device | None" = None):
        import torch

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.stop_token_ids = _stop_token_ids(model, tokenizer)
        if not self.stop_token_ids:
            raise FtkitError("the tokenizer defines no end-of-turn or eos token, so answers would never stop")
        pad = tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else self.stop_token_ids[0]
        # One generation at a time per model: generate() keeps per-call state on shared modules (caches, hooks).
        self._lock = threading.Lock()

    # ----- loading ------------------------------------------------------------------------------------
    @classmethod
    def load(cls, source: str | os.PathLike, device: "str | torch.device | None" = None) -> "Generator":
        """A Generator for a model folder, a full or LoRA checkpoint folder, ``"default-causal"`` or a hub id."""
        model, tokenizer = load_causal_lm(source)
        return cls(model, tokenizer, device)

    # ----- generation ---------------------------------------------------------------------------------
    def generate(self, prompt_or_messages: "Prompt", max_new_tokens: int = 64, temperature: float = 0.0,
                 top_p: float = 1.0) -> str:
        """The model's answer to a prompt (one user turn) or a conversation, without the end-of-turn token."""
        return self.generations([prompt_or_messages], max_new_tokens, temperature, top_p)[0].text

    def stream(self, prompt_or_messages: "Prompt", max_new_tokens: int = 64, temperature: float = 0.0,
               top_p: float = 1.0) -> AnswerStream:
        """The answer as text pieces while it is generated; the pieces join to what `generate` returns,
        and the stream's ``generation`` then says whether the answer ended or was cut at max_new_tokens.

        ``generate`` runs in a background thread; an error there is raised here, after the pieces
        already produced. Stop iterating early and the thread still finishes its answer.
        """
        def pieces() -> Iterator[str]:
            input_ids, attention_mask = self._left_padded([self.prompt_ids(prompt_or_messages)])
            streamer = _WholeCharacterStreamer(self.tokenizer, skip_prompt=True, **_DECODE)
            failure: list[BaseException] = []

            def produce() -> None:
                try:
                    output = self._generate_ids(input_ids, attention_mask, max_new_tokens, temperature, top_p, streamer)
                    answer.generation = self._finished(output[0, input_ids.shape[1]:].tolist())
                except BaseException as exc:  # noqa: BLE001 - handed to the consumer, who raises it
                    failure.append(exc)
                    streamer.end()

            thread = threading.Thread(target=produce, name="ftkit-generate", daemon=True)
            thread.start()
            for piece in streamer:
                if piece:
                    yield piece
            thread.join()
            if failure:
                raise failure[0]

        answer = AnswerStream(pieces())
        return answer

    def generate_batch(self, prompts: Sequence["Prompt"], max_new_tokens: int = 64, temperature: float = 0.0,
                       top_p: float = 1.0, batch_size: int = 8) -> list[str]:
        """Answers to many prompts, ``batch_size`` at a time with left padding; in the prompts' order."""
        return [g.text for g in self.generations(prompts, max_new_tokens, temperature, top_p, batch_size)]

    def generations(self, prompts: Sequence["Prompt"], max_new_tokens: int = 64, temperature: float = 0.0,
                    top_p: float = 1.0, batch_size: int = 8) -> list[Generation]:
        """Like `generate_batch`, with each answer's token ids and whether it ended on an end-of-turn token."""
        if isinstance(prompts, str):
            raise FtkitError("generate_batch() takes a list of prompts; use generate() for one")
        encoded = [self.prompt_ids(prompt) for prompt in prompts]
        results: list[Generation] = []
        for start in range(0, len(encoded), max(1, batch_size)):
            input_ids, attention_mask = self._left_padded(encoded[start:start + max(1, batch_size)])
            output = self._generate_ids(input_ids, attention_mask, max_new_tokens, temperature, top_p)
            for row in output[:, input_ids.shape[1]:].tolist():
                results.append(self._finished(row))
        return results

    def choice_scores(self, prompts: Sequence["Prompt"], choices: Sequence[str],
                      batch_size: int = 16) -> list[list[float]]:
        """Per prompt, each choice's log-likelihood as the assistant's answer, end-of-turn token included.

        One forward pass per prompt serves all its choices, ``batch_size`` prompts at a time: the
        tokens every prompt of the call starts with (the system prompt) run once and their cache is
        shared; each batch runs its prompts' remainders on a copy of it, keeping only the last
        position's logits (the first answer token's); then that cache, repeated once per choice,
        runs the answers' tokens. Log-probabilities are taken at answer positions only, since a
        vocabulary is wide (49k for SmolLM2). Prompts are batched by length, for less padding.
        """
        import torch

        if not choices:
            raise FtkitError("choice_scores() needs at least one choice")
        encoded = [self._prompt_and_answers(index, prompt, choices) for index, prompt in enumerate(prompts)]
        if not encoded:
            return []
        scores: list[list[float]] = [[] for _ in encoded]
        with self._lock, torch.inference_mode():
            shared = _shared_prefix_length([prompt_ids for prompt_ids, _ in encoded])
            prefix_cache = None
            if shared:
                prefix = torch.tensor([encoded[0][0][:shared]], device=self.device)
                prefix_cache = self.model(input_ids=prefix, use_cache=True, logits_to_keep=1).cache
            order = sorted(range(len(encoded)), key=lambda row: len(encoded[row][0]))
            for start in range(0, len(order), max(1, batch_size)):
                rows = order[start:start + max(1, batch_size)]
                batch = [(encoded[row][0][shared:], encoded[row][1]) for row in rows]
                for row, row_scores in zip(rows, self._score_answers(prefix_cache, shared, batch)):
                    scores[row] = row_scores
        return scores

    def choose(self, prompts: Sequence["Prompt"], choices: Sequence[str], batch_size: int = 16) -> list[str]:
        """Per prompt, the choice the model finds most likely as its answer (label-likelihood prediction)."""
        return [choices[max(range(len(row)), key=row.__getitem__)]
                for row in self.choice_scores(prompts, choices, batch_size)]

    # ----- the parts ------------------------------------------------------------------------------------
    def _prompt_and_answers(self, index: int, prompt: "Prompt",
                            choices: Sequence[str]) -> tuple[list[int], list[list[int]]]:
        """The prompt's ids (with the generation prompt) and each choice's answer ids, end-of-turn included.

        Answers are located by `assistant_spans`, as training locates them, so a score means the
        loss sft trains on. It has checked that the prompt's own rendering is a token prefix of
        prompt + answer (or raised), so the ids before every answer are the same: the prompt's.
        """
        messages = as_messages(prompt)
        prompt_ids: list[int] = []
        answers = []
        for choice in choices:
            ids, spans = assistant_spans(self.tokenizer, [*messages, {"role": "assistant", "content": choice}],
                                         origin=f"prompt {index}")
            begin, end = spans[-1]
            prompt_ids = ids[:begin]
            answers.append(ids[begin:end])
        return prompt_ids, answers

    def _score_answers(self, prefix_cache: Any, shared: int,
                       batch: Sequence[tuple[list[int], list[list[int]]]]) -> list[list[float]]:
        """Per (rest of prompt, answers) pair, each answer's summed log-probability, after a cached prefix.

        The prompts are padded on the left (their last positions line up), the answers on the right
        (their first tokens follow their prompts at once); positions come from the attention mask,
        which covers the cache too, so every row sees exactly the positions it would unpadded.
        """
        import torch

        choices = len(batch[0][1])
        input_ids, attention_mask = self._left_padded([rest for rest, _ in batch])
        attention_mask = torch.cat([torch.ones(len(batch), shared, dtype=torch.long), attention_mask], dim=1)
        positions = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)[:, shared:]
        cache = None
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)  # batch_repeat_interleave and forward passes replace its tensors
            cache.batch_repeat_interleave(len(batch))
        output = self.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device),
                            position_ids=positions.to(self.device), cache=cache, use_cache=True, logits_to_keep=1)
        answers = [answer for _, row_answers in batch for answer in row_answers]  # row i * choices + c
        first = torch.tensor([[answer[0]] for answer in answers], device=self.device)
        totals = torch.log_softmax(output.logits[:, -1].float(), dim=-1).repeat_interleave(choices, dim=0) \
            .gather(1, first).squeeze(1)
        width = max(len(answer) for answer in answers) - 1
        if width > 0:  # the tokens after the first: fed the answer less its last token, right-padded
            fed = torch.full((len(answers), width), self.pad_token_id, dtype=torch.long)
            targets = torch.zeros((len(answers), width), dtype=torch.long)
            answer_mask = torch.zeros((len(answers), width), dtype=torch.bool)
            for i, answer in enumerate(answers):
                fed[i, :len(answer) - 1] = torch.tensor(answer[:-1], dtype=torch.long)
                targets[i, :len(answer) - 1] = torch.tensor(answer[1:], dtype=torch.long)
                answer_mask[i, :len(answer) - 1] = True
            output.cache.batch_repeat_interleave(choices)
            mask = torch.cat([attention_mask.repeat_interleave(choices, dim=0), answer_mask.long()], dim=1)
            answer_positions = positions[:, -1:].repeat_interleave(choices, dim=0) + 1 + torch.arange(width)
            logits = self.model(input_ids=fed.to(self.device), attention_mask=mask.to(self.device),
                                position_ids=answer_positions.to(self.device), cache=output.cache,
                                use_cache=True).logits
            answer_mask, targets = answer_mask.to(self.device), targets.to(self.device)
            token_scores = torch.zeros((len(answers), width), device=self.device)
            token_scores[answer_mask] = torch.log_softmax(logits[answer_mask].float(), dim=-1) \
                .gather(1, targets[answer_mask].unsqueeze(1)).squeeze(1)
            totals = totals + token_scores.sum(dim=1)
        return totals.cpu().view(len(batch), choices).tolist()

    def prompt_ids(self, prompt_or_messages: "Prompt") -> list[int]:
        """Token ids of the rendered prompt, ending with the assistant's generation prompt."""
        messages = as_messages(prompt_or_messages)
        if not getattr(self.tokenizer, "chat_template", None):
            if isinstance(prompt_or_messages, str):  # a base model without a template: the text as is
                return self.tokenizer(prompt_or_messages)["input_ids"]
            raise FtkitError("this model's tokenizer has no chat template, so it cannot render messages; "
                             "pass a plain text prompt or use an instruct model")
        try:
            return render_ids(self.tokenizer, messages, add_generation_prompt=True)
        except Exception as exc:  # jinja's own errors, or one the template raises
            raise FtkitError(f"the chat template does not render these messages: {type(exc).__name__}: {exc}") from None

    def _left_padded(self, rows: Sequence[list[int]]) -> tuple["torch.Tensor", "torch.Tensor"]:
        import torch

        width = max(len(ids) for ids in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, ids in enumerate(rows):
            if ids:
                input_ids[i, width - len(ids):] = torch.tensor(ids)
                attention_mask[i, width - len(ids):] = 1
        return input_ids, attention_mask

    def _generate_ids(self, input_ids: "torch.Tensor", attention_mask: "torch.Tensor", max_new_tokens: int,
                      temperature: float, top_p: float, streamer: Any = None) -> "torch.Tensor":
        import torch
        from transformers import GenerationConfig

        if max_new_tokens < 1:
            raise FtkitError(f"max_new_tokens must be at least 1, not {max_new_tokens}")
        if temperature < 0 or not 0 < top_p <= 1:
            raise FtkitError(f"temperature must be >= 0 and top_p in (0, 1], not {temperature} and {top_p}")
        sampling = {"do_sample": True, "temperature": float(temperature), "top_p": float(top_p), "top_k": 0} \
            if temperature > 0 else {"do_sample": False}
        config = GenerationConfig(max_new_tokens=int(max_new_tokens), eos_token_id=list(self.stop_token_ids),
                                  pad_token_id=self.pad_token_id, **sampling)
        with self._lock, torch.inference_mode():
            return self.model.generate(input_ids=input_ids.to(self.device),
                                       attention_mask=attention_mask.to(self.device),
                                       generation_config=config, streamer=streamer).cpu()

    def _finished(self, new_ids: list[int]) -> Generation:
        """Cut a row of new tokens after its first end-of-turn token (what follows is padding)."""
        stop = next((i for i, token in enumerate(new_ids) if token in self.stop_token_ids), None)
        kept = new_ids if stop is None else new_ids[:stop + 1]
        return Generation(self.tokenizer.decode(kept, **_DECODE), kept, stop is not None)


def as_messages(prompt_or_messages: "Prompt") -> list[dict[str, str]]:
    """A string as one user message; a list of ``{role, content}`` checked and copied."""
    if isinstance(prompt_or_messages, str):
        return [{"role": "user", "content": prompt_or_messages}]
    if not isinstance(prompt_or_messages, Sequence) or not prompt_or_messages:
        raise FtkitError("a prompt is a text or a non-empty list of {'role', 'content'} messages")
    messages = []
    for index, message in enumerate(prompt_or_messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("content"), str) \
                or message.get("role") not in _ROLES:
            raise FtkitError(f"message {index} must be {{'role': {'|'.join(_ROLES)}, 'content': text}}, "
                             f"not {message!r:.120}")
        messages.append({"role": message["role"], "content": message["content"]})
    return messages


def _shared_prefix_length(rows: Sequence[list[int]]) -> int:
    """How many leading tokens all rows share, leaving each row at least one token of its own.

    A row's last token must run with the batch: its logits score the first answer token.
    """
    limit = min(len(row) for row in rows) - 1
    length = 0
    while length < limit and all(row[length] == rows[0][length] for row in rows):
        length += 1
    return length


def load_causal_lm(source: str | os.PathLike) -> tuple[Any, Any]:
    """A causal LM (eval mode) and its tokenizer from a folder, a LoRA checkpoint, "default-causal" or a hub id.

    Loads are serialised: ``from_pretrained`` builds models under process-wide patches (meta-device
    initialisation), so two threads loading at once (the chat widget's two columns) break each other.
    """
    with _LOAD_LOCK:
        return _load_causal_lm(source)


def _load_causal_lm(source: str | os.PathLike) -> tuple[Any, Any]:
    folder = _local_folder(source)
    if folder is not None and (folder / ADAPTER_CONFIG_FILE).is_file():
        return _load_lora(folder)
    if folder is not None:
        _check_causal(folder)
    where = str(folder) if folder is not None else str(source)
    model = _from_pretrained(where)
    return model.eval(), _tokenizer(where)


def is_causal_lm_folder(folder: str | os.PathLike) -> bool:
    """Whether a folder holds a causal LM: a LoRA adapter for CAUSAL_LM, or a config naming *ForCausalLM."""
    folder = Path(folder)
    try:
        if (folder / ADAPTER_CONFIG_FILE).is_file():
            return json.loads((folder / ADAPTER_CONFIG_FILE).read_text()).get("task_type") == "CAUSAL_LM"
        if (folder / MODEL_CONFIG_FILE).is_file():
            architectures = json.loads((folder / MODEL_CONFIG_FILE).read_text()).get("architectures") or []
            return any(name.endswith("ForCausalLM") for name in architectures)
    except (OSError, ValueError):
        return False
    return False


def _local_folder(source: str | os.PathLike) -> Path | None:
    if is_causal_default(source):
        return default_causal_model_dir()
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve()
    text = str(source)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") > 1 or os.sep in text.replace("/", ""):
        raise FtkitError(f"model folder {source} does not exist")
    return None  # a hub id


def _check_causal(folder: Path) -> None:
    config_file = folder / MODEL_CONFIG_FILE
    if not config_file.is_file():
        raise FtkitError(f"{folder} is not a model or checkpoint folder: it has neither {MODEL_CONFIG_FILE} "
                         f"nor {ADAPTER_CONFIG_FILE}")
    architectures = json.loads(config_file.read_text()).get("architectures") or []
    if architectures and not any(name.endswith("ForCausalLM") for name in architectures):
        raise FtkitError(f"{folder} holds a {architectures[0]}, not a causal language model: "
                         "generation needs a checkpoint of an sft run or a *ForCausalLM model")


def _load_lora(folder: Path) -> tuple[Any, Any]:
    from peft import PeftModel

    adapter = json.loads((folder / ADAPTER_CONFIG_FILE).read_text())
    base = adapter.get("base_model_name_or_path")
    if not base:
        raise FtkitError(f"{folder / ADAPTER_CONFIG_FILE} does not name its base model (base_model_name_or_path)")
    if adapter.get("task_type") not in (None, "CAUSAL_LM"):
        raise FtkitError(f"{folder} is a LoRA adapter for {adapter['task_type']}, not a causal language model")
    if is_causal_default(base):
        where = str(default_causal_model_dir())
    elif Path(base).expanduser().is_dir():
        where = str(Path(base).expanduser().resolve())
    elif Path(base).is_absolute():
        raise FtkitError(f"the base model {base} of LoRA checkpoint {folder} no longer exists: put it back, "
                         "or merge the checkpoint while it exists (ftkit merge)")
    else:
        where = base  # a hub id
    model = PeftModel.from_pretrained(_from_pretrained(where), str(folder))
    has_tokenizer = (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file()
    return model.eval(), _tokenizer(str(folder) if has_tokenizer else where)


def _from_pretrained(where: str) -> Any:
    from transformers import AutoModelForCausalLM

    with quiet_loading():
        try:
            return AutoModelForCausalLM.from_pretrained(where)
        except (OSError, ValueError) as exc:
            raise load_error("causal LM", where, exc) from None


def _tokenizer(where: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError) as exc:
        raise load_error("tokenizer", where, exc) from None


def _stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The tokenizer's eos, the template's end-of-turn token and the model's generation eos, each once."""
    candidates: list[Any] = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")
                             if "<|im_end|>" in tokenizer.get_vocab() else None]
    generation_config = getattr(model, "generation_config", None)
    eos = getattr(generation_config, "eos_token_id", None)
    candidates.extend(eos if isinstance(eos, (list, tuple)) else [eos])
    stops: list[int] = []
    for token in candidates:
        if isinstance(token, int) and token not in stops:
            stops.append(token)
    return stops


def _make_streamer_class() -> type:
    from transformers import TextIteratorStreamer

    class WholeCharacterStreamer(TextIteratorStreamer):
        """A TextIteratorStreamer that decodes all new tokens each time and yields the new, stable text.

        transformers' own heuristics (waiting for spaces, flushing at newlines) decode parts of the
        answer separately; decoding it whole and holding back a trailing incomplete character
        (``\\ufffd``) makes the pieces join to exactly the whole answer's decoding.
        """

        def put(self, value: Any) -> None:
            if len(value.shape) > 1:
                value = value[0]
            if self.skip_prompt and self.next_tokens_are_prompt:
                self.next_tokens_are_prompt = False
                return
            self.token_cache.extend(value.tolist())
            text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs).rstrip("\ufffd")
            if len(text) > self.print_len:
                self.on_finalized_text(text[self.print_len:])
                self.print_len = len(text)

        def end(self) -> None:
            text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs) if self.token_cache else ""
            piece = text[self.print_len:]
            self.token_cache, self.print_len, self.next_tokens_are_prompt = [], 0, True
            self.on_finalized_text(piece, stream_end=True)

    return WholeCharacterStreamer


def _WholeCharacterStreamer(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 - built on first use (imports transformers)
    global _STREAMER_CLASS
    if _STREAMER_CLASS is None:
        _STREAMER_CLASS = _make_streamer_class()
    return _STREAMER_CLASS(*args, **kwargs)


_STREAMER_CLASS: type | None = None

__all__ = ["AnswerStream", "Generation", "Generator", "as_messages", "is_causal_lm_folder", "load_causal_lm"]
