"""Spaces from real (tiny) models: static vocabularies, subword pooling, contextual vectors, runs."""

from __future__ import annotations

import shutil

import pytest
import torch
from transformers import AutoModel, AutoTokenizer, BertForTokenClassification

from ftkit.config import load_config
from ftkit.embeddings import compare, load, load_pair, resolve_source, show_moved, show_neighbors
from ftkit.errors import FtkitError
from ftkit.runs import Run
from ftkit.runstore import RunStore

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]


def hidden_states(model_dir, words: list[str]) -> tuple[torch.Tensor, list]:
    tokenizer, model = AutoTokenizer.from_pretrained(model_dir), AutoModel.from_pretrained(model_dir).eval()
    encoded = tokenizer([words], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        return model(**encoded).last_hidden_state[0], encoded.word_ids(0)


# ----- static ------------------------------------------------------------------------------------


def test_static_space_lists_the_vocabulary_without_special_tokens_or_continuation_pieces(tiny_model_dir):
    space = load(tiny_model_dir, "static")
    assert {"paris", "london", "a", "7"} <= set(space.words)
    assert not {"[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"} & set(space.words)
    assert not any(w.startswith("##") for w in space.words)
    assert "##q" in load(tiny_model_dir, "static", subwords=True)
    table = AutoModel.from_pretrained(tiny_model_dir).get_input_embeddings().weight
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert torch.equal(space.vector("Paris"), table[tokenizer.convert_tokens_to_ids("paris")].detach())


def test_static_vector_of_an_unknown_word_is_the_mean_of_its_wordpieces(tiny_model_dir):
    space = load(tiny_model_dir, "static")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tokenizer.tokenize("zqx") == ["z", "##q", "##x"]
    table = AutoModel.from_pretrained(tiny_model_dir).get_input_embeddings().weight.detach()
    expected = table[tokenizer.convert_tokens_to_ids(["z", "##q", "##x"])].mean(dim=0)
    assert torch.allclose(space.vector("zqx"), expected)
    assert "zqx" not in [w for w, _ in space.neighbors("zqx", k=5)]


def test_static_space_over_a_corpus_keeps_frequencies_and_majority_tags(tiny_model_dir):
    corpus = [{"tokens": ["Paris", "is", "in", "France"], "tags": ["B-LOC", "O", "O", "B-LOC"]},
              {"tokens": ["paris", "hilton"], "tags": ["B-PER", "I-PER"]},
              {"tokens": ["Paris"], "tags": ["B-LOC"]}]
    space = load(tiny_model_dir, "static", corpus=corpus)
    assert space.frequency("paris") == 3 and space.tag("paris") == "LOC"
    assert space.frequency("london") == 0 and space.tag("london") == ""


# ----- contextual --------------------------------------------------------------------------------


def test_contextual_vector_of_a_three_piece_word_is_the_mean_of_its_three_hidden_states(tiny_model_dir):
    sentences = [["the", "zqx", "lamb"], ["lamb", "the", "peter", "the"]]
    space = load(tiny_model_dir, "contextual", corpus=sentences)
    hidden, word_ids = hidden_states(tiny_model_dir, sentences[0])
    pieces = [i for i, w in enumerate(word_ids) if w == 1]
    assert len(pieces) == 3
    assert torch.allclose(space.vector("zqx"), hidden[pieces].mean(dim=0), atol=1e-5)
    second, second_ids = hidden_states(tiny_model_dir, sentences[1])
    lamb = (hidden[word_ids.index(2)] + second[second_ids.index(0)]) / 2  # mean over its two occurrences
    assert torch.allclose(space.vector("lamb"), lamb, atol=1e-5)


def test_contextual_space_counts_words_most_frequent_first_and_keeps_majority_tags(tiny_model_dir):
    corpus = [{"tokens": ["Peter", "met", "the", "EU"], "tags": ["B-PER", "O", "O", "B-ORG"]},
              {"tokens": ["the", "peter", "the"], "tags": ["O", "B-PER", "O"]}]
    space = load(tiny_model_dir, "contextual", corpus=corpus)
    assert space.words == ["the", "peter", "met", "eu"]  # lowercased like the tokenizer
    assert space.frequencies.tolist() == [3, 2, 1, 1]
    assert space.tags == ["O", "PER", "O", "ORG"]
    assert load(tiny_model_dir, "contextual", corpus=corpus, max_words=2).words == ["the", "peter"]


def test_contextual_lookup_of_a_word_missing_from_the_corpus_says_so(tiny_model_dir):
    space = load(tiny_model_dir, "contextual", corpus=["the lamb"])
    with pytest.raises(FtkitError, match="'paris' never occurs in the corpus"):
        space.neighbors("paris")


def test_contextual_space_of_a_plain_model_needs_a_corpus(tiny_model_dir):
    with pytest.raises(FtkitError, match="need a corpus"):
        load(tiny_model_dir, "contextual")


def test_contextual_space_reads_a_conll_file(tiny_model_dir, conll_sample):
    space = load(tiny_model_dir, "contextual", corpus=conll_sample)
    assert space.tag("xylophonist") == "PER" and space.tag("EU") == "ORG" and space.frequency(".") == 2


def test_the_contextual_pass_reports_progress_and_stays_quiet_unless_asked(tiny_model_dir, capsys, monkeypatch):
    from ftkit.embeddings import loading
    from ftkit.notebook.widgets.neighbors import NeighborBrowser

    corpus = [f"the lamb number {i}" for i in range(70)]
    heard: list[tuple[int, int]] = []
    load(tiny_model_dir, "contextual", corpus=corpus, batch_size=16, cache=False, progress=lambda *a: heard.append(a))
    assert heard == [(16, 70), (32, 70), (48, 70), (64, 70), (70, 70)]
    load(tiny_model_dir, "contextual", corpus=corpus, batch_size=16, cache=False)  # small: no bar by default
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(loading, "PROGRESS_BAR_SENTENCES", 50)  # a big corpus gets a tqdm bar
    load(tiny_model_dir, "contextual", corpus=corpus, batch_size=16, cache=False)
    assert "70/70" in capsys.readouterr().err

    shown: list[str] = []
    browser = NeighborBrowser.for_model(tiny_model_dir, corpus=corpus)
    browser.table.observe(lambda change: shown.append(change["new"]), names="value")
    browser.space.value = "contextual"  # the browser shows the pass's count while it loads
    assert any("70/70 sentences" in html for html in shown)


# ----- runs --------------------------------------------------------------------------------------


@pytest.fixture
def tuned_run(runs_dir, tiny_model_dir, conll_sample) -> Run:
    """A finished-looking run whose checkpoint moved "paris" onto "lamb" (and nothing else)."""
    return make_tuned_run(RunStore(), tiny_model_dir, conll_sample)


def make_tuned_run(store: RunStore, tiny_model_dir, conll_sample) -> Run:
    run_id = store.create_run(load_config({"model": str(tiny_model_dir), "data": {"train": str(conll_sample)}}))
    folder = store.run_dir(run_id) / "checkpoint-3"
    model = BertForTokenClassification.from_pretrained(tiny_model_dir, num_labels=len(LABELS),
                                                       id2label=dict(enumerate(LABELS)))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        table = model.get_input_embeddings().weight
        table[tokenizer.convert_tokens_to_ids("paris")] = table[tokenizer.convert_tokens_to_ids("lamb")]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    store.append_event(run_id, {"type": "checkpoint", "step": 3, "checkpoint": folder.name, "size": 1,
                                "adapter_only": False, "metrics": {}})
    return Run(run_id, store)


def test_a_run_in_a_store_of_its_own_loads_without_the_environment(tiny_model_dir, conll_sample, tmp_path,
                                                                   monkeypatch):
    import ftkit.runs

    monkeypatch.delenv("FTKIT_RUNS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./ftkit-runs here: the default store does not exist
    monkeypatch.setattr(ftkit.runs, "_KNOWN_STORES", {})
    run = make_tuned_run(RunStore(tmp_path / "elsewhere"), tiny_model_dir, conll_sample)
    assert run.store.root == tmp_path / "elsewhere"
    space = load(run, "static", cache=False)
    assert space.name.startswith(f"{run.name} (checkpoint-3)")
    assert resolve_source(run).path == str(run.dir / "checkpoint-3")
    assert resolve_source(run.id).run.dir == run.dir  # by id: the store this process opened it in
    assert resolve_source(str(run.dir)).run.store.root == run.store.root  # by folder: the folder's own store
    assert not (tmp_path / "ftkit-runs").exists()  # looking never created a default store


def test_a_run_stands_for_its_checkpoint_and_a_checkpoint_knows_its_run(tuned_run):
    assert resolve_source(tuned_run.id).path == str(tuned_run.dir / "checkpoint-3")
    assert resolve_source(tuned_run.dir).run.id == tuned_run.id  # the run folder
    checkpoint = resolve_source(str(tuned_run.dir / "checkpoint-3"))
    assert checkpoint.run.id == tuned_run.id and checkpoint.base == tuned_run.config.model
    shutil.copytree(tuned_run.dir / "checkpoint-3", tuned_run.dir / "best")
    assert resolve_source(tuned_run).path == str(tuned_run.dir / "best")


def test_a_run_without_checkpoints_is_refused_with_a_reason(runs_dir, tiny_model_dir):
    store = RunStore()
    run = Run(store.create_run(load_config({"model": str(tiny_model_dir)})), store)
    with pytest.raises(FtkitError, match="no saved model yet"):
        load(run, "static")


def test_contextual_space_of_a_run_reads_its_training_data(tuned_run):
    space = load(tuned_run.id, "contextual")
    assert "checkpoint-3" in space.name
    assert space.tag("xylophonist") == "PER" and space.frequency("peter") == 1


def test_compare_base_and_checkpoint_finds_the_word_fine_tuning_moved(tuned_run):
    before, after = load_pair(tuned_run.id, "static")
    comparison = compare(before, after, k=5)
    assert comparison.moved(1)["word"].tolist() == ["paris"]
    assert comparison.word("paris").columns[comparison.labels[1]][0][0] == "lamb"


def test_show_neighbors_puts_a_runs_base_and_checkpoint_side_by_side(tuned_run):
    table = show_neighbors("paris", run=tuned_run.id, k=3)
    assert len(table.columns) == 2
    base, tuned = table.columns.values()
    assert tuned[0][0] == "lamb" and base[0][0] != "lamb"


def test_show_moved_returns_a_table_and_an_arrow_plot(tuned_run):
    from bokeh.models import Arrow

    moved = show_moved(tuned_run.id, k=5, space="static")
    assert "paris" in moved._repr_html_()
    arrows = moved.plot().select_one({"type": Arrow})
    assert arrows.source.data["word"][0] == "paris"


@pytest.mark.parametrize("call, message", [
    (lambda: show_neighbors("paris", space="sparse"), "space must be one of"),
    (lambda: show_neighbors("  "), "give a word"),
    (lambda: show_neighbors("paris", space="contextual"), "need a run"),
    (lambda: show_neighbors("paris", run="no-such-run"), "is not a run"),
    (lambda: show_moved("no-such-run"), "is not a run"),
    (lambda: show_moved("no-such-run", k=0), "positive whole number"),
])
def test_magic_helpers_refuse_bad_input_with_a_clear_message(runs_dir, call, message):
    runs_dir.mkdir()
    with pytest.raises(FtkitError, match=message):
        call()


@pytest.mark.slow
def test_default_model_knows_that_paris_is_near_france_and_the_royal_analogy():
    space = load("default")
    assert "france" in [w for w, _ in space.neighbors("paris", k=5)]
    assert space.analogy("man", "king", "woman", k=1)[0][0] == "queen"
    assert "france" in show_neighbors("paris")._repr_html_()


def test_a_lora_checkpoint_keeps_the_static_space_and_gives_contextual_vectors(tiny_model_dir, tmp_path):
    from ftkit.engine.adapters import apply_adapter, save_checkpoint
    from ftkit.config import AdapterConfig

    model = BertForTokenClassification.from_pretrained(tiny_model_dir, num_labels=len(LABELS),
                                                       id2label=dict(enumerate(LABELS)))
    lora = apply_adapter(model, AdapterConfig(kind="lora", r=4, alpha=8), "ner")
    folder = save_checkpoint(lora, AutoTokenizer.from_pretrained(tiny_model_dir), tmp_path / "lora-checkpoint")
    base, tuned = load(tiny_model_dir, "static"), load(folder, "static")
    assert tuned.words == base.words and torch.equal(tuned.vectors, base.vectors)
    contextual = load(folder, "contextual", corpus=["the lamb", "peter lives in paris"])
    assert contextual.frequency("the") == 1 and contextual.dim == base.dim
