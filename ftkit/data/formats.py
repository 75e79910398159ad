"""Readers for the file formats ftkit accepts: CoNLL, JSON Lines, CSV and TSV.

Each reader is plain Python (fast: the CoNLL-2003 train file parses in a fraction of a second)
and returns a ``Table``: columns of raw values plus the source line of every row, so that later
checks can name the file and line of whatever is wrong.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import DataError

CONLL_SUFFIXES = (".conll", ".conll03", ".conllu", ".txt", ".iob", ".bio", ".iob2", ".bioes")
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
DOCSTART = "-DOCSTART-"
MAX_FIELD_SIZE = 64 * 1024 * 1024  # characters in one CSV/TSV cell


@dataclass
class Table:
    """Rows from one source, column by column, and where each row came from."""

    columns: dict[str, list]
    source: str
    path: str | None = None
    lines: list[int] | None = None
    features: Any = None  # datasets.Features when the source has them (ClassLabel names)
    one_line_per_token: bool = False  # CoNLL: token j of row i sits on line lines[i] + j

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))

    def error(self, index: int, message: str, token: int | None = None) -> DataError:
        """A DataError pointing at row ``index`` (its file line, or its position in memory)."""
        if self.lines is not None:
            offset = token if self.one_line_per_token and token is not None else 0
            return DataError(message, self.path, self.lines[index] + offset)
        return DataError(f"{self.source}, example {index}: {message}", self.path)


def read_text(path: str | Path) -> str:
    """A file's text as UTF-8 (a BOM is dropped); anything else is a DataError naming line and byte."""
    path = Path(path)
    if not path.exists():
        raise DataError("file does not exist: check the path (relative paths start from the current folder)", str(path))
    if path.is_dir():
        raise DataError("is a folder, not a data file", str(path))
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} cannot be decoded. "
            f"Convert the file, e.g. `iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}`",
            str(path),
            line,
        ) from None


def _non_empty(table: Table, path: Path) -> Table:
    if not len(table):
        raise DataError("no examples: the file is empty (or holds only blank lines / a header)", str(path))
    return table


def read_conll(path: str | Path, tag_column: int = -1) -> Table:
    """Whitespace- or tab-separated columns, one token per line, blank lines between sentences.

    ``-DOCSTART-`` lines are skipped whatever their column count; every other line must have the
    file's column count. The token is the first column, the tag ``tag_column`` (-1 = last).
    """
    path = Path(path)
    text = read_text(path)
    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    starts: list[int] = []
    sentence_tokens: list[str] = []
    sentence_tags: list[str] = []
    width = first_line = tag_index = None
    separator: str | None = None

    def close_sentence() -> None:
        nonlocal sentence_tokens, sentence_tags
        if sentence_tokens:
            tokens.append(sentence_tokens)
            tags.append(sentence_tags)
            sentence_tokens, sentence_tags = [], []

    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            close_sentence()
            continue
        if width is None:
            separator = "\t" if "\t" in line.strip() else None
        fields = [f.strip() for f in line.split(separator)] if separator else line.split()
        if fields[0] == DOCSTART:
            close_sentence()
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
        if not sentence_tokens:
            starts.append(number)
        sentence_tokens.append(fields[0])
        sentence_tags.append(fields[tag_index])
    close_sentence()
    table = Table({"tokens": tokens, "tags": tags}, path.name, str(path), starts, one_line_per_token=True)
    return _non_empty(table, path)


def read_jsonl(path: str | Path) -> Table:
    """One JSON object per line (``.jsonl``), or a JSON array of objects (``.json``)."""
    path = Path(path)
    text = read_text(path)
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg} (column {exc.colno})", str(path), exc.lineno) from None
        return _non_empty(records_to_table(records, path.name, str(path)), path)
    records, lines = [], []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(
                f"invalid JSON on this line: {exc.msg} (column {exc.colno}). JSON Lines needs one complete object per line",
                str(path),
                number,
            ) from None
        lines.append(number)
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


def read_delimited(path: str | Path, delimiter: str) -> Table:
    """CSV (``,``, standard quoting) or TSV (tab, no quoting, as GLUE files) with a header row."""
    path = Path(path)
    text = read_text(path)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    # csv refuses fields over 128 KiB by default; a long document is data, not an error.
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_SIZE))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    kind = "TSV" if delimiter == "\t" else "CSV"
    try:
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            header = next(reader, None)
        if header is None:
            raise DataError(f"no examples: the {kind} file is empty", str(path))
        header = [name.strip() for name in header]
        rows, lines = [], []
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
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(f"unreadable {kind}: {exc}", str(path), reader.line_num) from None
    columns = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    table = Table(columns, path.name, str(path), lines)
    return _non_empty(table, path)


def read_parquet(path: str | Path) -> Table:
    """A Parquet file (``DataFrame.to_parquet``, ``Dataset.to_parquet``, hub exports); errors name the row.

    A file written by ``datasets`` keeps its features (ClassLabel names) in the schema's metadata.
    """
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"not a readable Parquet file: {exc}", str(path)) from None
    try:
        features = datasets.Features.from_arrow_schema(table.schema)
    except (ValueError, TypeError, KeyError):
        features = None
    result = Table(table.to_pydict(), path.name, str(path), features=features)
    return _non_empty(result, path)


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
