"""One-off jobs on a run's checkpoints (``ftkit eval``, ``predict``, ``merge``, ``export``), run in a process of their own.

The job itself (`ftkit.engine.worker`) loads the training stack; this side starts it and reads back its
JSON result, so the CLI never imports torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from ..errors import FtkitError, RunError


def run_job(run: Any, job: str, *options: str, texts: list[str] | None = None) -> Any:
    """Run ``python -m ftkit.engine.worker JOB RUN_DIR ...`` and return its JSON result.

    The worker's own output (model loading, warnings) goes to stderr, so stdout stays ours: ``--json``
    output is JSON only. An error the user can fix comes back as its message.
    """
    with tempfile.TemporaryDirectory(prefix="ftkit-job-") as folder:
        result_file = Path(folder) / "result.json"
        command = [sys.executable, "-m", "ftkit.engine.worker", job, str(run.dir), "--output", str(result_file), *options]
        if texts is not None:
            texts_file = Path(folder) / "texts.json"
            texts_file.write_text(json.dumps(texts), encoding="utf-8")
            command += ["--texts-file", str(texts_file)]
        code = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=_stderr_fd()).returncode
        try:
            reply = json.loads(result_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise RunError(f"`ftkit {job}` failed in its worker process (exit code {code}); see the messages above") from None
    if "error" in reply:
        raise FtkitError(reply["error"])
    return reply["result"]


def start_job(run_dir: Path, job: str, *options: str, log_file: Path) -> int:
    """Start a job in the background, in a session of its own (the server's exports): it outlives its
    caller and reports through the run's events; its output is appended to ``log_file``. Returns its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "ftkit.engine.worker", job, str(run_dir), *options],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    threading.Thread(target=process.wait, daemon=True).start()  # reaped when it ends: never a zombie
    return process.pid


def _stderr_fd() -> Any:
    """Where a job's own output goes: our stderr, or nowhere when stderr is a stream without a file."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return subprocess.DEVNULL
