"""Preference records: a better and a worse answer to one prompt, or single answers labelled good or bad.

Three layouts, as TRL documents them, told apart by a record's keys: an explicit prompt
(``prompt``/``chosen``/``rejected``, strings or message lists), an implicit prompt (``chosen`` and
``rejected`` alone, two whole conversations sharing everything but the final answer: message lists or
Anthropic HH strings) and unpaired records for KTO (``prompt``/``completion``/``label``). Each becomes
the prompt as messages plus the answer texts, checked with the chat rules of ``chat.py``; whatever is
wrong is a DataError naming the file and line, because a pair that silently lost its prompt or
prefers an answer to itself trains the wrong preference.

Also here: any table (CSV, parquet, a DataFrame) turned into explicit pairs from a prompt template
and answer columns, so that a labelled classification set is preference data with no code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping

from ..errors import DataError
from .chat import check_conversation, instructions_from_table
from .formats import Table

EXPLICIT, IMPLICIT, UNPAIRED = "explicit", "implicit", "unpaired"
_FORMAT_KEYS = {
    EXPLICIT: ("prompt", "chosen", "rejected"),
    IMPLICIT: ("chosen", "rejected"),
    UNPAIRED: ("prompt", "completion", "label"),
}
_FORMAT_HELP = ("`prompt`/`chosen`/`rejected` (strings or message lists), `chosen`/`rejected` alone (whole "
                "conversations, message lists or Anthropic HH strings), or `prompt`/`completion`/`label` (KTO)")
# Anthropic HH writes a conversation as "\n\nHuman: ...\n\nAssistant: ..." in one string.
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}
_LABEL_WORDS = {"true": True, "false": False}

Message = dict[str, str]
Fail = Callable[[str], DataError]


@dataclass
class PreferenceRecords:
    """Checked preference records: each prompt as messages and its answers as text, with their origins."""

    format: str  # EXPLICIT, IMPLICIT or UNPAIRED
    prompts: list[list[Message]]
    chosen: list[str]  # paired formats only
    rejected: list[str]  # paired formats only
    completions: list[str]  # unpaired only
    labels: list[bool]  # unpaired only: whether the completion is desirable
    origins: list[str]  # "train.jsonl:12" (or "source, example 3" for in-memory rows), for later errors

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def paired(self) -> bool:
        return self.format != UNPAIRED


def read_preference_records(table: Table) -> PreferenceRecords:
    """Every row of ``table`` as a checked preference record; one format per file."""
    if not len(table):
        raise DataError(f"no examples: the data holds no preference records; expected {_FORMAT_HELP}", table.path)
    layout = _detect_format(table, 0)
    records = PreferenceRecords(layout, [], [], [], [], [], [])
    for index in range(len(table)):
        row_layout = _detect_format(table, index)
        if row_layout != layout:
            raise table.error(index, f"this record is {row_layout} ({', '.join(_FORMAT_KEYS[row_layout])}) but the "
                                     f"first record ({_origin(table, 0)}) is {layout} "
                                     f"({', '.join(_FORMAT_KEYS[layout])}); a file holds one format: "
                                     "give every record the same keys")
        row = {name: values[index] for name, values in table.columns.items()}
        fail = partial(table.error, index)
        if layout == UNPAIRED:
            prompt, answer = _prompt(row["prompt"], fail), _answer(row["completion"], "completion", fail)
            records.completions.append(answer)
            records.labels.append(_label(row["label"], fail))
        else:
            if layout == EXPLICIT:
                prompt = _prompt(row["prompt"], fail)
                answer, rejected = _answer(row["chosen"], "chosen", fail), _answer(row["rejected"], "rejected", fail)
            else:
                prompt, answer, rejected = _split_conversations(row["chosen"], row["rejected"], fail)
            if answer.strip() == rejected.strip():
                raise fail("chosen and rejected are the same answer, so there is nothing to prefer: "
                           "correct one of them or drop this record")
            records.chosen.append(answer)
            records.rejected.append(rejected)
        check_conversation([*prompt, {"role": "assistant", "content": answer}], fail)
        records.prompts.append(prompt)
        records.origins.append(_origin(table, index))
    return records


def pairs_from_table(table: Table, prompt_template: str, chosen_column: str, rejected_column: str | None,
                     answer_map: Mapping[Any, Any] | None) -> Table:
    """Explicit string pairs (prompt, chosen, rejected) from any table, rows and lines kept.

    ``prompt_template`` and ``answer_map`` work as for SFT (``chat.instructions_from_table``). Without
    ``rejected_column``, the rejected answer is the next different answer of ``answer_map`` after the
    chosen one, in the map's order and cycling: for two answers, the other one.
    """
    if rejected_column is None and not answer_map:
        raise DataError("preference pairs need a worse answer too: set data.rejected_column to the column that "
                        "holds it, or data.answer_map (e.g. {0: negative, 1: positive}) to pair each answer with "
                        "another answer of the map", table.path)
    for option, column in (("data.chosen_column", chosen_column), ("data.rejected_column", rejected_column)):
        if column is not None and column not in table.columns:
            raise DataError(f"column {column!r} is not in the data (named by {option}); "
                            f"the columns are {', '.join(table.columns)}", table.path)
    chosen = instructions_from_table(table, prompt_template, chosen_column, answer_map)
    if rejected_column is not None:
        rejected = instructions_from_table(table, prompt_template, rejected_column, answer_map).columns["completion"]
    else:
        others = _other_answers(answer_map, table.path)
        rejected = [others[str(stored)] for stored in table.columns[chosen_column]]
    return Table({"prompt": chosen.columns["prompt"], "chosen": chosen.columns["completion"], "rejected": rejected},
                 table.source, table.path, table.lines)


def _other_answers(answer_map: Mapping[Any, Any], path: str | None) -> dict[str, str]:
    """Stored value (as a string, as ``instructions_from_table`` compares) -> the answer it is paired against."""
    answers = {str(key): str(value) for key, value in answer_map.items()}
    if len(set(answers.values())) < 2:
        raise DataError(f"data.answer_map has one answer ({next(iter(answers.values()))!r}), so there is no other "
                        "to reject: give it two or more different answers, or set data.rejected_column", path)
    keys = list(answers)
    return {key: next(answers[other] for other in keys[start + 1:] + keys[:start] if answers[other] != answers[key])
            for start, key in enumerate(keys)}


# ----- one record -------------------------------------------------------------------------------

def _detect_format(table: Table, index: int) -> str:
    """The format of row ``index``, from which keys it fills; a near miss names the keys it lacks."""
    present = {name for name, values in table.columns.items() if values[index] is not None}
    for layout, keys in _FORMAT_KEYS.items():
        if present.issuperset(keys):
            return layout
    closest = max(_FORMAT_KEYS, key=lambda layout: (len(present & set(_FORMAT_KEYS[layout])),
                                                     -len(set(_FORMAT_KEYS[layout]) - present)))
    missing = [key for key in _FORMAT_KEYS[closest] if key not in present]
    near = f"the {closest} format also needs {', '.join(missing)}; " if present & set(_FORMAT_KEYS[closest]) else ""
    raise table.error(index, f"not a preference record: its fields are {sorted(present)}; "
                             f"{near}expected {_FORMAT_HELP}")


def _prompt(value: Any, fail: Fail) -> list[Message]:
    """A string prompt is one user turn; a message list is kept (its roles are checked with the answer)."""
    if isinstance(value, str):
        if not value.strip():
            raise fail("empty prompt: write the question or instruction the answers reply to")
        return [{"role": "user", "content": value}]
    return _messages(value, "prompt", fail)


def _answer(value: Any, name: str, fail: Fail) -> str:
    """An answer's text: a string, or a list holding exactly one assistant message."""
    if isinstance(value, list):
        messages = _messages(value, name, fail)
        if len(messages) != 1 or messages[0]["role"] != "assistant":
            raise fail(f"{name} must hold exactly one assistant message, the answer; it holds "
                       f"{', '.join(repr(m['role']) for m in messages)}: move the earlier turns into prompt")
        value = messages[0]["content"]
    elif not isinstance(value, str):
        raise fail(f"{name} must be a string or a list with one assistant message, got {type(value).__name__}")
    return _text(value, name, fail)


