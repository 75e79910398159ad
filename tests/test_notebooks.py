"""The example notebooks run top to bottom, headless, on a small subset (FTKIT_SMOKE=1)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import SHARED_DATA

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def execute(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("FTKIT_SMOKE", "1")
    monkeypatch.setenv("FTKIT_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("FTKIT_DATA_DIR", str(SHARED_DATA))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    try:
        client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    finally:
        nbformat.write(notebook, tmp_path / name)  # the executed notebook, to look at when a test fails
    return notebook


def printed(notebook: nbformat.NotebookNode) -> str:
    return "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for output in cell.get("outputs", []) if output.output_type == "stream")


def mime_types(notebook: nbformat.NotebookNode) -> set[str]:
    return {mime for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
            for mime in output.get("data", {})}


@pytest.mark.slow
@pytest.mark.timeout(1800)  # two real runs on a shared CPU
def test_quickstart_ner_notebook_trains_lora_and_full_and_reports_entity_f1(tmp_path, monkeypatch):
    notebook = execute("01_quickstart_ner.ipynb", tmp_path, monkeypatch)
    text = printed(notebook)
    assert "conll-lora: entity F1 on test = " in text
    assert "conll-full: entity F1 on test = " in text
    assert WIDGET_VIEW in mime_types(notebook)  # the live monitor and the data picker were shown


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_text_classification_notebook_trains_from_form_and_cell_magic_and_reports_accuracy(tmp_path, monkeypatch):
    notebook = execute("02_text_classification.ipynb", tmp_path, monkeypatch)
    text = printed(notebook)
    assert "sst2-lora: accuracy on test = " in text
    assert "sst2-head: accuracy on test = " in text
    assert "data map: " in text and "examples left out (data.retrain_of = " in text
    assert "sst2-lora-retrain: accuracy on test = " in text
    assert "%%finetune -o run" in text  # the form's "Copy as %%finetune" text
    assert WIDGET_VIEW in mime_types(notebook)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_embeddings_notebook_browses_projects_and_compares_base_with_a_fine_tuned_run(tmp_path, monkeypatch):
    notebook = execute("03_embeddings.ipynb", tmp_path, monkeypatch)
    text = printed(notebook)
    assert "man : king :: woman : queen" in text
    assert "most moved words: " in text and "mean cosine shift: static" in text
    assert "application/vnd.bokehjs_exec.v0+json" in mime_types(notebook)
    assert WIDGET_VIEW in mime_types(notebook)


def shown(notebook: nbformat.NotebookNode) -> str:
    """Everything the notebook showed as plain text: printed lines and displayed values."""
    return printed(notebook) + "".join(output.get("data", {}).get("text/plain", "") for cell in notebook.cells
                                       if cell.cell_type == "code" for output in cell.get("outputs", []))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_generative_sft_notebook_fine_tunes_smollm2_with_lora_and_compares_it_with_the_base(tmp_path, monkeypatch):
    notebook = execute("04_generative_sft.ipynb", tmp_path, monkeypatch)
    text = shown(notebook)
    assert "sst2-sft-lora: completed after 3 steps" in text
    assert "gold: " in text and "base: " in text  # the base model's answers before fine-tuning
    assert "exact match" in text and "label likelihood accuracy" in text  # before/after on the dev sentences
    assert WIDGET_VIEW in mime_types(notebook)  # the monitor and the chat widget


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_preference_tuning_notebook_runs_sft_then_dpo_from_it_and_compares_base_sft_and_dpo(tmp_path, monkeypatch):
    notebook = execute("05_preference_tuning.ipynb", tmp_path, monkeypatch)
    text = shown(notebook)
    assert "sst2-dpo: completed; started from sft run sst2-sft, checkpoint-" in text  # the lineage
    assert "rewards/accuracies" in text and "rewards/margins" in text
    assert "label likelihood accuracy" in text and "dpo" in text  # base, sft and dpo side by side
    assert "ftkit-pair" in "".join(output.get("data", {}).get("text/html", "") for cell in notebook.cells
                                   if cell.cell_type == "code" for output in cell.get("outputs", []))
    assert WIDGET_VIEW in mime_types(notebook)  # the monitor and the chat widget
    assert not (NOTEBOOKS / "my_pairs.jsonl").exists()  # the example file is cleaned up
