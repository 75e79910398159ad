"""ftkit.data is task-neutral (it imports neither tasks, engine nor config), and formats come from one registry."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ftkit
from ftkit.config import DATA_FORMATS, Config, DataConfig, schema_fields
from ftkit.config_parsing import absolute_paths
from ftkit.data import guess_format, read_source
from ftkit.data.formats import Table
from ftkit.data.registry import FILE_SUFFIXES, FORMATS, DataFormat, file_suffixes
from ftkit.tasks.loading import COLUMN_OPTIONS, load

DATA_DIR = Path(ftkit.__file__).parent / "data"
FORBIDDEN = ("ftkit.tasks", "ftkit.engine", "ftkit.config")


def _runtime_imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports at module or function level (``if TYPE_CHECKING:`` blocks excluded), absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(node) for branch in ast.walk(tree)
               if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
               for node in ast.walk(branch)}
    package = ["ftkit", "data"]
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found += [(node.lineno, module)] + [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def test_no_module_in_ftkit_data_imports_tasks_engine_or_config():
    offending = [f"{path.name}:{line}: {name}" for path in sorted(DATA_DIR.glob("*.py"))
                 for line, name in _runtime_imports(path)
                 if any(name == forbidden or name.startswith(forbidden + ".") for forbidden in FORBIDDEN)]
    assert offending == []


def test_the_layering_check_sees_relative_and_function_level_imports(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..config import DataConfig\n"
                      "def f():\n    from ..tasks import get_task\n    from . import formats\n")
    names = [name for _, name in _runtime_imports(module)]
    assert "ftkit.tasks" in names and "ftkit.data" in names and "ftkit.config" not in names


# ----- the format registry ---------------------------------------------------------------------------


def test_every_registered_format_is_a_config_choice_and_its_suffixes_are_guessed(tmp_path):
    choices = next(f.metadata["choices"] for key, _, f in schema_fields(Config) if key == "data.format")
    assert choices == DATA_FORMATS == tuple(FORMATS)
    assert set(FILE_SUFFIXES) == set(file_suffixes())
    for data_format in FORMATS.values():
        for suffix in data_format.suffixes:
            path = tmp_path / f"train{suffix}"
            path.write_text("x\n")
            assert guess_format(path) == data_format.name, suffix
            # a config value with this suffix is a local path, made absolute at launch
            written = {"data": {"train": f"sub/train{suffix}"}}
            assert absolute_paths(written, tmp_path)["data"]["train"] == str(tmp_path / "sub" / path.name)


@pytest.fixture
def pipe_format(monkeypatch):
    """A test-only format: one `text|label` pair per line, suffix .pipe."""

    def read_pipe(path, options):
        rows = [line.split("|") for line in Path(path).read_text().splitlines() if line.strip()]
        return Table({"text": [r[0] for r in rows], "label": [r[1] for r in rows]}, Path(path).name, str(path),
                      list(range(1, len(rows) + 1)))

    monkeypatch.setitem(FORMATS, "pipe", DataFormat("pipe", read_pipe, (".pipe",)))  # as `register` adds it
    return FORMATS["pipe"]


def test_a_registered_format_is_guessed_from_its_suffix_and_read_through_the_registry(tmp_path, pipe_format):
    train = tmp_path / "train.pipe"
    train.write_text("a fine film|positive\na dull film|negative\n")
    assert guess_format(train) == "pipe"
    assert read_source(str(train), None, DataConfig()).columns["label"] == ["positive", "negative"]
    (tmp_path / "test.pipe").write_text("good|positive\n")
    splits = load(str(tmp_path), "classification")  # a folder of split files in the new format
    assert list(splits) == ["train", "test"] and splits["test"]["text"] == ["good"]
    assert load(str(train), "classification", format="pipe")["train"]["label"] == ["positive", "negative"]


def test_the_keyword_data_options_default_as_the_config_does():
    defaults = DataConfig()
    assert {name: getattr(defaults, name) for name in COLUMN_OPTIONS} == COLUMN_OPTIONS
