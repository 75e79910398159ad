"""Big data files are read as streams: line by line into lists, or through ``datasets`` (Arrow) above a size,
and a preview reads only the rows it shows. Every bad row still names its file and line."""

from __future__ import annotations

import json
import tracemalloc

import datasets
import pytest

from ftkit.config import load_config
from ftkit.data import formats, hf_datasets
from ftkit.errors import DataError
from ftkit.tasks.loading import load, load_source, run_splits
from ftkit.tasks.preview import preview_html

LINE_TEXT = "a fairly long review of a film that goes on for a while " * 16  # ~900 characters


@pytest.fixture(scope="module")
def big_jsonl(tmp_path_factory):
    """~50 MB of classification records, one of them with an emoji (which makes a str of the whole file 4 bytes
    per character)."""
    path = tmp_path_factory.mktemp("big") / "train.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for index in range(55_000):
            text = LINE_TEXT + ("😀" if index == 27_000 else "")
            handle.write(json.dumps({"text": text, "label": "pos" if index % 2 else "neg"}, ensure_ascii=False) + "\n")
    assert path.stat().st_size > 50_000_000
    return path


@pytest.fixture
def arrow_path(tmp_path, monkeypatch):
    """Every file goes through datasets (the size threshold lowered), with datasets' cache in tmp_path."""
    monkeypatch.setattr(hf_datasets, "LARGE_FILE_BYTES", 0)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def peak_bytes(call):
    """Peak Python allocation while ``call()`` runs, above what its result keeps."""
    tracemalloc.start()
    try:
        result = call()
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return peak - kept


def consume(rows):
    for _ in rows:
        pass


def test_the_jsonl_row_generator_holds_one_line_not_the_file(big_jsonl):
    peak = peak_bytes(lambda: consume(formats.jsonl_records(big_jsonl)))
    assert peak < 100 * len(LINE_TEXT) * 4, peak  # a few lines' worth, of a 50 MB file


def test_reading_a_big_jsonl_into_lists_never_holds_its_whole_text(big_jsonl):
    # What the reader keeps (the rows) is needed; what it allocates besides is not the file's text
    # (as bytes, 50 MB, then as a str of 4 bytes a character because of the emoji, 200 MB).
    extra = peak_bytes(lambda: formats.read_jsonl(big_jsonl))
    assert extra < big_jsonl.stat().st_size / 2, extra


@pytest.mark.parametrize("suffix, text", [
    (".csv", "text,label\n" + f'"{LINE_TEXT}, with a comma",pos\n' * 5000),
    (".tsv", "text\tlabel\n" + f"{LINE_TEXT}\tpos\n" * 5000),
    (".conll", ("".join(f"{word} O\n" for word in LINE_TEXT.split()) + "\n") * 1500),
])
def test_csv_tsv_and_conll_rows_are_read_a_line_at_a_time(tmp_path, suffix, text):
    path = tmp_path / f"train{suffix}"
    path.write_text(text.replace("film", "film😀", 1), encoding="utf-8")
    delimiter = "\t" if suffix == ".tsv" else ","
    rows = formats.conll_sentences(path) if suffix == ".conll" else formats.delimited_rows(path, delimiter)
    assert peak_bytes(lambda: consume(rows)) < path.stat().st_size / 20


def test_a_bom_is_dropped_and_a_bad_byte_names_its_true_line_and_offset(tmp_path):
    path = tmp_path / "a.conll"
    path.write_bytes(b"\xef\xbb\xbfEU B-ORG\n\n\xe9t\xe9 O\n")
    with pytest.raises(DataError) as caught:
        formats.read_conll(path)
    assert caught.value.line == 3 and "0xe9 at offset 13" in caught.value.reason
    path.write_bytes(b"\xef\xbb\xbfEU B-ORG\n")
    assert formats.read_conll(path).columns["tokens"] == [["EU"]]


def test_a_csv_with_old_mac_line_ends_reads_as_rows(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b"text,label\rgood,pos\rbad,neg\r")
    table = formats.read_delimited(path, ",")
    assert table.columns == {"text": ["good", "bad"], "label": ["pos", "neg"]} and table.lines == [2, 3]


def test_the_preview_of_a_big_file_reads_only_its_first_rows(big_jsonl, monkeypatch):
    read = []
    lines = formats.text_lines

    def counted(path):
        for number, line in lines(path):
            read.append(number)
            yield number, line

    monkeypatch.setattr(formats, "text_lines", counted)
    monkeypatch.setattr(hf_datasets, "LARGE_FILE_BYTES", 0)  # and never the Arrow reader of the whole file
    page = preview_html(str(big_jsonl), n=3, task="classification")
    assert page.count("neg") + page.count("pos") >= 3
    assert max(read) <= 4  # the first non-blank line (is it an array?), then three rows


