"""Which training examples hurt: the data map of a run and its likely label errors, and a cleaner child run.

The worker records, every time training sees an example, the model's confidence in its gold label
(`ftkit.engine.dynamics`, the run folder's ``dynamics.parquet``). Here, without torch, those records
become one row per training example:

- ``confidence``: the mean, over passes, of the probability of its gold label (a sentence: the mean over
  its words; an answer: the geometric mean over its trained tokens);
- ``variability``: the standard deviation of that probability across passes;
- ``correctness``: the share of passes the model got it right (a sentence or an answer: the share of its
  labels or tokens);
- ``issue_score``: cleanlab's label quality of the example from the probabilities of its passes, lowest
  for the likeliest label errors (an answer, without a label set: its confidence). Which probabilities
  and which of cleanlab's scores were chosen on validation data: benchmarks/RESULTS.md, "Label errors".

`retrain_config` makes the child run (`Run.retrain` starts it): the parent's splits as it trained on them, copied into the child's run
folder, less the excluded examples and with the corrected labels (``data.exclude``, ``data.relabel``,
``data.retrain_of`` in its config), so ``ftkit.compare(parent, child)`` compares them on the same data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from .errors import ConfigError, DataError, RunError
from .runstore.layout import CONFIG_FILE, DYNAMICS_FILE, DYNAMICS_LEVEL_KEY

if TYPE_CHECKING:
    import pandas

    from .config import Config
    from .runs import Run
    from .runstore import RunStore

# Chosen by benchmarks/label_errors.py on a validation seed (RESULTS.md): cleanlab's score, and which
# passes' probabilities it reads ("all": their mean; "first": the first pass, made before the model
# trained on the example, so out of sample).
ISSUE_METHOD = "self_confidence"
ISSUE_PASSES = "all"
COLUMNS = ["example", "text", "gold", "predicted", "confidence", "variability", "correctness", "issue_score", "epochs"]
MEASURES = ("confidence", "variability", "correctness", "issue_score")
VIEW_COLUMNS = [*COLUMNS, "html", "labels"]  # and for the views: the example drawn, the labels it uses


# ----- records -> one row per example ------------------------------------------------------------------
def read_records(folder: Path) -> "tuple[pandas.DataFrame, str] | None":
    """The run's dynamics records and their level (example, token or generated); None before any was written."""
    import pyarrow.parquet as pq

    path = Path(folder) / DYNAMICS_FILE
    if not path.is_file():
        return None
    table = pq.read_table(path)
    level = (table.schema.metadata or {}).get(DYNAMICS_LEVEL_KEY, b"example").decode()
    return table.to_pandas(), level


def passes(records: "pandas.DataFrame") -> "pandas.DataFrame":
    """One row per example and pass: the windows of a long sentence joined in word order (a token-weighted
    confidence and correctness, their labels and probabilities concatenated)."""
    import numpy as np
    import pandas as pd

    records = records.sort_values(["example", "epoch", "offset"], kind="stable").reset_index(drop=True)
    if not records.duplicated(["example", "epoch"]).any():
        return records
    joined = []
    for (example, epoch), group in records.groupby(["example", "epoch"], sort=True):
        counts = group["gold"].map(len).to_numpy()
        joined.append({
            "example": example, "offset": 0, "epoch": epoch, "step": int(group["step"].max()),
            "confidence": float(np.average(group["confidence"], weights=counts)),
            "correct": float(np.average(group["correct"], weights=counts)),
            "gold": np.concatenate(group["gold"].to_list()), "predicted": np.concatenate(group["predicted"].to_list()),
            "probs": None if group["probs"].isna().any() else [p for probs in group["probs"] for p in probs],
        })
    return pd.DataFrame(joined)


def measures(per_pass: "pandas.DataFrame", level: str, method: str = ISSUE_METHOD,
             which: str = ISSUE_PASSES) -> "pandas.DataFrame":
    """Per example (indexed by it): confidence, variability, correctness, epochs, the last pass's gold and
    predicted label ids, and the issue score (`issue_scores`)."""
    grouped = per_pass.groupby("example", sort=True)
    frame = grouped.agg(confidence=("confidence", "mean"), variability=("confidence", lambda c: float(c.std(ddof=0))),
                        correctness=("correct", "mean"), epochs=("epoch", "size"))
    last = per_pass.sort_values("epoch", kind="stable").groupby("example", sort=True).last()
    frame["gold_ids"], frame["predicted_ids"] = last["gold"], last["predicted"]
    frame["issue_score"] = issue_scores(per_pass, level, frame, method, which)
    return frame


