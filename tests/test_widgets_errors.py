"""ErrorBrowser and `%ftkit errors`: a run's saved predictions, filtered by error kind and type."""

from __future__ import annotations

import json

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from ftkit.config import Config
from ftkit.notebook.widgets import ErrorBrowser
from ftkit.runs import Run
from ftkit.runstore import RunStore

SENTENCES = [
    ("John Smith lives in New York", "B-PER I-PER O O B-LOC I-LOC", "B-PER I-PER O O B-LOC I-LOC"),
    ("Mary met Anna in Paris", "B-PER O B-PER O B-LOC", "B-PER O B-LOC O O"),
    ("the <EU> said it", "O B-ORG O O", "B-ORG I-ORG O B-MISC"),
    ("no entities here", "O O O", "O O O"),
]


def saved_run(store: RunStore, task: str, rows: list[dict], name: str = "tagger") -> Run:
    run = Run(store.create_run(Config.from_dict({"name": name, "task": task})), store)
    (run.dir / "predictions").mkdir()
    (run.dir / "predictions" / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return run


@pytest.fixture
def ner_run(runs_dir):
    rows = [{"id": i, "tokens": text.split(), "tags": tags.split(), "predicted": predicted.split()}
            for i, (text, tags, predicted) in enumerate(SENTENCES)]
    return saved_run(RunStore(), "ner", rows)


def shown_sentences(browser):
    return [e["id"] for e in browser.matching[:browser.shown]]


def test_the_browser_opens_on_the_sentences_with_errors_worst_first_and_counts_them_as_the_panel_does(ner_run):
    browser = ErrorBrowser.for_run(ner_run)
    assert shown_sentences(browser) == [1, 2]  # sentence 0 is all correct, sentence 3 has no entity
    html = browser.examples.value
    assert html.count('class="ftkit-entity"') == (3 + 2) + (1 + 2)  # every gold and predicted entity, as in the data preview
    assert "&lt;EU&gt;" in html and "<EU>" not in html
    assert "wrong type: “Anna” PER → “Anna” LOC" in html
    assert browser.count.value == "showing 2 of 2 sentences with errors"


def test_every_sentence_is_one_choice_away(ner_run):
    browser = ErrorBrowser.for_run(ner_run)
    browser.kind.value = "all"
    assert shown_sentences(browser) == [1, 2, 0, 3]
    assert browser.count.value == "showing 4 of 4 sentences"


def test_the_kind_filter_keeps_the_sentences_with_a_decision_of_that_kind(ner_run):
    browser = ErrorBrowser.for_run(ner_run)
    assert list(browser.kind.options) == [("every error", "errors"), ("all sentences", "all"), ("correct", "correct"),
                                          ("missed", "missed"), ("spurious", "spurious"),
                                          ("wrong boundary", "wrong_boundary"), ("wrong type", "wrong_type")]
    browser.kind.value = "spurious"
    assert shown_sentences(browser) == [2]
    assert browser.count.value == "showing 1 of 2 sentences with errors"  # as the panel counts: of all with errors
    assert "Mary" not in browser.examples.value and "said" in browser.examples.value
    browser.kind.value = "correct"
    assert shown_sentences(browser) == [1, 0]
    assert browser.count.value == "showing 2 of 4 sentences"


def test_kind_and_type_filters_must_hold_for_the_same_decision(ner_run):
    browser = ErrorBrowser.for_run(ner_run)
    assert list(browser.type.options) == ["all", "LOC", "MISC", "ORG", "PER"]
    browser.type.value = "LOC"
    assert shown_sentences(browser) == [1]  # errors only: sentence 0's New York is correct
    browser.kind.value = "all"
    assert shown_sentences(browser) == [1, 0]
    browser.kind.value = "missed"
    assert shown_sentences(browser) == [1]
    browser.type.value = "PER"  # Mary's sentence has a PER decision and a missed one, but no missed PER
    assert shown_sentences(browser) == []
    assert "no example matches" in browser.examples.value


def test_show_more_pages_through_the_matching_examples(ner_run):
    browser = ErrorBrowser.for_run(ner_run, page_size=3)
    browser.kind.value = "all"
    assert shown_sentences(browser) == [1, 2, 0] and browser.more.layout.display is None
    browser.more.click()
    assert shown_sentences(browser) == [1, 2, 0, 3] and browser.more.layout.display == "none"
    browser.kind.value = "correct"  # a new filter starts from the first page again
    assert browser.shown == 3


def test_the_overview_shows_the_summary_the_per_type_table_and_the_confusion_matrix(ner_run):
    overview = browser_overview(ErrorBrowser.for_run(ner_run))
    assert "wrong boundary <b>1</b>" in overview and "spurious <b>1</b>" in overview
    assert "entity decisions per type" in overview and "gold (rows) by predicted (columns)" in overview


def browser_overview(browser):
    return browser.children[0].value


def test_classification_mistakes_are_found_under_their_gold_and_their_predicted_label(runs_dir):
    rows = [{"id": 0, "text": "fine", "label": "pos", "predicted": "pos", "scores": {"neg": 0.1, "pos": 0.9}},
            {"id": 1, "text": "meh", "label": "pos", "predicted": "neg", "scores": {"neg": 0.6, "pos": 0.4}},
            {"id": 2, "text": "awful <b>", "label": "neg", "predicted": "pos", "scores": {"neg": 0.2, "pos": 0.8}}]
    browser = ErrorBrowser.for_run(saved_run(RunStore(), "classification", rows, "sentiment"))
    assert shown_sentences(browser) == [2, 1]  # most confident mistake first
    assert "awful &lt;b&gt;" in browser.examples.value and "0.800" in browser.examples.value
    browser.type.value = "neg"
    assert shown_sentences(browser) == [2, 1]
    assert [kind for _, kind in browser.kind.options] == ["errors", "all", "mistake"]


def test_sft_filters_by_match_and_hides_the_type_filter(runs_dir):
    rows = [{"id": 0, "prompt": "2+2?", "reference": "4", "generation": "4", "match": True},
            {"id": 1, "prompt": "Capital?", "reference": "Paris", "generation": "Lyon", "match": False}]
    browser = ErrorBrowser.for_run(saved_run(RunStore(), "sft", rows, "chat"))
    assert browser.type.layout.display == "none"
    browser.kind.value = "match"
    assert shown_sentences(browser) == [0]
    assert "entity decisions" not in browser_overview(browser) and "mismatches <b>1</b>" in browser_overview(browser)


def test_ftkit_errors_shows_the_browser_of_a_run_by_name(ner_run, monkeypatch):
    monkeypatch.setenv("FTKIT_MONITOR", "text")
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "ftkit")
    with capture_output():
        result = shell.run_cell("%ftkit errors tagger -o browser")
    assert result.success
    browser = shell.user_ns.pop("browser")
    assert isinstance(browser, ErrorBrowser) and browser.report["run"] == ner_run.id
    with capture_output() as captured:
        shell.run_cell("%ftkit errors tagger --split validation")
    assert "no saved predictions for its validation split" in captured.stderr
