"""Chaos soak: runs launched without pause while processes are killed or hung, runs stopped, resumed (twice
at once), deleted (active ones too), the disk filled and the index corrupted, from this machine and from a
second one sharing the store; then what must hold.

For ``--minutes``, tiny NER runs (full and LoRA, built from a config: no downloads) are launched
into one store, and at random moments one of these happens: SIGKILL a worker or a supervisor, stop
a run, resume one, resume one from two processes at once (the CLI), delete a checkpoint or a run
(active or not), fill the store's small disk (a tmpfs mounted here; skipped, with the reason,
where mounting is not allowed) and free it again, corrupt the index and rebuild it with the CLI, hang
a worker (SIGSTOP: a deadlocked data loader or collective; the runs' ``stall_timeout`` is 15 s), and
launch or resume a run from the second machine (the CLI with another host identity, ``FTKIT_HOST_ID``:
its processes record that host). The store is shared (``FTKIT_SHARED_STORE=1``: its index keeps a
rollback journal for both machines). Meanwhile a client polls the REST API of a Jupyter server started
on the store, a process of the second machine lists the runs, and a watcher reads /proc every 0.2 s
for the ftkit processes of each run.

Then every active run is asked to stop, and the soak requires: every run completed, stopped or
failed with a cause (none stuck queued or running); never two live workers (or supervisors) of
one run; the index equal to a rebuild from the folders; every listed checkpoint loads (a LoRA one
with its label names); no 5xx and no dropped connection from the API; the other machine never got
anything but ftkit's own errors and ends seeing what this one sees; no launched run missing unless
deleted; no run deleted under a live worker (a queued run may be deleted while its supervisor waits
for a device, and that supervisor must then leave); no hung worker left alive; no action failing with
anything but ftkit's own errors. It prints the counts and exits 1 when anything was lost.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/chaos.py --minutes 10 --seed 0 [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from ftkit.errors import RunError
from ftkit.runstore.layout import INDEX_FILE, PARTIAL_PREFIX, RUN_FILE
from ftkit.runs import Run, start
from ftkit.runstore import RunStore
from tests.conftest import build_tiny_model, write_conll

FINAL = ("completed", "stopped", "failed")
OTHER_HOST = "chaos-other-machine"
HEARTBEAT_TIMEOUT_S = "10"  # every process of the soak judges a silent supervisor gone after 10 s
WORKER_MODULE = "ftkit.engine.worker"  # python -m ftkit.engine.worker train RUN_DIR
SUPERVISOR_MODULE = "ftkit.process.supervisor"  # python -m ftkit.process.supervisor RUN_DIR
LOST = ("runs stuck or failed without a cause", "launched runs missing", "times two live workers or supervisors",
        "runs deleted under live processes", "supervisors of deleted queued runs still waiting",
        "double resumes that both started", "index rows unlike a rebuild",
        "listed checkpoints that do not load", "API 5xx or dropped connections", "other machine: unexpected errors",
        "other machine: runs seen differently", "actions failing with a non-ftkit error", "CLI crashes",
        "index still damaged after `ftkit runs --rebuild-index`", "hung workers left alive")


# ----- what runs beside the actions ---------------------------------------------------------------


def ftkit_processes(root: Path) -> dict[str, dict[str, list[int]]]:
    """Live (not zombie) supervisors and workers of the runs in ``root``, from /proc:
    {run id: {"supervise": [pid, ...], "train": [pid, ...]}}. A child forked by one of them that has not
    yet run its own program still shows its parent's command line: it is left out."""
    seen: list[tuple[str, str, int, int]] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            state, ppid = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError, ValueError):
            continue
        args = [a.decode(errors="replace") for a in argv]
        if state in ("Z", "X"):
            continue
        for module, kind, at_run in ((SUPERVISOR_MODULE, "supervise", 1), (WORKER_MODULE, "train", 2)):
            at = args.index(module) if module in args else -1
            if at >= 1 and args[at - 1] == "-m" and len(args) > at + at_run and (kind == "supervise" or args[at + 1] == "train"):
                run_dir = Path(args[at + at_run])
                if run_dir.parent == root:
                    seen.append((run_dir.name, kind, int(entry.name), int(ppid)))
    found: dict[str, dict[str, list[int]]] = {}
    parents = {(run_id, kind, pid) for run_id, kind, pid, _ in seen}
    for run_id, kind, pid, ppid in seen:
        if (run_id, kind, ppid) not in parents:
            found.setdefault(run_id, {"supervise": [], "train": []})[kind].append(pid)
    return found