def _text(value: Any, name: str, fail: Fail) -> str:
    if not isinstance(value, str):
        raise fail(f"the {name} answer's content must be a string, got {type(value).__name__}")
    if not value.strip():
        raise fail(f"empty {name} answer: write the answer, or drop this record")
    return value


def _messages(value: Any, field: str, fail: Fail) -> list[Message]:
    if not isinstance(value, list):
        raise fail(f"{field} must be a string or a list of {{role, content}} messages, got {type(value).__name__}")
    if not value:
        raise fail(f"{field} holds no messages")
    for position, item in enumerate(value):
        if not isinstance(item, Mapping) or "role" not in item or "content" not in item:
            raise fail(f"{field}[{position}] must be an object with 'role' and 'content', got {str(item)[:60]}")
    return [{"role": item["role"], "content": item["content"]} for item in value]


def _label(value: Any, fail: Fail) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _LABEL_WORDS:
        return _LABEL_WORDS[value.strip().lower()]
    raise fail(f"label must be true (a desirable completion) or false (an undesirable one); 1/0 and "
               f"\"true\"/\"false\" also work. Got {value!r}")


def _split_conversations(chosen: Any, rejected: Any, fail: Fail) -> tuple[list[Message], str, str]:
    """An implicit pair as (shared prompt, chosen answer, rejected answer): every turn but the final
    assistant answers must be the same in both conversations."""
    if isinstance(chosen, str) and isinstance(rejected, str):
        better, worse = _hh_turns(chosen, "chosen", fail), _hh_turns(rejected, "rejected", fail)
    elif isinstance(chosen, list) and isinstance(rejected, list):
        better, worse = _messages(chosen, "chosen", fail), _messages(rejected, "rejected", fail)
    else:
        raise fail("without a prompt, chosen and rejected are whole conversations: both message lists or both "
                   "Anthropic HH strings (\"\\n\\nHuman: ...\\n\\nAssistant: ...\"); got "
                   f"{type(chosen).__name__} and {type(rejected).__name__}")
    for name, turns in (("chosen", better), ("rejected", worse)):
        if turns[-1]["role"] != "assistant":
            raise fail(f"{name} ends with a {turns[-1]['role']} turn, so it has no answer to split off: a pair "
                       "without a prompt ends with the assistant's answer in both conversations")
    prompt = better[:-1]
    if prompt != worse[:-1]:
        turn = next((position for position, (a, b) in enumerate(zip(prompt, worse[:-1])) if a != b),
                    min(len(prompt), len(worse) - 1))
        raise fail(f"chosen and rejected differ at turn {turn + 1}, before their final assistant answers, so no "
                   "shared prompt can be found: they must share every turn but the last (or give the prompt "
                   "separately as prompt/chosen/rejected)")
    if not prompt:
        raise fail("no shared prompt: chosen and rejected hold only their answers; start them with the user's turn")
    return prompt, _text(better[-1]["content"], "chosen", fail), _text(worse[-1]["content"], "rejected", fail)


def _hh_turns(text: str, name: str, fail: Fail) -> list[Message]:
    """``"\\n\\nHuman: hi\\n\\nAssistant: hello"`` as user and assistant messages (leading newlines optional)."""
    parts = _HH_TURN.split("\n\n" + text.lstrip())
    if len(parts) < 3 or parts[0].strip():
        raise fail(f"{name} is not an Anthropic HH conversation: write it as "
                   "\"\\n\\nHuman: ...\\n\\nAssistant: ...\", with nothing before the first Human turn")
    return [{"role": _HH_ROLES[role], "content": content.strip()} for role, content in zip(parts[1::2], parts[2::2])]


def _origin(table: Table, index: int) -> str:
    """Where row ``index`` came from, as ``chat.py`` writes it."""
    if table.lines is not None:
        return f"{table.path or table.source}:{table.lines[index]}"
    return f"{table.source}, example {index}"
