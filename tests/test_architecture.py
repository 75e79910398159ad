"""The shape CONTRIBUTING.md draws is the shape of the imports: layers whose arrows point down only,
no import cycles (the task and format registries' lazy imports counted), and modules a person can
read in one sitting. Read from the source with `ast`; nothing is imported."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ftkit"
MAX_LINES = 500
# Top to bottom, as CONTRIBUTING.md draws them: a module imports from its own layer or one below.
LAYERS = [
    ("surfaces", ("ftkit", "ftkit.notebook", "ftkit.server", "ftkit.cli", "ftkit.cli_sweep", "ftkit.terminal", "ftkit.demo")),
    ("runs", ("ftkit.runs", "ftkit.sweeps", "ftkit.comparison", "ftkit.exports", "ftkit.datamap", "ftkit.embeddings")),
    ("process", ("ftkit.process",)),
    ("engine", ("ftkit.engine",)),
    ("config", ("ftkit.config", "ftkit.config_parsing", "ftkit.trainer_args", "ftkit.starter")),
    ("tasks", ("ftkit.tasks",)),
    ("data", ("ftkit.data",)),
    ("runstore", ("ftkit.runstore",)),
    ("foundation", ("ftkit.errors", "ftkit.hub", "ftkit.rendering", "ftkit.secrets")),
]
# The training stack: imported at module level only by the engine and by the embedding explorer (which
# computes its spaces in the kernel, and is imported only when a notebook opens it).
TRAINING_STACK = ("torch", "transformers", "peft", "trl", "accelerate")
USES_TRAINING_STACK = ("ftkit.engine", "ftkit.embeddings")
# What a launch, a follow, the panel or the CLI import: never the engine at module level (anything that
# trains or evaluates runs in a worker process; a model for inference is loaded inside a function).
LIGHT = ("ftkit.notebook", "ftkit.server", "ftkit.cli", "ftkit.cli_sweep", "ftkit.terminal", "ftkit.runs", "ftkit.sweeps", "ftkit.comparison", "ftkit.exports",
         "ftkit.datamap", "ftkit.process")
# A registry entry ("ftkit.tasks.ner:NerTask"): a module the registry imports by name at run time.
REGISTRY_ENTRY = re.compile(r"""["'](ftkit(?:\.\w+)+):\w+["']""")


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


MODULES = modules()


def imports(name: str, path: Path) -> list[tuple[str, bool]]:
    """(imported ftkit module, at module level?) for each import of ``name``, TYPE_CHECKING blocks left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                   for node in ast.walk(block)}
    top = {id(node) for node in tree.body}
    base = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                module = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in MODULES else module for alias in node.names]
        else:
            continue
        found += [(target, id(node) in top) for target in targets]
    return found


def lazy_imports(path: Path) -> set[str]:
    """Modules imported by name at run time: registry entries (``"ftkit.tasks.ner:NerTask"``) and
    ``import_module("ftkit....")`` with a literal name."""
    text = path.read_text(encoding="utf-8")
    named = set(REGISTRY_ENTRY.findall(text))
    for node in ast.walk(ast.parse(text)):
        if (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            named.add(node.args[0].value)
    return {name for name in named if name in MODULES}


def layer_of(module: str) -> int:
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + ".") and prefix != "ftkit":
                if best is None or len(prefix) > best[1]:
                    best = (rank, len(prefix))
    assert best is not None, f"{module} is in no layer: add it to LAYERS and to CONTRIBUTING.md's diagram"
    return best[0]


def graph(with_lazy: bool) -> dict[str, set[str]]:
    edges = {}
    for name, path in MODULES.items():
        targets = {target for target, _ in imports(name, path) if target in MODULES}
        if with_lazy:
            targets |= lazy_imports(path)
        # a module importing its own package (``from . import x`` resolves to it) is not a dependency
        edges[name] = {t for t in targets if t != name and not name.startswith(t + ".") and t != "ftkit"}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_even_through_the_registries_lazy_imports():
    edges = graph(with_lazy=True)
    assert "ftkit.tasks.ner" in edges["ftkit.tasks"], "the task registry's lazy imports are counted"
    assert cycles(edges) == []


def test_the_cycle_check_finds_a_cycle_that_only_a_lazy_import_closes():
    edges = {"a": {"b"}, "b": set(), "c": set()}
    assert cycles(edges) == []
    edges["b"].add("a")  # what a registry string "a:Thing" in b adds
    assert cycles(edges) == [["a", "b"]]


def test_imports_point_down_the_layers():
    upward = []
    for name, path in MODULES.items():
        for target, _ in imports(name, path):
            if target in MODULES and target != "ftkit" and layer_of(target) < layer_of(name):
                upward.append(f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})")
    assert upward == []


def test_the_layer_check_refuses_an_upward_import():
    assert layer_of("ftkit.data.sources") > layer_of("ftkit.tasks.ner") > layer_of("ftkit.engine.training")
    assert layer_of("ftkit.runstore.store") > layer_of("ftkit.data.formats")
    assert layer_of("ftkit.process.supervisor") < layer_of("ftkit.engine.worker")


def test_data_imports_neither_tasks_nor_the_engine_nor_config():
    wrong = [f"{name} imports {target}" for name, path in MODULES.items()
             if name == "ftkit.data" or name.startswith("ftkit.data.")
             for target, _ in imports(name, path)
             if target.startswith(("ftkit.tasks", "ftkit.engine", "ftkit.config"))]
    assert wrong == []


def test_only_the_engine_and_the_embedding_explorer_import_the_training_stack_at_module_level():
    wrong = [f"{name} imports {target}" for name, path in MODULES.items() if not name.startswith(USES_TRAINING_STACK)
             for target, top in imports(name, path) if top and target.split(".")[0] in TRAINING_STACK]
    assert wrong == []


def test_the_surfaces_runs_and_processes_never_import_the_engine_at_module_level():
    wrong = [f"{name} imports {target}" for name, path in MODULES.items() if name.startswith(LIGHT)
             for target, top in imports(name, path) if top and target.startswith("ftkit.engine")]
    assert wrong == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_fits_in_one_sitting(name):
    lines = MODULES[name].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines: split it by job"


def test_contributing_draws_every_layer():
    text = (PACKAGE.parent / "CONTRIBUTING.md").read_text(encoding="utf-8")
    drawn = text[text.index("## The architecture on one page"):text.index("## How to add a task")]
    for _, prefixes in LAYERS:
        for prefix in prefixes:
            short = prefix.removeprefix("ftkit.").replace(".", "/")
            if prefix != "ftkit":
                assert short in drawn, f"CONTRIBUTING.md's diagram does not name {short}"


def test_the_run_store_reads_no_proc_and_takes_no_fcntl_locks():
    """Liveness goes through psutil and locks through filelock, so the store works off Linux too."""
    linux_only = [f"{name}: {what}" for name, path in MODULES.items() if name.startswith(("ftkit.runstore", "ftkit.process"))
                  for what in ("/proc", "fcntl") if what in path.read_text(encoding="utf-8")]
    assert linux_only == []
    used = {target for name, path in MODULES.items() if name.startswith("ftkit.runstore") for target, _ in imports(name, path)}
    assert {"psutil", "filelock"} <= used