def issue_scores(per_pass: "pandas.DataFrame", level: str, frame: "pandas.DataFrame", method: str = ISSUE_METHOD,
                 which: str = ISSUE_PASSES) -> Any:
    """cleanlab's label quality per example of ``frame`` (0 to 1, lowest first in line to be a label error)
    from the probabilities of ``which`` passes: ``all`` (their mean) or ``first``. An answer (level
    ``generated``) has no label set to weigh: its confidence is its score."""
    import numpy as np

    if level == "generated":
        return frame["confidence"].to_numpy()
    chosen = per_pass[per_pass["epoch"] == per_pass.groupby("example")["epoch"].transform("min")] \
        if which == "first" else per_pass
    probabilities = chosen.groupby("example", sort=True)["probs"].agg(
        lambda rows: np.mean([np.asarray(list(p), dtype=np.float64) for p in rows], axis=0))
    probabilities = [_normalised(p) for p in probabilities.loc[frame.index]]
    gold = [np.asarray(g, dtype=np.int64) for g in frame["gold_ids"]]
    if level == "example":
        from cleanlab.rank import get_label_quality_scores

        return get_label_quality_scores(np.concatenate(gold), np.concatenate(probabilities), method=method)
    from cleanlab.token_classification.rank import get_label_quality_scores as token_scores

    scores, _ = token_scores(gold, probabilities, token_score_method=method, sentence_score_method="min")
    return np.asarray(scores)


def _normalised(probs: Any) -> Any:
    """Rows of probabilities summing to one in float64 (float32 softmax leaves them a hair off, which cleanlab rejects)."""
    import numpy as np

    probs = np.clip(np.atleast_2d(probs), 1e-12, None)
    return probs / probs.sum(axis=1, keepdims=True)


# ----- the data map ------------------------------------------------------------------------------------------
def data_map(run: "Run") -> "pandas.DataFrame":
    """One row per recorded training example (`COLUMNS`), in the train split's order: its row there
    (``example``, as ``data.exclude`` numbers it), text, gold and last predicted label, and the measures."""
    measured = _measured(run.dir, run.config, run.id)
    return _shown(measured, measured[0].index) if measured else _empty()


def _empty() -> "pandas.DataFrame":
    import pandas as pd

    return pd.DataFrame(columns=VIEW_COLUMNS)


def _measured(folder: Path, config: "Config", run_id: str) -> tuple[Any, Any, list[str], Any] | None:
    """(measures per example, the train split as trained, its labels, the task); None before any record."""
    from .tasks import get_task
    from .tasks.alignment import label_list
    from .tasks.loading import run_splits

    found = read_records(folder)
    if found is None:
        return None
    records, level = found
    task = get_task(config.task)
    frame = measures(passes(records), level)
    raw = run_splits(config, task)
    if len(frame) and int(frame.index.max()) >= len(raw["train"]):
        raise RunError(f"run {run_id}: its training data changed since it trained (its dynamics name row "
                       f"{int(frame.index.max())}, the train split now has {len(raw['train'])} rows)")
    labels = label_list(raw, task, given=config.data.labels) if task.label_column else []
    return frame, raw["train"], labels, task


def _shown(measured: tuple[Any, Any, list[str], Any], examples: Iterable[int]) -> "pandas.DataFrame":
    """The rows of ``examples`` as people read them: text, gold and predicted labels, the example drawn."""
    import pandas as pd

    frame, train, labels, task = measured
    rows = []
    for example in examples:
        measure, row = frame.loc[example], train[int(example)]
        shown = task.training_example(row, [labels[i] for i in measure["predicted_ids"]] if labels else None, labels)
        rows.append({"example": int(example), "text": shown["text"], "gold": shown["gold"],
                     "predicted": shown["predicted"], **{key: float(measure[key]) for key in MEASURES},
                     "epochs": int(measure["epochs"]), "html": shown["html"],
                     "labels": sorted(task.labels_in(row[task.label_column])) if task.label_column else []})
    return pd.DataFrame(rows, columns=VIEW_COLUMNS)


def label_issue_report(store: "RunStore", run_id: str, label: str | None = None,
                       limit: int | None = 100) -> dict[str, Any]:
    """The likeliest label errors of a run, worst first, for the side panel and the notebook table:
    ``{"run", "task", "recorded", "epochs", "labels", "total", "rows"}`` (rows: `COLUMNS`, at most ``limit``),
    only examples whose gold uses ``label`` when given. Only the rows returned are drawn."""
    from .config import load_config

    folder = store.run_dir(run_id)
    config = load_config(folder / CONFIG_FILE)
    measured = _measured(folder, config, run_id)
    report: dict[str, Any] = {"run": run_id, "task": config.task, "recorded": measured is not None and
                              bool(len(measured[0])), "epochs": 0.0, "labels": [], "total": 0, "rows": []}
    if not report["recorded"]:
        return report
    frame, train, _, task = measured
    uses = [set(task.labels_in(value)) for value in train[task.label_column]] if task.label_column else None
    report["epochs"] = float(frame["epochs"].max())
    report["labels"] = sorted({name for i in frame.index for name in uses[int(i)]}) if uses else []
    if label is not None:
        if label not in report["labels"]:
            raise ConfigError(f"run {run_id} has no label '{label}'; its labels: {', '.join(report['labels']) or 'none'}")
        frame = frame[[label in uses[int(i)] for i in frame.index]]
    ranked = frame.reset_index().sort_values(["issue_score", "example"], kind="stable")["example"]
    report["total"] = len(ranked)
    shown = _shown(measured, ranked if limit is None else ranked.head(limit))
    report["rows"] = json.loads(shown[COLUMNS].to_json(orient="records"))
    return report


