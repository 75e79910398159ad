"""IPython magics: ``%finetune`` / ``%%finetune`` launch runs; ``%ftkit`` inspects and controls them.

The ``%finetune`` flags are generated from the config schema (one flag per field, its help text
and choices from the field metadata, a few short aliases such as ``--lr``), so the magic and
the configuration form describe the same options. Magics parse and delegate: `ftkit.config.load_config`
builds the Config, `ftkit.runs.start` launches the worker process; nothing trains in the kernel.
A mistake the user can fix shows as one ``UsageError`` line, never a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import re
import typing
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, argument_group, magic_arguments, parse_argstring
from IPython.display import HTML, display

from ..config import Config, load_config, parse_value, schema_fields
from ..errors import ConfigError, FtkitError
from ..runstore.layout import EXPORT_FORMATS, GGUF_QUANTS
from ..tasks import TASK_NAMES, get_task, task_for_file

# Short names for the flags people type most; every other field is --<field-name>.
FLAG_ALIASES: dict[str, tuple[str, ...]] = {
    "data.train": ("--data",),
    "data.format": ("--data-format",),
    "adapter.kind": ("--adapter",),
    "adapter.r": ("--lora-r",),
    "adapter.alpha": ("--lora-alpha",),
    "adapter.dropout": ("--lora-dropout",),
    "adapter.target_modules": ("--lora-target-modules",),
    "training.learning_rate": ("--lr", "--learning-rate"),
    "output.dir": ("--runs-dir",),
}
METAVARS = {"data.train": "PATH_OR_HUB_ID", "data.validation": "PATH", "data.test": "PATH", "output.dir": "DIR"}
FTKIT_COMMANDS = ("runs", "show", "stop", "resume", "data", "predict", "chat", "errors", "neighbors", "moved",
                  "compare", "sweep", "export", "datamap", "retrain")


@functools.cache
def config_flags() -> dict[str, tuple[str, ...]]:
    """Dotted config key -> its option strings, in schema order."""
    flags: dict[str, tuple[str, ...]] = {}
    for key, _, _ in schema_fields():
        flags[key] = FLAG_ALIASES.get(key) or (f"--{key.rsplit('.', 1)[-1].replace('_', '-')}",)
    taken = [option for options in flags.values() for option in options]
    assert len(taken) == len(set(taken)), "two config fields would share a flag: add an alias"
    return flags


def _schema_arguments(func: Callable) -> Callable:
    """Decorator: one `magic_arguments.argument` per config field, grouped by section."""
    decorators, section = [], None
    for (key, hint, field), options in zip(schema_fields(), config_flags().values()):
        key_section = key.rpartition(".")[0]
        if key_section != section:
            section = key_section
            decorators.append(argument_group(f"{section or 'run'} options"))
        decorators.append(argument(*options, **_argument_options(key, hint, field)))
    for decorator in reversed(decorators):  # magic_arguments reads decorators bottom-up
        func = decorator(func)
    return func


def _argument_options(key: str, hint: Any, field: Any) -> dict[str, Any]:
    help_text = field.metadata.get("help", "").replace("%", "%%") + f" [{key}]"
    options: dict[str, Any] = {"dest": key, "default": argparse.SUPPRESS, "help": help_text}
    kinds = [k for k in typing.get_args(hint) if k is not type(None)] or [hint]
    choices = field.metadata.get("choices")
    if kinds == [bool]:
        options["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(kinds[0]) is list:
        options["type"] = unquote
        options["metavar"] = "A,B,..."
    else:
        options["type"] = parse_value  # read as YAML reads it, so flags and config files agree
        options["metavar"] = "{" + ",".join(choices) + "}" if choices else METAVARS.get(key, key.rsplit(".", 1)[-1].upper())
    return options


def unquote(token: str) -> str:
    """IPython splits magic lines keeping quotes (``"a b"`` stays one token, quotes included)."""
    if len(token) > 1 and token[0] == token[-1] and token[0] in "'\"":
        return token[1:-1]
    return token


@contextmanager
def user_errors(prefix: str) -> Iterator[None]:
    """Turn errors the user can fix into IPython's one-line UsageError (no traceback)."""
    try:
        yield
    except FtkitError as exc:
        raise UsageError(f"{prefix}: {_with_flag_names(str(exc))}") from None


def _with_flag_names(message: str) -> str:
    """``'training.epochs' must be...`` -> ``'training.epochs' (--epochs) must be...``."""
    flags = config_flags()

    def name_flag(match: re.Match) -> str:
        options = flags.get(match.group(1))
        return f"{match.group(0)} ({options[0]})" if options else match.group(0)

    return re.sub(r"'([a-z_]+(?:\.[a-z_]+)?)'", name_flag, message, count=1)


