"""`make lab` leaves the network to the user and passes --allow-root only as root; tests stay offline.

The Makefile runs against a stand-in virtual environment whose `jupyter` and `python` print what they
were given, so nothing is installed or started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORT = '#!/bin/sh\necho "ARGS $*"\necho "HF_HUB_OFFLINE=${HF_HUB_OFFLINE-unset}"\n'

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


@pytest.fixture
def fake_venv(tmp_path) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name in ("jupyter", "python"):
        script = venv / "bin" / name
        script.write_text(REPORT)
        script.chmod(0o755)
    stamp = venv / ".ftkit-installed"
    stamp.touch()
    later = time.time() + 86400  # newer than every source file, so `setup` has nothing to do
    os.utime(stamp, (later, later))
    return venv


def make(target: str, venv: Path, uid: int | None = None, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "MAKEFLAGS", "MFLAGS")}
    environ.update(env)
    if uid is not None:  # `id -u` answers this uid
        fake_bin = venv.parent / "fake-id"
        fake_bin.mkdir(exist_ok=True)
        (fake_bin / "id").write_text(f"#!/bin/sh\necho {uid}\n")
        (fake_bin / "id").chmod(0o755)
        environ["PATH"] = f"{fake_bin}{os.pathsep}{environ['PATH']}"
    out = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), target, f"VENV={venv}"],
                         env=environ, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_make_lab_does_not_force_offline_mode(fake_venv):
    assert "HF_HUB_OFFLINE=unset" in make("lab", fake_venv)
    assert "HF_HUB_OFFLINE=0" in make("lab", fake_venv, HF_HUB_OFFLINE="0")


def test_make_lab_passes_allow_root_only_when_running_as_root(fake_venv):
    assert "--allow-root" in make("lab", fake_venv, uid=0)
    as_user = make("lab", fake_venv, uid=1000)
    assert "ARGS lab --notebook-dir=notebooks" in as_user and "--allow-root" not in as_user


@pytest.mark.parametrize("target", ["test-fast", "test", "demo"])
def test_tests_and_the_demo_run_offline_unless_told_otherwise(fake_venv, target):
    assert "HF_HUB_OFFLINE=1" in make(target, fake_venv)
    assert "HF_HUB_OFFLINE=0" in make(target, fake_venv, HF_HUB_OFFLINE="0")



def dry_run(target: str, venv: Path, *flags: str) -> str:
    """What `make -n` would run (nothing runs)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS")}
    out = subprocess.run(["make", "--no-print-directory", "-n", "-C", str(ROOT), *flags, target, f"VENV={venv}"],
                         env=environ, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_setup_installs_every_package_through_the_lock_and_reinstalls_when_it_changes(fake_venv):
    assert "pip install" not in dry_run("setup", fake_venv)  # the stamp is newer than everything
    planned = dry_run("setup", fake_venv, "-W", "requirements.lock")  # as if the lock had just changed
    installs = [line for line in planned.splitlines() if " -m pip install " in line and "--upgrade pip" not in line]
    assert len(installs) == 4 and all(" -c requirements.lock " in line for line in installs), planned
    assert any(" -e " in line for line in installs) and any('"torch==2.13.0"' in line for line in installs)
    assert "\ntorch==2.13.0\n" in (ROOT / "requirements.lock").read_text()


def test_the_fast_tier_skips_slow_and_spawning_tests_and_tells_conftest_so(fake_venv):
    (command,) = [line for line in dry_run("test-fast", fake_venv).splitlines() if "pytest" in line]
    assert "FTKIT_TEST_TIER=fast " in command and command.endswith('-m pytest -q -m "not slow and not spawns"')