class ProcessWatch(threading.Thread):
    """Looks at /proc five times a second for two live workers (or supervisors) of one run."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.latest: dict[str, dict[str, list[int]]] = {}
        self.overlaps: list[dict[str, Any]] = []
        self.scans = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.2):
            self.latest = ftkit_processes(self.root)
            self.scans += 1
            for run_id, kinds in self.latest.items():
                for kind, pids in kinds.items():
                    if len(pids) > 1 and not any(o["run"] == run_id and o["pids"] == pids for o in self.overlaps):
                        self.overlaps.append({"run": run_id, "kind": kind, "pids": pids, "t": time.time()})


class ApiPoller(threading.Thread):
    """A panel's traffic against the server: lists, the live channel, details, logs, and now and then a
    stop or a checkpoint deletion. Any 5xx or dropped connection is a finding."""

    def __init__(self, base: str, token: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.base, self.headers = base, {"Authorization": f"token {token}"}
        self.rng = random.Random(seed)
        self.codes: Counter[str] = Counter()
        self.failures: list[str] = []
        self.halt = threading.Event()

    def call(self, method: str, path: str) -> tuple[int, Any]:
        request = urllib.request.Request(self.base + path, method=method, headers=self.headers,
                                         data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                code, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            code, body = exc.code, exc.read()
        except OSError as exc:
            self.failures.append(f"{method} {path}: no answer ({exc})")
            return 0, None
        self.codes[f"{code // 100}xx"] += 1
        if code >= 500:
            self.failures.append(f"{method} {path}: {code} {body[:300]!r}")
        try:
            return code, json.loads(body)
        except ValueError:
            self.failures.append(f"{method} {path}: {code} with a body that is not JSON: {body[:200]!r}")
            return code, None

    def run(self) -> None:
        ids: list[str] = []
        while not self.halt.wait(self.rng.uniform(0.05, 0.3)):
            roll = self.rng.random()
            if roll < 0.3 or not ids:
                sort = self.rng.choice(["created", "status", "best_metric", "updated"])
                code, page = self.call("GET", f"/ftkit/api/runs?limit=50&sort={sort}")
                if code == 200:
                    ids = [run["id"] for run in page["runs"]] or ids
                continue
            run_id = self.rng.choice(ids)  # perhaps deleted since: a 404 then
            if roll < 0.4:
                self.call("GET", "/ftkit/api/live?timeout=0")
            elif roll < 0.7:
                code, detail = self.call("GET", f"/ftkit/api/runs/{run_id}")
                if code == 200 and detail["checkpoints"] and self.rng.random() < 0.05:
                    step = self.rng.choice(detail["checkpoints"])["step"]
                    self.call("DELETE", f"/ftkit/api/runs/{run_id}/checkpoints/{step}")
            elif roll < 0.85:
                self.call("GET", f"/ftkit/api/runs/{run_id}/log?lines=20")
            elif roll < 0.97:
                self.call("GET", f"/ftkit/api/runs/{run_id}/config")
            else:
                self.call("POST", f"/ftkit/api/runs/{run_id}/stop")

    @property
    def calls(self) -> int:
        return sum(self.codes.values())


def observe(root: str, out: str, once: bool) -> int:
    """The other machine (run with FTKIT_HOST_ID set): list the store every second into ``out`` (a JSON
    line per listing) until the file ``out + '.halt'`` appears; ``once``: print one {id: status} map."""
    store = RunStore(root)
    if once:
        print(json.dumps({run["id"]: run["status"] for run in store.list_runs()[0]}))
        return 0
    halt = Path(out + ".halt")
    with open(out, "a") as log:
        while not halt.exists():
            try:
                runs, _ = store.list_runs()
                line = {"ok": True, "runs": len(runs)}
            except RunError as exc:  # ftkit's own, readable errors (a damaged index, a full disk) are expected
                line = {"ok": False, "expected": True, "error": str(exc)[:300]}
            except Exception as exc:  # noqa: BLE001 - anything else is what the soak looks for
                line = {"ok": False, "expected": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
            log.write(json.dumps(line) + "\n")
            log.flush()
            time.sleep(1.0)
    return 0


# ----- the soak ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Soak:
    """One store on a small disk, the runs launched into it, the actions on them, and the final checks."""

    def __init__(self, work: Path, seed: int, parallel: int, disk_mib: int) -> None:
        self.work, self.rng, self.parallel = work, random.Random(seed), parallel
        self.counts: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()  # why ftkit said no, run ids and paths left out
        self.lost: Counter[str] = Counter(dict.fromkeys(LOST, 0))  # what must stay 0
        self.findings: list[str] = []
        self.launched: set[str] = set()
        self.deleted: set[str] = set()
        self.waiting_when_deleted: set[str] = set()  # queued runs deleted while their supervisor waited: it must leave
        self.hung: dict[int, str] = {}  # SIGSTOPped workers: pid -> run id
        self.other_env: dict[str, str] = {}  # the second machine's environment (set when the soak starts)
        self.disk_full_until: float | None = None
        self.rebuild_at: float | None = None
        self.last_refusal = ""
        self.root = work / "store"
        self.root.mkdir(parents=True)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={disk_mib}m", "tmpfs", str(self.root)],
                                 capture_output=True, text=True)
        self.disk_skip = None if mounted.returncode == 0 else (
            f"mounting a tmpfs failed ({mounted.stderr.strip() or mounted.returncode}); disk fills skipped")
        self.store = RunStore(self.root)
        data = work / "data"
        data.mkdir()
        self.base_config = {
            "task": "ner", "model": str(build_tiny_model(work / "tiny-bert")),
            "data": {"train": str(write_conll(data / "train.txt", 64, 1)),
                     "validation": str(write_conll(data / "valid.txt", 16, 2)),
                     "test": str(write_conll(data / "test.txt", 24, 3))},
            "training": {"epochs": 4, "batch_size": 8, "logging_steps": 1, "save_steps": 4, "eval_steps": 8,
                         "max_seq_length": 32, "learning_rate": 5e-3, "device": "cpu", "save_total_limit": 2},
            "resources": {"runs_per_device": parallel, "stall_timeout": 15},
            "output": {"dir": str(self.root)},
        }

    # ----- helpers -------------------------------------------------------------------------------
    def run_ids(self) -> list[str]:
        """Run folders on disk (not the index, which may be damaged on purpose)."""
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".") and (p / RUN_FILE).is_file())

    def statuses(self) -> dict[str, tuple[str, str | None]]:
        """Each run's status and error as a reader reports them (run.json, or failed when found dead)."""
        found = {}
        for run_id in self.run_ids():
            try:
                found[run_id] = self.store.status(run_id)
            except RunError:
                continue  # deleted, or its run.json damaged, since the folder was listed
        return found

    def pick(self, *wanted: str) -> str | None:
        ids = [run_id for run_id, (status, _) in self.statuses().items() if status in wanted]
        return self.rng.choice(ids) if ids else None

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """`ftkit ARGS` on the store, as a user in another terminal (of this machine, or ``env``'s) would type it."""
        return subprocess.Popen([sys.executable, "-m", "ftkit.cli", "--runs-dir", str(self.root), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def check_cli(self, what: str, process: subprocess.Popen) -> bool:
        """True when it succeeded; ftkit's own refusal (exit 2) is expected, a crash is a finding. The
        output stays on the process (``stdout_text``)."""
        process.stdout_text, err = process.communicate(timeout=300)
        self.last_refusal = err.strip()[-400:] if process.returncode == 2 else ""
        if process.returncode not in (0, 2):
            self.lost["CLI crashes"] += 1
            self.findings.append(f"{what}: `ftkit` exited {process.returncode}: {err.strip()[-400:]}")
        return process.returncode == 0

    def attempt(self, name: str, action: Callable[[], bool | None]) -> None:
        """Count an action as done, refused (a RunError: busy, nothing to resume, disk full...) or failed."""
        try:
            outcome = action()
        except RunError as exc:
            self.counts[f"{name} refused"] += 1
            reason = re.sub(r"\S*\d{8}-\d{6}-[0-9a-f]{6}\S*", "RUN", str(exc)).split(". ")[0][:100]
            self.refusals[f"{name}: {type(exc).__name__}: {reason}"] += 1
            return
        except Exception as exc:  # noqa: BLE001 - the soak reports every failure that is not ftkit's own
            self.lost["actions failing with a non-ftkit error"] += 1
            self.findings.append(f"{name}: unexpected {type(exc).__name__}: {exc}"[:500])
            return
        if outcome is not False:
            self.counts[name] += 1

    # ----- actions -------------------------------------------------------------------------------
    def launch(self) -> bool:
        active = [s for s, _ in self.statuses().values() if s in ("queued", "running")]
        if len(active) >= self.parallel + 2:
            return False
        adapter = self.rng.choice(["full", "lora"])
        config = {**self.base_config, "name": f"chaos-{adapter}-{len(self.launched)}", "adapter": {"kind": adapter}}
        if self.rng.random() < 1 / 3:  # from the second machine: its supervisor and worker record that host
            path = self.work / f"{config['name']}.json"
            path.write_text(json.dumps(config))
            launched = self.cli("train", str(path), "--json", env=self.other_env)
            if self.check_cli("launch from the other machine", launched):
                self.launched.add(json.loads(launched.stdout_text)["id"])
                self.counts["launches from the other machine"] += 1
            return False
        run = start(config)
        self.launched.add(run.id)
        return True

    def hang(self) -> bool:
        """SIGSTOP a training worker: it stops making progress and ignores SIGTERM, as a deadlock does."""
        targets = [(run_id, pid) for run_id, kinds in self.watch.latest.items() for pid in kinds["train"]
                   if pid not in self.hung]
        if not targets:
            return False
        run_id, pid = self.rng.choice(targets)
        if pid not in ftkit_processes(self.root).get(run_id, {}).get("train", []):
            return False
        os.kill(pid, signal.SIGSTOP)
        self.hung[pid] = run_id
        return True

    def kill(self, kind: str) -> bool:
        targets = [(run_id, pid) for run_id, kinds in self.watch.latest.items() for pid in kinds[kind]]
        if not targets:
            return False
        run_id, pid = self.rng.choice(targets)
        if pid not in ftkit_processes(self.root).get(run_id, {}).get(kind, []):
            return False  # ended since the last scan: never signal a pid that may be someone else's now
        os.kill(pid, signal.SIGKILL)
        return True

    def stop(self) -> bool:
        run_id = self.pick("queued", "running")
        if run_id:
            Run(run_id, self.store).stop()
        return run_id is not None

    def resume(self) -> bool:
        run_id = self.pick("stopped", "failed")
        if run_id and self.rng.random() < 1 / 3:
            if self.check_cli("resume from the other machine", self.cli("resume", run_id, "--json", env=self.other_env)):
                self.counts["resumes from the other machine"] += 1
            return False
        if run_id:
            Run(run_id, self.store).resume()
        return run_id is not None

    def double_resume(self) -> bool:
        run_id = self.pick("stopped", "failed")
        if not run_id:
            return False
        first, second = self.cli("resume", run_id, "--json"), self.cli("resume", run_id, "--json")
        started = [self.check_cli("resume", first), self.check_cli("resume", second)]
        if all(started):
            self.lost["double resumes that both started"] += 1
            self.findings.append(f"two resumes of {run_id} at once both succeeded")
        self.counts["resumes started by a double resume"] += sum(started)
        return True

    def delete_run(self) -> bool:
        run_id = self.pick(*(("queued", "running") if self.rng.random() < 0.5 else FINAL))
        if not run_id:
            return False
        alive = ftkit_processes(self.root).get(run_id)
        self.store.delete_run(run_id)  # an active run: RunBusy (counted as refused)
        self.deleted.add(run_id)
        if alive and alive["train"]:
            self.lost["runs deleted under live processes"] += 1
            self.findings.append(f"deleted run {run_id} while its processes {alive} were alive")
        elif alive and alive["supervise"]:  # queued, waiting for its device: allowed, if it then leaves
            self.waiting_when_deleted.add(run_id)
        return True

    def delete_checkpoint(self) -> bool:
        candidates = [(run_id, c["step"]) for run_id in self.run_ids() for c in self.store.checkpoints(run_id)]
        if not candidates:
            return False
        self.store.delete_checkpoint(*self.rng.choice(candidates))
        return True

    def fill_disk(self) -> bool:
        if self.disk_skip or self.disk_full_until is not None:
            return False
        room = shutil.disk_usage(self.root).free - 16 * 1024  # a few blocks left: most writes fail
        with open(self.root / ".chaos-filler", "wb") as f:
            try:
                while room > 0:
                    room -= f.write(b"\0" * min(1 << 20, room))
            except OSError:
                pass  # full already: that is the point
        self.disk_full_until = time.monotonic() + self.rng.uniform(3, 10)
        return True

    def free_disk(self) -> None:
        (self.root / ".chaos-filler").unlink(missing_ok=True)
        self.disk_full_until = None

    def corrupt_index(self) -> bool:
        if self.rebuild_at is not None:
            return False
        path, how = self.root / INDEX_FILE, self.rng.choice(["garbage", "halved", "emptied"])
        size = path.stat().st_size
        with open(path, "r+b") as f:
            if how == "garbage":
                f.write(secrets.token_bytes(min(size, 8192)))
            else:
                f.truncate(size // 2 if how == "halved" else 0)
        self.counts[f"index {how}"] += 1
        self.rebuild_at = time.monotonic() + self.rng.uniform(0.5, 4)  # a user notices, then rebuilds
        return True

    def rebuild(self) -> None:
        if self.check_cli("rebuild", self.cli("runs", "--rebuild-index")):
            self.rebuild_at = None
            self.counts["index rebuilds"] += 1

    # ----- the soak --------------------------------------------------------------------------------
    def run(self, minutes: float, settle_s: float) -> dict[str, Any]:
        env = {**os.environ, "FTKIT_RUNS_DIR": str(self.root)}
        port, token, home = free_port(), secrets.token_hex(16), self.work / "home"
        server_log = open(self.work / "server.log", "w")
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={self.work}"],
            env={**env, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime")},
            stdout=server_log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        self.wait_for_server(base, token, server)
        observed = self.work / "other-machine.jsonl"
        other_env = self.other_env = {**env, "FTKIT_HOST_ID": OTHER_HOST}
        other = subprocess.Popen([sys.executable, __file__, "--observe", str(self.root), "--out", str(observed)],
                                 env=other_env)
        self.watch, self.api = ProcessWatch(self.root), ApiPoller(base, token, self.rng.randrange(1 << 30))
        self.watch.start()
        self.api.start()
        actions: list[tuple[float, str, Callable[[], bool | None]]] = [
            (3, "launches", self.launch), (2, "worker kills", lambda: self.kill("train")),
            (1, "supervisor kills", lambda: self.kill("supervise")), (2, "stops", self.stop),
            (3, "resumes", self.resume), (1, "double resumes", self.double_resume),
            (1.5, "run deletes", self.delete_run), (1.5, "checkpoint deletes", self.delete_checkpoint),
            (0.5, "disk fills", self.fill_disk), (0.3, "index corruptions", self.corrupt_index),
            (1.5, "worker hangs", self.hang)]
        started = time.monotonic()
        try:
            while time.monotonic() - started < minutes * 60:
                if self.disk_full_until is not None and time.monotonic() > self.disk_full_until:
                    self.free_disk()
                if self.rebuild_at is not None and time.monotonic() > self.rebuild_at:
                    self.rebuild()
                _, name, action = self.rng.choices(actions, weights=[w for w, _, _ in actions])[0]
                self.attempt(name, action)
                time.sleep(self.rng.uniform(0.5, 2.5))
            self.settle(settle_s)
        finally:
            self.watch.halt.set()
            self.api.halt.set()
            Path(str(observed) + ".halt").touch()
            other.wait(timeout=60)
            self.api.join(timeout=60)
            server.terminate()
            server.wait(timeout=30)
            server_log.close()
        return self.verify(observed, other_env)

    def wait_for_server(self, base: str, token: str, server: subprocess.Popen) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.poll() is None:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5).close()
                return
            except OSError:
                time.sleep(0.5)
        raise SystemExit(f"the Jupyter server did not start; see {self.work / 'server.log'}")

    def settle(self, timeout: float) -> None:
        """Chaos over: free the disk, mend the index, ask every active run to stop, wait until none is active."""
        self.free_disk()
        for _ in range(5):
            if self.rebuild_at is None:
                break
            self.rebuild()
            time.sleep(2)
        if self.rebuild_at is not None:
            self.index_unmendable(f"`ftkit runs --rebuild-index` fails: {self.last_refusal}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            active = [run_id for run_id, (s, _) in self.statuses().items() if s in ("queued", "running")]
            if not active:
                return
            for run_id in active:
                self.store.request_stop(run_id)
            time.sleep(2)

    def index_unmendable(self, why: str) -> None:
        """A finding; then the user's last resort (delete the index, reopen the store) so the checks can go on."""
        self.lost["index still damaged after `ftkit runs --rebuild-index`"] += 1
        self.findings.append(f"the index stays damaged: {why}"[:600])
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.root / INDEX_FILE}{suffix}").unlink(missing_ok=True)
        self.store = RunStore(self.root)
        self.rebuild_at = None

    def verify(self, observed: Path, other_env: dict[str, str]) -> dict[str, Any]:
        from ftkit.engine.adapters import load_for_inference

        lost = self.lost
        try:
            self.store.list_runs()
        except RunError as exc:
            self.index_unmendable(f"after a successful rebuild, listing says {exc}")
        statuses = self.statuses()
        for run_id, (status, error) in statuses.items():
            if status not in FINAL or (status == "failed" and not error):
                lost["runs stuck or failed without a cause"] += 1
                self.findings.append(f"run {run_id} ended the soak {status}" + (f" ({error})" if error else ""))
        final_counts = Counter(status for status, _ in statuses.values())
        missing = self.launched - self.deleted - set(statuses)
        lost["launched runs missing"] += len(missing)
        self.findings += [f"run {run_id} was launched, never deleted, and is gone" for run_id in sorted(missing)]

        lost["times two live workers or supervisors"] += len(self.watch.overlaps)
        self.findings += [f"two live {o['kind']} processes of run {o['run']}: {o['pids']}" for o in self.watch.overlaps]

        lost["index rows unlike a rebuild"] += self.compare_with_rebuild()

        processes = ftkit_processes(self.root)
        stayed = [run_id for run_id in self.waiting_when_deleted if processes.get(run_id, {}).get("supervise")]
        lost["supervisors of deleted queued runs still waiting"] += len(stayed)
        self.findings += [f"the supervisor of deleted run {run_id} still waits in the queue" for run_id in stayed]
        self.counts["queued runs deleted while their supervisor waited"] = len(self.waiting_when_deleted)

        alive = [pid for pid, run_id in self.hung.items() if pid in ftkit_processes(self.root).get(run_id, {}).get("train", [])]
        lost["hung workers left alive"] += len(alive)
        self.findings += [f"hung worker {pid} of run {self.hung[pid]} is still alive" for pid in alive]
        self.counts["runs stopped by force"] = sum("stopped by force" in (error or "") for _, error in statuses.values())

        checkpoints = 0
        for run_id in self.run_ids():
            for checkpoint in self.store.checkpoints(run_id):
                checkpoints += 1
                try:
                    model, _ = load_for_inference(checkpoint["path"])
                    labels = list(model.config.id2label.values())
                    if "O" not in labels or any(label.startswith("LABEL_") for label in labels):
                        raise ValueError(f"loads with labels {labels}")
                except Exception as exc:  # noqa: BLE001 - a listed checkpoint that does not load is lost
                    lost["listed checkpoints that do not load"] += 1
                    self.findings.append(f"{checkpoint['path']}: {type(exc).__name__}: {exc}"[:400])
        unlisted = [p for run_id in self.run_ids() for p in (self.root / run_id).glob("checkpoint-*")
                    if p.name not in {c["name"] for c in self.store.checkpoints(run_id)}]
        partial = list(self.root.glob(f"*/{PARTIAL_PREFIX}checkpoint-*"))

        lost["API 5xx or dropped connections"] += len(self.api.failures)
        self.findings += self.api.failures
        lines = [json.loads(line) for line in observed.read_text().splitlines() if line.strip()]
        surprises = [line["error"] for line in lines if not line["ok"] and not line["expected"]]
        lost["other machine: unexpected errors"] += len(surprises)
        self.findings += [f"other machine: {error}" for error in surprises]
        other = subprocess.run([sys.executable, __file__, "--observe", str(self.root), "--once"], env=other_env,
                               capture_output=True, text=True)
        seen = json.loads(other.stdout) if other.returncode == 0 else {}
        here = {run_id: status for run_id, (status, _) in statuses.items()}
        if seen != here:
            lost["other machine: runs seen differently"] += len(set(seen.items()) ^ set(here.items())) or 1
            self.findings.append(f"the other machine sees {seen} where this one sees {here} ({other.stderr[-300:]})")
        return {
            "runs": {"launched": len(self.launched), "deleted": len(self.deleted), **dict(final_counts)},
            "actions": dict(sorted(self.counts.items())),
            "refusals": dict(self.refusals.most_common()),
            "api_calls": {"total": self.api.calls, **dict(self.api.codes)},
            "other_machine_listings": {"total": len(lines), "expected_errors": sum(1 for l in lines if not l["ok"] and l["expected"])},
            "process_scans": self.watch.scans,
            "checkpoints": {"listed_and_loaded": checkpoints - lost["listed checkpoints that do not load"],
                            "unlisted_folders": len(unlisted), "partial_folders": len(partial)},
            "disk": self.disk_skip or "tmpfs",
            "lost": dict(lost),
            "lost_total": sum(lost.values()),
            "findings": self.findings,
        }

    def compare_with_rebuild(self) -> int:
        """Index rows (summaries, metrics, checkpoints) that differ from a rebuild of a hard-linked copy."""
        copy = self.root / ".chaos-rebuilt"
        shutil.rmtree(copy, ignore_errors=True)
        for run_id in self.run_ids():
            shutil.copytree(self.root / run_id, copy / run_id, copy_function=os.link,
                            ignore=shutil.ignore_patterns("checkpoint-*", f"{PARTIAL_PREFIX}*"))
        rebuilt = RunStore(copy)
        differ = 0
        for run_id in self.run_ids():
            live, fresh = self.store.get(run_id), rebuilt.get(run_id)
            for detail in (live, fresh):
                detail.pop("duration", None)
                detail.pop("dir", None)
                for c in detail["checkpoints"]:
                    c.pop("path", None)
            keys = sorted(k for k in live if live[k] != fresh.get(k))
            if keys:
                differ += 1
                self.findings.append(f"index of {run_id} differs from its rebuild in {keys}: "
                                     f"{ {k: (live[k], fresh.get(k)) for k in keys} }"[:600])
        shutil.rmtree(copy, ignore_errors=True)
        return differ


def report(result: dict[str, Any]) -> str:
    lines = [f"runs: {result['runs']}", f"actions: {result['actions']}", f"refusals: {result['refusals']}", f"API calls: {result['api_calls']}",
             f"other machine: {result['other_machine_listings']}", f"/proc scans: {result['process_scans']}",
             f"checkpoints: {result['checkpoints']}", f"disk: {result['disk']}",
             f"lost (each must be 0): {result['lost']} -> total {result['lost_total']}"]
    lines += [f"  finding: {finding}" for finding in result["findings"]]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="how long the chaos lasts (then the runs settle)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parallel", type=int, default=2, help="resources.runs_per_device of the runs")
    parser.add_argument("--disk-mib", type=int, default=256, help="size of the tmpfs the store lives on")
    parser.add_argument("--settle", type=float, default=300, help="seconds the runs get to stop once the chaos ends")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (store, server log)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--observe", help=argparse.SUPPRESS)  # the other machine's process: a store to list
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.observe:
        return observe(args.observe, args.out, args.once)
    os.environ.update(FTKIT_HEARTBEAT_TIMEOUT=HEARTBEAT_TIMEOUT_S, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                      FTKIT_SHARED_STORE="1")
    work = Path(tempfile.mkdtemp(prefix="ftkit-chaos-"))
    soak = Soak(work, args.seed, args.parallel, args.disk_mib)
    try:
        result = soak.run(args.minutes, args.settle)
    finally:
        for kinds in ftkit_processes(soak.root).values():  # whatever the soak's runs left behind
            for pid in kinds["supervise"] + kinds["train"]:
                os.kill(pid, signal.SIGKILL)
        if args.keep:
            print(f"kept {work}" + ("" if soak.disk_skip else f" (umount {soak.root} when done)"), file=sys.stderr)
        else:
            if not soak.disk_skip:
                subprocess.run(["umount", "-l", str(soak.root)], check=False)
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1) if args.json else report(result))
    return 1 if result["lost_total"] else 0


if __name__ == "__main__":
    sys.exit(main())
