"""The side panel's TypeScript unit tests (vitest: RunsModel and formatting), run by `make test`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_front_end_unit_tests_pass():
    npm = shutil.which("npm")
    assert npm, "npm is missing: the front-end tests need Node.js 20 and npm"
    if not (ROOT / "node_modules" / ".bin" / "vitest").exists():
        # `make setup` installs these while building the extension; a bare checkout needs them here
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT, check=True, capture_output=True, timeout=600)
    result = subprocess.run([npm, "test", "--silent"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"vitest failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    assert " passed" in result.stdout and "failed" not in result.stdout, result.stdout[-2000:]
