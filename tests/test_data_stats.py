"""Dataset statistics and HTML previews."""

from __future__ import annotations

from .conftest import CONLL_DIR, SST2_DIR
from ftkit.tasks.loading import load
from ftkit.tasks.preview import preview_html
from ftkit.tasks.stats import DataStats, SplitStats, stats


def test_stats_of_the_conll_sample(conll_sample):
    result = stats(conll_sample)
    train = result.splits["train"]
    assert result.scheme == "iob1"
    assert (train.examples, train.tokens) == (3, 19)
    assert train.label_counts == {"LOC": 1, "MISC": 2, "ORG": 1, "PER": 3}
    assert train.lengths == {"p50": 8, "p90": 9, "p99": 9, "max": 9}
    assert train.unique_labels == 6  # O, I-ORG, I-MISC, I-PER, B-PER, I-LOC: tags as written
    assert train.violations == []


def test_stats_of_the_real_conll_train_match_the_published_counts():
    train = stats(CONLL_DIR / "train.txt").splits["train"]
    assert (train.examples, train.tokens, train.labelled) == (14041, 203621, 23499)
    assert train.label_counts == {"LOC": 7140, "MISC": 3438, "ORG": 6321, "PER": 6600}


def test_iob1_violations_are_listed_with_split_and_sentence(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text("EU I-ORG\n\nthe O\nOlympics B-MISC\n")
    result = stats(path)
    assert result.violations == [{"split": "train", "sentence": 1, "position": 1, "tag": "B-MISC",
                                  "message": "B-MISC after O (IOB1 uses B- only between adjacent MISC entities)"}]
    assert "train sentence 1, word 1" in str(result)


def test_iob2_violation_is_i_after_o(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text("EU B-ORG\nsaid O\nParis I-LOC\n")
    result = stats(path, tag_scheme="iob2")
    assert [(v["sentence"], v["position"], v["message"]) for v in result.violations] == [(0, 2, "I-LOC after O")]


def test_labels_missing_from_train_are_reported_per_split():
    splits = load(([["John"]], [["B-PER"]]), "ner")
    splits["test"] = load(([["Paris"]], [["B-LOC"]]), "ner")["train"]
    result = stats(splits)
    assert result.unseen_labels == {"test": ["LOC"]}
    assert "test has entity types never seen in train: LOC" in str(result)


def test_classification_stats_of_sst2():
    result = stats(SST2_DIR / "dev.tsv", task="classification")
    dev = result.splits["train"]
    assert (dev.examples, dev.label_counts, dev.unique_labels) == (872, {"0": 428, "1": 444}, 2)
    assert dev.lengths["max"] >= dev.lengths["p99"] >= dev.lengths["p90"] >= dev.lengths["p50"] > 0


def test_stats_render_as_text_html_and_dict(conll_sample):
    result = stats(conll_sample)
    assert "sentences" in str(result) and "PER" in str(result)
    html = result._repr_html_()
    assert html.startswith('<div class="ftkit-stats"') and "<table>" in html and "<th>PER</th>" in html
    assert result.to_dict()["splits"]["train"]["label_counts"]["PER"] == 3


def test_ner_preview_highlights_entities_and_escapes_text():
    splits = load(([["<b>John</b>", "met", "New", "York"]], [["B-PER", "O", "B-LOC", "I-LOC"]]), "ner")
    html = preview_html(splits, n=5)
    assert "&lt;b&gt;John&lt;/b&gt;" in html and "<b>John" not in html
    assert html.count('<mark class="ftkit-entity"') == 2
    assert "New York<span" in html and ">LOC</span>" in html
    colours = {part.split(";")[0] for part in html.split("background:")[1:] if part.startswith("#")}
    assert len(colours) == 2  # one colour per entity type


def test_classification_preview_shows_texts_with_label_chips():
    splits = load((["good & fun", "dull"], ["positive", "negative"]), "classification")
    html = preview_html(splits, n=1, task="classification")
    assert "good &amp; fun" in html and ">positive</span>" in html and "dull" not in html


def test_preview_accepts_raw_sources_such_as_classlabel_ids():
    import datasets

    features = datasets.Features({"tokens": datasets.List(datasets.Value("string")),
                                  "ner_tags": datasets.List(datasets.ClassLabel(names=["O", "B-PER"]))})
    raw = datasets.Dataset.from_dict({"tokens": [["Ann", "ran"]], "ner_tags": [[1, 0]]}, features=features)
    assert ">PER</span>" in preview_html(raw)


def test_sft_answers_are_counted_in_their_own_table_never_as_column_headers():
    long_answer = "A gripping, beautifully shot film whose story stays with you for days after the credits roll."
    train = SplitStats.of(3, [9, 12, 20], {long_answer: 2, "negative": 1}, 2)
    result = DataStats("sft", {"train": train, "validation": SplitStats.of(1, [7], {"negative": 1}, 1)})
    html = result._repr_html_()
    headers = html.split("</thead>")[0]
    assert "<th>negative</th>" not in headers and "gripping" not in headers  # the split table's real headers
    answers = html.split("<b>examples per answer</b>")[1]
    assert "<th>answer</th><th>train</th><th>validation</th>" in answers
    assert f'title="{long_answer}"' in answers and f">{long_answer}<" not in answers  # cut, whole in the tooltip
    assert answers.index("gripping") < answers.index(">negative<")  # most frequent first
    text = str(result)
    assert long_answer not in text and long_answer[:40] in text and "…" in text
