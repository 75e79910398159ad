"""Readers for the file formats ftkit accepts: CoNLL, JSON Lines, CSV, TSV and Parquet.

Each text reader streams its file one line at a time (never the whole text in memory: a 2 GB JSONL
with one emoji would be an 8 GB str) and returns a ``Table``: columns of raw values plus the source
line of every row, so that later checks can name the file and line of whatever is wrong. The row
generators (`text_lines`, `jsonl_records`, `delimited_rows`, `conll_sentences`) are also how a file
too big for Python lists finds the line of a bad row again (`RowLines`). ``limit`` reads only the
first rows (a preview).
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from ..errors import DataError

CONLL_SUFFIXES = (".conll", ".conll03", ".conllu", ".txt", ".iob", ".bio", ".iob2", ".bioes")
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
DOCSTART = "-DOCSTART-"
MAX_FIELD_SIZE = 64 * 1024 * 1024  # characters in one CSV/TSV cell
LONE_CR = re.compile(r"(?<=\r)(?!\n)")


@dataclass
class Table:
    """Rows from one source, column by column, and where each row came from.

    A file too big for Python lists is ``dataset`` (Arrow, memory-mapped), its columns that dataset's
    lazy ``Column``s and its ``lines`` a `RowLines` that finds a row's line only when an error asks.
    """

    columns: Mapping[str, Any]
    source: str
    path: str | None = None
    lines: Any = None  # list[int], or RowLines; None for in-memory data
    features: Any = None  # datasets.Features when the source has them (ClassLabel names)
    one_line_per_token: bool = False  # CoNLL: token j of row i sits on line lines[i] + j
    dataset: Any = None  # the datasets.Dataset behind the columns of a large file
    first_row: int = 0  # where row 0 sits in its source: a batch of a large file's rows starts further on

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))

    def error(self, index: int, message: str, token: int | None = None) -> DataError:
        """A DataError pointing at row ``index`` (its file line, or its position in memory)."""
        if self.lines is not None:
            offset = token if self.one_line_per_token and token is not None else 0
            return DataError(message, self.path, self.lines[index] + offset)
        return DataError(f"{self.source}, example {self.first_row + index}: {message}", self.path)


class RowLines:
    """The file line of each row of a file read without keeping line numbers (through ``datasets``), found
    by reading the file again with its row generator ``rows()`` when asked: forward from the row asked last
    (rows asked in order, as batches are, cost one pass in all), from the start for an earlier one."""

    def __init__(self, rows: Callable[[], Iterable[tuple[int, Any]]], start: int = 0,
                 cursor: list | None = None):
        self.rows, self.start = rows, start
        self.cursor = cursor if cursor is not None else [None, -1, 0]  # the pass under way, its row, that row's line

    def __getitem__(self, index: int) -> int:
        row = self.start + index
        if self.cursor[0] is None or row < self.cursor[1]:
            self.cursor[:] = [iter(self.rows()), -1, 0]
        passing, at, line = self.cursor
        for line, _ in itertools.islice(passing, row - at):
            pass
        self.cursor[1:] = [row, line]
        return line

    def shifted(self, start: int) -> "RowLines":
        """The lines of the rows from ``start`` on (a batch of the dataset), sharing this one's pass."""
        return RowLines(self.rows, self.start + start, self.cursor)


def batch_table(table: Table, rows: Mapping[str, list], start: int) -> Table:
    """The rows ``start`` on of a large file's ``table`` (a batch of its dataset) as a Table of lists that names
    the same lines and example numbers in its errors."""
    lines = table.lines.shifted(start) if table.lines is not None else None
    return Table(dict(rows), table.source, table.path, lines, table.features, table.one_line_per_token,
                 first_row=table.first_row + start)


def data_file(path: str | Path) -> Path:
    """``path`` as a Path, if it is a file; a DataError saying what it is otherwise."""
    path = Path(path)
    if not path.exists():
        raise DataError("file does not exist: check the path (relative paths start from the current folder)", str(path))
    if path.is_dir():
        raise DataError("is a folder, not a data file", str(path))
    return path


