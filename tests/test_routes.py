"""The side panel's REST API (ftkit.server.routes) against a real Jupyter server and a store with every status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tornado.httpclient

from ftkit.config import Config
from ftkit.runstore import RunStore
from ftkit.runstore.layout import STOP_FILE
from ftkit.runstore.liveness import process_start_time

pytest_plugins = ["pytest_jupyter.jupyter_server"]


def add_run(store: RunStore, name: str, status: str, *, pid: int | None = None, checkpoints: int = 0,
            f1: float | None = None, step: int = 0, task: str = "ner") -> str:
    """A run as a worker would leave it: status events, progress, an eval and checkpoint folders."""
    run_id = store.create_run(Config.from_dict({"name": name, "task": task}))
    if status == "queued":
        return run_id
    store.set_status(run_id, "running", pid=pid or 1)
    store.append_event(run_id, {"type": "progress", "step": step, "total_steps": 100, "epoch": step / 50,
                                "samples_per_second": 12.5, "loss": 0.5})
    if f1 is not None:
        store.append_event(run_id, {"type": "eval", "split": "validation", "step": step, "epoch": 1.0,
                                    "metrics": {"f1": f1, "loss": 0.3}, "best_metric_name": "f1"})
    for i in range(1, checkpoints + 1):
        folder = store.run_dir(run_id) / f"checkpoint-{i * 10}"
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(b"\0" * 100)
        store.append_event(run_id, {"type": "checkpoint", "step": i * 10, "path": str(folder), "size": 100,
                                    "adapter_only": i % 2 == 1, "metrics": {"f1": 0.5 + i / 100}})
    (store.run_dir(run_id) / "train.log").write_text("step 1\nstep 2\n<b>not html</b>\n")
    if status != "running":
        store.set_status(run_id, status, **({"error": "CUDA out of memory"} if status == "failed" else {}))
    return run_id


@pytest.fixture
def store_with_runs(tmp_path, sleeper) -> tuple[RunStore, dict[str, str]]:
    store = RunStore(tmp_path / "runs")
    ids = {
        "queued": add_run(store, "queued-ner", "queued"),
        "running": add_run(store, "running-ner", "running", pid=sleeper.pid, checkpoints=2, f1=0.7, step=40),
        "completed": add_run(store, "completed-lora", "completed", checkpoints=3, f1=0.9, step=100),
        "failed": add_run(store, "failed-<script>", "failed", step=5),
        "stopped": add_run(store, "stopped-head", "stopped", checkpoints=1, f1=0.6, step=50),
    }
    return store, ids


@pytest.fixture
def jp_server_config(store_with_runs):
    store, _ = store_with_runs
    return {"ServerApp": {"jpserver_extensions": {"ftkit": True}}, "FtkitApp": {"runs_dir": str(store.root)}}


@pytest.fixture
def api(jp_fetch):
    """GET/POST/DELETE under /ftkit/api/ returning (status, json body), errors included."""

    async def call(*parts: str, method: str = "GET", params: dict | None = None, headers: dict | None = None,
                   body: object = None):
        """``body``: bytes as they are, anything else as JSON (POST only)."""
        data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
        kwargs = {"body": data if method == "POST" else None, "allow_nonstandard_methods": True}
        try:
            response = await jp_fetch("ftkit", "api", *parts, method=method, params=params, headers=headers, **kwargs)
        except tornado.httpclient.HTTPClientError as exc:
            response = exc.response
        return response.code, json.loads(response.body or b"null")

    return call


async def test_lists_every_run_newest_first_with_summaries(api, store_with_runs):
    _, ids = store_with_runs
    code, page = await api("runs")
    assert code == 200
    assert page["total"] == 5
    assert [run["id"] for run in page["runs"]] == list(reversed(ids.values()))
    running = next(run for run in page["runs"] if run["id"] == ids["running"])
    assert running["progress"]["step"] == 40 and running["progress"]["total_steps"] == 100
    assert running["best_metric"] == {"name": "validation_f1", "value": 0.7}
    assert running["checkpoint_count"] == 2
    assert page["etag"]


@pytest.mark.parametrize(("params", "expected"), [
    ({"status": "running"}, ["running"]),
    ({"status": "failed,stopped"}, ["failed", "stopped"]),
    ({"q": "lora"}, ["completed"]),
    ({"q": "<script>"}, ["failed"]),
    ({"q": "no such run"}, []),
])
async def test_filters_by_status_and_text(api, store_with_runs, params, expected):
    _, ids = store_with_runs
    code, page = await api("runs", params=params)
    assert code == 200
    assert sorted(run["id"] for run in page["runs"]) == sorted(ids[s] for s in expected)
    assert page["total"] == len(expected)


async def test_sorts_by_best_metric_and_pages(api, store_with_runs):
    _, ids = store_with_runs
    code, first = await api("runs", params={"sort": "best_metric", "order": "desc", "limit": 2})
    assert code == 200
    assert [run["id"] for run in first["runs"]] == [ids["completed"], ids["running"]]
    _, second = await api("runs", params={"sort": "best_metric", "order": "desc", "limit": 2, "offset": 2})
    assert [run["id"] for run in second["runs"]][:1] == [ids["stopped"]]
    assert first["total"] == second["total"] == 5 and (second["offset"], second["limit"]) == (2, 2)


@pytest.mark.parametrize("params", [
    {"status": "exploded"}, {"sort": "pid"}, {"order": "sideways"}, {"limit": "0"}, {"limit": "100000"},
    {"limit": "ten"}, {"offset": "-1"}, {"q": "x" * 201},
])
async def test_rejects_bad_list_parameters_with_a_json_error(api, params):
    code, error = await api("runs", params=params)
    assert code == 400
    assert set(error) == {"code", "message"} and error["code"].startswith("invalid_")


async def test_detail_has_config_metrics_checkpoints_and_log_tail(api, store_with_runs):
    store, ids = store_with_runs
    code, run = await api("runs", ids["completed"])
    assert code == 200
    assert run["config"]["name"] == "completed-lora"
    assert run["metric_history"][0] == {"split": "validation", "step": 100, "epoch": 1.0, "name": "f1", "value": 0.9}
    assert [c["step"] for c in run["checkpoints"]] == [10, 20, 30]
    assert [c["adapter_only"] for c in run["checkpoints"]] == [True, False, True]
    assert run["checkpoints"][0]["abs_path"] == str(store.run_dir(ids["completed"]) / "checkpoint-10")
    # the task writes the load code: ftkit for LoRA adapter weights, transformers' pipeline for a whole model
    lora, whole = run["checkpoints"][0]["snippet"], run["checkpoints"][1]["snippet"]
    assert f"Predictor.from_checkpoint({run['checkpoints'][0]['abs_path']!r})" in lora
    assert f"pipeline('token-classification', model={run['checkpoints'][1]['abs_path']!r}" in whole
    assert run["log_tail"].endswith("<b>not html</b>")
    assert run["stop_requested"] is False


async def test_detail_says_which_checkpoints_can_resume_and_the_lists_say_which_splits_have_predictions(
        api, store_with_runs):
    store, ids = store_with_runs
    folder = store.run_dir(ids["completed"])
    for step in (10, 20):  # the last checkpoint is the weights alone, as the trainer leaves a completed run
        (folder / f"checkpoint-{step}" / "optimizer.pt").write_bytes(b"\0")
    (folder / "predictions").mkdir()
    (folder / "predictions" / "test.jsonl").write_text("")
    _, run = await api("runs", ids["completed"])
    assert [(c["step"], c["resumable"]) for c in run["checkpoints"]] == [(10, True), (20, True), (30, False)]
    assert run["predictions"] == ["test"]
    _, page = await api("runs")
    assert {r["name"]: r["predictions"] for r in page["runs"]} == {
        "queued-ner": [], "running-ner": [], "completed-lora": ["test"], "failed-<script>": [], "stopped-head": []}


async def test_config_route_returns_the_yaml_and_a_server_path_only_inside_the_root(api, store_with_runs, jp_root_dir):
    _, ids = store_with_runs
    code, config = await api("runs", ids["completed"], "config")
    assert code == 200
    assert "name: completed-lora" in config["text"]
    assert config["path"].endswith("config.yaml")
    assert config["server_path"] is None  # the store lives outside the server's root here


async def test_stop_asks_the_worker_through_the_store(api, store_with_runs):
    store, ids = store_with_runs
    code, reply = await api("runs", ids["running"], "stop", method="POST")
    assert code == 202 and reply == {"id": ids["running"], "stop_requested": True}
    assert (store.run_dir(ids["running"]) / STOP_FILE).exists()
    _, run = await api("runs", ids["running"])
    assert run["stop_requested"] is True


async def test_stopping_a_finished_run_is_a_conflict(api, store_with_runs):
    store, ids = store_with_runs
    code, error = await api("runs", ids["completed"], "stop", method="POST")
    assert code == 409 and error["code"] == "run_not_active"
    assert not (store.run_dir(ids["completed"]) / STOP_FILE).exists()


async def test_deletes_a_finished_run_and_its_folder(api, store_with_runs):
    store, ids = store_with_runs
    folder = store.run_dir(ids["failed"])
    code, _ = await api("runs", ids["failed"], method="DELETE")
    assert code == 200
    assert not folder.exists()
    _, page = await api("runs")
    assert page["total"] == 4


async def test_refuses_to_delete_a_running_run(api, store_with_runs):
    store, ids = store_with_runs
    code, error = await api("runs", ids["running"], method="DELETE")
    assert code == 409 and error["code"] == "run_active" and "stop it first" in error["message"]
    assert store.run_dir(ids["running"]).exists()


async def test_deletes_one_checkpoint(api, store_with_runs):
    store, ids = store_with_runs
    code, _ = await api("runs", ids["completed"], "checkpoints", "20", method="DELETE")
    assert code == 200
    assert not (store.run_dir(ids["completed"]) / "checkpoint-20").exists()
    assert (store.run_dir(ids["completed"]) / "checkpoint-10").exists()
    _, run = await api("runs", ids["completed"])
    assert [c["step"] for c in run["checkpoints"]] == [10, 30]


async def test_unknown_run_and_checkpoint_are_json_404s(api, store_with_runs):
    _, ids = store_with_runs
    code, error = await api("runs", "20990101-000000-abcdef")
    assert code == 404 and error["code"] == "run_not_found"
    code, error = await api("runs", ids["completed"], "checkpoints", "999", method="DELETE")
    assert code == 404 and error["code"] == "checkpoint_not_found"


@pytest.mark.parametrize("verb", ["GET", "POST", "DELETE"])
async def test_every_route_requires_the_token(api, store_with_runs, verb):
    store, ids = store_with_runs
    paths = {"GET": [("runs",), ("live",), ("runs", ids["completed"]), ("runs", ids["completed"], "config"),
                     ("runs", ids["completed"], "log"), ("runs", ids["completed"], "errors")],
             "POST": [("runs", ids["running"], "stop")],
             "DELETE": [("runs", ids["completed"]), ("runs", ids["completed"], "checkpoints", "10")]}[verb]
    for parts in paths:
        code, _ = await api(*parts, method=verb, headers={"Authorization": ""})
        assert code == 403, parts
    assert store.run_dir(ids["completed"]).exists() and not store.stop_requested(ids["running"])


@pytest.fixture
def outside_file(tmp_path) -> Path:
    """A file next to the store that no request may read or delete."""
    secret = tmp_path / "outside" / "run.json"
    secret.parent.mkdir()
    secret.write_text('{"id": "outside"}')
    (tmp_path / "outside" / "config.yaml").write_text("secret: 1")
    return secret


@pytest.mark.parametrize("raw_path", [
    "runs/../outside", "runs/..%2Foutside", "runs/%2E%2E%2Foutside", "runs/..%2F..%2Foutside/config",
    "runs/%2Ftmp%2Foutside", "runs//tmp/outside", "runs/..", "runs/...", "runs/.%2E",
    "runs/..%2Foutside/checkpoints/1", "runs/%252E%252E%252Foutside",
])
@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_path_traversal_is_refused_and_deletes_nothing_outside(
    store_with_runs, outside_file, http_server_client, jp_base_url, jp_auth_header, raw_path, method
):
    # jp_fetch would escape the '%'; send the raw path exactly as an attacker would.
    url = f"{jp_base_url}ftkit/api/{raw_path}"
    response = await http_server_client.fetch(url, method=method, headers=jp_auth_header, raise_error=False)
    assert response.code in (400, 404)
    if response.body and response.headers.get("Content-Type", "").startswith("application/json"):
        assert set(json.loads(response.body)) == {"code", "message"}
    assert outside_file.exists() and (outside_file.parent / "config.yaml").exists()
    store, ids = store_with_runs
    assert all(store.run_dir(run_id).exists() for run_id in ids.values())


async def test_an_absolute_checkpoint_path_in_the_index_cannot_delete_outside_the_run(api, store_with_runs, outside_file):
    store, ids = store_with_runs
    store.append_event(ids["completed"], {"type": "checkpoint", "step": 77, "path": str(outside_file.parent), "size": 1})
    code, _ = await api("runs", ids["completed"], "checkpoints", "77", method="DELETE")
    assert code == 200
    assert outside_file.exists()  # only <run>/<folder name> is ever removed


async def test_live_channel_answers_within_a_second_of_progress(api, store_with_runs):
    import asyncio
    import time

    store, ids = store_with_runs
    _, page = await api("runs")

    async def train_a_step():
        await asyncio.sleep(0.3)
        store.append_event(ids["running"], {"type": "progress", "step": 41, "total_steps": 100})
        return time.monotonic()

    waiting = asyncio.ensure_future(api("live", params={"etag": page["etag"], "timeout": "10"}))
    changed_at = await train_a_step()
    code, fresh = await waiting
    latency = time.monotonic() - changed_at
    assert code == 200 and fresh["etag"] != page["etag"]
    assert next(r for r in fresh["runs"] if r["id"] == ids["running"])["progress"]["step"] == 41
    assert latency < 1.0


async def test_live_channel_returns_the_same_etag_after_its_timeout_when_nothing_changed(api, store_with_runs):
    _, page = await api("runs", params={"status": "completed"})
    code, same = await api("live", params={"status": "completed", "etag": page["etag"], "timeout": "0.5"})
    assert code == 200 and same["etag"] == page["etag"]


async def test_errors_are_shaped_code_and_message(api):
    code, error = await api("nothing-here")
    assert code == 404 and set(error) == {"code", "message"}


async def test_a_get_never_writes_and_reports_a_run_whose_processes_died_as_failed(api, store_with_runs):
    import subprocess

    store, _ = store_with_runs
    gone = subprocess.Popen(["true"])
    gone.wait()
    run_id = add_run(store, "ghost", "running", pid=gone.pid, step=3)
    folder = store.run_dir(run_id)
    files = [folder / "events.jsonl", folder / "run.json", store.index_path]

    def snapshot():
        return [(p.read_bytes(), p.stat().st_mtime_ns) for p in files] + [sorted(p.name for p in folder.iterdir())]

    before = snapshot()
    code, page = await api("runs")
    assert code == 200
    assert next(r for r in page["runs"] if r["id"] == run_id)["status"] == "failed"
    code, detail = await api("runs", run_id)
    assert code == 200 and detail["status"] == "failed" and "died without reporting" in detail["error"]
    code, live = await api("live", params={"timeout": "0"})
    assert code == 200 and next(r for r in live["runs"] if r["id"] == run_id)["status"] == "failed"
    code, failed = await api("runs", params={"status": "failed"})
    assert run_id in {r["id"] for r in failed["runs"]}
    assert snapshot() == before, "a GET wrote to the run store"


async def test_the_list_counts_runs_of_each_status_matching_the_search_whatever_the_status_filter(api, store_with_runs):
    code, page = await api("runs", params={"status": "running"})
    assert code == 200 and page["total"] == 1
    assert page["counts"] == {"queued": 1, "running": 1, "completed": 1, "failed": 1, "stopped": 1}
    _, page = await api("runs", params={"q": "lora"})
    assert page["counts"] == {"queued": 0, "running": 0, "completed": 1, "failed": 0, "stopped": 0}
    _, page = await api("runs", params={"q": "no such run"})
    assert page["total"] == 0 and set(page["counts"].values()) == {0}


async def test_listed_runs_carry_task_model_adapter_live_loss_eta_and_their_best_checkpoint(api, store_with_runs):
    store, ids = store_with_runs
    store.append_event(ids["running"], {"type": "progress", "step": 41, "loss": 0.25, "eta_seconds": 90.0})
    store.append_event(ids["running"], {"type": "checkpoint", "step": 50, "size": 1, "metrics": {"f1": 0.4}})
    _, page = await api("runs")
    running = next(r for r in page["runs"] if r["id"] == ids["running"])
    assert (running["task"], running["model"], running["adapter"]) == ("ner", "default", "full")
    assert running["progress"]["loss"] == 0.25 and running["progress"]["eta_seconds"] == 90.0
    # checkpoints 10 (f1 0.51), 20 (0.52) and 50 (0.40): the best by the ranked metric, not the latest
    assert running["best_checkpoint"] == 20
    assert next(r for r in page["runs"] if r["id"] == ids["queued"])["best_checkpoint"] is None


async def test_the_log_route_returns_the_last_lines_and_a_server_path_only_inside_the_root(api, store_with_runs):
    store, ids = store_with_runs
    (store.run_dir(ids["completed"]) / "train.log").write_text("".join(f"line {i}\n" for i in range(1000)))
    code, log = await api("runs", ids["completed"], "log", params={"lines": "3"})
    assert code == 200
    assert log["text"] == "line 997\nline 998\nline 999" and log["lines"] == 3
    assert log["path"] == str(store.run_dir(ids["completed"]) / "train.log")
    assert log["server_path"] is None and log["status"] == "completed"  # the store lies outside the server root
    code, error = await api("runs", ids["completed"], "log", params={"lines": "0"})
    assert code == 400 and error["code"] == "invalid_lines"


async def test_the_errors_route_reports_where_a_finished_run_goes_wrong_from_its_saved_predictions(
        api, store_with_runs):
    store, ids = store_with_runs
    rows = [{"id": 0, "tokens": ["Mary", "met", "Anna"], "tags": ["B-PER", "O", "B-PER"], "predicted": ["B-PER", "O", "B-LOC"]},
            {"id": 1, "tokens": ["<b>Paris</b>"], "tags": ["B-LOC"], "predicted": ["O"]},
            {"id": 2, "tokens": ["hello"], "tags": ["O"], "predicted": ["O"]}]
    (store.run_dir(ids["completed"]) / "predictions").mkdir()
    (store.run_dir(ids["completed"]) / "predictions" / "test.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in rows))
    code, report = await api("runs", ids["completed"], "errors", params={"split": "test", "limit": "2"})
    assert code == 200
    assert list(report) == ["run", "task", "split", "summary", "table", "confusion", "examples"]
    assert (report["run"], report["task"], report["split"]) == (ids["completed"], "ner", "test")
    assert report["summary"] == {"examples": 3, "entities": 3, "predicted": 2, "correct": 1, "wrong_type": 1,
                                 "wrong_boundary": 0, "missed": 1, "spurious": 0}
    assert report["table"]["columns"][:6] == ["type", "correct", "wrong type", "wrong boundary", "missed", "spurious"]
    assert [row[:6] for row in report["table"]["rows"]] == [["LOC", 0, 0, 0, 1, 0], ["PER", 1, 1, 0, 0, 0]]
    assert report["confusion"]["labels"] == ["LOC", "PER", "O"]
    assert report["confusion"]["matrix"] == [[0, 0, 1], [1, 1, 0], [0, 0, 0]]
    assert [e["id"] for e in report["examples"]] == [0, 1]
    assert report["examples"][1] == {"id": 1, "tokens": ["<b>Paris</b>"], "gold": [[0, 1, "LOC"]], "predicted": [],
                                     "errors": [{"kind": "missed", "type": "LOC", "gold": [0, 1, "LOC"], "predicted": None}]}


async def test_the_errors_route_says_when_a_run_has_no_saved_predictions_or_the_split_is_unknown(api, store_with_runs):
    _, ids = store_with_runs
    code, error = await api("runs", ids["stopped"], "errors")
    assert code == 404 and error["code"] == "no_predictions"
    assert "has no saved predictions for its test split" in error["message"]
    code, error = await api("runs", ids["stopped"], "errors", params={"split": "../../etc"})
    assert code == 400 and "split must be one of train, validation, test" in error["message"]
    code, error = await api("runs", ids["stopped"], "errors", params={"limit": "0"})
    assert code == 400 and error["code"] == "invalid_limit"


# ----- exports of a checkpoint (`ftkit export` as a job the server starts) --------------------------------

@pytest.fixture
def started_jobs(monkeypatch) -> list[tuple]:
    """start_job, recorded instead of run: (run_dir, job, options, log_file) per call."""
    calls: list[tuple] = []

    def record(run_dir, job, *options, log_file):
        calls.append((run_dir, job, options, log_file))
        return 4242

    monkeypatch.setattr("ftkit.server.routes.start_job", record)
    return calls


async def test_export_starts_the_job_for_a_checkpoint_with_the_tasks_format(api, store_with_runs, started_jobs):
    store, ids = store_with_runs
    code, reply = await api("runs", ids["completed"], "exports", method="POST", body={"checkpoint": "checkpoint-20"})
    assert code == 202
    export = reply["export"]
    assert export == {"id": export["id"], "run": ids["completed"], "checkpoint": "checkpoint-20", "format": "onnx",
                      "quant": None, "state": "started"}
    folder = store.run_dir(ids["completed"])
    assert started_jobs == [(folder, "export", ("--checkpoint", "checkpoint-20", "--format", "onnx",
                                                "--export-id", export["id"]), folder / "exports" / "export.log")]
    # the detail says what Export offers: an ner run writes ONNX, with no weights to choose
    _, detail = await api("runs", ids["completed"])
    assert (detail["export_format"], detail["export_quants"]) == ("onnx", [])


async def test_a_gguf_export_takes_a_quant_f16_by_default_and_an_ollama_modelfile(api, store_with_runs, started_jobs):
    store, _ = store_with_runs
    run_id = add_run(store, "sft-done", "completed", checkpoints=1, task="sft")
    code, reply = await api("runs", run_id, "exports", method="POST",
                            body={"checkpoint": "checkpoint-10", "quant": "q4_0", "ollama": True})
    assert code == 202 and (reply["export"]["format"], reply["export"]["quant"]) == ("gguf", "q4_0")
    code, default = await api("runs", run_id, "exports", method="POST", body={"checkpoint": "checkpoint-10"})
    assert code == 202 and default["export"]["quant"] == "f16"
    assert [options for _, _, options, _ in started_jobs] == [
        ("--checkpoint", "checkpoint-10", "--format", "gguf", "--quant", "q4_0", "--ollama", "--export-id", reply["export"]["id"]),
        ("--checkpoint", "checkpoint-10", "--format", "gguf", "--quant", "f16", "--export-id", default["export"]["id"]),
    ]
    assert reply["export"]["id"] != default["export"]["id"]
    _, detail = await api("runs", run_id)
    assert (detail["export_format"], detail["export_quants"]) == ("gguf", ["f16", "q8_0", "q4_0"])


@pytest.mark.parametrize(("body", "code", "error"), [
    ({"checkpoint": "checkpoint-99"}, 404, "checkpoint_not_found"),
    ({"checkpoint": "../checkpoint-10"}, 404, "checkpoint_not_found"),
    ({"checkpoint": "checkpoint-10", "quant": "q8_0"}, 400, "invalid_quant"),  # an ONNX export has no quant
    ({"checkpoint": "checkpoint-10", "ollama": True}, 400, "invalid_quant"),
    ({"checkpoint": 10}, 400, "invalid_body"),
    ({"checkpoint": "checkpoint-10", "ollama": "yes"}, 400, "invalid_body"),
    ({"checkpoint": "checkpoint-10", "format": "gguf"}, 400, "invalid_body"),
    (["checkpoint-10"], 400, "invalid_body"),
    (b"{not json", 400, "invalid_body"),
    (b"", 400, "invalid_body"),
])
async def test_a_bad_export_request_starts_nothing(api, store_with_runs, started_jobs, body, code, error):
    _, ids = store_with_runs
    status, reply = await api("runs", ids["completed"], "exports", method="POST", body=body)
    assert (status, reply["code"]) == (code, error)
    assert started_jobs == []


async def test_a_gguf_export_refuses_an_unknown_quant_and_an_unknown_run_is_404(api, store_with_runs, started_jobs):
    store, _ = store_with_runs
    run_id = add_run(store, "sft-done", "completed", checkpoints=1, task="sft")
    code, error = await api("runs", run_id, "exports", method="POST", body={"checkpoint": "checkpoint-10", "quant": "q2_k"})
    assert code == 400 and error["code"] == "invalid_quant" and "f16, q8_0, q4_0" in error["message"]
    code, error = await api("runs", "20990101-000000-abcdef", "exports", method="POST", body={"checkpoint": "checkpoint-10"})
    assert code == 404 and error["code"] == "run_not_found"
    assert started_jobs == []


@pytest.fixture
def export_job():
    """A live process standing in for an export job, as its started event names it."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process
    process.kill()
    process.wait()


