"""Property-based tests of the data loaders: whatever the file holds, the answer is data or a DataError.

Random bytes, mixed encodings, ragged columns, huge lines, empty splits and label sets that differ
between splits: each either loads or raises an ftkit error (a DataError naming the file, and the
line where there is one), never an unrelated exception and never a hang.
"""

from __future__ import annotations

import codecs
import json
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ftkit.tasks.loading
from ftkit.config import DataConfig
from ftkit.errors import DataError, FtkitError

FUZZ = settings(max_examples=50, deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow],
                derandomize=True)
SUFFIXES = (".conll", ".txt", ".jsonl", ".json", ".csv", ".tsv", ".iob2")
TASKS = ("ner", "classification")
TAGS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "S-ORG", "E-ORG", "I-MISC")


def write(folder: Path, name: str, content: bytes | str) -> Path:
    path = folder / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def load_or_error(path: Path, task: str, **kwargs) -> object:
    """Load ``path``; a refusal must be an FtkitError, and a DataError must name the file it read."""
    try:
        return ftkit.tasks.loading.load(str(path), task, **kwargs)
    except DataError as exc:
        assert exc.path is None or Path(exc.path).name in {p.name for p in path.parent.iterdir()}, exc
        assert str(exc).strip()
        return exc
    except FtkitError as exc:
        return exc


@FUZZ
@given(content=st.binary(max_size=2048), suffix=st.sampled_from(SUFFIXES), task=st.sampled_from(TASKS))
def test_random_bytes_give_data_or_a_data_error(content, suffix, task):
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder), f"train{suffix}", content)
        result = load_or_error(path, task)
        if isinstance(result, DataError):
            assert result.path == str(path)


@FUZZ
@given(
    parts=st.lists(st.tuples(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1,
                                     max_size=20),
                             st.sampled_from(["utf-8", "latin-1", "utf-16", "cp1252", "utf-8-sig"])),
                   min_size=1, max_size=6),
    task=st.sampled_from(TASKS),
)
def test_mixed_encodings_are_refused_at_the_line_of_the_first_bad_byte(parts, task):
    lines = []
    for text, encoding in parts:
        try:
            lines.append(f"{text.strip() or 'x'} O".encode(encoding))
        except UnicodeEncodeError:
            lines.append(b"x O")
    content = b"\n".join(lines) + b"\n"
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder), "train.conll", content)
        try:
            content.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            with pytest.raises(DataError) as error:
                ftkit.tasks.loading.load(str(path), task)
            assert error.value.path == str(path)
            bom = len(codecs.BOM_UTF8) if content.startswith(codecs.BOM_UTF8) else 0  # exc.start counts after it
            assert error.value.line == content.count(b"\n", 0, exc.start + bom) + 1
        else:
            load_or_error(path, task)


word = st.text(alphabet="abcdefgXYZ.,-'", min_size=1, max_size=8)


@FUZZ
@given(
    widths=st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=30),
    blank_every=st.integers(min_value=2, max_value=8),
)
def test_ragged_conll_columns_name_the_first_line_that_differs(widths, blank_every):
    lines, expected = [], None
    first_width = None
    for index, width in enumerate(widths):
        if index and index % blank_every == 0:
            lines.append("")
        lines.append(" ".join(["tok"] + ["X"] * (width - 2) + ["O"] if width >= 2 else ["tok"]))
        number = len(lines)
        if first_width is None:
            first_width = width
            if width < 2:
                expected = number
        elif width != first_width and expected is None:
            expected = number
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder), "train.conll", "\n".join(lines) + "\n")
        if expected is None:
            assert len(ftkit.tasks.loading.load(str(path), "ner")["train"]) >= 1
        else:
            with pytest.raises(DataError) as error:
                ftkit.tasks.loading.load(str(path), "ner")
            assert (error.value.path, error.value.line) == (str(path), expected)


cell = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12),
                 st.lists(st.one_of(st.text(max_size=6), st.integers()), max_size=4),
                 st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


@FUZZ
@given(
    records=st.lists(st.dictionaries(st.sampled_from(["tokens", "tags", "text", "label", "words", "ner_tags", "x"]),
                                     cell, max_size=4), min_size=1, max_size=12),
    task=st.sampled_from(TASKS),
    as_array=st.booleans(),
)
def test_json_rows_of_any_shape_give_data_or_a_data_error_with_a_line(records, task, as_array):
    text = json.dumps(records) if as_array else "\n".join(json.dumps(r) for r in records)
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder), "train.json" if as_array else "train.jsonl", text)
        result = load_or_error(path, task)
        if isinstance(result, DataError) and result.line is not None:  # a row's fault names its line
            assert 1 <= result.line <= (1 if as_array else len(records)) or as_array, result