def text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """A file's numbered lines (each with its line end) as UTF-8, one at a time; a BOM is dropped, and any
    other encoding is a DataError naming the line and the byte's offset in the file."""
    path = data_file(path)
    offset = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            start = len(codecs.BOM_UTF8) if number == 1 and raw.startswith(codecs.BOM_UTF8) else 0
            try:
                yield number, raw[start:].decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = start + exc.start
                raise DataError(
                    f"not UTF-8 text: byte 0x{raw[bad]:02x} at offset {offset + bad} cannot be decoded. "
                    f"Convert the file, e.g. `iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}`",
                    str(path),
                    number,
                ) from None
            offset += len(raw)


def _non_empty(table: Table, path: Path) -> Table:
    if not len(table):
        raise DataError("no examples: the file is empty (or holds only blank lines / a header)", str(path))
    return table


def conll_sentences(path: str | Path, tag_column: int = -1) -> Iterator[tuple[int, list[str], list[str]]]:
    """Each sentence of a CoNLL file: its first line, its tokens and its tags.

    Whitespace- or tab-separated columns, one token per line, blank lines between sentences.
    ``-DOCSTART-`` lines are skipped whatever their column count; every other line must have the
    file's column count. The token is the first column, the tag ``tag_column`` (-1 = last).
    """
    path = Path(path)
    tokens: list[str] = []
    tags: list[str] = []
    start = width = first_line = tag_index = None
    separator: str | None = None
    for number, raw in text_lines(path):
        line = raw.rstrip("\r\n")
        if not line.strip():
            if tokens:
                yield start, tokens, tags
                tokens, tags = [], []
            continue
        if width is None:
            separator = "\t" if "\t" in line.strip() else None
        fields = [f.strip() for f in line.split(separator)] if separator else line.split()
        if fields[0] == DOCSTART:
            if tokens:
                yield start, tokens, tags
                tokens, tags = [], []
            continue
        if width is None:
            width, first_line = len(fields), number
            if width < 2:
                raise DataError(f"a CoNLL file needs a token and a tag column per line; this line has {width} column",
                                str(path), number)
            if not -width <= tag_column < width or tag_column % width == 0:
                raise DataError(
                    f"tag_column {tag_column} does not fit lines of {width} columns "
                    f"(column 0 is the token; use 1..{width - 1} or -1 for the last)",
                    str(path),
                    number,
                )
            tag_index = tag_column % width
        elif len(fields) != width:
            raise DataError(
                f"ragged row: {len(fields)} column{'s' if len(fields) != 1 else ''} here, but the file's rows have "
                f"{width} (first at line {first_line}). Each line is `token ... tag`; blank lines separate sentences",
                str(path),
                number,
            )
        if not tokens:
            start = number
        tokens.append(fields[0])
        tags.append(fields[tag_index])
    if tokens:
        yield start, tokens, tags


def read_conll(path: str | Path, tag_column: int = -1, limit: int | None = None) -> Table:
    """A CoNLL file (see `conll_sentences`) as ``tokens`` and ``tags``, a row per sentence."""
    path = Path(path)
    starts, tokens, tags = [], [], []
    for start, sentence_tokens, sentence_tags in itertools.islice(conll_sentences(path, tag_column), limit):
        starts.append(start)
        tokens.append(sentence_tokens)
        tags.append(sentence_tags)
    table = Table({"tokens": tokens, "tags": tags}, path.name, str(path), starts, one_line_per_token=True)
    return _non_empty(table, path)


def is_json_array(path: str | Path) -> bool:
    """Whether a JSON file holds one array (``[{...}, ...]``) rather than an object per line."""
    for _, line in text_lines(path):
        if line.strip():
            return line.lstrip().startswith("[")
    return False