def parse_magic_line(magic: Callable, line: str, name: str) -> argparse.Namespace:
    """`parse_argstring` with a did-you-mean for unknown flags and bad choices."""
    try:
        return parse_argstring(magic, line)
    except ValueError as exc:  # unbalanced quotes
        raise UsageError(f"{name}: cannot split the arguments ({exc}); check the quotes") from None
    except UsageError as exc:
        message = str(exc)
        hint = ""
        unknown = re.search(r"unrecognized arguments: (\S+)", message)
        bad_choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if unknown:
            token = unknown.group(1).split("=", 1)[0]
            options = [o for action in magic.parser._actions for o in action.option_strings]
            close = difflib.get_close_matches(token, options, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]}?" if close else ""
        elif bad_choice:
            choices = [c.strip(" '") for c in bad_choice.group(2).split(",")]
            close = difflib.get_close_matches(bad_choice.group(1), choices, n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UsageError(f"{name}: {message}.{hint} See {name}? for every option.") from None


def build_config(args: argparse.Namespace, cell: str | None = None) -> Config:
    """The Config for parsed ``%finetune`` flags: YAML body or --config, then flags, then --set."""
    body = cell if cell and cell.strip() else None
    if body is not None and args.config:
        raise ConfigError("give the config either as the cell body or with --config, not both")
    source: Any = _parse_yaml_body(body) if body is not None else args.config
    flags = {key.replace(".", "__"): value for key, value in vars(args).items() if key in config_flags()}
    return load_config(source, overrides=args.set, **flags)


def _parse_yaml_body(text: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"the cell body is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("the cell body must be a YAML mapping, e.g.\ntask: ner\ndata:\n  train: train.txt")
    return data


@magics_class
class FtkitMagics(Magics):
    """``%finetune``, ``%%finetune`` and ``%ftkit``."""

    @magic_arguments()
    @argument("-o", "--output", metavar="VAR",
              help="Store the Run handle (with --dry-run: the Config) in this variable.")
    @argument("--config", metavar="PATH", type=unquote, help="Start from this YAML/JSON config file; flags override it.")
    @argument("--set", action="append", default=[], metavar="KEY=VALUE", type=unquote,
              help="Set any config key by its dotted name, e.g. --set training.warmup=0.06 (applied last).")
    @argument("--dry-run", action="store_true", help="Show the resolved config as YAML instead of launching.")
    @_schema_arguments
    @line_cell_magic
    def finetune(self, line: str, cell: str | None = None) -> None:
        """Fine-tune a model in a separate process and show its live monitor.

        %finetune --data train.txt --task ner --adapter lora --lora-r 8 --epochs 3 --lr 5e-5 -o run

        %%finetune [flags]
        <YAML config>      (the same keys as a config file; flags on the first line override it)

        Every config key has a flag below; --set key.path=value reaches any key by its dotted
        name. The run trains in its own process: the kernel stays free, and the run outlives
        it (re-attach with ftkit.runs.get(ID)).
        """
        with user_errors("%finetune"):
            args = parse_magic_line(self.finetune, line, "%finetune")
            config = build_config(args, cell)
            if args.dry_run:
                display({"text/plain": config.to_yaml(),
                         "text/markdown": f"```yaml\n{config.to_yaml()}```"}, raw=True)
                result: Any = config
            else:
                from .. import runs
                from .namespace import with_namespace_data

                result = runs.start(with_namespace_data(config, self.shell.user_ns))
                display(result)
        if args.output:
            self.shell.user_ns[args.output] = result

    @magic_arguments()
    @argument("command", choices=FTKIT_COMMANDS, metavar="COMMAND", help=f"one of {', '.join(FTKIT_COMMANDS)}")
    @argument("target", nargs="*", type=unquote, help="the run, path or word the command acts on (predict: RUN then the text)")
    @argument("--run", metavar="RUN", help="neighbors/moved: the fine-tuned run to compare with")
    @argument("--k", type=int, metavar="K", help="neighbors/moved: how many words (default 10 / 20)")
    @argument("--space", help="neighbors/moved: which embedding space (default: static / contextual)")
    @argument("--task", choices=TASK_NAMES, help="data: how to read the file (default: ner, classification for .tsv/.csv)")
    @argument("-n", type=int, default=5, metavar="N", help="data: sentences to preview (default 5)")
    @argument("--model", metavar="MODEL", type=unquote,
              help="data: whose tokenizer counts and renders sft chats (default: the task's default model)")
    @argument("--max-new-tokens", type=int, default=128, metavar="N", help="chat: the longest answer (default 128)")
    @argument("--temperature", type=float, default=0.0, metavar="T", help="chat: 0 for greedy answers (default)")
    @argument("--status", help="runs: only runs with this status")
    @argument("--split", default="test", help="errors: whose saved predictions to read (default test)")
    @argument("--sweep", metavar="NAME", type=unquote, help="compare: also compare every run of this sweep")
    @argument("--grid", action="append", default=[], metavar="KEY=V1,V2", type=unquote,
              help="sweep: a config key and its values (repeatable: every combination runs)")
    @argument("--optuna", type=int, metavar="N", help="sweep: search with optuna instead: N trials, in a driver process")
    @argument("--parallel", type=int, default=1, metavar="P", help="sweep --optuna: trials at once (default 1)")
    @argument("--pruner", default="median", choices=("median", "hyperband", "none"),
              help="sweep --optuna: stop unpromising trials (default median)")
    @argument("--search", action="append", default=[], metavar="KEY=LOW:HIGH[:log]", type=unquote,
              help="sweep --optuna: a range to search (:log for a log scale) or choices KEY=A,B (repeatable)")
    @argument("--name", metavar="NAME", type=unquote, help="sweep: the sweep's name (default: from the run name and time)")
    @argument("--format", choices=EXPORT_FORMATS, help="export: gguf or onnx (default: what the run's task exports to)")
    @argument("--quant", choices=GGUF_QUANTS, help="export: GGUF weights f16 (default), q8_0 or q4_0")
    @argument("--checkpoint", metavar="STEP", type=unquote, help="export: a checkpoint step or folder (default: the best)")
    @argument("--ollama", action="store_true", help="export: also write an Ollama Modelfile beside the GGUF file")
    @argument("--to", metavar="PATH", type=unquote, help="export: a folder or .gguf file (default: in the run's exports/)")
    @argument("--exclude", metavar="FILE", type=unquote,
              help="retrain: training rows to leave out, one per line (or a CSV with an 'example' column)")
    @argument("--relabel", metavar="FILE", type=unquote, help="retrain: corrected labels, a JSON/YAML mapping row: label")
    @argument("--top", metavar="PERCENT", type=unquote,
              help="retrain: also leave out this share of the likeliest label errors, e.g. 5%%")
    @argument("--runs-dir", metavar="DIR", type=unquote,
              help="the run store to look in (default: $FTKIT_RUNS_DIR or ./ftkit-runs, then the stores of "
                   "runs this kernel started)")
    @argument("-o", "--output", metavar="VAR", help="store the command's result (Run, runs, predictions) in VAR")
    @line_magic
    def ftkit(self, line: str) -> None:
        """Inspect and control fine-tuning runs.

        %ftkit runs [--status running]       table of runs, newest first
        %ftkit show RUN                      the run's live monitor (re-attaches after a restart)
        %ftkit stop RUN                      checkpoint and stop
        %ftkit resume RUN                    continue a stopped or failed run from its checkpoint
        %ftkit data PATH [--task ner] [-n 5] statistics and a preview of a data set
        %ftkit predict RUN "some text"       entities highlighted inline (or the label, for classification)
        %ftkit chat RUN "a question"         an sft run's answer, streamed as it is generated
        %ftkit errors RUN [--split test]     where the model goes wrong: counts, confusions, worst examples
        %ftkit neighbors WORD [--run RUN] [--k 10]   nearest words in the embedding space
        %ftkit moved --run RUN [--k 20]      words whose embeddings moved most in fine-tuning
        %ftkit compare RUN RUN ... [--sweep NAME]   differing config keys, final metrics, overlaid curves
        %ftkit sweep CONFIG --grid KEY=V1,V2 ...    a run per setting, tagged with the sweep (or
                                             --optuna N --search KEY=LOW:HIGH[:log] [--parallel P])
        %ftkit sweep NAME                    a sweep's trials, its metric against each setting, compare
        %ftkit export RUN [--quant q8_0] [--ollama] [--to PATH]   GGUF (generative) or ONNX (encoder),
                                             verified against the fine-tuned model
        %ftkit datamap RUN                   each training example by confidence and variability, the
                                             likeliest label errors, and a retrain without them
        %ftkit retrain RUN [--top 5%] [--exclude FILE] [--relabel FILE]   a child run without those
                                             training examples (or with corrected labels)

        RUN is a run id, a unique id prefix, a run name, a run folder, or a variable holding a Run
        (which carries its own store). Runs launched with --runs-dir / output.dir are found
        without FTKIT_RUNS_DIR.
        """
        with user_errors("%ftkit"):
            args = parse_magic_line(self.ftkit, line, "%ftkit")
            result = getattr(self, f"_ftkit_{args.command}")(args)
        if args.output:
            self.shell.user_ns[args.output] = result

    # ----- %ftkit commands -----------------------------------------------------------------------
    @staticmethod
    def _one_target(args: argparse.Namespace, what: str) -> str:
        if len(args.target) != 1:
            raise UsageError(f"%ftkit {args.command}: give exactly one {what}, e.g. %ftkit {args.command} {what}")
        return args.target[0]

    def _run(self, ref: str, args: argparse.Namespace) -> Any:
        """The run ``ref`` names, in its own store: a Run variable, a run folder, or an id/name
        looked up in --runs-dir, else the default store, else the stores of runs this kernel started."""
        from .. import runs

        value = self.shell.user_ns.get(ref) if ref.isidentifier() else None
        if isinstance(value, runs.Run):
            return value
        return runs.get(ref, args.runs_dir)

    def _ftkit_runs(self, args: argparse.Namespace) -> list[dict[str, Any]]:
        from .display import runs_table_html, runs_table_text
        from ..runstore import RunStore

        runs, _ = RunStore(args.runs_dir).list_runs(status=args.status)
        display({"text/html": runs_table_html(runs), "text/plain": runs_table_text(runs)}, raw=True)
        return runs

    def _ftkit_show(self, args: argparse.Namespace) -> Any:
        run = self._run(self._one_target(args, "RUN"), args)
        display(run)
        return run

    def _ftkit_stop(self, args: argparse.Namespace) -> Any:
        run = self._run(self._one_target(args, "RUN"), args)
        if run.done:
            print(f"{run.name} ({run.id}) has already {run.status}.")
        else:
            run.stop()
            print(f"Asked {run.name} ({run.id}) to stop: it saves a checkpoint after its current step.")
        return run

    def _ftkit_resume(self, args: argparse.Namespace) -> Any:
        run = self._run(self._one_target(args, "RUN"), args).resume()
        display(run)
        return run

    def _ftkit_data(self, args: argparse.Namespace) -> Any:
        from .. import data_preview, data_stats, load_data

        path = self._one_target(args, "PATH")
        task = args.task or task_for_file(path)
        model = {"model": args.model} if args.model else {}  # sft: the tokenizer that renders and counts
        display(data_stats(path, task, **model))  # from the file as written: reports its own tag scheme
        dataset = load_data(path, task=task)
        split = "train" if "train" in dataset else next(iter(dataset))
        display(HTML(data_preview(dataset[split], n=args.n, task=task, **model)))
        return dataset

    def _ftkit_predict(self, args: argparse.Namespace) -> Any:
        if len(args.target) < 2:
            raise UsageError('%ftkit predict: give a run and a text, e.g. %ftkit predict RUN "John lives in Paris"')
        run, text = self._run(args.target[0], args), " ".join(args.target[1:])
        prediction = run.predict([text])[0]
        plain, page = get_task(run.config.task).prediction_display(text, prediction)
        display({"text/plain": plain, "text/html": page}, raw=True)
        return prediction

    def _ftkit_chat(self, args: argparse.Namespace) -> str:
        """The answer of the run's best checkpoint, streamed into this cell's output as it is generated (marked
        when the token limit cut it)."""
        from ..rendering import cut_mark, escape

        if len(args.target) < 2:
            raise UsageError('%ftkit chat: give a run and a message, e.g. %ftkit chat RUN "Is this review positive?"')
        run, text = self._run(args.target[0], args), " ".join(args.target[1:])
        generator = run.generator()  # loads the checkpoint with its own tokenizer and chat template
        answer = ""

        def bundle(end: str) -> dict[str, str]:
            page = (f"<div><div style='color:#6b7280'><b>you</b>: {escape(text)}</div>"
                    f"<div><b>{escape(run.name)}</b>: {escape(answer)}{escape(end)}</div></div>")
            return {"text/plain": f"{run.name}: {answer}{end}", "text/html": page}

        handle = display(bundle("▌"), raw=True, display_id=True)
        stream = generator.stream(text, max_new_tokens=args.max_new_tokens, temperature=args.temperature)
        for piece in stream:
            answer += piece
            handle.update(bundle("▌"), raw=True)
        handle.update(bundle("" if stream.generation.stopped else f" {cut_mark(args.max_new_tokens)}"), raw=True)
        return answer

    def _ftkit_errors(self, args: argparse.Namespace) -> Any:
        """The error browser over the run's saved predictions (no model is loaded)."""
        from .widgets.errors import ErrorBrowser

        browser = ErrorBrowser.for_run(self._run(self._one_target(args, "RUN"), args), args.split)
        display(browser)
        return browser

    def _ftkit_compare(self, args: argparse.Namespace) -> Any:
        from .. import compare
        from ..sweeps import Sweep

        def named(ref: str) -> Any:  # a Sweep variable, or a run as every %ftkit command finds one
            value = self.shell.user_ns.get(ref)
            return value if isinstance(value, Sweep) else self._run(ref, args)

        frame = compare(*map(named, args.target), sweep=args.sweep, runs_dir=args.runs_dir)
        display(frame)
        return frame

    def _ftkit_sweep(self, args: argparse.Namespace) -> Any:
        """A config file starts a sweep (a search runs in its own driver process); a name shows one, live."""
        from ..sweeps import get, start_sweep
        from .widgets.sweep import show_sweep

        target = self._one_target(args, "CONFIG or NAME")
        if not Path(target).expanduser().is_file():
            sweep = get(target, args.runs_dir)
            show_sweep(sweep)
            return sweep
        config = load_config(target)
        if args.runs_dir:
            config = config.replace({"output.dir": args.runs_dir})
        sweep = start_sweep(config, args.grid, args.search, args.optuna, args.name, parallel=args.parallel,
                            pruner=args.pruner)
        show_sweep(sweep)
        return sweep

    def _ftkit_export(self, args: argparse.Namespace) -> dict[str, Any]:
        from ..exports import export_summary

        run = self._run(self._one_target(args, "RUN"), args)
        print(f"Exporting {run.name} ({run.id}) and verifying it against the fine-tuned model ...", flush=True)
        record = run.export(args.format, args.quant, args.checkpoint, args.to, args.ollama)
        print(export_summary(record))
        return record

    def _ftkit_datamap(self, args: argparse.Namespace) -> Any:
        from .widgets.datamap import DataMap

        widget = DataMap.for_run(self._run(self._one_target(args, "RUN"), args))
        display(widget)
        return widget

    def _ftkit_retrain(self, args: argparse.Namespace) -> Any:
        from ..datamap import read_relabels, read_rows

        run = self._run(self._one_target(args, "RUN"), args)
        exclude = read_rows(args.exclude) if args.exclude else []
        if args.top:
            try:
                share = float(args.top.rstrip("%")) / 100
            except ValueError:
                raise UsageError(f"%ftkit retrain --top: a share of the examples, e.g. 5%; got {args.top!r}") from None
            frame = run.data_map()
            exclude += frame.nsmallest(round(share * len(frame)), "issue_score")["example"].tolist()
        child = run.retrain(exclude=exclude, relabel=read_relabels(args.relabel) if args.relabel else None)
        display(child)
        return child

    def _ftkit_neighbors(self, args: argparse.Namespace) -> Any:
        from ..embeddings import show_neighbors

        run = self._run(args.run, args) if args.run else None
        result = show_neighbors(self._one_target(args, "WORD"), run=run, k=args.k or 10, space=args.space or "static")
        if result is not None:
            display(result)
        return result

    def _ftkit_moved(self, args: argparse.Namespace) -> Any:
        from ..embeddings import show_moved

        if not args.run:
            raise UsageError("%ftkit moved: name the fine-tuned run, e.g. %ftkit moved --run RUN")
        options = {"space": args.space} if args.space else {}
        result = show_moved(self._run(args.run, args), k=args.k or 20, **options)
        if result is not None:
            display(result)
        return result


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext ftkit``: the magics, and runs that display as their live monitor."""
    from .widgets import register_run_formatter

    ipython.register_magics(FtkitMagics)
    register_run_formatter(ipython)
    if type(ipython).__name__ == "ZMQInteractiveShell":  # a notebook kernel, where runs show as live monitors
        _warm_up_monitor()


def _warm_up_monitor() -> None:
    """Import the run monitor (ipywidgets, bokeh: about a second) while the kernel is idle, so the first
    ``%finetune`` shows its monitor, already saying "starting", well within 2 s instead of after that import."""
    import threading
    from importlib import import_module

    def warm_up() -> None:
        try:
            import_module(".widgets.monitor", __package__)
        except Exception:  # noqa: BLE001 - the first %finetune imports it again and reports a real problem
            pass

    threading.Thread(target=warm_up, name="ftkit-warm-up", daemon=True).start()


__all__ = ["FtkitMagics", "build_config", "config_flags", "load_ipython_extension"]