@FUZZ
@given(
    rows=st.lists(st.lists(st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\r\x00"),
                                   max_size=10), min_size=0, max_size=4), min_size=0, max_size=10),
    header=st.sampled_from([["text", "label"], ["sentence", "label"], ["tokens", "tags"], ["a", "b", "c"]]),
    delimiter=st.sampled_from([",", "\t"]),
    task=st.sampled_from(TASKS),
)
def test_ragged_csv_and_tsv_give_data_or_a_data_error_with_a_line(rows, header, delimiter, task):
    lines = [delimiter.join(header)] + [delimiter.join(row) for row in rows]
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder), "train.csv" if delimiter == "," else "train.tsv", "\n".join(lines) + "\n")
        load_or_error(path, task)


@settings(max_examples=8, deadline=timedelta(seconds=20), derandomize=True)
@given(length=st.sampled_from([10_000, 200_000, 1_000_000]), where=st.sampled_from(["token", "text", "garbage"]))
def test_huge_lines_load_or_fail_quickly(length, where):
    with tempfile.TemporaryDirectory() as folder:
        if where == "token":
            path = write(Path(folder), "train.conll", f"{'a' * length} B-PER\nshort O\n")
            assert ftkit.tasks.loading.load(str(path), "ner")["train"][0]["tokens"][0] == "a" * length
        elif where == "text":
            path = write(Path(folder), "train.tsv", f"sentence\tlabel\n{'word ' * (length // 5)}\t1\n")
            assert len(ftkit.tasks.loading.load(str(path), "classification")["train"]) == 1
        else:
            path = write(Path(folder), "train.jsonl", "{" * length + "\n")
            with pytest.raises(DataError) as error:
                ftkit.tasks.loading.load(str(path), "ner")
            assert error.value.line == 1


@FUZZ
@given(empty=st.sampled_from(["", "\n\n  \n", "-DOCSTART- -X- O O\n\n", "text,label\n", "sentence\tlabel\n\n", "[]"]),
       split=st.sampled_from(["validation", "test"]))
def test_an_empty_split_is_refused_naming_its_file(empty, split):
    suffix = {"text,label\n": ".csv", "sentence\tlabel\n\n": ".tsv", "[]": ".json"}.get(empty, ".conll")
    task = "classification" if suffix in (".csv", ".tsv") else "ner"
    train = "John B-PER\nsmiles O\n" if task == "ner" else "text,label\ngood,1\nbad,0\n"
    with tempfile.TemporaryDirectory() as folder:
        train_path = write(Path(folder), "train.conll" if task == "ner" else "train.csv", train)
        empty_path = write(Path(folder), f"{split}{suffix}", empty)
        with pytest.raises(DataError) as error:
            ftkit.tasks.loading.load_splits(DataConfig(train=str(train_path), **{split: str(empty_path)}), task)
        assert error.value.path == str(empty_path)


@FUZZ
@given(train_labels=st.sets(st.sampled_from(["PER", "LOC", "ORG", "MISC"]), min_size=1),
       other_labels=st.sets(st.sampled_from(["PER", "LOC", "ORG", "MISC", "DATE"]), min_size=1),
       split=st.sampled_from(["validation", "test"]))
def test_labels_that_train_never_shows_are_refused_at_their_line(train_labels, other_labels, split):
    unseen = sorted(other_labels - train_labels)
    with tempfile.TemporaryDirectory() as folder:
        sentences = "".join(f"w B-{label}\nx O\n\n" for label in sorted(train_labels))
        train = write(Path(folder), "train.conll", sentences * 2)  # room to hold out validation from
        other = write(Path(folder), f"{split}.conll", "".join(f"w O\ny B-{label}\n\n" for label in sorted(other_labels)))
        config = DataConfig(train=str(train), **{split: str(other)})
        if not unseen:
            assert split in ftkit.tasks.loading.load_splits(config, "ner")
            return
        with pytest.raises(DataError) as error:
            ftkit.tasks.loading.load_splits(config, "ner")
        first = sorted(other_labels).index(unseen[0])
        assert (error.value.path, error.value.line) == (str(other), 3 * first + 2)
        assert unseen[0] in str(error.value)


@FUZZ
@given(tags=st.lists(st.lists(st.sampled_from(TAGS + ("B-", "X-PER", "b-per", "-", "I-PER-X")), min_size=1, max_size=6),
                     min_size=1, max_size=6),
       scheme=st.sampled_from(["auto", "iob1", "iob2", "bioes"]))
def test_any_tag_sequence_in_any_declared_scheme_gives_data_or_a_data_error(tags, scheme):
    text = "\n\n".join("\n".join(f"w{i} {tag}" for i, tag in enumerate(sentence)) for sentence in tags) + "\n"
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder), "train.conll", text)
        result = load_or_error(path, "ner", tag_scheme=scheme)
        if isinstance(result, DataError):
            assert result.line is not None, result  # a bad tag is named at its line
