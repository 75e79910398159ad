"""The `ftkit` command: train, follow and manage runs from a terminal or a script.

Every command that prints for people also takes `--json` for scripts. Errors that are the
user's to fix print one line (`ftkit: ...`) and exit 2; a followed run that fails exits 1.

This process never imports the training stack: `eval`, `predict`, `merge` and `export` run as jobs of
`python -m ftkit.engine.worker` (`ftkit.process.jobs` reads their JSON result back), as training does.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from .errors import FtkitError
from .rendering import cut_mark
from .process.jobs import run_job
from .runstore.events import phase_text, shown_status
from .runstore.layout import EXPORT_FORMATS, GGUF_QUANTS
from .terminal import FOLLOWED_METRICS, follow_in_terminal, print_json, print_table

# What `ftkit show` and `ftkit follow` print of an evaluation (generative runs: loss, perplexity, exact match;
# preference runs also their reward accuracy and margin).
SHOWN_METRICS = FOLLOWED_METRICS + ("macro_f1", "rouge_l", "rewards/accuracies", "rewards/margins")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except FtkitError as exc:
        print(f"ftkit: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftkit", description="Fine-tune transformer models (NER, text classification, generative SFT).")
    parser.add_argument("--runs-dir", help="run store folder (default: $FTKIT_RUNS_DIR or ./ftkit-runs)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler, help: str, run: bool = False, json_flag: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        if run:
            sub.add_argument("run", help="run id, unique id prefix, or name")
        if json_flag:
            sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.set_defaults(handler=handler)
        return sub

    train = command("train", cmd_train, "start a run from a YAML/JSON config (in the background), or retrain a run "
                    "without some training examples (--from RUN --exclude FILE)")
    train.add_argument("config", nargs="?", help="config file (YAML or JSON)")
    train.add_argument("--from", dest="parent", metavar="RUN", help="retrain this run on its own splits, less "
                       "--exclude and with --relabel (the copies go into the new run's folder)")
    train.add_argument("--exclude", metavar="FILE", help="--from: training rows to leave out, one per line (or a "
                       "CSV/JSONL with an 'example' column, e.g. a saved run.data_map())")
    train.add_argument("--relabel", metavar="FILE", help="--from: corrected labels, a JSON/YAML mapping row: label")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set training.epochs=1 (repeatable)")
    train.add_argument("--follow", action="store_true", help="show a progress bar until the run ends")
    train.add_argument("--nodes", type=int, help="machines taking part (resources.nodes); node 0 starts the run "
                       "and prints the command each other node runs")
    train.add_argument("--node-rank", type=int, help="this machine's index (resources.node_rank; 0 = the main node)")
    train.add_argument("--main-address", help="host name or IP of node 0 (resources.main_address)")

    runs = command("runs", cmd_runs, "list runs")
    runs.add_argument("--status", choices=("queued", "running", "completed", "failed", "stopped"))
    runs.add_argument("--rebuild-index", action="store_true", help="recreate the index from the run folders")

    command("show", cmd_show, "show one run: status, progress, metrics, checkpoints", run=True)
    follow = command("follow", cmd_follow, "show a run's progress until it ends", run=True, json_flag=False)
    follow.set_defaults(json=False)
    stop = command("stop", cmd_stop, "stop a run gracefully (it saves a checkpoint)", run=True)
    stop.add_argument("--wait", action="store_true", help="wait until it has stopped")
    resume = command("resume", cmd_resume, "continue a stopped or failed run from its last checkpoint", run=True)
    resume.add_argument("--follow", action="store_true")
    evaluate = command("eval", cmd_eval, "evaluate a run's best checkpoint on a split", run=True)
    evaluate.add_argument("--split", default="test", help="the run's split to score: validation or test (default)")
    evaluate.add_argument("--data", help="score this file, folder or hub id instead (read with the run's data "
                                         "options, scored against the model's labels)")
    evaluate.add_argument("--checkpoint", help="checkpoint folder or step (default: the best)")
    chat = command("chat", cmd_chat, "talk with an sft run's best checkpoint: one answer, or turns read from stdin "
                   "(answers stream as they are generated)", run=True, json_flag=False)
    chat.add_argument("message", nargs="?", help="answer this once and exit (default: read a message per line)")
    chat.add_argument("--checkpoint", help="checkpoint folder or step (default: the best)")
    chat.add_argument("--max-new-tokens", type=int, default=256, help="the longest answer, in tokens (default 256)")
    chat.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy; above 0: sampled")
    chat.add_argument("--system", help="a system message to start the conversation with")
    predict = command("predict", cmd_predict, "tag or classify texts with a run's best checkpoint", run=True)
    predict.add_argument("texts", nargs="+", help="text(s) to predict")
    predict.add_argument("--checkpoint", help="checkpoint folder or step (default: the best)")
    merge = command("merge", cmd_merge, "write a standalone model (LoRA merged into the base)", run=True)
    merge.add_argument("--output", help="folder (default: RUN_DIR/merged)")
    merge.add_argument("--checkpoint", help="checkpoint folder or step (default: the best)")
    export = command("export", cmd_export, "write a checkpoint as GGUF (generative runs: llama.cpp, Ollama, LM "
                     "Studio) or ONNX (encoders: ONNX Runtime) and verify it against the fine-tuned model", run=True)
    export.add_argument("--format", choices=EXPORT_FORMATS, help="default: what the run's task exports to")
    export.add_argument("--quant", choices=GGUF_QUANTS, help="GGUF weights: f16 (default), q8_0 or q4_0")
    export.add_argument("--checkpoint", help="checkpoint folder or step (default: the best)")
    export.add_argument("-o", "--output", help="a folder, or a .gguf file (default: RUN_DIR/exports/<checkpoint>-<format>[-<quant>])")
    export.add_argument("--ollama", action="store_true", help="GGUF: also write an Ollama Modelfile beside it")
    export.add_argument("--examples", type=int, default=200, help="held-out examples it is verified on (default 200)")
    push = command("push", cmd_push, "upload a run's best checkpoint (or a merge, or an export) with its model card "
                   "to the hub", run=True)
    push.add_argument("repo_id", help="the model repository to create or update, e.g. you/conll-minilm")
    push.add_argument("--checkpoint", help="checkpoint folder or step, or 'merged' (default: the best)")
    push.add_argument("--export", metavar="PATH_OR_NAME", help="push this export of the run (its folder, file, "
                      "name under RUN_DIR/exports, or id) instead of a checkpoint")
    push.add_argument("--allow-unverified", action="store_true", help="--export: push it even if it failed verification")
    push.add_argument("--public", action="store_true", help="create the repository as public (default: private)")
    delete = command("delete", cmd_delete, "delete a run and its checkpoints", run=True)
    delete.add_argument("--yes", action="store_true", help="do not ask")
    compare = command("compare", cmd_compare, "show runs side by side: the config keys that differ and the final metrics")
    compare.add_argument("runs", nargs="*", metavar="RUN", help="run ids, unique id prefixes or names")
    compare.add_argument("--sweep", metavar="NAME", help="also compare every run of this sweep")
    from .cli_sweep import add_arguments as add_sweep_arguments, cmd_sweep

    add_sweep_arguments(command("sweep", cmd_sweep, "train a config at every setting of a grid, or at the settings an "
                                "optuna search picks; each setting is an ordinary run tagged with the sweep"))
    from .tasks import TASK_NAMES

    init = command("init", cmd_init, "write a commented starter config for a task")
    init.add_argument("task", choices=TASK_NAMES, help="the task the config trains")
    init.add_argument("path", nargs="?", help="file to write (default: TASK.yaml here; - prints it)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    return parser


# ----- commands ---------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .process.torchrun import node_commands
    from .runs import start

    if (args.config is None) == (args.parent is None):
        raise FtkitError("ftkit train: give a config file, or --from RUN (with --exclude and/or --relabel), not both")
    if args.parent is not None:
        return _retrain(args)
    config = load_config(args.config, overrides=args.overrides)
    layout = {"nodes": args.nodes, "node_rank": args.node_rank, "main_address": args.main_address}
    config = config.replace({f"resources.{key}": value for key, value in layout.items() if value is not None})
    if args.runs_dir:
        config = config.replace({"output.dir": args.runs_dir})
    if config.resources.node_rank > 0:
        return _print_join_command(config, args.json)
    run = start(config)
    commands = node_commands(config, run.dir)
    if args.json:
        print_json({"id": run.id, "name": run.name, "dir": str(run.dir), "node_commands": commands})
    else:
        print(f"started run {run.id} ({run.name}) in {run.dir}")
        for rank, command in commands.items():
            print(f"on node {rank} run:  {command}")
    if args.follow:
        return follow_in_terminal(run, quiet=args.json)
    return 0


def _retrain(args: argparse.Namespace) -> int:
    from .datamap import read_relabels, read_rows, retrain_config
    from .runs import get, start

    parent = get(args.parent, args.runs_dir)
    config, splits = retrain_config(parent, read_rows(args.exclude) if args.exclude else None,
                                    read_relabels(args.relabel) if args.relabel else None, overrides=args.overrides)
    child = start(config, **splits)
    if args.json:
        print_json({"id": child.id, "name": child.name, "dir": str(child.dir), "retrain_of": parent.id})
    else:
        print(f"started run {child.id} ({child.name}) in {child.dir}: {parent.name} retrained, "
              f"{len(child.config.data.exclude or [])} examples left out, {len(child.config.data.relabel or {})} relabelled")
    return follow_in_terminal(child, quiet=args.json) if args.follow else 0


def _print_join_command(config: Any, as_json: bool) -> int:
    """Nodes other than 0 start nothing here: node 0 creates the run in the shared run store."""
    from .process.torchrun import join_command

    rank = config.resources.node_rank
    command = join_command("RUN_DIR", rank)
    if as_json:
        print_json({"node_rank": rank, "command": command})
    else:
        print(f"node {rank} joins the run node 0 starts (`ftkit train` there prints its folder, RUN_DIR, which "
              f"must be shared):\n  {command}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from .runstore import RunStore

    store = RunStore(args.runs_dir)
    if args.rebuild_index:
        count = store.rebuild_index()
        print(f"rebuilt the index from {count} run folders")
    runs, _ = store.list_runs(status=args.status)
    if args.json:
        print_json(runs)
        return 0
    if not runs:
        print(f"no runs in {store.root}")
        return 0
    rows = [("ID", "NAME", "STATUS", "PROGRESS", "BEST", "STARTED")]
    for r in runs:
        p = r["progress"]
        progress = f"{p['step']}/{p['total_steps']}" if p["total_steps"] else "-"
        if r.get("phase"):  # before the first step: what it is doing instead of a step count
            progress = phase_text(r["phase"])
        best = f"{r['best_metric']['name']} {r['best_metric']['value']:.4f}" if r["best_metric"] else "-"
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["started"])) if r["started"] else "-"
        rows.append((r["id"], r["name"], shown_status(r["status"], r.get("phase")), progress, best, started))
    print_table(rows)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    run = _run(args)
    info = run.info()
    if args.json:
        print_json(info)
        return 0
    p = info["progress"]
    print(f"{info['id']}  {info['name']}  [{info['status']}]")
    if info.get("parent"):
        parent = info["parent"]
        print(f"from: {parent['task']} run {parent['name']} ({parent['run']}), {parent['checkpoint']} "
              f"→ {info['task']}")
    if info["error"]:
        print(f"error: {info['error']}")
    if info.get("phase"):  # before the first step: starting, reading data n/N, tokenising n/N...
        from .runstore.events import phase_text

        print(f"phase: {phase_text(info['phase'])}")
    if p["total_steps"]:
        print(f"progress: step {p['step']}/{p['total_steps']}, epoch {p['epoch'] or 0:.2f}")
    for split, metrics in info["metrics"].items():
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k in SHOWN_METRICS)
        print(f"{split}: {shown}")
    for c in info["checkpoints"]:
        print(f"checkpoint step {c['step']}: {c['path']} ({c['size'] or 0} bytes{', adapter only' if c['adapter_only'] else ''})")
    return 0


def cmd_follow(args: argparse.Namespace) -> int:
    return follow_in_terminal(_run(args), quiet=False)


def cmd_stop(args: argparse.Namespace) -> int:
    run = _run(args).stop(wait=args.wait)
    if args.json:
        print_json({"id": run.id, "status": run.status})
    else:
        print(f"stop requested for {run.id}" + (f"; now {run.status}" if args.wait else ""))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    run = _run(args).resume()
    if args.json:
        print_json({"id": run.id})
    else:
        print(f"resumed run {run.id}")
    return follow_in_terminal(run, quiet=args.json) if args.follow else 0


def cmd_eval(args: argparse.Namespace) -> int:
    run = _run(args)
    data = ["--data", os.path.abspath(args.data) if os.path.exists(args.data) else args.data] if args.data else []
    result = run_job(run, "evaluate", "--split", args.split, *data, *_checkpoint_option(args))
    if args.json:
        print_json(result["metrics"])
    else:
        print(result["report"])
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    run = _run(args)
    results = run_job(run, "predict", *_checkpoint_option(args), texts=list(args.texts))
    if args.json:
        print_json(results[0] if len(args.texts) == 1 else results)
        return 0
    for text, result in zip(args.texts, results):
        if isinstance(result, str):  # a generated answer (sft)
            print(f"{text}\n→ {result}")
        elif isinstance(result, dict):
            print(f"{result['label']}\t{text}")
        else:
            print(text)
            for e in result:
                print(f"  {e['label']:<6} {e['text']!r} [{e['start']}:{e['end']}] {e['score']:.3f}")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    """Inference, not training: the checkpoint is loaded here (the only command that imports the model stack)."""
    run = _run(args)
    path = run.checkpoint_path(args.checkpoint)
    from .engine.generation import Generator  # lazily: every other command stays free of torch

    generator = Generator.load(path)
    messages = [{"role": "system", "content": args.system}] if args.system else []

    def answer(text: str) -> None:
        messages.append({"role": "user", "content": text})
        pieces, stream = [], generator.stream(messages, max_new_tokens=args.max_new_tokens,
                                              temperature=args.temperature)
        for piece in stream:
            pieces.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n" if stream.generation.stopped else f" {cut_mark(args.max_new_tokens)}\n")
        sys.stdout.flush()
        messages.append({"role": "assistant", "content": "".join(pieces)})

    if args.message is not None:
        answer(args.message)
        return 0
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"chatting with {run.name} ({path.name}); an empty line or Ctrl-D ends", file=sys.stderr)
    while True:
        if interactive:
            sys.stderr.write("> ")
            sys.stderr.flush()
        line = sys.stdin.readline()
        if not line or (interactive and not line.strip()):
            return 0
        if line.strip():
            answer(line.rstrip("\n"))


def cmd_merge(args: argparse.Namespace) -> int:
    run = _run(args)
    output = ["--merged-dir", str(Path(args.output).resolve())] if args.output else []
    out = run_job(run, "merge", *output, *_checkpoint_option(args))["path"]
    if args.json:
        print_json({"id": run.id, "path": str(out)})
    else:
        print(f"wrote a standalone model to {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .exports import export_summary

    run = _run(args)
    record = run.export(args.format, args.quant, args.checkpoint, args.output, args.ollama, args.examples)
    if args.json:
        print_json(record)
    else:
        print(export_summary(record))
    return 0 if record["verification"]["passed"] else 1


def cmd_push(args: argparse.Namespace) -> int:
    from .exports import push_to_hub

    run = _run(args)
    def announce(folder: Path, files: list[str]) -> None:  # what leaves the machine, said before it does
        where = "public" if args.public else "private"
        print(f"uploading to {args.repo_id} ({where}) from {folder}: {', '.join(files)}", file=sys.stderr, flush=True)

    url, folder = push_to_hub(run, args.repo_id, args.checkpoint, args.export, args.allow_unverified,
                              private=not args.public, announce=announce)
    if args.json:
        print_json({"id": run.id, "repo": args.repo_id, "url": str(url), "folder": str(folder)})
    else:
        print(f"pushed {folder} to {url}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    run = _run(args)
    if not args.yes and sys.stdin.isatty():
        if input(f"delete run {run.id} ({run.name}) and its checkpoints? [y/N] ").strip().lower() != "y":
            print("kept")
            return 1
    run.store.delete_run(run.id)
    if args.json:
        print_json({"id": run.id, "deleted": True})
    else:
        print(f"deleted {run.id}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .comparison import comparison
    from .sweeps import resolve_runs

    data = comparison(resolve_runs(args.runs, args.sweep, args.runs_dir))
    if args.json:
        print_json(data)
        return 0
    from .rendering import format_number

    runs = data["runs"]
    shown = [m for m in data["metrics"] if m["name"].partition("_")[2] in SHOWN_METRICS]
    columns = [("id", [r["id"] for r in runs]), ("name", [r["name"] for r in runs]),
               ("status", [r["status"] for r in runs])]
    columns += [("sweep", [r["sweep"] for r in runs])] if any(r["sweep"] for r in runs) else []
    columns += [(d["key"], d["values"]) for d in data["differing"]] + [(m["name"], m["values"]) for m in shown]
    print_table([[name for name, _ in columns]] + [
        ["-" if values[i] is None else format_number(values[i]) for _, values in columns] for i in range(len(runs))])
    if not data["differing"]:
        print("(their configs do not differ)")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from .starter import starter_config

    text = starter_config(args.task)
    if args.path == "-":
        sys.stdout.write(text)
        return 0
    path = Path(args.path or f"{args.task}.yaml")
    if path.exists() and not args.force:
        raise FtkitError(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if args.json:
        print_json({"task": args.task, "path": str(path.resolve())})
    else:
        print(f"wrote {path}: point its data.train/validation/test at your files, then `ftkit train {path}`")
    return 0


# ----- helpers ----------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> Any:
    from .runs import get

    return get(args.run, args.runs_dir)


def _checkpoint_option(args: argparse.Namespace) -> list[str]:
    if args.checkpoint is None:
        return []
    given = Path(args.checkpoint).expanduser()  # a folder is named from here; a step or name from the run
    return ["--checkpoint", str(given.resolve()) if given.is_dir() else args.checkpoint]


if __name__ == "__main__":
    sys.exit(main())
