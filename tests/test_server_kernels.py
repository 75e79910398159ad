"""Kernels started by a Jupyter server with the ftkit extension use the panel's runs folder, wherever
the notebook sits: a real server, a notebook in a subfolder, and code run in its kernel."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

pytest_plugins = ["pytest_jupyter.jupyter_server"]

pytestmark = pytest.mark.timeout(180)

IN_KERNEL = {"env": "os.environ.get('FTKIT_RUNS_DIR')", "resolved": "str(ftkit.config.resolve_runs_dir())",
             "cwd": "os.getcwd()"}


@pytest.fixture
def server_cwd(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "started-here"
    folder.mkdir()
    monkeypatch.chdir(folder)  # where `jupyter lab` was typed
    return folder


@pytest.fixture
def jp_server_config(request, tmp_path, server_cwd, monkeypatch):
    """The server's settings; ``configured``: FtkitApp.runs_dir; ``variable``: a relative $FTKIT_RUNS_DIR."""
    config = {"ServerApp": {"jpserver_extensions": {"ftkit": True}}}
    setting = getattr(request, "param", None)
    if setting == "configured":
        config["FtkitApp"] = {"runs_dir": str(tmp_path / "panel-runs")}
        monkeypatch.setenv("FTKIT_RUNS_DIR", str(tmp_path / "overruled"))
    elif setting == "variable":
        monkeypatch.setenv("FTKIT_RUNS_DIR", "shared-runs")  # relative: to the server's folder
    else:
        monkeypatch.delenv("FTKIT_RUNS_DIR", raising=False)
    return config


async def kernel_view(jp_fetch, jp_serverapp, notebook: str) -> dict[str, str]:
    """Start a kernel for ``notebook`` through the REST API (as JupyterLab does) and read IN_KERNEL there."""
    from jupyter_client.asynchronous import AsyncKernelClient

    body = {"path": notebook, "type": "notebook", "name": Path(notebook).name, "kernel": {"name": "python3"}}
    response = await jp_fetch("api", "sessions", method="POST", body=json.dumps(body))
    kernel_id = json.loads(response.body)["kernel"]["id"]
    client = AsyncKernelClient()
    client.load_connection_info(jp_serverapp.kernel_manager.get_kernel(kernel_id).get_connection_info(session=False))
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=120)
        reply = await client.execute_interactive("import os, ftkit.config", user_expressions=IN_KERNEL, timeout=120,
                                                 output_hook=lambda message: None)
        results = reply["content"]["user_expressions"]
        return {key: ast.literal_eval(value["data"]["text/plain"]) for key, value in results.items()}
    finally:
        client.stop_channels()
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")


@pytest.mark.parametrize("jp_server_config", ["configured"], indirect=True)
async def test_a_kernel_in_a_subfolder_uses_the_panels_configured_runs_folder(jp_fetch, jp_serverapp, jp_root_dir,
                                                                              tmp_path):
    (jp_root_dir / "projects" / "ner").mkdir(parents=True)
    seen = await kernel_view(jp_fetch, jp_serverapp, "projects/ner/analysis.ipynb")
    assert Path(seen["cwd"]) == jp_root_dir / "projects" / "ner"
    assert seen["env"] == seen["resolved"] == str((tmp_path / "panel-runs").resolve())


async def test_by_default_kernels_use_ftkit_runs_in_the_servers_folder_not_the_notebooks(
        jp_fetch, jp_serverapp, jp_root_dir, server_cwd):
    (jp_root_dir / "sub").mkdir()
    seen = await kernel_view(jp_fetch, jp_serverapp, "sub/notebook.ipynb")
    assert Path(seen["cwd"]) == jp_root_dir / "sub"
    assert seen["env"] == seen["resolved"] == str((server_cwd / "ftkit-runs").resolve())
    code = (await jp_fetch("ftkit", "api", "runs")).code
    assert code == 200  # the panel reads the same folder (absent until a run starts: an empty list)


@pytest.mark.parametrize("jp_server_config", ["variable"], indirect=True)
async def test_a_users_ftkit_runs_dir_reaches_kernels_made_absolute(jp_fetch, jp_serverapp, jp_root_dir, server_cwd):
    (jp_root_dir / "deep" / "er").mkdir(parents=True)
    seen = await kernel_view(jp_fetch, jp_serverapp, "deep/er/notebook.ipynb")
    assert seen["env"] == seen["resolved"] == str((server_cwd / "shared-runs").resolve())
