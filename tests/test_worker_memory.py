"""A run's worker keeps the memory it frees for its next step instead of faulting it in again
(`ftkit.process.supervisor.WORKER_MALLOC`, issue 32), unless the user tuned malloc themselves."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from ftkit.process.supervisor import WORKER_MALLOC, worker_environment
from ftkit.runstore.queue import DeviceQueue

# A training step's pattern in miniature: a 48 MiB block (the size of MiniLM's embedding gradient)
# written, freed and taken again, 20 times; prints the page faults it cost.
STEPS = """
import resource
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    block = b"\\x01" * (48 << 20)
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


# A spike: 1 GiB taken and freed; prints how much of it the process still holds afterwards, in MiB.
SPIKE = """
def resident():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmRSS")).split()[1]) >> 10
before = resident()
spike = b"\\x01" * (1 << 30)
del spike
print(resident() - before)
"""


def printed(program: str, env: dict[str, str]) -> int:
    return json.loads(subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True,
                                     check=True, timeout=60).stdout)


def test_the_worker_environment_keeps_freed_memory_and_the_devices_held(tmp_path, monkeypatch):
    for name in WORKER_MALLOC:
        monkeypatch.delenv(name, raising=False)
    env = worker_environment(DeviceQueue(tmp_path).take_slots(["cpu"], 1, 1))
    assert env["MALLOC_MMAP_MAX_"] == "0" and int(env["MALLOC_TRIM_THRESHOLD_"]) >= 48 << 20
    gpus = worker_environment(DeviceQueue(tmp_path / "gpus").take_slots(["cuda:0", "cuda:1"], 1, 1))
    assert gpus["CUDA_VISIBLE_DEVICES"] == "0" and gpus["MALLOC_MMAP_MAX_"] == "0"


def test_a_malloc_setting_the_user_made_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "65536")
    env = worker_environment(DeviceQueue(tmp_path).take_slots(["cpu"], 1, 1))
    assert env["MALLOC_MMAP_MAX_"] == "65536" and env["MALLOC_TRIM_THRESHOLD_"] == WORKER_MALLOC["MALLOC_TRIM_THRESHOLD_"]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the names are glibc's")
def test_with_the_worker_settings_a_freed_block_is_reused_not_faulted_in_again(tmp_path):
    plain = {name: value for name, value in worker_environment(
        DeviceQueue(tmp_path).take_slots(["cpu"], 1, 1)).items() if name not in WORKER_MALLOC}
    tuned = {**plain, **WORKER_MALLOC}
    block_pages = (48 << 20) // 4096
    assert printed(STEPS, plain) > 10 * block_pages  # glibc's default: a fresh mmap, faulted in, every time
    assert printed(STEPS, tuned) < 3 * block_pages  # once, then reused


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the names are glibc's")
def test_with_the_worker_settings_a_spike_of_memory_is_still_given_back(tmp_path):
    tuned = {**worker_environment(DeviceQueue(tmp_path).take_slots(["cpu"], 1, 1)), **WORKER_MALLOC}
    assert printed(SPIKE, tuned) < 300  # MiB of the freed GiB still held: at most the 256 MiB kept
