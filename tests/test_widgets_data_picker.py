"""DataPicker: statistics, label distribution and preview of a data set; data errors inline."""

from __future__ import annotations

import pytest

import ftkit
from ftkit.errors import DataError
from ftkit.notebook.widgets import DataPicker


class FakeStats:
    def __init__(self, counts):
        self.counts = counts

    def _repr_html_(self):
        return "<table class='stats'>14,041 sentences</table>"

    def to_dict(self):
        return {"task": "ner", "splits": {"train": {"label_counts": self.counts}}}


@pytest.fixture
def fake_data(monkeypatch):
    """Stand-ins for ftkit.load_data, data_stats and data_preview that record what they were asked."""
    calls = []

    def load(source, task="ner"):
        calls.append(("load", source, task))
        if "broken" in source:
            raise DataError("tag 'X-PER' is not IOB1/IOB2", path=source, line=12)
        return {"train": f"rows of {source}"}

    monkeypatch.setattr(ftkit, "load_data", load)
    monkeypatch.setattr(ftkit, "data_stats",
                        lambda source, task="ner": FakeStats({"PER": 6600, "LOC": 7140, "MISC": 3438}))
    monkeypatch.setattr(ftkit, "data_preview",
                        lambda dataset, n=5, task="ner": f"<div class='preview'>{n} of {dataset} ({task})</div>")
    return calls


def test_picker_shows_statistics_distribution_and_preview(fake_data):
    picker = DataPicker("/data/train.txt", task="ner", preview_size=3)
    assert fake_data == [("load", "/data/train.txt", "ner")]
    assert "14,041 sentences" in picker.stats_view.value
    distribution = picker.distribution.value
    assert distribution.index("LOC") < distribution.index("PER") < distribution.index("MISC")  # largest first
    assert "entities per type" in distribution
    assert "3 of rows of /data/train.txt (ner)" in picker.preview.value
    assert picker.dataset == {"train": "rows of /data/train.txt"}
    assert picker.error.layout.display == "none"


def test_changing_path_or_task_reloads(fake_data):
    picker = DataPicker()
    loaded = []
    picker.on_load(lambda p: loaded.append(p.value))
    picker.path.value = "/data/train.tsv"
    picker.task.value = "classification"
    assert fake_data[-1] == ("load", "/data/train.tsv", "classification")
    assert loaded == ["/data/train.tsv", "/data/train.tsv"]


def test_a_data_error_shows_inline_with_file_and_line(fake_data):
    picker = DataPicker("/data/ok.txt")
    picker.path.value = "/data/broken.txt"
    assert picker.error.layout.display is None
    assert "/data/broken.txt, line 12" in picker.error.value and "not IOB1/IOB2" in picker.error.value
    assert picker.dataset is None and picker.preview.value == "" and picker.stats_view.value == ""


def test_picker_on_a_real_conll_file_highlights_entities(conll_sample):
    picker = DataPicker(str(conll_sample), task="ner")
    assert picker.error.layout.display == "none"
    assert "PER" in picker.distribution.value and "MISC" in picker.distribution.value
    assert "Blackburn" in picker.preview.value and "ftkit-preview" in picker.preview.value
    assert "train" in picker.dataset


def test_picker_on_a_malformed_file_names_the_line(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_text("EU NNP I-NP I-ORG\nrejects VBZ\n\n")
    picker = DataPicker(str(path), task="ner")
    assert picker.error.layout.display is None
    assert f"{path}, line 2" in picker.error.value
