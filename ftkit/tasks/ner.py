"""Named-entity recognition: one tag per word, IOB2 after conversion, scored by entity (seqeval).

Canonical rows are ``tokens: list[str]`` and ``tags: list[str]``. Labels sit on the first subword
of each word (``word_ids()`` of a fast tokenizer); the other subwords and special tokens get -100
so the loss and the metrics see one prediction per word. Sentences longer than the model's window
become consecutive windows of whole words; ``sentence_id`` and ``word_offset`` let evaluation and
the predictions file put them back together.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from .base import ReportRow, Task

if TYPE_CHECKING:
    import datasets

    from ..config import DataConfig
    from ..data.formats import Table
    from .stats import SplitStats

TOKEN_COLUMNS = ("tokens", "words", "token", "word")
TAG_COLUMNS = ("tags", "ner_tags", "labels", "ner", "tag")
SCHEME = "IOB2"  # the scheme tags are converted to, and scored in
WORD_PATTERN = re.compile(r"\w+(?:[-']\w+)*|[^\w\s]")  # how raw text is split into words for predict
_SIDE_STYLE = "display:inline-block;width:5.5em;color:#6b7280;font-size:0.8em"  # the error browser's "gold", "predicted"
ENTITY_COLOURS = ("#fde68a", "#a7f3d0", "#bfdbfe", "#fbcfe8", "#ddd6fe", "#fed7aa", "#c7d2fe", "#bbf7d0")


class NerTask(Task):
    name = "ner"
    columns = ("tokens", "tags")
    label_column = "tags"
    example_noun = "sentences"
    label_noun = "entity type"
    labelled_noun = "entities"
    distribution_title = "entities per type"
    form_fields = ("data.tag_column", "data.tag_scheme", "data.tokens_column", "data.tags_column")
    pipeline_task = "token-classification"
    pipeline_options = ', aggregation_strategy="first"'  # a word takes its first subword's tag, as in training
    example_input = "John Smith lives in Paris."
    default_metric = "f1"
    peft_task_type = "TOKEN_CLS"
    architecture_suffix = "ForTokenClassification"
    supports_packing = True
    encoder_takes_indices = True

    # ----- data ---------------------------------------------------------------------------------------
    def features(self) -> "datasets.Features":
        import datasets

        return datasets.Features({"tokens": datasets.List(datasets.Value("string")),
                                  "tags": datasets.List(datasets.Value("string"))})

    def canonical(self, table: "Table", options: "DataConfig") -> "Table":
        from ..data.formats import Table
        from ..data.sources import class_names, pick_column, word_list
        from ..data.tags import split_tag

        tokens_name = pick_column(table, options.tokens_column, TOKEN_COLUMNS, "tokens (word list)", "tokens_column")
        tags_name = pick_column(table, options.tags_column, TAG_COLUMNS, "tags (NER tag list)", "tags_column")
        names = class_names(table.features, tags_name) or options.labels
        all_tokens, all_tags, valid = [], [], {"O"}
        for index, (tokens, tags) in enumerate(zip(table.columns[tokens_name], table.columns[tags_name])):
            tokens, tags = word_list(tokens), word_list(tags)
            if tokens is None or tags is None:
                missing = tokens_name if tokens is None else tags_name
                raise table.error(index, f"'{missing}' must be a list of strings; this row has none")
            if len(tokens) != len(tags):
                raise table.error(index, f"{len(tokens)} tokens but {len(tags)} tags: every token needs exactly one tag")
            if not tokens:
                raise table.error(index, "an empty sentence (no tokens)")
            tags = [_tag_name(tag, names, table, index, position) for position, tag in enumerate(tags)]
            for position, tag in enumerate(tags):
                if tag not in valid:
                    try:
                        split_tag(tag)
                    except ValueError as exc:
                        raise table.error(index, f"invalid tag: {exc}", token=position) from None
                    valid.add(tag)
            all_tokens.append([str(token) for token in tokens])
            all_tags.append(tags)
        return Table({"tokens": all_tokens, "tags": all_tags}, table.source, table.path, table.lines,
                     one_line_per_token=table.one_line_per_token)

    def normalise(self, tables: dict[str, "Table"], options: "DataConfig") -> None:
        """Tags to IOB2, from data.tag_scheme or the scheme detected over every split."""
        from ..data.tags import detect_scheme, to_iob2

        scheme = options.tag_scheme
        if scheme == "auto":
            scheme = detect_scheme(tags for table in tables.values() for tags in table.columns["tags"])
        for table in tables.values():
            tag_lists = table.columns["tags"]
            for index, tags in enumerate(tag_lists):
                try:
                    tag_lists[index] = to_iob2(tags, scheme)
                except ValueError as exc:
                    position = next(i for i, tag in enumerate(tags) if tag[0] in "SE")
                    raise table.error(index, f"{exc} (data.tag_scheme is '{scheme}'; use bioes or auto for S-/E- tags)",
                                      token=position) from None

    def labels_in(self, row_labels: Any) -> set[str]:
        return {tag[2:] for tag in row_labels if tag != "O"}

    def label_of(self, given: str) -> str:
        return given[2:] if given[1:2] == "-" else given

    def position_of(self, row_labels: Any, label: str) -> int | None:
        return next((i for i, tag in enumerate(row_labels) if tag[2:] == label), None)

    def label_list(self, splits: Iterable["datasets.Dataset"], given: Sequence[str] | None = None) -> list[str]:
        """"O" first, then B-X and I-X for every entity type X seen in any split (both, so the model can
        predict either), sorted by type; ``given`` must include "O"."""
        from ..data.tags import split_tag
        from ..errors import DataError

        if given:
            labels = list(dict.fromkeys(given))
            if "O" not in labels:
                raise DataError(f"data.labels must include 'O' for NER; got {', '.join(labels)}")
            return labels
        types = {split_tag(tag)[1] for split in splits for tags in split["tags"] for tag in tags if tag != "O"}
        return ["O"] + [f"{prefix}-{kind}" for kind in sorted(types) for prefix in "BI"]

    def model_labels_in(self, row_labels: Any) -> Iterable[str]:
        return row_labels

    # ----- statistics and preview --------------------------------------------------------------------
    def tag_scheme(self, splits: Mapping[str, "datasets.Dataset"], option: str | None) -> str | None:
        from ..data.tags import detect_scheme

        scheme = option or "auto"
        if scheme == "auto":
            scheme = detect_scheme(tags for split in splits.values() for tags in split["tags"])
        return scheme

    def split_stats(self, name: str, dataset: "datasets.Dataset", scheme: str | None) -> "SplitStats":
        """Entities counted as spans (conlleval's rules), tags read as written and checked against ``scheme``."""
        from collections import Counter

        from ..data.tags import entity_spans, scheme_violations
        from .stats import SplitStats

        counts: Counter = Counter()
        tag_set: set[str] = set()
        lengths, violations = [], []
        for sentence, tags in enumerate(dataset["tags"]):
            lengths.append(len(tags))
            tag_set.update(tags)
            counts.update(kind for kind, _, _ in entity_spans(tags))
            for position, message in scheme_violations(tags, scheme):
                violations.append({"split": name, "sentence": sentence, "position": position,
                                   "tag": tags[position], "message": message})
        return SplitStats.of(len(dataset), lengths, counts, len(tag_set), violations)

    def preview_html(self, rows: Iterable[Mapping[str, Any]]) -> str:
        from ..data.tags import entity_spans

        examples = [(row["tokens"], entity_spans(row["tags"])) for row in rows]
        labels = sorted({kind for _, spans in examples for kind, _, _ in spans})
        return "".join(f'<div class="ftkit-example">{_sentence_html(tokens, spans, labels)}</div>'
                       for tokens, spans in examples)

    # ----- model, tokenisation, batches and loss -----------------------------------------------------
    def model_class(self) -> type:
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    def encoder(self, tokenizer: Any, label2id: Mapping[str, int], max_length: int) -> Callable[..., dict[str, list]]:
        return _NerEncoder(tokenizer, label2id, max_length)

    def collator(self, tokenizer: Any, pad_to_multiple_of: int | None) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    def loss_function(self) -> Callable[..., Any]:
        from .losses import label_weighted_loss

        return label_weighted_loss

    # ----- evaluation and predictions --------------------------------------------------------------
    def compute_metrics(self, id2label: Mapping[int, str], mode: str | None = None) -> Callable[[Any], dict]:
        """Entity scores on words: only positions whose label is not -100 (first subwords) count."""
        from .scoring import int_keys, ner_report, tag_sequences

        id2label = int_keys(id2label)

        def compute_ner(prediction: Any) -> dict[str, float]:
            true_tags, pred_tags = tag_sequences(prediction.predictions, prediction.label_ids, id2label)
            report = ner_report(true_tags, pred_tags, mode=mode)
            return {k: v for k, v in report.items() if not isinstance(v, str)}

        return compute_ner

    def report_summary(self, metrics: Mapping[str, Any], support: int) -> tuple[str, list[ReportRow]]:
        m = metrics
        title = f"entity scores (seqeval, scheme {m.get('scheme', SCHEME)}, mode {m.get('mode', 'default')})"
        return title, [("micro avg", m.get("precision"), m.get("recall"), m.get("f1"), support),
                       ("macro avg", None, None, m.get("macro_f1"), support),
                       ("token accuracy", None, None, m.get("accuracy"), None)]

    def save_predictions(self, prepared: Any, split: str, predictions: Any, path: Path) -> None:
        """``{"id", "tokens", "tags", "predicted"}`` per sentence, windows stitched back together."""
        from .scoring import save_predictions, word_predictions

        raw, features = prepared.raw[split], prepared.features[split]
        by_sentence = word_predictions(features, predictions, dict(enumerate(prepared.labels)))
        predicted = [by_sentence.get(i, ["O"] * len(tokens)) for i, tokens in enumerate(raw["tokens"])]
        save_predictions(path, raw["tokens"], raw["tags"], predicted)

    def training_example(self, row: Mapping[str, Any], predicted: Sequence[str] | None,
                         labels: Sequence[str]) -> dict[str, Any]:
        """Entities written ``words/TYPE``; the predicted tags of words a window cut off count as O."""
        tokens = list(row["tokens"])
        guessed = (list(predicted or []) + ["O"] * len(tokens))[:len(tokens)]
        judged = _judged([{"id": 0, "tokens": tokens, "tags": list(row["tags"]), "predicted": guessed}])[0]

        def spans(side: str) -> str:
            return " ".join(f"{_span_text(tokens, span)}/{span[2]}" for span in judged[side])

        return {"text": " ".join(tokens), "gold": spans("gold"), "predicted": spans("predicted") if predicted else None,
                "html": self.error_example_html(judged, sorted({label[2:] for label in labels if label != "O"}))}

    def export_inputs(self, raw: "datasets.Dataset") -> tuple[list[str], list[list[str]]]:
        """Each sentence as text (its words joined by spaces, as `predict` splits them again) and its tags."""
        return [" ".join(tokens) for tokens in raw["tokens"]], list(raw["tags"])

    def comparable(self, prediction: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, int, int], ...]:
        """The entity spans: type and character offsets (scores may differ in their last digits)."""
        return tuple((entity["label"], entity["start"], entity["end"]) for entity in prediction)

    def predict(self, predictor: Any, texts: list[str], batch_size: int) -> list[list[dict[str, Any]]]:
        """Entities with character offsets: words split off the text with their spans, tokenised as pre-split
        words, each taking its first subword's prediction exactly as in training; windows of whole words
        for texts longer than the model's window."""
        tokenizer, id2label = predictor.tokenizer, predictor.id2label
        spans = [[(m.start(), m.end()) for m in WORD_PATTERN.finditer(text)] for text in texts]
        windows = [(t, window) for t, text_spans in enumerate(spans)
                   for window in _windows(tokenizer, [texts[t][s:e] for s, e in text_spans], predictor.max_length)]
        word_tags: list[list[tuple[str, float]]] = [[] for _ in texts]
        for start in range(0, len(windows), batch_size):
            chunk = windows[start:start + batch_size]
            encoded = tokenizer([words for _, words in chunk], is_split_into_words=True, truncation=True,
                                max_length=predictor.max_length, padding=True, return_tensors="pt")
            probabilities = predictor.probabilities(encoded).numpy()
            for row, (t, words) in enumerate(chunk):
                tags: list[tuple[str, float] | None] = [None] * len(words)
                for position, word in enumerate(encoded.word_ids(row)):
                    if word is not None and tags[word] is None:
                        label_id = int(probabilities[row, position].argmax())
                        tags[word] = (id2label[label_id], float(probabilities[row, position, label_id]))
                word_tags[t].extend(tag or ("O", 0.0) for tag in tags)
        return [group_entities(text, text_spans, tags) for text, text_spans, tags in zip(texts, spans, word_tags)]


    def prediction_display(self, text: str, prediction: Any) -> tuple[str, str]:
        plain = "\n".join(f"{e['label']}: {e['text']} ({e['score']:.2f})" for e in prediction) or "(no entities)"
        return plain, entities_html(text, prediction)

    # ----- where the model goes wrong ----------------------------------------------------------------
    def error_report(self, rows: Sequence[Mapping[str, Any]], limit: int | None = None) -> dict[str, Any]:
        """Entity decisions per type (`ftkit.tasks.scoring.span_decisions` defines the kinds; a type's
        correct count is seqeval's true positives, so its precision, recall and F1 are seqeval's), a type
        confusion matrix, and the sentences with the most errors first.

        The matrix has the entity types plus "O": a missed entity is predicted "O", a spurious one is
        gold "O". It compares types only: a wrong boundary counts under its gold and predicted types, so
        the diagonal is correct plus same-type wrong boundaries.
        """
        from collections import Counter

        from .scoring import ENTITY_ERROR_KINDS, confusion_matrix, precision_recall_f1

        examples = _judged(rows)
        decisions = [decision for example in examples for decision in example["errors"]]
        gold = Counter(span[2] for example in examples for span in example["gold"])
        predicted = Counter(span[2] for example in examples for span in example["predicted"])
        counts = Counter((decision["type"], decision["kind"]) for decision in decisions)
        types = sorted(gold.keys() | predicted.keys())
        table = [[entity, *(counts[entity, kind] for kind in ENTITY_ERROR_KINDS),
                  *precision_recall_f1(counts[entity, "correct"], predicted[entity], gold[entity])] for entity in types]
        kinds = Counter(decision["kind"] for decision in decisions)
        summary = {"examples": len(examples), "entities": sum(gold.values()), "predicted": sum(predicted.values()),
                   **{kind: kinds[kind] for kind in ENTITY_ERROR_KINDS}}
        if len(examples) < len(rows):
            summary["unlabelled"] = len(rows) - len(examples)
        labels = [*types, "O"]
        pairs = ((d["gold"][2] if d["gold"] else "O", d["predicted"][2] if d["predicted"] else "O") for d in decisions)
        examples.sort(key=lambda e: (-sum(d["kind"] != "correct" for d in e["errors"]), e["id"]))
        return {
            "summary": summary,
            "table": {"title": "entity decisions per type (seqeval's spans, default mode)",
                      "columns": ["type", *(k.replace("_", " ") for k in ENTITY_ERROR_KINDS),
                                  "precision", "recall", "f1"],
                      "rows": table},
            "confusion": {"title": "entity types, gold (rows) by predicted (columns); O: no entity",
                          "labels": labels, "matrix": confusion_matrix(pairs, labels)},
            "examples": examples[:limit],
        }

    def error_rows(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """One record per span decision: id, kind, type, the gold and predicted words, the sentence."""
        return [{"id": example["id"], "kind": decision["kind"], "type": decision["type"],
                 "gold": _span_text(example["tokens"], decision["gold"]),
                 "predicted": _span_text(example["tokens"], decision["predicted"]),
                 "sentence": " ".join(example["tokens"])}
                for example in _judged(rows) for decision in example["errors"]]

    def error_facets(self, example: Mapping[str, Any]) -> list[tuple[str, str | None]]:
        return [(decision["kind"], decision["type"]) for decision in example["errors"]]

    def error_example_html(self, example: Mapping[str, Any], labels: Sequence[str]) -> str:
        """The sentence twice, gold and predicted entities highlighted as in the data preview, then its errors."""
        tokens, labels = example["tokens"], list(labels)

        def line(name: str, spans: list[list[Any]]) -> str:
            sentence = _sentence_html(tokens, [(kind, start, end) for start, end, kind in spans], labels)
            return f'<div><span style="{_SIDE_STYLE}">{name}</span>{sentence}</div>'

        def side(span: list[Any] | None) -> str:
            return "—" if span is None else f"“{html.escape(_span_text(tokens, span))}” {html.escape(span[2])}"

        notes = "".join(f"<li>{html.escape(d['kind'].replace('_', ' '))}: {side(d['gold'])} → {side(d['predicted'])}</li>"
                        for d in example["errors"] if d["kind"] != "correct")
        return (f'<div class="ftkit-error-example">{line("gold", example["gold"])}'
                f'{line("predicted", example["predicted"])}<ul style="margin:2px 0">{notes}</ul></div>')


def _tag_name(tag: Any, names: list[str] | None, table: "Table", index: int, position: int) -> str:
    if isinstance(tag, str):
        return tag.strip()
    if isinstance(tag, int) and not isinstance(tag, bool):
        if names is None:
            raise table.error(index, f"tag {tag} is an integer id but the data has no tag names "
                              "(a ClassLabel feature): give the names in order with data.labels", token=position)
        if not 0 <= tag < len(names):
            raise table.error(index, f"tag id {tag} is outside the {len(names)} tag names", token=position)
        return names[tag]
    raise table.error(index, f"tag {tag!r} is neither a tag string nor a tag id", token=position)


def _judged(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Predictions-file rows with gold tags as report examples: spans as ``[start, end, type]`` and their decisions."""
    from .scoring import span_decisions, tag_spans

    judged = []
    for row in rows:
        if row.get("tags") is None:  # unlabelled: predicted, not scored
            continue
        gold, predicted = tag_spans(row["tags"]), tag_spans(row["predicted"])
        judged.append({"id": row["id"], "tokens": row["tokens"], "gold": [list(span) for span in gold],
                       "predicted": [list(span) for span in predicted], "errors": span_decisions(gold, predicted)})
    return judged


def _span_text(tokens: Sequence[str], span: Sequence[Any] | None) -> str | None:
    return None if span is None else " ".join(tokens[span[0]:span[1]])


def _sentence_html(tokens: list[str], spans: list[tuple[str, int, int]], labels: list[str]) -> str:
    import html

    from .preview import CHIP_STYLE, MARK_STYLE, colour_of

    parts, position = [], 0
    for kind, start, end in spans:
        parts.extend(html.escape(token) for token in tokens[position:start])
        words = html.escape(" ".join(tokens[start:end]))
        parts.append(f'<mark class="ftkit-entity" style="{MARK_STYLE.format(colour=colour_of(kind, labels))}">'
                     f'{words}<span style="{CHIP_STYLE}">{html.escape(kind)}</span></mark>')
        position = end
    parts.extend(html.escape(token) for token in tokens[position:])
    return " ".join(parts)


def _windows(tokenizer: Any, words: list[str], max_length: int) -> list[list[str]]:
    """Split words into consecutive windows whose subwords (plus special tokens) fit the model."""
    if not words:
        return []
    encoded = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
    pieces = [0] * len(words)
    for word in encoded.word_ids():
        if word is not None:
            pieces[word] += 1
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    windows, current, used = [], [], 0
    for word, count in zip(words, pieces):
        if current and used + count > budget:
            windows.append(current)
            current, used = [], 0
        current.append(word)
        used += count
    windows.append(current)
    return windows


class _NerEncoder:
    """Batched map function: sentences -> one row per window, labels on first subwords."""

    def __init__(self, tokenizer: Any, label2id: Mapping[str, int], max_length: int):
        from .alignment import IGNORE_INDEX

        self.tokenizer, self.label2id, self.max_length = tokenizer, label2id, max_length
        self.budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
        self.ignore_index = IGNORE_INDEX

    def __call__(self, batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        from .alignment import word_windows

        # verbose=False: sentences over the model's limit are expected here; they become windows.
        encoded = self.tokenizer(batch["tokens"], is_split_into_words=True, verbose=False)
        # One entry per output row: (from_windows, row, tags, sentence_id, word_offset). Rows of
        # sentences over the limit point into a second encoding, of their windows.
        planned: list[tuple[bool, int, list[str], int, int]] = []
        windows: list[list[str]] = []
        for row, (tokens, tags, sentence_id) in enumerate(zip(batch["tokens"], batch["tags"], indices)):
            word_ids = encoded.word_ids(row)
            if len(word_ids) <= self.max_length:
                planned.append((False, row, tags, sentence_id, 0))
                continue
            lengths = [0] * len(tokens)
            for word in word_ids:
                if word is not None:
                    lengths[word] += 1
            for start, end in word_windows(lengths, self.budget):
                planned.append((True, len(windows), tags[start:end], sentence_id, start))
                windows.append(tokens[start:end])
        window_encoding = self.tokenizer(windows, is_split_into_words=True, truncation=True,
                                         max_length=self.max_length) if windows else None
        columns = (*encoded.keys(), "labels", "word_ids", "sentence_id", "word_offset", "length")
        rows: dict[str, list] = {key: [] for key in columns}
        for from_windows, row, tags, sentence_id, offset in planned:
            self._add(rows, window_encoding if from_windows else encoded, row, tags, sentence_id, offset)
        return rows

    def _add(self, rows: dict[str, list], encoding: Any, row: int, tags: list[str], sentence_id: int,
             offset: int) -> None:
        word_ids = encoding.word_ids(row)
        labels, previous = [], None
        for word in word_ids:
            labels.append(self.label2id[tags[word]] if word is not None and word != previous else self.ignore_index)
            previous = word
        for key, values in encoding.items():
            rows[key].append(values[row])
        rows["labels"].append(labels)
        rows["word_ids"].append([-1 if word is None else word for word in word_ids])
        rows["sentence_id"].append(sentence_id)
        rows["word_offset"].append(offset)
        rows["length"].append(len(word_ids))


def group_entities(text: str, spans: list[tuple[int, int]], tags: list[tuple[str, float]]) -> list[dict[str, Any]]:
    """Entities from per-word (tag, probability): B- (or S-) starts one, I- (or E-) of the same type continues it.

    An I- tag after O or another type starts an entity too (as seqeval's default mode reads it).
    """
    entities: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for (start, end), (tag, score) in zip(spans, tags):
        prefix, _, kind = tag.partition("-") if "-" in tag else ("I", "", tag)
        if tag == "O" or not kind:
            current = None
            continue
        if current is None or prefix in ("B", "S") or current["label"] != kind:
            current = {"label": kind, "start": start, "end": end, "scores": [score]}
            entities.append(current)
        else:
            current["end"] = end
            current["scores"].append(score)
        if prefix in ("E", "S"):
            current = None
    return [{"text": text[e["start"]:e["end"]], "label": e["label"], "start": e["start"], "end": e["end"],
             "score": sum(e["scores"]) / len(e["scores"])} for e in entities]


def entities_html(text: str, entities: list[dict[str, Any]]) -> str:
    """The text with each entity highlighted (one colour per type) and its type shown; all text escaped."""
    colours: dict[str, str] = {}
    parts, cursor = [], 0
    for entity in sorted(entities, key=lambda e: e["start"]):
        if entity["start"] < cursor:
            continue
        colour = colours.setdefault(entity["label"], ENTITY_COLOURS[len(colours) % len(ENTITY_COLOURS)])
        parts.append(html.escape(text[cursor:entity["start"]]))
        parts.append(f'<mark style="background:{colour};padding:0 2px;border-radius:3px" '
                     f'title="{html.escape(entity["label"])} {entity.get("score", 0):.2f}">'
                     f'{html.escape(text[entity["start"]:entity["end"]])}'
                     f'<sub style="font-size:0.7em;margin-left:2px">{html.escape(entity["label"])}</sub></mark>')
        cursor = entity["end"]
    parts.append(html.escape(text[cursor:]))
    return '<div class="ftkit-entities" style="line-height:1.8">' + "".join(parts) + "</div>"