def test_load_source_head_reads_the_first_rows_of_every_format(tmp_path):
    (tmp_path / "a.csv").write_text("text,label\n" + "".join(f"t{i},l{i % 2}\n" for i in range(100)))
    (tmp_path / "a.conll").write_text("".join(f"w{i} O\nx B-PER\n\n" for i in range(100)))
    datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(100)], "label": ["a"] * 100}).to_parquet(
        str(tmp_path / "a.parquet"), batch_size=10)
    assert load_source(str(tmp_path / "a.csv"), "classification", head=4)["text"] == ["t0", "t1", "t2", "t3"]
    assert len(load_source(str(tmp_path / "a.conll"), "ner", head=4)) == 4
    assert load_source(str(tmp_path / "a.parquet"), "classification", head=15)["text"] == [f"t{i}" for i in range(15)]


CLASSIFICATION = [{"text": f"text {i} 😀" if i == 3 else f"text {i}", "label": "pos" if i % 3 else "neg"}
                  for i in range(40)]


def write_jsonl(path, records, blank_after=None):
    with path.open("w", encoding="utf-8") as handle:
        for index, record in enumerate(records):
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            if index == blank_after:
                handle.write("\n")
    return str(path)


@pytest.mark.parametrize("task, records", [
    ("classification", CLASSIFICATION),
    ("sft", [{"messages": [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": f"yo {i}"}]}
             for i in range(30)]),
])
def test_a_large_jsonl_reads_through_arrow_into_the_same_examples(tmp_path, monkeypatch, task, records):
    path = write_jsonl(tmp_path / "train.jsonl", records, blank_after=5)  # origins (sft) name lines after it
    as_lists = load(path, task)["train"]
    monkeypatch.setattr(hf_datasets, "LARGE_FILE_BYTES", 0)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    scans = []
    rows = formats.jsonl_records
    monkeypatch.setattr(formats, "jsonl_records", lambda p: scans.append(p) or rows(p))
    through_arrow = load(path, task)["train"]
    assert through_arrow.cache_files and not as_lists.cache_files  # on disk, memory-mapped
    assert through_arrow.to_dict() == as_lists.to_dict()
    assert len(scans) <= 1  # sft's origins: the file's lines counted in one pass, not one per row


def test_a_large_csv_reads_through_arrow_with_its_cells_as_text(tmp_path, monkeypatch):
    path = tmp_path / "train.csv"
    path.write_text("text,label\n" + "".join(f'"text, {i}",{i % 2}\n\n' for i in range(30)), encoding="utf-8")
    as_lists = load(str(path), "classification")["train"]
    monkeypatch.setattr(hf_datasets, "LARGE_FILE_BYTES", 0)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    through_arrow = load(str(path), "classification")["train"]
    assert through_arrow["label"][:2] == ["0", "1"]
    assert through_arrow.to_dict() == as_lists.to_dict()


@pytest.mark.parametrize("name, content, line, words", [
    ("bad.jsonl", '{"text": "a", "label": "x"}\n\n{"text": oops\n', 3, "invalid JSON"),
    ("notext.jsonl", '{"text": "a", "label": "x"}\n\n{"text": "b", "label": "y"}\n{"text": null, "label": "x"}\n', 4,
     "must be text"),
    ("ragged.csv", "text,label\na,x\nb,y,z\n", 3, "3 fields"),
])
def test_bad_rows_of_a_large_file_name_their_file_and_line(tmp_path, arrow_path, name, content, line, words):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load(str(path), "classification")
    assert (caught.value.path, caught.value.line) == (str(path), line) and words in caught.value.reason


def test_a_column_arrow_cannot_type_names_the_file_and_the_column(tmp_path, arrow_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": 5, "label": "x"}\n', encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load(str(path), "classification")
    assert caught.value.path == str(path) and "text" in caught.value.reason  # the line is lost: Arrow's rows are per block


def test_a_large_file_trains_on_the_same_tokenised_examples_as_small_ones(tmp_path, monkeypatch, tiny_model_dir,
                                                                          runs_dir):
    from ftkit.engine.training import prepare

    path = write_jsonl(tmp_path / "train.jsonl", CLASSIFICATION * 3)
    config = load_config(None, task="classification", model=str(tiny_model_dir),
                         data={"train": path, "validation_fraction": 0.2},
                         training={"max_seq_length": 16}, output={"dir": str(runs_dir)})
    as_lists = prepare(config)
    monkeypatch.setattr(hf_datasets, "LARGE_FILE_BYTES", 0)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    # Not the split cache of the first read: the Arrow path itself.
    monkeypatch.setattr("ftkit.tasks.loading._cache_key", lambda data, task, seed: None)
    through_arrow = prepare(config)
    assert run_splits(config, "classification")["train"].cache_files
    for split in ("train", "validation"):
        assert through_arrow.features[split].to_dict() == as_lists.features[split].to_dict()
    assert through_arrow.labels == as_lists.labels == ["neg", "pos"]


def test_statistics_then_loading_a_large_file_read_it_once(tmp_path, arrow_path):
    """What `%ftkit data` does: statistics, then the data itself; the second finds the first's Arrow files."""
    from ftkit.tasks.stats import stats

    path = write_jsonl(tmp_path / "train.jsonl", CLASSIFICATION)
    assert stats(path, "classification").splits["train"].examples == 40
    files = {entry["filename"] for entry in load_source(path, "classification").cache_files}
    assert {entry["filename"] for entry in load(path, "classification")["train"].cache_files} == files
