"""The side panel's label-issues route (ftkit.server.routes, `ftkit.datamap.label_issue_report`) against a real
Jupyter server: a run's training examples likeliest mislabelled, worst first, read from the dynamics it recorded."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ftkit.config import Config
from ftkit.runstore import RunStore
from ftkit.runstore.layout import DYNAMICS_FILE, DYNAMICS_LEVEL_KEY

from .test_routes import api  # noqa: F401  (the fixture: GET under /ftkit/api/ as (status, json body))

pytest_plugins = ["pytest_jupyter.jupyter_server"]

TEXTS = ["a fine film", "a dull film", "lovely acting", "<b>a great film</b>", "boring plot", "superb", "awful", "weak"]
LABELS = ["positive", "negative", "positive", "negative", "negative", "positive", "negative", "negative"]
MISLABELLED = 3  # "a great film", labelled negative: the model keeps preferring positive


def dynamics(epochs: int) -> bytes:
    """``epochs`` passes over TEXTS as the worker records them (`ftkit.engine.dynamics.records_parquet`'s
    Parquet, written here without torch): every example learnt quickly but MISLABELLED."""
    records = []
    for epoch in range(epochs):
        for example, label in enumerate(LABELS):
            gold = ["negative", "positive"].index(label)
            p_gold = 0.1 + 0.05 * epoch if example == MISLABELLED else 0.6 + 0.1 * epoch + 0.01 * example
            probs = [p_gold, 1 - p_gold] if gold == 0 else [1 - p_gold, p_gold]
            records.append({"example": example, "offset": 0, "epoch": epoch, "step": epoch * 2 + 1,
                            "confidence": p_gold, "correct": float(p_gold > 0.5), "gold": [gold],
                            "predicted": [gold if p_gold > 0.5 else 1 - gold], "probs": [probs]})
    schema = pa.schema([("example", pa.int64()), ("offset", pa.int32()), ("epoch", pa.int32()), ("step", pa.int64()),
                        ("confidence", pa.float32()), ("correct", pa.float32()), ("gold", pa.list_(pa.int32())),
                        ("predicted", pa.list_(pa.int32())), ("probs", pa.list_(pa.list_(pa.float32())))],
                       metadata={DYNAMICS_LEVEL_KEY: "example"})
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records, schema=schema), sink)
    return sink.getvalue()


def add_classification_run(store: RunStore, folder: Path, name: str, status: str, *, pid: int = 1,
                           epochs: int = 0) -> str:
    """A classification run on TEXTS (written into ``folder``) with ``epochs`` passes of dynamics recorded."""
    train = folder / "train.jsonl"
    if not train.exists():
        train.write_text("".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in zip(TEXTS, LABELS)))
    run_id = store.create_run(Config.from_dict({
        "name": name, "task": "classification", "data": {"train": str(train), "validation": str(train)}}))
    store.set_status(run_id, "running", pid=pid)
    store.append_event(run_id, {"type": "progress", "step": 2 * epochs, "total_steps": 6, "epoch": float(epochs)})
    if status != "running":
        store.set_status(run_id, status)
    if epochs:
        (store.run_dir(run_id) / DYNAMICS_FILE).write_bytes(dynamics(epochs))
    return run_id


@pytest.fixture
def store_and_ids(tmp_path) -> tuple[RunStore, dict[str, str]]:
    """A completed classification run with three epochs of dynamics, a running one with none yet."""
    store = RunStore(tmp_path / "runs")
    return store, {"completed": add_classification_run(store, tmp_path, "sst-completed", "completed", epochs=3),
                   "running": add_classification_run(store, tmp_path, "sst-running", "running")}


@pytest.fixture
def jp_server_config(store_and_ids):
    store, _ = store_and_ids
    return {"ServerApp": {"jpserver_extensions": {"ftkit": True}}, "FtkitApp": {"runs_dir": str(store.root)}}


def run_files(folder) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file()}


async def test_the_route_lists_the_likeliest_label_errors_worst_first_and_writes_nothing_to_the_run(api, store_and_ids):
    store, ids = store_and_ids
    before = run_files(store.run_dir(ids["completed"]))
    code, report = await api("runs", ids["completed"], "label-issues")
    assert code == 200
    assert run_files(store.run_dir(ids["completed"])) == before
    assert {key: report[key] for key in ("run", "task", "recorded", "epochs", "labels", "total")} == {
        "run": ids["completed"], "task": "classification", "recorded": True, "epochs": 3.0,
        "labels": ["negative", "positive"], "total": 8}
    worst = report["rows"][0]
    assert (worst["example"], worst["text"], worst["gold"], worst["predicted"]) == (
        MISLABELLED, "<b>a great film</b>", "negative", "positive")
    assert worst["confidence"] == pytest.approx(0.15) and worst["correctness"] == 0.0
    assert worst["variability"] == pytest.approx(0.0408, abs=1e-3)
    scores = [row["issue_score"] for row in report["rows"]]
    assert scores == sorted(scores) and len(scores) == 8


async def test_the_route_narrows_to_one_gold_label_and_keeps_the_worst_up_to_the_limit(api, store_and_ids):
    _, ids = store_and_ids
    code, report = await api("runs", ids["completed"], "label-issues", params={"label": "negative", "limit": "2"})
    assert code == 200
    assert report["total"] == LABELS.count("negative") and len(report["rows"]) == 2
    assert report["rows"][0]["example"] == MISLABELLED
    assert {row["gold"] for row in report["rows"]} == {"negative"}
    code, report = await api("runs", ids["completed"], "label-issues", params={"label": "positive"})
    assert code == 200 and {row["example"] for row in report["rows"]} == {0, 2, 5}


async def test_a_run_that_recorded_no_dynamics_yet_says_so_and_its_records_are_read_as_they_grow(api, store_and_ids):
    store, ids = store_and_ids
    code, report = await api("runs", ids["running"], "label-issues")
    assert code == 200
    assert (report["recorded"], report["epochs"], report["total"], report["rows"]) == (False, 0.0, 0, [])
    (store.run_dir(ids["running"]) / DYNAMICS_FILE).write_bytes(dynamics(1))  # the first epoch ended
    code, report = await api("runs", ids["running"], "label-issues")
    assert (report["recorded"], report["epochs"], report["total"]) == (True, 1.0, 8)
    (store.run_dir(ids["running"]) / DYNAMICS_FILE).write_bytes(dynamics(2))
    code, report = await api("runs", ids["running"], "label-issues")
    assert report["epochs"] == 2.0


@pytest.mark.parametrize(("params", "status", "code"), [
    ({"label": "maybe"}, 400, "invalid_label"),
    ({"limit": "0"}, 400, "invalid_limit"),
    ({"limit": "many"}, 400, "invalid_limit"),
])
async def test_an_unknown_label_or_a_bad_limit_is_a_json_400(api, store_and_ids, params, status, code):
    _, ids = store_and_ids
    answered, error = await api("runs", ids["completed"], "label-issues", params=params)
    assert (answered, error["code"]) == (status, code)
    assert set(error) == {"code", "message"}


async def test_an_unknown_run_is_a_json_404_and_the_route_needs_the_token(api, store_and_ids):
    _, ids = store_and_ids
    code, error = await api("runs", "20990101-000000-abcdef", "label-issues")
    assert code == 404 and error["code"] == "run_not_found"
    code, _ = await api("runs", ids["completed"], "label-issues", headers={"Authorization": ""})
    assert code == 403


async def test_a_run_whose_training_data_is_gone_is_a_conflict_that_says_so(api, store_and_ids, tmp_path):
    _, ids = store_and_ids
    (tmp_path / "train.jsonl").unlink()
    code, error = await api("runs", ids["completed"], "label-issues")
    assert code == 409 and error["code"] == "training_data_unavailable"
    assert "train.jsonl" in error["message"]
