"""`make test-fast` starts no training process: conftest fails an unmarked test that does.

tests/conftest.py (and its fast_tier/ guard) runs a small suite in a pytest of its own with
FTKIT_TEST_TIER=fast; its tests start `python -m ftkit.cli --help` (quick, but a command line that
could train) from the test, from a thread, from a module-scoped fixture and from a child process,
marked and unmarked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .fast_tier.spawn_guard import training_command

SUITE = '''
import subprocess, sys, threading
import pytest

FTKIT = [sys.executable, "-m", "ftkit.cli", "--help"]


def test_unmarked_spawn():
    subprocess.run(FTKIT, capture_output=True)


def test_unmarked_spawn_from_a_thread():
    thread = threading.Thread(target=subprocess.run, args=(FTKIT,), kwargs={"capture_output": True})
    thread.start()
    thread.join()


@pytest.fixture(scope="module")
def launched():
    return subprocess.run(FTKIT, capture_output=True).returncode


def test_unmarked_spawn_from_a_module_fixture(launched):
    pass


@pytest.mark.spawns
def test_marked_spawn():
    assert subprocess.run(FTKIT, capture_output=True).returncode == 0


def test_unmarked_spawn_from_a_child_process():
    code = "import subprocess, sys; subprocess.run([sys.executable, '-m', 'ftkit.cli', '--help'])"
    subprocess.run([sys.executable, "-c", code], capture_output=True)


def test_other_processes_are_fine():
    assert subprocess.run([sys.executable, "-c", "pass"]).returncode == 0
'''


def test_the_fast_tier_fails_an_unmarked_test_that_starts_a_training_process(tmp_path):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    shutil.copytree(Path(__file__).with_name("fast_tier"), tmp_path / "fast_tier")
    (tmp_path / "test_suite.py").write_text(SUITE)
    env = {**os.environ, "FTKIT_TEST_TIER": "fast", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    for name in ("test_unmarked_spawn", "test_unmarked_spawn_from_a_thread", "test_unmarked_spawn_from_a_module_fixture"):
        assert f"test_suite.py::{name} starts a training process (`-m ftkit.cli`)" in out, out[-3000:]
    assert "test_suite.py::test_unmarked_spawn_from_a_child_process starts a training process (`-m ftkit.cli` started " \
           "by a child process" in out, out[-3000:]
    assert "mark it @pytest.mark.spawns" in out
    assert "3 failed, 2 passed" in out and "1 error" in out, out[-3000:]  # the fixture's: an error in setup


def test_a_training_command_is_any_module_of_ftkit_or_torchrun():
    assert training_command([sys.executable, "-m", "ftkit.engine.worker", "supervise", "/r"]) == "-m ftkit.engine.worker"
    assert training_command([sys.executable, "-m", "torch.distributed.run", "-m", "ftkit.engine.rank", "/r"])
    assert training_command(["/usr/bin/torchrun", "x.py"]) == "/usr/bin/torchrun"
    assert training_command(f"{sys.executable} -mftkit.cli train c.yaml") == "-m ftkit.cli"
    assert training_command([Path(sys.executable).with_name("ftkit"), "train"])
    assert training_command([sys.executable, "-c", "import ftkit"]) is None
    assert training_command(["git", "rev-parse", "HEAD"]) is None
