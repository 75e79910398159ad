"""A built wheel installs and enables the side panel and the server extension on a machine without Node.

The build hook skips the npm build when the tree already holds the built side panel
(``skip-if-exists``), so building the wheel and installing it need no Node. The wheel goes into a
fresh virtual environment whose PATH has no node or npm; the heavy dependencies come from this
repository's .venv through a ``.pth`` line (not reinstalled), while ftkit itself comes from the wheel.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILT_PANEL = ROOT / "ftkit" / "labextension" / "static" / "style.js"

pytestmark = pytest.mark.slow


def _run(command: list[str], env: dict[str, str], cwd: Path) -> str:
    out = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{command} failed:\n{out.stdout}\n{out.stderr}"
    return re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)  # without terminal colours


def test_a_built_wheel_installs_into_a_fresh_venv_without_node_and_enables_ftkit(tmp_path):
    assert BUILT_PANEL.is_file(), "the side panel is not built: `make setup` (pip install -e .) builds it"
    no_node = tmp_path / "bin"  # the only PATH entry: nothing in it, so no node, npm or jupyter
    no_node.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": str(no_node), "HOME": str(home), "LANG": "C.UTF-8", "JUPYTER_PLATFORM_DIRS": "1",
           "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data")}
    assert shutil.which("node", path=env["PATH"]) is None and shutil.which("npm", path=env["PATH"]) is None

    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", str(ROOT),
          "-w", str(wheels)], env, tmp_path)
    (wheel,) = wheels.glob("ftkit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith("share/jupyter/labextensions/ftkit/static/style.js") for n in names)
    assert any(n.endswith("etc/jupyter/jupyter_server_config.d/ftkit.json") for n in names)

    fresh = tmp_path / "fresh"
    base_python = Path(getattr(sys, "_base_executable", sys.executable))
    _run([str(base_python), "-m", "venv", "--without-pip", str(fresh)], env, tmp_path)
    python = fresh / "bin" / "python"
    fresh_site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           env, tmp_path).strip())
    # torch, transformers, jupyterlab, pip, ... from .venv, appended after the fresh site-packages.
    (fresh_site / "_ftkit_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", str(wheel)], env, tmp_path)

    where = _run([str(python), "-c", "import ftkit; print(ftkit.__file__)"], env, tmp_path).strip()
    assert Path(where).is_relative_to(fresh), f"ftkit came from {where}, not from the wheel"
    assert (fresh / "share/jupyter/labextensions/ftkit/static/style.js").is_file()

    labextensions = _run([str(python), "-c", "import sys; from jupyterlab.labextensions import main; "
                          "sys.argv = ['jupyter-labextension', 'list']; main()"], env, tmp_path)
    line = next((row for row in labextensions.splitlines() if row.strip().startswith("ftkit ")), "")
    assert "enabled" in line and "OK" in line, labextensions
    assert str(fresh) in labextensions

    server_extensions = _run([str(python), "-c", "import sys; from jupyter_server.extension.serverextension "
                              "import main; sys.argv = ['jupyter-server-extension', 'list']; main()"], env, tmp_path)
    fresh_config = server_extensions.split(f"Config dir: {os.path.join(str(fresh), 'etc', 'jupyter')}")[-1]
    fresh_config = fresh_config.split("Config dir:")[0]  # what the wheel's config file enables
    assert "ftkit enabled" in fresh_config and "ftkit 0.1.0 OK" in fresh_config, server_extensions