# ----- acting on it ---------------------------------------------------------------------------------------
def row_numbers(selection: Any) -> list[int]:
    """Training rows from what people select: row numbers, a data map slice (its ``example`` column),
    or a file (`read_rows`)."""
    if selection is None:
        return []
    if isinstance(selection, (str, Path)):
        return read_rows(selection)
    if hasattr(selection, "columns"):  # a DataFrame: a slice of data_map()
        if "example" not in selection.columns:
            raise ConfigError("exclude: a DataFrame needs an 'example' column (the rows of run.data_map())")
        selection = selection["example"]
    if isinstance(selection, int):
        selection = [selection]
    rows = [int(row) for row in selection]
    if any(row < 0 for row in rows):
        raise ConfigError(f"exclude: rows are numbered from 0; got {min(rows)}")
    return sorted(set(rows))


def read_rows(path: str | Path) -> list[int]:
    """Row numbers from a file: one per line (``#`` comments), or a CSV/TSV/JSONL/Parquet with an
    ``example`` column (a data map saved with ``to_csv``)."""
    import pandas as pd

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file (a list of training rows to leave out, one number per line)")
    readers = {".csv": pd.read_csv, ".tsv": lambda p: pd.read_csv(p, sep="\t"), ".parquet": pd.read_parquet,
               ".jsonl": lambda p: pd.read_json(p, lines=True)}
    if path.suffix in readers:
        frame = readers[path.suffix](path)
        if "example" not in frame.columns:
            raise DataError(f"{path}: no 'example' column (the training rows, as run.data_map() numbers them)")
        return row_numbers(frame)
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if not text.isdigit():
            raise DataError(f"{path}:{number}: '{text}' is not a row number (one whole number per line)")
        rows.append(int(text))
    return sorted(set(rows))


def read_relabels(path: str | Path) -> dict[str, Any]:
    """Corrected labels from a file: a JSON or YAML mapping ``row: label``, or a CSV/TSV with columns
    ``example`` and ``label``."""
    import pandas as pd
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file (corrected labels: a mapping of training row to label)")
    if path.suffix in (".csv", ".tsv"):
        frame = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
        if not {"example", "label"} <= set(frame.columns):
            raise DataError(f"{path}: needs columns 'example' and 'label'")
        return {str(int(row)): label for row, label in zip(frame["example"], frame["label"])}
    try:
        mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not JSON or YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(mapping, Mapping):
        raise DataError(f"{path}: give a mapping of training row to label, e.g. {{12: negative}}")
    return {str(row): label for row, label in mapping.items()}


def retrain_config(run: "Run", exclude: Any = None, relabel: Mapping[Any, Any] | None = None, name: str | None = None,
                   overrides: Iterable[str] | Mapping[str, Any] | None = None) -> "tuple[Config, dict[str, Any]]":
    """The config of a child of ``run`` (`Run.retrain` starts it) and the splits to copy into its folder.

    The splits are the parent's as it trained on them (its subsets included), as in-memory data, so
    ``runs.start`` writes them into the child's run folder, never over the user's files; the config names the
    parent (``data.retrain_of``) and what changes (``data.exclude``, ``data.relabel``); ``overrides`` change
    anything else (``["training.seed=1"]``).
    """
    from .config import load_config
    from .tasks import get_task
    from .tasks.loading import run_splits

    parent = run.config
    rows = row_numbers(exclude)
    relabel = {str(int(row)): label for row, label in (relabel or {}).items()}
    if not rows and not relabel:
        raise ConfigError("retrain: nothing to change; give exclude (training rows) or relabel ({row: label})")
    splits = run_splits(parent, get_task(parent.task))
    # The copies hold the task's canonical columns: the options that found them in the user's files go.
    cleared = ("text_column", "label_column", "tokens_column", "tags_column", "prompt_template", "completion_column",
               "answer_map", "chosen_column", "rejected_column", "split_names", "subset", "revision", "format")
    changes = {**{f"data.{key}": None for key in cleared},
               "data.exclude": rows or None, "data.relabel": relabel or None, "data.retrain_of": run.id,
               "training.max_train_samples": None, "training.max_eval_samples": None,
               "name": name or f"{run.name}-retrain"}
    config = load_config(parent.replace(changes), overrides=overrides)
    return config, {f"data__{split}": dataset for split, dataset in splits.items()}


__all__ = ["COLUMNS", "data_map", "issue_scores", "label_issue_report", "measures", "passes", "read_records",
           "read_relabels", "read_rows", "retrain_config", "row_numbers"]