def write_export(store: RunStore, run_id: str, export_id: str, state: str, **fields) -> None:
    store.append_event(run_id, {"type": "export", "id": export_id, "state": state, "checkpoint": "checkpoint-10",
                                "format": "onnx", **fields})


async def test_stopping_an_export_terminates_its_job_and_a_second_stop_is_a_conflict(api, store_with_runs, export_job):
    store, ids = store_with_runs
    write_export(store, ids["completed"], "e1", "started", pid=export_job.pid,
                 pid_started=process_start_time(export_job.pid))
    write_export(store, ids["completed"], "e1", "progress", detail="writing", done=1, total=3)
    _, detail = await api("runs", ids["completed"])
    assert [(e["id"], e["state"], e["done"]) for e in detail["checkpoints"][0]["exports"]] == [("e1", "progress", 1)]
    code, reply = await api("runs", ids["completed"], "exports", "e1", method="DELETE")
    assert code == 202 and reply == {"export": {"id": "e1", "run": ids["completed"], "stop_requested": True}}
    assert export_job.wait(timeout=10) != 0  # terminated
    # gone without a final state: reported failed, so there is nothing left to stop
    code, error = await api("runs", ids["completed"], "exports", "e1", method="DELETE")
    assert code == 409 and error["code"] == "export_ended"