def jsonl_records(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Each non-blank line of a JSON Lines file, parsed, with its line number."""
    for number, line in text_lines(path):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"invalid JSON on this line: {exc.msg} (column {exc.colno}). JSON Lines needs one complete object per line",
                str(path),
                number,
            ) from None


def read_jsonl(path: str | Path, limit: int | None = None) -> Table:
    """One JSON object per line (``.jsonl``), or a JSON array of objects (``.json``, which is parsed whole)."""
    path = data_file(path)
    if is_json_array(path):
        text = "".join(line for _, line in text_lines(path))
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg} (column {exc.colno})", str(path), exc.lineno) from None
        records = records[:limit] if limit is not None and isinstance(records, list) else records
        return _non_empty(records_to_table(records, path.name, str(path)), path)
    lines, records = [], []
    for number, record in itertools.islice(jsonl_records(path), limit):
        lines.append(number)
        records.append(record)
    return _non_empty(records_to_table(records, path.name, str(path), lines), path)


def records_to_table(records: Iterable[Any], source: str, path: str | None = None, lines: list[int] | None = None) -> Table:
    """Columns from a list of dicts; a key missing from some rows becomes None there."""
    records = list(records)
    order: dict[str, None] = {}
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            table = Table({}, source=source, path=path, lines=lines)
            raise table.error(index, f"expected an object with named fields, got {type(record).__name__}: {str(record)[:60]}")
        order.update(dict.fromkeys(record))
    columns = {name: [record.get(name) for record in records] for name in order}
    return Table(columns, source, path, lines)


def delimited_rows(path: str | Path, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """The header (first) and then every non-blank row of a CSV (``,``, standard quoting) or TSV (tab, no
    quoting, as GLUE files), each with the line it ends on; a row of the wrong width is a DataError."""
    path = Path(path)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    # csv refuses fields over 128 KiB by default; a long document is data, not an error.
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_SIZE))
    # A lone \r ends a line too (old Mac files), as in universal-newline mode.
    lines = (part for _, line in text_lines(path) for part in LONE_CR.split(line) if part)
    reader = csv.reader(lines, delimiter=delimiter, quoting=quoting)
    kind = "TSV" if delimiter == "\t" else "CSV"
    try:
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            header = next(reader, None)
        if header is None:
            raise DataError(f"no examples: the {kind} file is empty", str(path))
        header = [name.strip() for name in header]
        yield reader.line_num, header
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{len(row)} fields here but the header has {len(header)} ({', '.join(header)})"
                    + (". A text containing commas must be in double quotes" if kind == "CSV" else ""),
                    str(path),
                    reader.line_num,
                )
            yield reader.line_num, row
    except csv.Error as exc:
        raise DataError(f"unreadable {kind}: {exc}", str(path), reader.line_num) from None


def read_delimited(path: str | Path, delimiter: str, limit: int | None = None) -> Table:
    """A CSV or TSV file with a header row (see `delimited_rows`), its cells as text."""
    path = Path(path)
    rows = delimited_rows(path, delimiter)
    _, header = next(rows)
    columns: dict[str, list[str]] = {name: [] for name in header}
    lines = []
    for number, row in itertools.islice(rows, limit):
        lines.append(number)
        for values, cell in zip(columns.values(), row):
            values.append(cell)
    return _non_empty(Table(columns, path.name, str(path), lines), path)


def read_parquet(path: str | Path, limit: int | None = None) -> Table:
    """A Parquet file (``DataFrame.to_parquet``, ``Dataset.to_parquet``, hub exports); errors name the row.

    Read a record batch at a time (never the whole Arrow table beside its Python lists), ``limit`` rows at
    most. A file written by ``datasets`` keeps its features (ClassLabel names) in the schema's metadata.
    """
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = data_file(path)
    try:
        handle = pq.ParquetFile(path)
        columns: dict[str, list] = {name: [] for name in handle.schema_arrow.names}
        for batch in handle.iter_batches():
            for name, values in batch.slice(0, limit).to_pydict().items():
                columns[name].extend(values)
            if limit is not None:
                limit -= min(limit, batch.num_rows)
                if not limit:
                    break
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"not a readable Parquet file: {exc}", str(path)) from None
    try:
        features = datasets.Features.from_arrow_schema(handle.schema_arrow)
    except (ValueError, TypeError, KeyError):
        features = None
    return _non_empty(Table(columns, path.name, str(path), features=features), path)


def looks_like_conll(path: Path) -> bool:
    """Whether the first non-blank line holds two or more whitespace-separated columns."""
    try:
        with path.open("rb") as handle:
            for raw in handle:
                line = raw.decode("utf-8", "replace").strip()
                if line:
                    return len(line.split()) >= 2 and not line.startswith(("{", "["))
    except OSError:
        return False
    return False