async def test_stopping_an_ended_or_unknown_export_is_refused(api, store_with_runs, export_job):
    store, ids = store_with_runs
    write_export(store, ids["completed"], "done-1", "started", pid=export_job.pid)
    write_export(store, ids["completed"], "done-1", "completed", path="/x/model.onnx", size=10,
                 verification={"passed": True, "agreement": 1.0, "threshold": 0.99})
    code, error = await api("runs", ids["completed"], "exports", "done-1", method="DELETE")
    assert code == 409 and error["code"] == "export_ended" and "completed" in error["message"]
    assert export_job.poll() is None  # its pid was not signalled
    code, error = await api("runs", ids["completed"], "exports", "no-such", method="DELETE")
    assert code == 404 and error["code"] == "export_not_found"
    code, error = await api("runs", ids["completed"], "exports", "bad.id", method="DELETE")
    assert code == 404
    code, error = await api("runs", "20990101-000000-abcdef", "exports", "e1", method="DELETE")
    assert code == 404 and error["code"] == "run_not_found"


async def test_a_running_export_of_the_same_checkpoint_and_format_is_not_started_twice(
        api, store_with_runs, started_jobs, export_job):
    store, ids = store_with_runs
    write_export(store, ids["completed"], "busy", "started", pid=export_job.pid,
                 pid_started=process_start_time(export_job.pid))
    code, error = await api("runs", ids["completed"], "exports", method="POST", body={"checkpoint": "checkpoint-10"})
    assert code == 409 and error["code"] == "export_running"
    code, _ = await api("runs", ids["completed"], "exports", method="POST", body={"checkpoint": "checkpoint-20"})
    assert code == 202 and len(started_jobs) == 1


async def test_the_export_routes_require_the_token(api, store_with_runs, started_jobs, export_job):
    store, ids = store_with_runs
    write_export(store, ids["completed"], "e1", "started", pid=export_job.pid)
    code, _ = await api("runs", ids["completed"], "exports", method="POST", body={"checkpoint": "checkpoint-10"},
                        headers={"Authorization": ""})
    assert code == 403 and started_jobs == []
    code, _ = await api("runs", ids["completed"], "exports", "e1", method="DELETE", headers={"Authorization": ""})
    assert code == 403 and export_job.poll() is None
